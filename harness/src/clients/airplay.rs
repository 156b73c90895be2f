//! airtwin's own AirPlay client (`airtwin client airplay`), a conformance client for the AirPlay
//! port of an Apple TV (docs/protocols/airplay.md):
//!
//! 1. `GET /info` (RTSP, with CSeq): the binary plist must hold every key of the seed with its
//!    type, `pk` 32 bytes, and a `features` value that keeps a sender on this path (bits 38, 43,
//!    48 would send it to HomeKit pairing);
//! 2. optionally `GET /info` with `qualifier: ["txtAirPlay"]`: just the TXT record;
//! 3. `POST /fp-setup` phase 1 with the chosen mode: the reply must be the 142 fixed bytes of that
//!    mode;
//! 4. phase 3: the reply must be the fixed 12-byte header then request bytes 144..164;
//! 5. optionally a RAOP audio stream (airtwin's RAOP sender, which verifies `Apple-Response`);
//! 6. optionally a video URL over the classic HTTP API: `/play`, `/playback-info`, `/scrub`,
//!    `/rate`, `/stop`, `/server-info`.
//!
//! Every RTSP response must carry `Date`, one `Session` for the connection, `CSeq` echoed,
//! `Server: AirTunes/<sourceVersion>` and `Audio-Jack-Status` except on RECORD/SET_PARAMETER.
//! Each step is one `ok` line; the first failure names the step and the difference, exit 1.

use std::fmt::Write as _;
use std::io::Cursor;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use airtwin_simulators::airplay::fairplay::{self, PHASE1_REPLY_LEN};
use airtwin_simulators::airplay::info;
use airtwin_simulators::wire::{Protocol, Response};
use anyhow::{bail, Context as _, Result};
use plist::{Dictionary, Value};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rsa::RsaPublicKey;

use super::rtsp::RtspClient;
use crate::devices::{parse_mac, Device};
use crate::scenario::{AirplayClientSpec, ChallengeOn, Loaded};

/// Everything one run of the client needs.
#[derive(Clone)]
pub struct Options {
    pub addr: SocketAddr,
    /// FairPlay mode of phase 1 (0..3).
    pub mode: u8,
    /// Also ask for the `txtAirPlay` record.
    pub qualifier: bool,
    /// WAV to stream over RAOP after the handshake.
    pub stream: Option<PathBuf>,
    /// URL to play with the video API.
    pub play_url: Option<String>,
    /// `pk` the device must report (from the ready file), if known.
    pub expect_pk: Option<[u8; 32]>,
    /// Key whose public half verifies `Apple-Response` when streaming.
    pub verify_key: Arc<RsaPublicKey>,
    pub response_timeout: Duration,
    pub seed: u64,
    /// Report the Apple-TV-specific checks (the /info keys, types and `pk`; `Date`, `Session`,
    /// `Server`, `Audio-Jack-Status`) as `note` lines and go on, so that a differential run
    /// reaches fp-setup on a receiver that leaves them out. fp-setup bytes are always checked.
    pub lenient: bool,
}

impl Options {
    pub fn from_spec(
        spec: &AirplayClientSpec,
        loaded: &Loaded,
        device: &Device,
        seed: u64,
    ) -> Result<Self> {
        let ready = device.ready();
        let port = device
            .ports
            .get("airplay")
            .copied()
            .unwrap_or_else(|| device.port());
        let verify_key = match ready.identity.get("public_key") {
            Some(pem) => {
                use rsa::pkcs1::DecodeRsaPublicKey;
                Arc::new(RsaPublicKey::from_pkcs1_pem(pem).context("device public key")?)
            }
            None => super::raop::load_public("builtin")?,
        };
        let expect_pk = ready
            .identity
            .get("pk")
            .and_then(|h| fairplay::decode_hex(h))
            .and_then(|b| b.try_into().ok());
        Ok(Options {
            addr: SocketAddr::new(device.address, port),
            mode: spec.mode,
            qualifier: spec.qualifier,
            stream: spec.stream.as_deref().map(|f| loaded.resolve(f)),
            play_url: spec.play_url.clone(),
            expect_pk,
            verify_key,
            response_timeout: Duration::from_secs_f64(spec.response_timeout.unwrap_or(5.0)),
            seed,
            lenient: spec.lenient,
        })
    }
}

impl super::InProcess for Options {
    async fn run(&self, log: &mut String) -> Result<()> {
        run(self, log).await
    }
}

/// Names of feature bits a sender acts on (pyatv's AirPlayFlags, docs/peers.md).
fn feature_name(bit: u32) -> &'static str {
    match bit {
        0 => "SupportsAirPlayVideoV1",
        9 => "SupportsAirPlayAudio",
        38 => "SupportsUnifiedMediaControl",
        43 => "SupportsSystemPairing",
        48 => "SupportsCoreUtilsPairingAndEncryption",
        _ => "?",
    }
}

/// The RTSP rules of docs/protocols/airplay.md on one response (`CSeq` is checked by the
/// RTSP client itself). `session` keeps the first `Session` seen.
fn check_rules(
    step: &str,
    method: &str,
    resp: &Response,
    server: Option<&str>,
    session: &mut Option<String>,
) -> Result<()> {
    let h = &resp.headers;
    if h.get("Date")
        .is_none_or(|d| httpdate::parse_http_date(d).is_err())
    {
        bail!("{step}: Date {:?} is not an HTTP date", h.get("Date"));
    }
    let Some(s) = h.get("Session") else {
        bail!("{step}: response has no Session");
    };
    match session {
        Some(first) if first != s => {
            bail!("{step}: Session changed within the connection: {first} then {s}")
        }
        Some(_) => {}
        None => *session = Some(s.to_string()),
    }
    let got = h.get("Server").unwrap_or("");
    if !got.starts_with("AirTunes/") {
        bail!("{step}: Server {got:?} is not AirTunes/<version>");
    }
    if let Some(want) = server {
        if got != format!("AirTunes/{want}") {
            bail!("{step}: Server {got:?} but /info sourceVersion is {want:?}");
        }
    }
    let jack = h.get("Audio-Jack-Status");
    match (method, jack) {
        ("RECORD" | "SET_PARAMETER", Some(j)) => {
            bail!("{step}: Audio-Jack-Status {j:?} on {method}, where receivers send none")
        }
        ("RECORD" | "SET_PARAMETER", None) => {}
        (_, None) => bail!("{step}: response has no Audio-Jack-Status"),
        (_, Some(j)) if !j.starts_with("Connected") && !j.starts_with("connected") => {
            bail!("{step}: Audio-Jack-Status {j:?} is not Connected")
        }
        _ => {}
    }
    Ok(())
}

/// A check's outcome under `lenient`: its failure becomes a `note` line instead of the end.
fn judged<T>(opts: &Options, log: &mut String, check: Result<T>) -> Result<Option<T>> {
    match check {
        Ok(v) => Ok(Some(v)),
        Err(e) if opts.lenient => {
            let _ = writeln!(log, "note {e:#}");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn expect_200(step: &str, resp: &Response) -> Result<()> {
    if resp.status != 200 {
        let why = String::from_utf8_lossy(&resp.body);
        bail!("{step}: device answered {} {}", resp.status, why.trim());
    }
    Ok(())
}

fn decode_dict(step: &str, resp: &Response) -> Result<Dictionary> {
    let ctype = resp.headers.get("Content-Type").unwrap_or("");
    if ctype != "application/x-apple-binary-plist" {
        bail!("{step}: Content-Type {ctype:?}, expected application/x-apple-binary-plist");
    }
    if !resp.body.starts_with(b"bplist00") {
        bail!(
            "{step}: body ({} bytes) is not a binary plist",
            resp.body.len()
        );
    }
    match Value::from_reader(Cursor::new(&resp.body)) {
        Ok(Value::Dictionary(d)) => Ok(d),
        Ok(other) => bail!("{step}: plist is not a dictionary: {other:?}"),
        Err(e) => bail!("{step}: undecodable plist: {e}"),
    }
}

/// A video API answer: an XML property list, `text/x-apple-plist+xml`, as an Apple TV sends
/// `/server-info` and `/playback-info` (docs/protocols/airplay.md, "The video API").
fn decode_xml_dict(step: &str, resp: &Response) -> Result<Dictionary> {
    let ctype = resp.headers.get("Content-Type").unwrap_or("");
    if ctype != "text/x-apple-plist+xml" {
        bail!("{step}: Content-Type {ctype:?}, expected text/x-apple-plist+xml");
    }
    if !resp.body.starts_with(b"<?xml") {
        bail!(
            "{step}: body ({} bytes) is not an XML plist",
            resp.body.len()
        );
    }
    match Value::from_reader_xml(Cursor::new(&resp.body)) {
        Ok(Value::Dictionary(d)) => Ok(d),
        Ok(other) => bail!("{step}: plist is not a dictionary: {other:?}"),
        Err(e) => bail!("{step}: undecodable plist: {e}"),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "array",
        Value::Dictionary(_) => "dictionary",
        Value::Boolean(_) => "boolean",
        Value::Data(_) => "data",
        Value::Date(_) => "date",
        Value::Real(_) => "real",
        Value::Integer(_) => "integer",
        Value::String(_) => "string",
        Value::Uid(_) => "uid",
        _ => "unknown",
    }
}

/// Checks that `key` is present with type `want`.
fn typed<'a>(d: &'a Dictionary, key: &str, want: &str) -> Result<&'a Value> {
    let Some(v) = d.get(key) else {
        bail!("INFO: key {key} is missing");
    };
    let got = type_name(v);
    if got != want {
        bail!("INFO: key {key} is {got} {v:?}, expected {want}");
    }
    Ok(v)
}

/// What the client learned from `/info`.
#[derive(Debug)]
struct InfoFacts {
    source_version: String,
    mac: String,
    device_id: String,
    features: u64,
}

fn check_info(d: &Dictionary, opts: &Options) -> Result<InfoFacts> {
    for k in info::STRING_KEYS {
        typed(d, k, "string")?;
    }
    for k in info::INTEGER_KEYS {
        typed(d, k, "integer")?;
    }
    let pk = typed(d, "pk", "data")?.as_data().unwrap_or_default();
    if pk.len() != 32 {
        bail!(
            "INFO: pk is {} bytes, expected a 32-byte Ed25519 key",
            pk.len()
        );
    }
    if let Some(want) = &opts.expect_pk {
        if pk != want {
            bail!(
                "INFO: pk {} differs from the device's {}",
                info::hex(pk),
                info::hex(want)
            );
        }
    }
    // With a CSeq, also initialVolume (a real: pyatv skips its volume request then, docs/peers.md),
    // audioFormats, audioLatencies and displays (docs/protocols/airplay.md).
    typed(d, "initialVolume", "real")?;
    for k in ["audioFormats", "audioLatencies", "displays"] {
        let list = typed(d, k, "array")?
            .as_array()
            .unwrap_or(&Vec::new())
            .clone();
        if list.is_empty() {
            bail!("INFO: {k} is empty");
        }
    }
    let display = d["displays"].as_array().and_then(|a| a[0].as_dictionary());
    let Some(display) = display else {
        bail!("INFO: displays[0] is not a dictionary");
    };
    for (k, want) in [
        ("width", "integer"),
        ("height", "integer"),
        ("refreshRate", "real"),
        ("uuid", "string"),
    ] {
        match display.get(k) {
            Some(v) if type_name(v) == want => {}
            Some(v) => bail!("INFO: displays[0].{k} is {}, expected {want}", type_name(v)),
            None => bail!("INFO: displays[0].{k} is missing"),
        }
    }
    let features = d["features"]
        .as_unsigned_integer()
        .or_else(|| d["features"].as_signed_integer().map(|i| i as u64))
        .unwrap_or(0);
    for bit in [38u32, 43, 48] {
        if features >> bit & 1 == 1 {
            bail!(
                "INFO: features {} has bit {bit} ({}): a sender would go to HomeKit pairing, not fp-setup",
                info::features_text(features),
                feature_name(bit)
            );
        }
    }
    Ok(info_facts(d))
}

/// What the client takes from `/info`, whatever else it holds.
fn info_facts(d: &Dictionary) -> InfoFacts {
    let text = |k: &str| {
        d.get(k)
            .and_then(Value::as_string)
            .unwrap_or_default()
            .to_string()
    };
    let features = d
        .get("features")
        .and_then(|f| {
            f.as_unsigned_integer()
                .or_else(|| f.as_signed_integer().map(|i| i as u64))
        })
        .unwrap_or(0);
    InfoFacts {
        source_version: text("sourceVersion"),
        mac: text("macAddress"),
        device_id: text("deviceID"),
        features,
    }
}

/// The client's steps. Writes one line per step to `log`.
pub async fn run(opts: &Options, log: &mut String) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x0A1B_91A7);
    let mut c = RtspClient::connect(opts.addr, opts.response_timeout)
        .await
        .context("connect")?;
    let dacp_id: u64 = rng.gen();
    c.common.set("User-Agent", "airtwin-airplay/0.1");
    c.common.set("DACP-ID", format!("{dacp_id:016X}"));
    c.common.set("Active-Remote", rng.gen::<u32>().to_string());
    c.common.set("X-Apple-ProtocolVersion", "1");
    let mut session = None;

    // 1. GET /info.
    let resp = c.request("GET", "/info", &[], None).await.context("INFO")?;
    expect_200("INFO", &resp)?;
    let dict = decode_dict("INFO", &resp)?;
    let facts = judged(opts, log, check_info(&dict, opts))?.unwrap_or_else(|| info_facts(&dict));
    judged(
        opts,
        log,
        check_rules(
            "INFO",
            "GET",
            &resp,
            Some(&facts.source_version),
            &mut session,
        ),
    )?;
    let _ = writeln!(
        log,
        "ok INFO: {} keys, model {}, deviceID {}, features {}, pk {}",
        dict.len(),
        dict.get("model")
            .and_then(Value::as_string)
            .unwrap_or_default(),
        facts.device_id,
        info::features_text(facts.features),
        info::hex(dict.get("pk").and_then(Value::as_data).unwrap_or_default())
    );

    // 2. GET /info with the txtAirPlay qualifier.
    if opts.qualifier {
        let resp = c
            .request(
                "GET",
                "/info",
                &[],
                Some((
                    "application/x-apple-binary-plist",
                    info::qualifier_body("txtAirPlay"),
                )),
            )
            .await
            .context("INFO txtAirPlay")?;
        expect_200("INFO txtAirPlay", &resp)?;
        judged(
            opts,
            log,
            check_rules("INFO txtAirPlay", "GET", &resp, None, &mut session),
        )?;
        let d = decode_dict("INFO txtAirPlay", &resp)?;
        let Some(txt) = d.get("txtAirPlay").and_then(Value::as_data) else {
            bail!(
                "INFO txtAirPlay: no txtAirPlay data in the answer (keys: {})",
                d.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        };
        let Some(entries) = info::decode_txt(txt) else {
            bail!("INFO txtAirPlay: not a DNS TXT record");
        };
        let get = |k: &str| {
            entries
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        if get("deviceid") != Some(facts.device_id.as_str()) {
            bail!(
                "INFO txtAirPlay: deviceid {:?} but /info deviceID {:?}",
                get("deviceid"),
                facts.device_id
            );
        }
        let _ = writeln!(
            log,
            "ok INFO txtAirPlay: {} TXT entries, deviceid {}",
            entries.len(),
            facts.device_id
        );
    }

    // 3. fp-setup phase 1.
    let mode = opts.mode;
    let fp_headers = [("X-Apple-ET", "32")];
    let resp = c
        .request(
            "POST",
            "/fp-setup",
            &fp_headers,
            Some((
                "application/octet-stream",
                fairplay::phase1_request(mode).to_vec(),
            )),
        )
        .await
        .context("FP-SETUP 1")?;
    expect_200("FP-SETUP 1", &resp)?;
    judged(
        opts,
        log,
        check_rules(
            "FP-SETUP 1",
            "POST",
            &resp,
            Some(&facts.source_version),
            &mut session,
        ),
    )?;
    let want = fairplay::phase1_reply(mode).context("FP-SETUP 1: mode must be 0..3")?;
    let got = &resp.body;
    if got[..] != want[..] {
        if got.len() != PHASE1_REPLY_LEN {
            bail!(
                "FP-SETUP 1: reply is {} bytes, expected the {PHASE1_REPLY_LEN}-byte reply of mode {mode}",
                got.len()
            );
        }
        if let Some(other) = fairplay::mode_of_reply(got) {
            bail!("FP-SETUP 1: reply is the one for mode {other}, asked for mode {mode}");
        }
        let at = got
            .iter()
            .zip(want.iter())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        bail!(
            "FP-SETUP 1: reply differs from the mode-{mode} reply at byte {at} (got {:02x}, want {:02x})",
            got[at],
            want[at]
        );
    }
    let _ = writeln!(
        log,
        "ok FP-SETUP 1: mode {mode}, {PHASE1_REPLY_LEN}-byte reply matches"
    );

    // 4. fp-setup phase 3.
    let payload: [u8; 152] = std::array::from_fn(|_| rng.gen());
    let body = fairplay::phase3_request(&payload);
    let echo = body[fairplay::ECHO_OFFSET..].to_vec();
    let resp = c
        .request(
            "POST",
            "/fp-setup",
            &fp_headers,
            Some(("application/octet-stream", body)),
        )
        .await
        .context("FP-SETUP 3")?;
    expect_200("FP-SETUP 3", &resp)?;
    judged(
        opts,
        log,
        check_rules(
            "FP-SETUP 3",
            "POST",
            &resp,
            Some(&facts.source_version),
            &mut session,
        ),
    )?;
    let got = &resp.body;
    if got.len() != 32 {
        bail!("FP-SETUP 3: reply is {} bytes, expected 32", got.len());
    }
    if got[..12] != fairplay::PHASE3_HEADER {
        bail!(
            "FP-SETUP 3: header {} differs from {}",
            info::hex(&got[..12]),
            info::hex(&fairplay::PHASE3_HEADER)
        );
    }
    if got[12..] != echo[..] {
        let at = got[12..]
            .iter()
            .zip(&echo)
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        bail!(
            "FP-SETUP 3: echo differs from request bytes 144..164 at byte {} (got {}, want {})",
            12 + at,
            info::hex(&got[12..]),
            info::hex(&echo)
        );
    }
    let _ = writeln!(
        log,
        "ok FP-SETUP 3: header and echo of request bytes 144..164 match (session {})",
        session.as_deref().unwrap_or("")
    );

    // 5. Audio over RAOP on the same connection, as a sender does after fp-setup, by airtwin's
    // RAOP sender (it verifies Apple-Response).
    if let Some(wav) = &opts.stream {
        if facts.features >> 9 & 1 == 0 {
            bail!(
                "STREAM: features {} lacks bit 9 ({}): a sender would not stream audio",
                info::features_text(facts.features),
                feature_name(9)
            );
        }
        let raop = super::raop::Options {
            addr: opts.addr,
            wav: wav.clone(),
            challenge: ChallengeOn::Options,
            encrypt: true,
            verify_key: opts.verify_key.clone(),
            mac: parse_mac(&facts.mac)
                .with_context(|| format!("STREAM: /info macAddress {:?}", facts.mac))?,
            response_timeout: opts.response_timeout,
            seed: opts.seed,
        };
        super::raop::run_on(c, &raop, log).await?;
    }

    // 6. Video over HTTP/1.1.
    if let Some(url) = &opts.play_url {
        if facts.features & 1 == 0 {
            bail!(
                "VIDEO: features {} lacks bit 0 ({}): a sender would not /play",
                info::features_text(facts.features),
                feature_name(0)
            );
        }
        video(opts, url, &facts, &mut rng, log).await?;
    }
    Ok(())
}

fn real(d: &Dictionary, step: &str, key: &str) -> Result<f64> {
    match d.get(key) {
        Some(Value::Real(r)) => Ok(*r),
        Some(Value::Integer(i)) => Ok(i.as_signed().unwrap_or(0) as f64),
        Some(v) => bail!("{step}: {key} is {}, expected a number", type_name(v)),
        None => bail!("{step}: {key} is missing"),
    }
}

async fn video(
    opts: &Options,
    url: &str,
    facts: &InfoFacts,
    rng: &mut ChaCha8Rng,
    log: &mut String,
) -> Result<()> {
    let mut c = RtspClient::connect(opts.addr, opts.response_timeout)
        .await
        .context("VIDEO connect")?;
    c.common.set("User-Agent", "airtwin-airplay/0.1");
    c.common
        .set("X-Apple-Session-ID", format!("{:032x}", rng.gen::<u128>()));
    let http = Protocol::Http11;
    let mut body = Dictionary::new();
    body.insert("Content-Location".into(), url.into());
    body.insert("Start-Position".into(), Value::Real(0.0));
    body.insert(
        "X-Apple-Session-ID".into(),
        format!("{:032x}", rng.gen::<u128>()).into(),
    );
    let bytes = info::encode(body).context("VIDEO: encoding /play")?;
    let resp = c
        .request_with(
            "POST",
            "/play",
            http,
            &[],
            Some(("application/x-apple-binary-plist", bytes)),
        )
        .await
        .context("VIDEO /play")?;
    expect_200("VIDEO /play", &resp)?;

    let resp = c
        .request_with("GET", "/playback-info", http, &[], None)
        .await
        .context("VIDEO /playback-info")?;
    expect_200("VIDEO /playback-info", &resp)?;
    let d = decode_xml_dict("VIDEO /playback-info", &resp)?;
    let duration = real(&d, "VIDEO /playback-info", "duration")?;
    let position = real(&d, "VIDEO /playback-info", "position")?;
    let rate = real(&d, "VIDEO /playback-info", "rate")?;
    if duration <= 0.0 || rate != 1.0 || !(0.0..=duration).contains(&position) {
        bail!("VIDEO /playback-info: duration {duration}, position {position}, rate {rate}: not playing");
    }
    let _ = writeln!(
        log,
        "ok VIDEO /play: playing {url}: duration {duration}, position {position}, rate {rate}"
    );

    let target = (duration / 3.0 * 1000.0).round() / 1000.0;
    let resp = c
        .request_with("POST", "/rate?value=0.000000", http, &[], None)
        .await
        .context("VIDEO /rate")?;
    expect_200("VIDEO /rate", &resp)?;
    let resp = c
        .request_with(
            "POST",
            &format!("/scrub?position={target:.6}"),
            http,
            &[],
            None,
        )
        .await
        .context("VIDEO /scrub")?;
    expect_200("VIDEO /scrub", &resp)?;
    let resp = c
        .request_with("GET", "/scrub", http, &[], None)
        .await
        .context("VIDEO GET /scrub")?;
    expect_200("VIDEO GET /scrub", &resp)?;
    let text = String::from_utf8_lossy(&resp.body).into_owned();
    let pos = text
        .lines()
        .find_map(|l| l.strip_prefix("position:"))
        .and_then(|p| p.trim().parse::<f64>().ok())
        .with_context(|| format!("VIDEO GET /scrub: no position in {text:?}"))?;
    if (pos - target).abs() > 1.0 {
        bail!("VIDEO GET /scrub: position {pos} after scrubbing to {target}");
    }
    let resp = c
        .request_with("GET", "/playback-info", http, &[], None)
        .await
        .context("VIDEO /playback-info")?;
    let d = decode_xml_dict("VIDEO /playback-info", &resp)?;
    let rate = real(&d, "VIDEO /playback-info", "rate")?;
    if rate != 0.0 {
        bail!("VIDEO /playback-info: rate {rate} after /rate?value=0");
    }
    let _ = writeln!(
        log,
        "ok VIDEO /rate /scrub: paused, position {pos} after scrubbing to {target}"
    );

    let resp = c
        .request_with("POST", "/stop", http, &[], None)
        .await
        .context("VIDEO /stop")?;
    expect_200("VIDEO /stop", &resp)?;
    let resp = c
        .request_with("GET", "/playback-info", http, &[], None)
        .await
        .context("VIDEO /playback-info")?;
    let d = decode_xml_dict("VIDEO /playback-info", &resp)?;
    if d.contains_key("duration") {
        bail!("VIDEO /playback-info: still reports a duration after /stop");
    }
    let resp = c
        .request_with("GET", "/server-info", http, &[], None)
        .await
        .context("VIDEO /server-info")?;
    expect_200("VIDEO /server-info", &resp)?;
    let d = decode_xml_dict("VIDEO /server-info", &resp)?;
    let id = d.get("deviceid").and_then(Value::as_string);
    if id != Some(facts.device_id.as_str()) {
        bail!(
            "VIDEO /server-info: deviceid {id:?} but /info deviceID {:?}",
            facts.device_id
        );
    }
    let _ = writeln!(
        log,
        "ok VIDEO /stop: stopped; /server-info deviceid {}",
        facts.device_id
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Features;
    use airtwin_simulators::airplay::AirplayConfig;

    fn opts() -> Options {
        Options {
            addr: "127.0.0.1:9".parse().unwrap(),
            mode: 0,
            qualifier: true,
            stream: None,
            play_url: None,
            expect_pk: None,
            verify_key: super::super::raop::load_public("builtin").unwrap(),
            response_timeout: Duration::from_secs(1),
            seed: 0,
            lenient: false,
        }
    }

    fn default_info() -> Dictionary {
        info::info_dict(&AirplayConfig::apple_tv("tv", 1).info, true)
    }

    #[test]
    fn default_info_passes_and_homekit_bits_fail() {
        let d = default_info();
        let facts = check_info(&d, &opts()).unwrap();
        assert_eq!(facts.device_id, "AA:BB:CC:DD:EE:FF");
        for bit in [38u64, 43, 48] {
            let mut d = default_info();
            d.insert("features".into(), Value::Integer((1u64 << bit | 1).into()));
            let e = check_info(&d, &opts()).err().unwrap().to_string();
            assert!(e.contains(&format!("has bit {bit}")), "{e}");
        }
    }

    #[test]
    fn wrong_pk_length_and_wrong_types_are_named() {
        let mut d = default_info();
        d.insert("pk".into(), Value::Data(vec![1; 31]));
        let e = check_info(&d, &opts()).err().unwrap().to_string();
        assert_eq!(e, "INFO: pk is 31 bytes, expected a 32-byte Ed25519 key");
        let mut d = default_info();
        d.insert("vv".into(), Value::String("2".into()));
        let e = check_info(&d, &opts()).err().unwrap().to_string();
        assert!(e.starts_with("INFO: key vv is string"), "{e}");
        let mut o = opts();
        o.expect_pk = Some([0; 32]);
        let e = check_info(&default_info(), &o).err().unwrap().to_string();
        assert!(e.contains("differs from the device's"), "{e}");
    }

    #[test]
    fn rtsp_rules_catch_a_missing_jack_a_jack_on_record_and_a_new_session() {
        let mut r = Response::new(Protocol::Rtsp10, 200);
        r.headers.set("Date", "Tue, 14 Nov 2023 22:13:20 GMT");
        r.headers.set("Session", "CAFEBABE");
        r.headers.set("Server", "AirTunes/220.68");
        let mut session = None;
        let e = check_rules("X", "GET", &r, Some("220.68"), &mut session).unwrap_err();
        assert_eq!(e.to_string(), "X: response has no Audio-Jack-Status");
        check_rules("X", "RECORD", &r, Some("220.68"), &mut session).unwrap();
        r.headers
            .set("Audio-Jack-Status", "Connected; type=digital");
        assert!(check_rules("X", "RECORD", &r, None, &mut session).is_err());
        check_rules("X", "GET", &r, Some("220.68"), &mut session).unwrap();
        let e = check_rules("X", "GET", &r, Some("366.0"), &mut session).unwrap_err();
        assert!(e.to_string().contains("sourceVersion"), "{e}");
        r.headers.set("Session", "1234");
        let e = check_rules("X", "GET", &r, None, &mut session).unwrap_err();
        assert!(e.to_string().contains("Session changed"), "{e}");
    }

    #[test]
    fn lenient_writes_a_failed_check_as_a_note_and_goes_on() {
        let mut d = default_info();
        d.remove("initialVolume");
        let mut log = String::new();
        let e = judged(&opts(), &mut log, check_info(&d, &opts())).unwrap_err();
        assert_eq!(e.to_string(), "INFO: key initialVolume is missing");
        let mut o = opts();
        o.lenient = true;
        let got = judged(&o, &mut log, check_info(&d, &o)).unwrap();
        assert!(got.is_none());
        assert_eq!(log, "note INFO: key initialVolume is missing\n");
        let facts = info_facts(&d);
        assert_eq!(facts.device_id, "AA:BB:CC:DD:EE:FF");
        d.remove("features");
        assert_eq!(info_facts(&d).features, 0, "a missing key is no panic");
    }

    #[test]
    fn features_parse_as_number_or_low_high_text() {
        assert_eq!(Features::Number(5).value(), Some(5));
        assert_eq!(
            Features::Text("0x5A7FFFF7,0x1E".into()).value(),
            Some(0x1E_5A7F_FFF7)
        );
        assert_eq!(Features::Text("0x1".into()).value(), Some(1));
        assert_eq!(Features::Text("zz".into()).value(), None);
        assert_eq!(Features::Text("0x1,0x100000000".into()).value(), None);
    }
}
