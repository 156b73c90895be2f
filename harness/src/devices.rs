//! Starting the devices of a scenario: each entry's settings translated into its kind's builder
//! (`airtwin_simulators::device`), which is where a kind's parts, identity defaults, ready-file
//! entry, DNS-SD records and state live.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use airtwin_simulators::airplay::AirplayConfig;
use airtwin_simulators::companion::CompanionConfig;
use airtwin_simulators::daap::Catalog;
use airtwin_simulators::dacp::pairing::parse_guid;
use airtwin_simulators::dacp::DacpConfig;
use airtwin_simulators::device::{AirportExpress, AppleTv, Itunes, Settings, SpotifyAp};
use airtwin_simulators::fault::{Action, FaultPlan};
use airtwin_simulators::hap::{Identity as HapIdentity, KnownController};
use airtwin_simulators::raop::{keys, CapturePolicy, RaopConfig};
use airtwin_simulators::shell::Recorder;
use airtwin_simulators::spotify_ap::identity::Identity;
use airtwin_simulators::spotify_ap::mercury;
use airtwin_simulators::spotify_ap::session::ApConfig;
use anyhow::{bail, Context as _, Result};
use tokio::sync::watch;

pub use airtwin_simulators::device::{parse_mac, Device, Parts, ReadyDevice, LOOPBACK};

use crate::scenario::model::{Generation, Power};
use crate::scenario::{DeviceKind, DeviceSpec};

/// The address a device listens on: its scenario `address`, else [`LOOPBACK`].
pub fn address_of(spec: &DeviceSpec) -> IpAddr {
    spec.address.map_or(LOOPBACK, IpAddr::V4)
}

/// Everything a device needs from the run it belongs to.
pub struct RunContext {
    pub recorder: Arc<Recorder>,
    pub plan: Arc<FaultPlan>,
    pub seed: u64,
    pub shutdown: watch::Receiver<bool>,
    /// Folder relative key paths are resolved against.
    pub base_dir: std::path::PathBuf,
    /// What RAOP receivers keep of their audio sessions: everything for `airtwin run`, a
    /// window streamed to `--out` for `serve`.
    pub capture: CapturePolicy,
    /// Buffer budget every device of the run shares (`serve --buffer-budget`); each device has
    /// its own default one when absent.
    pub buffers: Option<Arc<airtwin_simulators::buffer_budget::BufferBudget>>,
}

fn resolve_key(source: &str, base: &Path) -> String {
    match source {
        "builtin" | "airport-express" | "other" => source.to_string(),
        path if Path::new(path).is_absolute() => path.to_string(),
        path => base.join(path).to_string_lossy().into_owned(),
    }
}

/// The settings every device of the run shares, with this entry's name, address, port and idle
/// timeout.
fn settings(spec: &DeviceSpec, run: &RunContext) -> Result<Settings> {
    let idle = spec.idle_timeout.unwrap_or(60.0);
    let idle_timeout = Duration::try_from_secs_f64(idle).with_context(|| {
        format!(
            "device {}: idle_timeout {idle} is not a number of seconds",
            spec.name
        )
    })?;
    Ok(Settings {
        seed: run.seed,
        address: address_of(spec),
        port: spec.port,
        idle_timeout,
        recorder: Some(run.recorder.clone()),
        plan: Some(run.plan.clone()),
        shutdown: Some(run.shutdown.clone()),
        buffers: run.buffers.clone(),
        ..Settings::new(&spec.name)
    })
}

/// Starts one device and waits until it listens.
pub async fn start(spec: &DeviceSpec, run: &RunContext) -> Result<Device> {
    let settings = settings(spec, run)?;
    Ok(match spec.kind {
        DeviceKind::AirportExpress => {
            AirportExpress::builder()
                .settings(settings)
                .raop(airport_express_config(spec, run)?)
                .spawn()
                .await?
        }
        DeviceKind::AppleTv => {
            let airplay = apple_tv_config(spec, run)?;
            let raop = apple_tv_raop_config(&airplay, spec, run)?;
            let mut tv = AppleTv::builder()
                .settings(settings)
                .raop(raop)
                .dacp(dacp_config(spec, run)?)
                .dacp_port(spec.dacp.as_ref().map_or(0, |d| d.port));
            if let Some(companion) = companion_config(&airplay, spec, run)? {
                tv = tv
                    .companion(companion)
                    .companion_port(spec.companion.as_ref().map_or(0, |c| c.port));
            }
            tv.airplay(airplay).spawn().await?
        }
        DeviceKind::Itunes => {
            Itunes::builder()
                .settings(settings)
                .dacp(dacp_config(spec, run)?)
                .spawn()
                .await?
        }
        DeviceKind::SpotifyAp => {
            let s = spec.spotify.clone().unwrap_or_default();
            SpotifyAp::builder()
                .settings(settings)
                .ap(spotify_ap_config(spec, run)?)
                .apresolve(s.apresolve.unwrap_or_default())
                .apresolve_port(s.apresolve_port)
                .spawn()
                .await?
        }
    })
}

/// The access point of a `spotify-ap` entry: its signing key (`identity.key` PEM path, or drawn
/// from the seed), accounts, Mercury replies and session settings.
fn spotify_ap_config(spec: &DeviceSpec, run: &RunContext) -> Result<ApConfig> {
    let load = |source: &str, what: &str| -> Result<Identity> {
        match source {
            "other" => Identity::from_seed(run.seed ^ 0x5107_1f1e_d0c0_ffee),
            path => {
                let path = resolve_key(path, &run.base_dir);
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("device {}: {what} {path}", spec.name))?;
                Identity::from_pem(&text)
            }
        }
        .with_context(|| format!("device {}: {what}", spec.name))
    };
    let identity = match &spec.identity.key {
        Some(key) => load(key, "identity.key")?,
        None => Identity::from_seed(run.seed)
            .with_context(|| format!("device {}: signing key", spec.name))?,
    };
    let mut config = ApConfig::new(Arc::new(identity), run.seed);
    let Some(s) = &spec.spotify else {
        return Ok(config);
    };
    config.accounts = s.accounts.clone();
    config.mercury = s
        .mercury
        .iter()
        .map(|(uri, body)| mercury::Reply {
            uri: uri.clone(),
            status: 200,
            body: body.clone(),
        })
        .collect();
    if let Some(source) = &s.sign_with {
        config.sign_with = Some(Arc::new(load(source, "spotify.sign_with")?));
    }
    if let Some(secs) = s.ping_interval {
        config.ping_interval = Duration::try_from_secs_f64(secs)
            .with_context(|| format!("device {}: spotify.ping_interval {secs}", spec.name))?;
    }
    if let Some(t) = &s.product_type {
        config.product_type = t.clone();
    }
    if let Some(c) = &s.country {
        config.country = c.clone();
    }
    config.try_another_ap = s.try_another_ap;
    config.reject_hmac = s.reject_hmac;
    Ok(config)
}

/// Keys that `sign_with` faults name, loaded when the device starts so the core never reads files.
fn sign_with_keys(run: &RunContext) -> Result<Vec<(String, Arc<keys::DeviceKey>)>> {
    let mut out = Vec::new();
    for fault in run.plan.faults() {
        if let Action::SignWith(source) = &fault.action {
            let resolved = resolve_key(source, &run.base_dir);
            let key = crate::key_file::load_private(&resolved)
                .with_context(|| format!("fault sign_with {source:?}"))?;
            out.push((source.clone(), Arc::new(key)));
        }
    }
    Ok(out)
}

/// The `identity.key` of an entry, loaded.
fn identity_key(spec: &DeviceSpec, run: &RunContext) -> Result<Option<Arc<keys::DeviceKey>>> {
    let Some(key) = &spec.identity.key else {
        return Ok(None);
    };
    let source = resolve_key(key, &run.base_dir);
    let key = crate::key_file::load_private(&source)
        .with_context(|| format!("device {}: identity.key", spec.name))?;
    Ok(Some(Arc::new(key)))
}

/// The Companion side of an `apple-tv` entry: the 4K's defaults from its AirPlay side, then its
/// `companion` settings; `None` for an Apple TV 3, which refuses `companion` settings.
fn companion_config(
    airplay: &AirplayConfig,
    spec: &DeviceSpec,
    run: &RunContext,
) -> Result<Option<CompanionConfig>> {
    let Some(mut config) = AppleTv::companion(airplay, run.seed) else {
        if spec.companion.is_some() {
            bail!(
                "device {}: companion needs identity.generation: 4k",
                spec.name
            );
        }
        return Ok(None);
    };
    let Some(c) = &spec.companion else {
        return Ok(Some(config));
    };
    if let Some(apps) = &c.apps {
        config.apps = apps.clone();
        if !apps
            .iter()
            .any(|a| Some(&a.bundle_id) == config.current_app.as_ref())
        {
            config.current_app = apps.first().map(|a| a.bundle_id.clone());
        }
    }
    if let Some(app) = &c.current_app {
        if !config.apps.iter().any(|a| &a.bundle_id == app) {
            bail!(
                "device {}: companion.current_app {app:?} is not one of companion.apps",
                spec.name
            );
        }
        config.current_app = Some(app.clone());
    }
    if let Some(p) = c.power {
        config.awake = p == Power::On;
    }
    config.text_field = c.text_field.clone();
    Ok(Some(config))
}

/// The AirPlay side of an `apple-tv` entry: the kind's defaults, then its `identity`.
fn apple_tv_config(spec: &DeviceSpec, run: &RunContext) -> Result<AirplayConfig> {
    let id = &spec.identity;
    let mut config = match id.generation {
        Some(Generation::FourK) => AirplayConfig::apple_tv_4k(&spec.name, run.seed),
        _ => AppleTv::config(&spec.name, run.seed),
    };
    if let Some(pin) = &id.pin {
        let Some(pairing) = config.pairing.as_mut() else {
            bail!(
                "device {}: identity.pin needs identity.generation: 4k",
                spec.name
            );
        };
        if pin.len() != 4 || !pin.bytes().all(|b| b.is_ascii_digit()) {
            bail!(
                "device {}: identity.pin {pin:?} must be 4 digits",
                spec.name
            );
        }
        pairing.pin = pin.clone();
    }
    let info = &mut config.info;
    if let Some(mac) = &id.mac {
        let bytes = parse_mac(mac).with_context(|| format!("bad MAC {mac:?}"))?;
        info.mac_address = airtwin_simulators::wire::hex::mac_text(&bytes);
        info.device_id = info.mac_address.clone();
    }
    if let Some(v) = &id.device_id {
        info.device_id = v.clone();
    }
    if let Some(v) = &id.name {
        info.name = v.clone();
    }
    if let Some(v) = &id.model {
        info.model = v.clone();
    }
    if let Some(v) = &id.source_version {
        info.source_version = v.clone();
    }
    if let Some(f) = &id.features {
        info.features = f
            .value()
            .with_context(|| format!("device {}: identity.features {f:?}", spec.name))?;
    }
    if let Some(v) = &id.pi {
        info.pi = v.clone();
    }
    if let Some(v) = id.status_flags {
        info.status_flags = v;
    }
    if let Some(v) = id.initial_volume {
        info.initial_volume = v;
    }
    for (key, value) in &id.info {
        let value = (!value.is_null()).then(|| airtwin_simulators::fault::plist_from_json(value));
        info.overrides.push((key.clone(), value));
    }
    if let Some(d) = id.video_duration {
        config.video_duration = d;
    }
    // After every identity edit: the credentials name the accessory's final `pi`.
    if !id.controllers.is_empty() {
        let Some(pairing) = config.pairing.as_mut() else {
            bail!(
                "device {}: identity.controllers needs identity.generation: 4k",
                spec.name
            );
        };
        let accessory = HapIdentity::new(config.info.pi.clone(), config.signing_key.clone());
        for (i, name) in id.controllers.iter().enumerate() {
            let usable = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !usable {
                bail!(
                    "device {}: identity.controllers[{i}] {name:?} must be letters, digits, - or _",
                    spec.name
                );
            }
            if id.controllers[..i].contains(name) {
                bail!(
                    "device {}: identity.controllers[{i}] {name:?} is named twice",
                    spec.name
                );
            }
            pairing.known.push(KnownController::from_seed(
                run.seed, &spec.name, name, &accessory,
            ));
        }
    }
    Ok(config)
}

/// The RAOP core of an `apple-tv` entry: derived from its AirPlay side, then key, session and
/// `sign_with` keys.
fn apple_tv_raop_config(
    airplay: &AirplayConfig,
    spec: &DeviceSpec,
    run: &RunContext,
) -> Result<RaopConfig> {
    let mut raop = airplay.raop_config(run.seed);
    if let Some(key) = identity_key(spec, run)? {
        raop.key = key;
    }
    raop.session_id = spec.identity.session_id.clone();
    if let Some(n) = spec.max_sessions {
        raop.max_sessions = n;
    }
    raop.extra_keys = sign_with_keys(run)?;
    raop.capture = run.capture.clone();
    Ok(raop)
}

/// The RAOP receiver of an `airport-express` entry: the kind's defaults, then its `identity`.
fn airport_express_config(spec: &DeviceSpec, run: &RunContext) -> Result<RaopConfig> {
    let mut config = AirportExpress::config(&spec.name, run.seed);
    let id = &spec.identity;
    if let Some(mac) = &id.mac {
        config.hw_addr = parse_mac(mac).with_context(|| format!("bad MAC {mac:?}"))?;
    }
    if let Some(key) = identity_key(spec, run)? {
        config.key = key;
    }
    if let Some(m) = &id.model {
        config.model = m.clone();
    }
    if let Some(v) = &id.source_version {
        config.source_version = v.clone();
    }
    config.session_id = id.session_id.clone();
    if let Some(n) = spec.max_sessions {
        config.max_sessions = n;
    }
    config.extra_keys = sign_with_keys(run)?;
    config.capture = run.capture.clone();
    Ok(config)
}

/// The DACP library of an entry (an `itunes`, the remote-control side of an `apple-tv`): the
/// kind's defaults, then its `dacp` settings.
pub fn dacp_config(spec: &DeviceSpec, run: &RunContext) -> Result<DacpConfig> {
    let mut config = Itunes::library(&spec.name, run.seed, SystemTime::now());
    config.guest_login = spec.kind == DeviceKind::Itunes;
    let Some(d) = &spec.dacp else {
        return Ok(config);
    };
    if let Some(g) = d.guest_login {
        config.guest_login = g;
    }
    if let Some(list) = &d.known_guids {
        config.known_guids = list
            .iter()
            .map(|g| {
                parse_guid(g).with_context(|| {
                    format!(
                        "device {}: dacp.known_guids: {g:?} is not 0x and 16 hex digits",
                        spec.name
                    )
                })
            })
            .collect::<Result<_>>()?;
    }
    if let Some(s) = d.login_status {
        config.login_status = s;
    }
    if let Some(t) = d.session_timeout {
        config.session_timeout = Duration::from_secs_f64(t.max(0.0));
    }
    if let Some(g) = d.gzip {
        config.gzip = g;
    }
    if let Some(n) = &d.name {
        config.name = n.clone();
    }
    if let Some(np) = &d.now_playing {
        config.now_playing = np.clone();
    }
    if let Some(sp) = &d.speakers {
        config.speakers = sp.clone();
    }
    config.artwork = config
        .now_playing
        .tracks
        .iter()
        .map(|t| match &t.artwork {
            None => Ok(None),
            Some(p) => {
                let path = run.base_dir.join(p);
                std::fs::read(&path)
                    .map(Some)
                    .with_context(|| format!("device {}: artwork {}", spec.name, path.display()))
            }
        })
        .collect::<Result<_>>()?;
    if let Some(lib) = &d.library {
        let artwork = lib
            .tracks
            .iter()
            .map(|t| match &t.artwork {
                None => Ok(None),
                Some(p) => {
                    let path = run.base_dir.join(p);
                    std::fs::read(&path).map(Some).with_context(|| {
                        format!("device {}: library artwork {}", spec.name, path.display())
                    })
                }
            })
            .collect::<Result<Vec<_>>>()?;
        config.library =
            Some(Catalog::new(lib, artwork).with_context(|| format!("device {}", spec.name))?);
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> (RunContext, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(false);
        let ctx = RunContext {
            recorder: Recorder::shared(),
            plan: Arc::new(FaultPlan::empty()),
            seed: 7,
            shutdown: rx,
            base_dir: ".".into(),
            capture: Default::default(),
            buffers: None,
        };
        (ctx, tx)
    }

    #[tokio::test]
    async fn every_scenario_kind_starts_as_the_device_kind_of_the_same_name() {
        let (ctx, _stop) = run();
        for name in DeviceKind::NAMES {
            let kind = DeviceKind::parse(name).expect("listed kind parses");
            let spec: DeviceSpec =
                serde_yaml::from_str(&format!("{{kind: {name}, name: d-{name}}}")).unwrap();
            let device = start(&spec, &ctx).await.unwrap();
            assert_eq!(device.kind.as_str(), kind.as_str());
            assert_eq!(device.ready().kind, *name);
            assert_ne!(device.port(), 0);
        }
    }

    #[tokio::test]
    async fn controllers_paired_before_the_start_are_known_to_airplay_and_companion() {
        let (ctx, _stop) = run();
        let spec: DeviceSpec = serde_yaml::from_str(
            "{kind: apple-tv, name: tv, identity: {generation: 4k, pi: 'PI-1', controllers: [ha, dev]}}",
        )
        .unwrap();
        let tv = start(&spec, &ctx).await.unwrap();
        let facts = tv.ready().identity;
        let ha = airtwin_simulators::hap::identity::Credentials::parse(&facts["credentials.ha"])
            .unwrap();
        assert_eq!(ha.accessory_id, b"PI-1");
        let pk: String = ha
            .accessory_key
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(pk, facts["pk"].to_lowercase());
        assert_ne!(facts["credentials.ha"], facts["credentials.dev"]);
        let paired = |part: &str| tv.state_value(part)["paired"].clone();
        let ids = serde_json::json!([
            String::from_utf8(ha.controller_id.clone()).unwrap(),
            airtwin_simulators::hap::identity::Credentials::parse(&facts["credentials.dev"])
                .map(|c| String::from_utf8(c.controller_id).unwrap())
                .unwrap()
        ]);
        assert_eq!(paired("hap"), ids);
        assert_eq!(paired("companion"), ids);
        // The same seed gives the same credentials on every run.
        let again = start(&spec, &ctx).await.unwrap();
        assert_eq!(
            again.ready().identity["credentials.ha"],
            facts["credentials.ha"]
        );
        for (yaml, error) in [
            (
                "{kind: apple-tv, name: t, identity: {controllers: [ha]}}",
                "needs identity.generation: 4k",
            ),
            (
                "{kind: apple-tv, name: t, identity: {generation: 4k, controllers: [ha, ha]}}",
                "named twice",
            ),
            (
                "{kind: apple-tv, name: t, identity: {generation: 4k, controllers: ['a b']}}",
                "must be letters",
            ),
        ] {
            let spec: DeviceSpec = serde_yaml::from_str(yaml).unwrap();
            let e = format!("{:#}", start(&spec, &ctx).await.err().expect("refused"));
            assert!(e.contains(error), "{e}");
        }
    }

    #[tokio::test]
    async fn a_4k_serves_companion_from_its_settings_and_a_3_refuses_them() {
        let (ctx, _stop) = run();
        let spec: DeviceSpec = serde_yaml::from_str(
            "{kind: apple-tv, name: tv, identity: {generation: 4k, pin: '1357'}, companion: \
             {apps: [{bundle_id: a.b, name: AB}, {bundle_id: c.d, name: CD}], current_app: c.d, \
             power: 'off'}}",
        )
        .unwrap();
        let tv = start(&spec, &ctx).await.unwrap();
        assert_ne!(tv.ready().ports["companion"], 0);
        let c = tv.state_value("companion");
        assert_eq!(c["apps"], serde_json::json!(["a.b", "c.d"]));
        assert_eq!(c["current_app"], "c.d");
        assert_eq!(c["power"], "off");
        assert_eq!(c["pin"], "1357");
        let bad: DeviceSpec = serde_yaml::from_str(
            "{kind: apple-tv, name: tv, identity: {generation: 4k}, companion: {current_app: x}}",
        )
        .unwrap();
        let e = format!("{:#}", start(&bad, &ctx).await.err().expect("refused"));
        assert!(
            e.contains("companion.current_app \"x\" is not one of"),
            "{e}"
        );
        let three: DeviceSpec =
            serde_yaml::from_str("{kind: apple-tv, name: tv, companion: {}}").unwrap();
        let e = format!("{:#}", start(&three, &ctx).await.err().expect("refused"));
        assert!(e.contains("companion needs identity.generation: 4k"), "{e}");
    }

    #[tokio::test]
    async fn a_negative_idle_timeout_is_an_error() {
        let (ctx, _stop) = run();
        let spec: DeviceSpec =
            serde_yaml::from_str("{kind: itunes, name: lib, idle_timeout: -1}").unwrap();
        let e = format!("{:#}", start(&spec, &ctx).await.err().expect("refused"));
        assert!(
            e.starts_with("device lib: idle_timeout -1 is not a number of seconds"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_taken_port_is_an_error_naming_the_device_and_address() {
        let (ctx, _stop) = run();
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let spec: DeviceSpec =
            serde_yaml::from_str(&format!("{{kind: itunes, name: lib, port: {port}}}")).unwrap();
        let e = format!(
            "{:#}",
            start(&spec, &ctx).await.err().expect("port is taken")
        );
        assert!(
            e.starts_with(&format!("device lib: cannot listen on 127.0.0.1:{port}: ")),
            "{e}"
        );
    }
}
