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
use std::time::SystemTime;

use flate2::write::GzEncoder;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::pairing::{format_guid, parse_guid};
use super::state::{Player, TimelineStep, Track};
use crate::service::{Changes, ConnInfo, Context, Outcome, Service};
use crate::wire::dmap::{self, Item};
use crate::wire::{Request, Response};

/// The DMAP content type.
pub const DMAP_TYPE: &str = "application/x-dmap-tagged";

pub use super::config::{DacpConfig, Speaker, DEFAULT_GUID};

/// A remote the library paired with (by calling its `/pair`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PairedRemote {
    pub guid: String,
    pub name: String,
    pub device_type: String,
}

pub(super) struct Inner {
    pub(super) player: Player,
    /// Session id → last use.
    sessions: BTreeMap<u32, SystemTime>,
    paired: Vec<(u64, PairedRemote)>,
    rng: ChaCha8Rng,
    pub(super) speakers: Vec<Speaker>,
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

    pub(super) fn dmap(&self, req: &Request, items: Vec<Item>) -> Response {
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

    pub(super) fn no_content(&self, req: &Request) -> Response {
        Response::new(req.protocol, 204)
    }

    pub(super) fn refuse(
        &self,
        req: &Request,
        status: u16,
        why: &str,
        cx: &mut Context<'_>,
    ) -> Outcome {
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
    use std::time::Duration;

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
