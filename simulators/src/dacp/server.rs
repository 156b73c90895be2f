//! The DACP/DMAP server of a library (iTunes, an Apple TV) that remote controls drive, over
//! HTTP/1.1 on port 3689 by default (docs/protocols/dacp.md, DACP).
//!
//! A remote first logs in: `GET /login?pairing-guid=0x<16 hex>&hasFP=1` → `mlog{mstt 200, mlid
//! <session id>}`, only for GUIDs the library paired with (others get 503 by default); every later
//! request carries `session-id=` and gets 403 without a valid one. Then `/server-info`,
//! `/databases`, `/ctrl-int`, the long-polled `/ctrl-int/1/playstatusupdate?revision-number=N`
//! (answered at once when N differs from the current revision, otherwise when the state
//! changes), the transport commands, `getproperty` / `setproperty`, `nowplayingartwork`, and the
//! speakers. pyatv needs `mlid` in `mlog`, `cmsr`, `caps` and `cmmk` in `cmst`, and a
//! Content-Length on every reply (docs/peers.md). Bodies are gzipped when the client sends
//! `Accept-Encoding: gzip` (docs/protocols/dacp.md: "almost everything … is gzip
//! or zlib compressed").

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use flate2::write::GzEncoder;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::pairing::{format_guid, parse_guid};
use super::state::{NowPlaying, Player, TimelineStep, Track};
use crate::service::{Changes, ConnInfo, Context, Outcome, Service};
use crate::wire::dmap::{self, Item};
use crate::wire::{Request, Response};

/// The DMAP content type.
pub const DMAP_TYPE: &str = "application/x-dmap-tagged";

/// The pairing GUID `airtwin serve --device itunes|apple-tv` trusts, so a client developer can log
/// in at once with `--dmap-credentials 0x0000000000000001`.
pub const DEFAULT_GUID: u64 = 1;

/// An AirPlay speaker the library lists in `getspeakers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Speaker {
    pub name: String,
    /// `msma`: the speaker id (0 is the computer itself).
    #[serde(default)]
    pub id: u64,
    #[serde(default = "yes")]
    pub active: bool,
    /// 0..100.
    #[serde(default = "hundred")]
    pub volume: u32,
}

fn yes() -> bool {
    true
}

fn hundred() -> u32 {
    100
}

/// How a DACP library presents itself and what it allows.
#[derive(Debug, Clone)]
pub struct DacpConfig {
    /// `minm` of `/server-info` and the database name.
    pub name: String,
    /// The 64-bit library id (`DbId` / `mper`).
    pub library_id: u64,
    /// Pairing GUIDs allowed to log in (besides those paired at run time).
    pub known_guids: Vec<u64>,
    /// Status answered to a login with an unknown GUID (503 by default).
    pub login_status: u16,
    /// A session unused this long is gone (`mstm` of `/server-info`).
    pub session_timeout: Duration,
    /// Compress bodies when the client accepts gzip.
    pub gzip: bool,
    /// Value of the `DAAP-Server` header.
    pub server: String,
    pub now_playing: NowPlaying,
    /// PNG bytes per track, in the order of `now_playing.tracks`.
    pub artwork: Vec<Option<Vec<u8>>>,
    pub speakers: Vec<Speaker>,
    /// Seed of session ids.
    pub seed: u64,
    /// When the device started: the timeline counts from here.
    pub start: SystemTime,
}

impl DacpConfig {
    /// An iTunes library named `name` trusting [`DEFAULT_GUID`].
    pub fn itunes(name: &str, start: SystemTime) -> Self {
        DacpConfig {
            name: name.to_string(),
            library_id: 0xA1B2_C3D4_E5F6_0718,
            known_guids: vec![DEFAULT_GUID],
            login_status: 503,
            session_timeout: Duration::from_secs(1800),
            gzip: true,
            server: "iTunes/11.1b37 (OS X)".into(),
            now_playing: NowPlaying::default(),
            artwork: Vec::new(),
            speakers: vec![Speaker {
                name: "Computer".into(),
                id: 0,
                active: true,
                volume: 100,
            }],
            seed: 0,
            start,
        }
    }
}

/// A remote the library paired with (by calling its `/pair`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PairedRemote {
    pub guid: String,
    pub name: String,
    pub device_type: String,
}

struct Inner {
    player: Player,
    /// Session id → last use.
    sessions: BTreeMap<u32, SystemTime>,
    paired: Vec<(u64, PairedRemote)>,
    rng: ChaCha8Rng,
    speakers: Vec<Speaker>,
    logins: u64,
    refused_logins: u64,
}

/// The DACP server core, shared by every connection of one device.
pub struct DacpService {
    pub config: DacpConfig,
    inner: Mutex<Inner>,
    /// Bumped on every state change; long polls wait on it.
    pub changes: Changes,
}

/// A DAAP listing of one item: `tag{mstt 200, muty 0, mtco 1, mrco 1, mlcl{mlit{fields}}}`, the
/// shape of `/databases` (`avdb`) and `/ctrl-int` (`caci`) answers.
fn one_item_listing(tag: &[u8; 4], fields: Vec<Item>) -> Item {
    Item::container(
        tag,
        vec![
            Item::int(b"mstt", 200),
            Item::int(b"muty", 0),
            Item::int(b"mtco", 1),
            Item::int(b"mrco", 1),
            Item::container(b"mlcl", vec![Item::container(b"mlit", fields)]),
        ],
    )
}

/// Per-connection state (none: sessions live in the service, since remotes reconnect).
pub struct DacpConn;

/// What a request needs before it runs.
enum Auth {
    None,
    Session,
}

impl DacpService {
    pub fn new(config: DacpConfig) -> Self {
        let player = Player::new(&config.now_playing, config.artwork.clone(), config.start);
        let inner = Inner {
            player,
            sessions: BTreeMap::new(),
            paired: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0xDAC9_DAC9),
            speakers: config.speakers.clone(),
            logins: 0,
            refused_logins: 0,
        };
        DacpService {
            config,
            inner: Mutex::new(inner),
            changes: Changes::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores a remote as paired (the caller side of the pairing succeeded): its GUID may log in.
    pub fn add_pairing(&self, guid: u64, name: &str, device_type: &str) {
        let mut inner = self.lock();
        inner.paired.retain(|(g, _)| *g != guid);
        inner.paired.push((
            guid,
            PairedRemote {
                guid: format_guid(guid),
                name: name.to_string(),
                device_type: device_type.to_string(),
            },
        ));
    }

    /// Changes the now-playing state while the device runs (`airtwin serve`'s control API):
    /// `track` replaces the current track's metadata, `step` applies like a timeline step. Long
    /// polls waiting on `playstatusupdate` wake up.
    pub fn change_now_playing(
        &self,
        track: Option<Track>,
        step: Option<&TimelineStep>,
        now: SystemTime,
    ) {
        let mut inner = self.lock();
        inner.player.advance(now);
        if let Some(t) = track {
            inner.player.set_current(t, now);
        }
        if let Some(s) = step {
            inner.player.apply(s, now);
        }
        drop(inner);
        self.changes.bump();
    }

    fn knows(&self, inner: &Inner, guid: u64) -> bool {
        self.config.known_guids.contains(&guid) || inner.paired.iter().any(|(g, _)| *g == guid)
    }

    /// The device's DACP state as JSON, for `state` expectations: the player's fields (see
    /// [`Player::to_json`]) plus `paired`, `sessions`, `logins`, `refused_logins`, `speakers`.
    pub fn state_json(&self, now: SystemTime) -> serde_json::Value {
        let mut inner = self.lock();
        inner.player.advance(now);
        let mut v = inner.player.to_json(now);
        if let serde_json::Value::Object(m) = &mut v {
            m.insert(
                "paired".into(),
                serde_json::to_value(inner.paired.iter().map(|(_, p)| p).collect::<Vec<_>>())
                    .unwrap_or_default(),
            );
            m.insert("sessions".into(), inner.sessions.len().into());
            m.insert("logins".into(), inner.logins.into());
            m.insert("refused_logins".into(), inner.refused_logins.into());
            m.insert(
                "speakers".into(),
                serde_json::to_value(&inner.speakers).unwrap_or_default(),
            );
        }
        v
    }

    fn dmap(&self, req: &Request, items: Vec<Item>) -> Response {
        let body = dmap::encode(&items);
        let mut r = Response::new(req.protocol, 200);
        r.headers.set("Content-Type", DMAP_TYPE);
        let gzip = self.config.gzip
            && req
                .headers
                .get("Accept-Encoding")
                .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
        if gzip {
            let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
            if enc.write_all(&body).is_ok() {
                if let Ok(z) = enc.finish() {
                    r.headers.set("Content-Encoding", "gzip");
                    r.body = z;
                    return r;
                }
            }
        }
        r.body = body;
        r
    }

    fn no_content(&self, req: &Request) -> Response {
        Response::new(req.protocol, 204)
    }

    fn refuse(&self, req: &Request, status: u16, why: &str, cx: &mut Context<'_>) -> Outcome {
        cx.warn(format!("{} {}: {status} {why}", req.method, req.path()));
        Outcome::Respond(Response::new(req.protocol, status).with_reason_text(why))
    }

    fn route(&self, req: &Request, cx: &mut Context<'_>) -> Outcome {
        let path = req.path();
        let auth = match path {
            "/server-info" | "/login" | "/ctrl-int" => Auth::None,
            _ => Auth::Session,
        };
        let now = cx.now;
        let mut inner = self.lock();
        if inner.player.advance(now) {
            self.changes.bump();
        }
        if let Auth::Session = auth {
            let sid = req
                .query_param("session-id")
                .and_then(|s| s.parse::<u32>().ok());
            let timeout = self.config.session_timeout;
            let valid = match sid {
                Some(id) => match inner.sessions.get(&id) {
                    Some(last) if now.duration_since(*last).unwrap_or_default() <= timeout => true,
                    Some(_) => {
                        inner.sessions.remove(&id);
                        cx.info(format!("session {id} expired"));
                        false
                    }
                    None => false,
                },
                None => false,
            };
            if !valid {
                drop(inner);
                let why = match sid {
                    None => "no session-id".to_string(),
                    Some(id) => format!("session {id} is not valid (log in again)"),
                };
                return self.refuse(req, 403, &why, cx);
            }
            if let Some(id) = sid {
                inner.sessions.insert(id, now);
            }
        }
        match path {
            "/server-info" => Outcome::Respond(self.dmap(req, self.server_info(now))),
            "/login" => self.login(&mut inner, req, cx),
            "/logout" => {
                if let Some(id) = req.query_param("session-id").and_then(|s| s.parse().ok()) {
                    inner.sessions.remove(&id);
                }
                Outcome::Respond(self.no_content(req))
            }
            "/update" => {
                let rev = inner.player.revision;
                Outcome::Respond(self.dmap(
                    req,
                    vec![Item::container(
                        b"mupd",
                        vec![Item::int(b"mstt", 200), Item::int(b"musr", rev)],
                    )],
                ))
            }
            "/databases" => {
                let n = self.config.now_playing.tracks.len() as u32;
                Outcome::Respond(self.dmap(
                    req,
                    vec![one_item_listing(
                        b"avdb",
                        vec![
                            Item::int(b"miid", 1),
                            Item::int(b"mper", self.config.library_id),
                            Item::str(b"minm", self.config.name.clone()),
                            Item::int(b"mimc", n),
                            Item::int(b"mctc", 1),
                        ],
                    )],
                ))
            }
            "/ctrl-int" => Outcome::Respond(self.dmap(
                req,
                vec![one_item_listing(
                    b"caci",
                    vec![
                        Item::int(b"miid", 1),
                        Item::int(b"cmik", 1),
                        Item::int(b"cmsp", 1),
                        Item::int(b"cmsv", 1),
                        Item::int(b"cass", 1),
                        Item::int(b"casu", 1),
                    ],
                )],
            )),
            _ => match path.strip_prefix("/ctrl-int/1/") {
                Some(cmd) => self.ctrl(&mut inner, cmd, req, cx),
                None => {
                    drop(inner);
                    self.refuse(req, 404, &format!("no such path {path}"), cx)
                }
            },
        }
    }

    fn server_info(&self, now: SystemTime) -> Vec<Item> {
        let utc = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs() as u32;
        vec![Item::container(
            b"msrv",
            vec![
                Item::int(b"mstt", 200),
                Item::int(b"mpro", 0x0002_000A),
                Item::int(b"apro", 0x0003_000C),
                Item::int(b"aeSV", 0x0003_000A),
                Item::int(b"capr", 0x0002_0004),
                Item::int(b"cmpr", 0x0002_0001),
                Item::str(b"minm", self.config.name.clone()),
                Item::int(b"mstm", self.config.session_timeout.as_secs() as u32),
                Item::int(b"msdc", 1),
                Item::int(b"mslr", 1),
                Item::int(b"msal", 1),
                Item::int(b"msup", 1),
                Item::int(b"mspi", 1),
                Item::int(b"msex", 1),
                Item::int(b"msbr", 1),
                Item::int(b"msqy", 1),
                Item::int(b"msix", 1),
                Item::int(b"mstc", utc),
                Item::int(b"msto", 0),
            ],
        )]
    }

    fn login(&self, inner: &mut Inner, req: &Request, cx: &mut Context<'_>) -> Outcome {
        let guid = match req.query_param("pairing-guid") {
            Some(text) => match parse_guid(text) {
                Some(g) => Some(g),
                None => {
                    return self.refuse(
                        req,
                        400,
                        &format!("pairing-guid {text:?} is not 0x and 16 hex digits"),
                        cx,
                    )
                }
            },
            None => None,
        };
        let known = guid.is_some_and(|g| self.knows(inner, g));
        if !known {
            inner.refused_logins += 1;
            let why = match (guid, req.query_param("hsgid")) {
                (Some(g), _) => format!("pairing GUID {} is not paired", format_guid(g)),
                (None, Some(h)) => format!("home sharing id {h} is not known"),
                (None, None) => "login needs pairing-guid".into(),
            };
            cx.info(format!("login refused: {why}"));
            return Outcome::Respond(
                Response::new(req.protocol, self.config.login_status).with_reason_text(&why),
            );
        }
        let mut id: u32 = inner.rng.gen_range(1..=0x7FFF_FFFF);
        while inner.sessions.contains_key(&id) {
            id = inner.rng.gen_range(1..=0x7FFF_FFFF);
        }
        inner.sessions.insert(id, cx.now);
        inner.logins += 1;
        cx.info(format!(
            "login of {} → session {id}",
            format_guid(guid.unwrap_or_default())
        ));
        Outcome::Respond(self.dmap(
            req,
            vec![Item::container(
                b"mlog",
                vec![Item::int(b"mstt", 200), Item::int(b"mlid", id)],
            )],
        ))
    }

    fn ctrl(&self, inner: &mut Inner, cmd: &str, req: &Request, cx: &mut Context<'_>) -> Outcome {
        let now = cx.now;
        match cmd {
            "playstatusupdate" => {
                let asked = match req.query_param("revision-number") {
                    None => 0,
                    Some(v) => match v.parse::<u32>() {
                        Ok(n) => n,
                        Err(_) => {
                            return self.refuse(
                                req,
                                400,
                                &format!("revision-number {v:?} is not a number"),
                                cx,
                            )
                        }
                    },
                };
                if asked == inner.player.revision {
                    // Nothing new: hold the answer until the state changes.
                    return Outcome::Wait {
                        after_revision: Some(self.changes.revision()),
                        until: inner.player.next_due(),
                    };
                }
                let cmst = inner.player.cmst(now);
                Outcome::Respond(self.dmap(req, vec![cmst]))
            }
            "nowplayingartwork" => match inner.player.artwork() {
                Some(png) => Outcome::Respond(
                    Response::new(req.protocol, 200).with_body("image/png", png.to_vec()),
                ),
                // No artwork: an empty answer, which pyatv reads as "none".
                None => Outcome::Respond(self.no_content(req)),
            },
            "getproperty" => {
                let Some(list) = req.query_param("properties") else {
                    return self.refuse(req, 400, "getproperty needs properties=", cx);
                };
                let mut items = vec![Item::int(b"mstt", 200)];
                for name in list.split(',') {
                    match inner.player.property(name, now) {
                        Some(v) => items.extend(v),
                        None => cx.warn(format!("getproperty: unknown property {name:?}")),
                    }
                }
                Outcome::Respond(self.dmap(req, vec![Item::container(b"cmgt", items)]))
            }
            "setproperty" => {
                let mut any = false;
                for kv in req.query().unwrap_or_default().split('&') {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    if k == "session-id" || k == "prompt-id" || k.is_empty() {
                        continue;
                    }
                    if let Err(e) = inner.player.set_property(k, v, now) {
                        return self.refuse(req, 400, &e, cx);
                    }
                    any = true;
                }
                if !any {
                    return self.refuse(req, 400, "setproperty needs a property", cx);
                }
                self.changes.bump();
                Outcome::Respond(self.no_content(req))
            }
            "getspeakers" => {
                let mut items = vec![Item::int(b"mstt", 200)];
                for s in &inner.speakers {
                    let mut d = vec![
                        Item::str(b"minm", s.name.clone()),
                        Item::int(b"cmvo", s.volume),
                        Item::int(b"msma", s.id),
                    ];
                    if s.active {
                        d.insert(0, Item::int(b"caia", 1));
                    }
                    items.push(Item::container(b"mdcl", d));
                }
                Outcome::Respond(self.dmap(req, vec![Item::container(b"casp", items)]))
            }
            "setspeakers" => {
                let Some(list) = req.query_param("speaker-id") else {
                    return self.refuse(req, 400, "setspeakers needs speaker-id=", cx);
                };
                let mut ids = Vec::new();
                for part in list.split(',') {
                    match parse_guid(part) {
                        Some(id) => ids.push(id),
                        None => {
                            return self.refuse(
                                req,
                                400,
                                &format!("speaker-id {part:?} is not hex"),
                                cx,
                            )
                        }
                    }
                }
                for s in inner.speakers.iter_mut() {
                    s.active = ids.contains(&s.id);
                }
                inner.player.revision = inner.player.revision.wrapping_add(1).max(1);
                self.changes.bump();
                Outcome::Respond(self.no_content(req))
            }
            other => match inner.player.command(other, now) {
                Ok(()) => {
                    self.changes.bump();
                    Outcome::Respond(self.no_content(req))
                }
                // pyatv reads a 500 as "not supported" (docs/peers.md).
                Err(e) => self.refuse(req, 500, &e, cx),
            },
        }
    }
}

impl Service for DacpService {
    type Conn = DacpConn;

    fn open(&self, _conn: &ConnInfo) -> DacpConn {
        DacpConn
    }

    fn changes(&self) -> Option<&Changes> {
        Some(&self.changes)
    }

    fn handle(&self, _state: &mut DacpConn, req: &Request, cx: &mut Context<'_>) -> Outcome {
        if req.method != "GET" && req.method != "POST" {
            return self.refuse(req, 405, &format!("method {} not allowed", req.method), cx);
        }
        match self.route(req, cx) {
            Outcome::Respond(mut r) => {
                r.headers.set("DAAP-Server", self.config.server.clone());
                Outcome::Respond(r)
            }
            other => other,
        }
    }

    fn resume(&self, state: &mut DacpConn, req: &Request, cx: &mut Context<'_>) -> Outcome {
        self.handle(state, req, cx)
    }

    fn complete(
        &self,
        _: &mut DacpConn,
        req: &Request,
        _: &[u16],
        _: &mut Context<'_>,
    ) -> Response {
        Response::new(req.protocol, 500)
    }

    fn decorate(&self, _: &DacpConn, _: Option<&Request>, resp: &mut Response, _: &Context<'_>) {
        if !resp.headers.contains("DAAP-Server") {
            resp.headers.set("DAAP-Server", self.config.server.clone());
        }
    }

    fn close(&self, _: DacpConn) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::CoreParams;
    use crate::wire::Protocol;

    fn conn() -> ConnInfo {
        ConnInfo {
            device: "itunes".into(),
            index: 0,
            peer: "127.0.0.1:1".parse().unwrap(),
            local: "127.0.0.1:3689".parse().unwrap(),
        }
    }

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)
    }

    fn get(svc: &DacpService, uri: &str, now: SystemTime) -> Outcome {
        let info = conn();
        let params = CoreParams::default();
        let mut cx = Context::new(&info, now, &params);
        let req = Request::new("GET", uri, Protocol::Http11);
        svc.handle(&mut DacpConn, &req, &mut cx)
    }

    fn answer(o: Outcome) -> Response {
        match o {
            Outcome::Respond(r) => r,
            _ => panic!("expected an answer"),
        }
    }

    fn login(svc: &DacpService) -> u32 {
        let r = answer(get(
            svc,
            "/login?pairing-guid=0x0000000000000001&hasFP=1",
            t0(),
        ));
        assert_eq!(r.status, 200);
        let items = dmap::decode(&r.body).unwrap();
        dmap::first(&items, &[b"mlog", b"mlid"])
            .and_then(|v| v.as_int())
            .unwrap() as u32
    }

    #[test]
    fn known_guid_logs_in_and_unknown_gets_503() {
        let svc = DacpService::new(DacpConfig::itunes("lib", t0()));
        let sid = login(&svc);
        assert!(sid > 0);
        let r = answer(get(&svc, "/login?pairing-guid=0x00000000000000FF", t0()));
        assert_eq!(r.status, 503);
        svc.add_pairing(0xFF, "remote", "iPhone");
        assert_eq!(
            answer(get(&svc, "/login?pairing-guid=0x00000000000000FF", t0())).status,
            200
        );
    }

    #[test]
    fn session_ids_come_from_the_seed() {
        let a = DacpService::new(DacpConfig::itunes("lib", t0()));
        let b = DacpService::new(DacpConfig::itunes("lib", t0()));
        assert_eq!(login(&a), login(&b));
    }

    #[test]
    fn requests_without_a_valid_session_get_403_and_sessions_expire() {
        let mut cfg = DacpConfig::itunes("lib", t0());
        cfg.session_timeout = Duration::from_secs(5);
        let svc = DacpService::new(cfg);
        assert_eq!(answer(get(&svc, "/ctrl-int/1/pause", t0())).status, 403);
        let sid = login(&svc);
        let uri = format!("/ctrl-int/1/pause?session-id={sid}");
        assert_eq!(answer(get(&svc, &uri, t0())).status, 204);
        let later = t0() + Duration::from_secs(6);
        assert_eq!(answer(get(&svc, &uri, later)).status, 403);
    }

    #[test]
    fn playstatusupdate_answers_a_new_revision_and_waits_on_the_current_one() {
        let svc = DacpService::new(DacpConfig::itunes("lib", t0()));
        let sid = login(&svc);
        let r = answer(get(
            &svc,
            &format!("/ctrl-int/1/playstatusupdate?revision-number=0&session-id={sid}"),
            t0(),
        ));
        let items = dmap::decode(&r.body).unwrap();
        let rev = dmap::first(&items, &[b"cmst", b"cmsr"])
            .unwrap()
            .as_int()
            .unwrap();
        assert_eq!(
            dmap::first(&items, &[b"cmst", b"caps"]),
            Some(&dmap::Value::Int(4))
        );
        assert!(dmap::first(&items, &[b"cmst", b"cmmk"]).is_some());
        let uri = format!("/ctrl-int/1/playstatusupdate?revision-number={rev}&session-id={sid}");
        let Outcome::Wait { after_revision, .. } = get(&svc, &uri, t0()) else {
            panic!("expected a long poll");
        };
        let after_revision = after_revision.unwrap();
        answer(get(
            &svc,
            &format!("/ctrl-int/1/pause?session-id={sid}"),
            t0(),
        ));
        assert_ne!(svc.changes.revision(), after_revision);
        let r = answer(get(&svc, &uri, t0()));
        let items = dmap::decode(&r.body).unwrap();
        assert_eq!(
            dmap::first(&items, &[b"cmst", b"caps"]),
            Some(&dmap::Value::Int(3))
        );
    }

    #[test]
    fn gzip_only_when_asked() {
        let svc = DacpService::new(DacpConfig::itunes("lib", t0()));
        let info = conn();
        let params = CoreParams::default();
        let mut cx = Context::new(&info, t0(), &params);
        let mut req = Request::new("GET", "/server-info", Protocol::Http11);
        req.headers.set("Accept-Encoding", "gzip");
        let r = answer(svc.handle(&mut DacpConn, &req, &mut cx));
        assert_eq!(r.headers.get("Content-Encoding"), Some("gzip"));
        assert_eq!(&r.body[..2], &[0x1f, 0x8b]);
        let plain = answer(get(&svc, "/server-info", t0()));
        assert!(plain.headers.get("Content-Encoding").is_none());
        assert!(dmap::decode(&plain.body).is_ok());
    }

    #[test]
    fn bad_input_gets_4xx_with_a_reason() {
        let svc = DacpService::new(DacpConfig::itunes("lib", t0()));
        assert_eq!(
            answer(get(&svc, "/login?pairing-guid=0xnothex", t0())).status,
            400
        );
        let sid = login(&svc);
        for uri in [
            format!("/ctrl-int/1/setproperty?dmcp.volume=loud&session-id={sid}"),
            format!("/ctrl-int/1/playstatusupdate?revision-number=x&session-id={sid}"),
            format!("/ctrl-int/1/setspeakers?speaker-id=zz&session-id={sid}"),
        ] {
            let r = answer(get(&svc, &uri, t0()));
            assert_eq!(r.status, 400, "{uri}");
            assert!(!r.body.is_empty());
        }
    }
}
