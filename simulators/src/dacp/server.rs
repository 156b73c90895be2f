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
//! Content-Length on every reply (docs/peers.md). The same server shares the library (DAAP,
//! [`crate::daap`]): `/databases/1/…` listings and artwork, `/update` long-polled on
//! `revision-number`, and a guest `/login` without a pairing GUID, as iTunes' library sharing
//! allows (docs/protocols/daap.md). Bodies are gzipped when the client sends
//! `Accept-Encoding: gzip` (docs/protocols/dacp.md: "almost everything … is gzip
//! or zlib compressed").

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use flate2::write::GzEncoder;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::pairing::{format_guid, parse_guid};
use super::state::{Model, Player, TimelineStep, Track};
use crate::daap::listing::{self, Answer};
use crate::daap::Catalog;
use crate::protocol_core::{Changes, ConnInfo, Context, Outcome, ProtocolCore};
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

/// Live sessions a library keeps at most. A session is the `mlid` a `/login` answers, carried by
/// every later request (docs/protocols/dacp.md, "DACP"); a forgotten one is refused 403 like an
/// expired one, and its remote logs in anew. Without a cap, a client that logs in for every
/// request would grow the session table for the whole `session_timeout`.
pub const MAX_SESSIONS: usize = 1024;

/// Before a login adds a session: forgets the sessions idle longer than `timeout`, then the least
/// recently used ones until there is room for one more under [`MAX_SESSIONS`].
fn forget_sessions(sessions: &mut BTreeMap<u32, SystemTime>, now: SystemTime, timeout: Duration) {
    sessions.retain(|_, last| now.duration_since(*last).unwrap_or_default() <= timeout);
    while sessions.len() >= MAX_SESSIONS {
        let Some(oldest) = sessions
            .iter()
            .min_by_key(|(id, last)| (**last, **id))
            .map(|(id, _)| *id)
        else {
            break;
        };
        sessions.remove(&oldest);
    }
}

pub(super) struct Inner {
    /// Session id → last use.
    sessions: BTreeMap<u32, SystemTime>,
    paired: Vec<(u64, PairedRemote)>,
    rng: ChaCha8Rng,
    pub(super) speakers: Vec<Speaker>,
    logins: u64,
    guest_logins: u64,
    refused_logins: u64,
}

/// The DACP server core, shared by every connection of one device.
pub struct DacpCore {
    pub config: DacpConfig,
    /// The shared library: `config.library`, or the now-playing queue's tracks.
    pub catalog: Catalog,
    inner: Mutex<Inner>,
    /// What is playing, shared with the device's other protocols (MRP).
    pub now_playing: Arc<Model>,
    /// The now-playing model's changes: bumped on every state change, by any protocol; long
    /// polls wait on it.
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

impl DacpCore {
    pub fn new(config: DacpConfig) -> Self {
        let player = Player::new(&config.now_playing, config.artwork.clone(), config.start);
        DacpCore::with_model(config, Arc::new(Model::new(player)))
    }

    /// A DACP server on a now-playing model the device shares with its other protocols.
    pub fn with_model(config: DacpConfig, now_playing: Arc<Model>) -> Self {
        let inner = Inner {
            sessions: BTreeMap::new(),
            paired: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0xDAC9_DAC9),
            speakers: config.speakers.clone(),
            logins: 0,
            guest_logins: 0,
            refused_logins: 0,
        };
        let catalog = config
            .library
            .clone()
            .unwrap_or_else(|| Catalog::from_now_playing(&config.now_playing, &config.artwork));
        DacpCore {
            config,
            catalog,
            inner: Mutex::new(inner),
            changes: now_playing.changes.clone(),
            now_playing,
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
        let mut player = self.now_playing.lock();
        player.advance(now);
        if let Some(t) = track {
            player.set_current(t, now);
        }
        if let Some(s) = step {
            player.apply(s, now);
        }
        drop(player);
        self.changes.bump();
    }

    fn knows(&self, inner: &Inner, guid: u64) -> bool {
        self.config.known_guids.contains(&guid) || inner.paired.iter().any(|(g, _)| *g == guid)
    }

    /// The device's DACP state as JSON, for `state` expectations: the player's fields (see
    /// [`Player::to_json`]) plus `paired`, `sessions`, `logins`, `guest_logins`,
    /// `refused_logins`, `speakers`, `library_tracks`.
    pub fn state_json(&self, now: SystemTime) -> serde_json::Value {
        let inner = self.lock();
        let mut v = {
            let mut player = self.now_playing.lock();
            player.advance(now);
            player.to_json(now)
        };
        if let serde_json::Value::Object(m) = &mut v {
            m.insert(
                "paired".into(),
                serde_json::to_value(inner.paired.iter().map(|(_, p)| p).collect::<Vec<_>>())
                    .unwrap_or_default(),
            );
            m.insert("sessions".into(), inner.sessions.len().into());
            m.insert("logins".into(), inner.logins.into());
            m.insert("guest_logins".into(), inner.guest_logins.into());
            m.insert("library_tracks".into(), self.catalog.tracks.len().into());
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
        cx.refuse(req, Response::new(req.protocol, status), why)
    }

    fn route(&self, req: &Request, cx: &mut Context<'_>) -> Outcome {
        let path = req.path();
        let auth = match path {
            "/server-info" | "/login" | "/ctrl-int" => Auth::None,
            _ => Auth::Session,
        };
        let now = cx.now;
        let mut inner = self.lock();
        let mut player = self.now_playing.lock();
        if player.advance(now) {
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
                // DAAP: `revision-number` the client has; the same as ours holds the answer until
                // something changes (the long poll of `playstatusupdate`). 1 means "none yet"
                // (libdmapsharing's first /update sends 1), so the database revision is the
                // player's plus one and never 1 (docs/protocols/daap.md, "Revisions").
                let asked = match super::ctrl::asked_revision(req) {
                    Ok(n) => n,
                    Err(why) => {
                        drop(inner);
                        return self.refuse(req, 400, &why, cx);
                    }
                };
                let rev = player.revision.wrapping_add(1).max(2);
                if asked == rev {
                    return Outcome::Wait {
                        after_revision: Some(self.changes.revision()),
                        until: player.next_due(),
                    };
                }
                Outcome::Respond(self.dmap(
                    req,
                    vec![Item::container(
                        b"mupd",
                        vec![Item::int(b"mstt", 200), Item::int(b"musr", rev)],
                    )],
                ))
            }
            "/databases" => Outcome::Respond(self.dmap(
                req,
                listing::databases(&self.catalog, &self.config.name, self.config.library_id),
            )),
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
            _ => {
                if let Some(rest) = path.strip_prefix("/databases/") {
                    drop(inner);
                    let missing = cx.params.library_item_missing;
                    return match listing::answer(
                        &self.catalog,
                        &self.config.name,
                        rest,
                        req,
                        missing,
                    ) {
                        Ok(Answer::Dmap(items)) => Outcome::Respond(self.dmap(req, items)),
                        Ok(Answer::Image(png)) => Outcome::Respond(
                            Response::new(req.protocol, 200).with_body("image/png", png),
                        ),
                        Err(r) => self.refuse(req, r.status, &r.why, cx),
                    };
                }
                match path.strip_prefix("/ctrl-int/1/") {
                    Some(cmd) => self.ctrl(&mut inner, &mut player, cmd, req, cx),
                    None => {
                        drop(inner);
                        self.refuse(req, 404, &format!("no such path {path}"), cx)
                    }
                }
            }
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
        let guest = guid.is_none() && req.query_param("hsgid").is_none() && self.config.guest_login;
        if !known && !guest {
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
        forget_sessions(&mut inner.sessions, cx.now, self.config.session_timeout);
        let mut id: u32 = inner.rng.gen_range(1..=0x7FFF_FFFF);
        while inner.sessions.contains_key(&id) {
            id = inner.rng.gen_range(1..=0x7FFF_FFFF);
        }
        inner.sessions.insert(id, cx.now);
        inner.logins += 1;
        match guid {
            Some(g) => cx.info(format!("login of {} → session {id}", format_guid(g))),
            None => {
                inner.guest_logins += 1;
                cx.info(format!("guest login → session {id}"));
            }
        }
        Outcome::Respond(self.dmap(
            req,
            vec![Item::container(
                b"mlog",
                vec![Item::int(b"mstt", 200), Item::int(b"mlid", id)],
            )],
        ))
    }
}

impl ProtocolCore for DacpCore {
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

    fn get(svc: &DacpCore, uri: &str, now: SystemTime) -> Outcome {
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

    fn login(svc: &DacpCore) -> u32 {
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
    fn a_change_by_another_protocol_wakes_a_held_playstatusupdate() {
        let config = DacpConfig::itunes("lib", t0());
        let player = Player::new(&config.now_playing, config.artwork.clone(), config.start);
        let model = Arc::new(Model::new(player));
        let svc = DacpCore::with_model(config, model.clone());
        let sid = login(&svc);
        let rev = model.lock().revision;
        let uri = format!("/ctrl-int/1/playstatusupdate?revision-number={rev}&session-id={sid}");
        let Outcome::Wait { after_revision, .. } = get(&svc, &uri, t0()) else {
            panic!("nothing new: the poll is held");
        };
        // MRP (or Companion) pauses through the shared model.
        model.with(t0(), |p| p.command("pause", t0())).unwrap();
        assert_ne!(
            Some(svc.changes.revision()),
            after_revision,
            "the held poll wakes"
        );
        let r = answer(get(&svc, &uri, t0()));
        let items = dmap::decode(&r.body).unwrap();
        assert_eq!(
            dmap::first(&items, &[b"cmst", b"caps"]).and_then(|v| v.as_int()),
            Some(3),
            "paused"
        );
    }

    #[test]
    fn known_guid_logs_in_and_unknown_gets_503() {
        let svc = DacpCore::new(DacpConfig::itunes("lib", t0()));
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
        let a = DacpCore::new(DacpConfig::itunes("lib", t0()));
        let b = DacpCore::new(DacpConfig::itunes("lib", t0()));
        assert_eq!(login(&a), login(&b));
    }

    #[test]
    fn requests_without_a_valid_session_get_403_and_sessions_expire() {
        let mut cfg = DacpConfig::itunes("lib", t0());
        cfg.session_timeout = Duration::from_secs(5);
        let svc = DacpCore::new(cfg);
        assert_eq!(answer(get(&svc, "/ctrl-int/1/pause", t0())).status, 403);
        let sid = login(&svc);
        let uri = format!("/ctrl-int/1/pause?session-id={sid}");
        assert_eq!(answer(get(&svc, &uri, t0())).status, 204);
        let later = t0() + Duration::from_secs(6);
        assert_eq!(answer(get(&svc, &uri, later)).status, 403);
    }

    #[test]
    fn logins_beyond_the_session_cap_forget_the_least_recently_used_session() {
        let svc = DacpCore::new(DacpConfig::itunes("lib", t0()));
        let first = login(&svc);
        let uri = |sid: u32| format!("/ctrl-int/1/pause?session-id={sid}");
        let mut last = first;
        for _ in 0..MAX_SESSIONS + 500 {
            last = login(&svc);
        }
        let sessions = svc.state_json(t0())["sessions"].as_u64().unwrap();
        assert_eq!(sessions, MAX_SESSIONS as u64);
        assert_eq!(answer(get(&svc, &uri(last), t0())).status, 204);
        let r = answer(get(&svc, &uri(first), t0()));
        assert_eq!(r.status, 403);
        assert!(String::from_utf8_lossy(&r.body).contains("log in again"));
    }

    #[test]
    fn a_login_forgets_expired_sessions() {
        let mut cfg = DacpConfig::itunes("lib", t0());
        cfg.session_timeout = Duration::from_secs(5);
        let svc = DacpCore::new(cfg);
        for _ in 0..10 {
            login(&svc);
        }
        assert_eq!(svc.state_json(t0())["sessions"], 10);
        let later = t0() + Duration::from_secs(6);
        let r = answer(get(
            &svc,
            "/login?pairing-guid=0x0000000000000001&hasFP=1",
            later,
        ));
        assert_eq!(r.status, 200);
        assert_eq!(svc.state_json(later)["sessions"], 1);
    }

    #[test]
    fn playstatusupdate_answers_a_new_revision_and_waits_on_the_current_one() {
        let svc = DacpCore::new(DacpConfig::itunes("lib", t0()));
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
        let svc = DacpCore::new(DacpConfig::itunes("lib", t0()));
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

    fn library_core() -> DacpCore {
        let mut cfg = DacpConfig::itunes("lib", t0());
        let lib: crate::daap::Library = serde_json::from_value(serde_json::json!({
            "tracks": [
                {"title": "One", "artist": "Ann", "album": "A"},
                {"title": "Two", "artist": "Bob", "album": "B"}
            ],
            "playlists": [{"name": "Mix", "tracks": [2]}]
        }))
        .unwrap();
        cfg.library = Some(Catalog::new(&lib, vec![Some(b"png".to_vec()), None]).unwrap());
        DacpCore::new(cfg)
    }

    fn guest(svc: &DacpCore) -> u32 {
        let r = answer(get(svc, "/login", t0()));
        assert_eq!(r.status, 200);
        let items = dmap::decode(&r.body).unwrap();
        dmap::first(&items, &[b"mlog", b"mlid"])
            .and_then(|v| v.as_int())
            .unwrap() as u32
    }

    #[test]
    fn guests_log_in_without_a_guid_only_where_allowed() {
        let svc = library_core();
        guest(&svc);
        assert_eq!(svc.state_json(t0())["guest_logins"], 1);
        let mut cfg = DacpConfig::itunes("tv", t0());
        cfg.guest_login = false;
        let tv = DacpCore::new(cfg);
        assert_eq!(answer(get(&tv, "/login", t0())).status, 503);
        // A home-sharing id is not a guest.
        assert_eq!(answer(get(&svc, "/login?hsgid=x", t0())).status, 503);
    }

    #[test]
    fn the_library_is_listed_behind_a_session() {
        let svc = library_core();
        assert_eq!(answer(get(&svc, "/databases/1/items", t0())).status, 403);
        let sid = guest(&svc);
        let r = answer(get(
            &svc,
            &format!("/databases/1/containers/2/items?session-id={sid}&meta=dmap.itemname"),
            t0(),
        ));
        let items = dmap::decode(&r.body).unwrap();
        assert_eq!(
            dmap::first(&items, &[b"apso", b"mlcl", b"mlit", b"minm"]),
            Some(&dmap::Value::Str("Two".into()))
        );
        let r = answer(get(&svc, &format!("/databases?session-id={sid}"), t0()));
        let items = dmap::decode(&r.body).unwrap();
        assert_eq!(
            dmap::first(&items, &[b"avdb", b"mlcl", b"mlit", b"mctc"]),
            Some(&dmap::Value::Int(2))
        );
        let art = format!("/databases/1/items/1/extra_data/artwork?session-id={sid}");
        let r = answer(get(&svc, &art, t0()));
        assert_eq!((r.status, r.body.as_slice()), (200, &b"png"[..]));
        // The fault: listed, but its own request is 404.
        let info = conn();
        let params = CoreParams {
            library_item_missing: Some(1),
            ..CoreParams::default()
        };
        let mut cx = Context::new(&info, t0(), &params);
        let req = Request::new("GET", &art, Protocol::Http11);
        assert_eq!(answer(svc.handle(&mut DacpConn, &req, &mut cx)).status, 404);
    }

    #[test]
    fn update_long_polls_the_revision_and_cue_plays_from_the_library() {
        let svc = library_core();
        let sid = login(&svc);
        let r = answer(get(
            &svc,
            &format!("/update?session-id={sid}&revision-number=1"),
            t0(),
        ));
        let items = dmap::decode(&r.body).unwrap();
        let rev = dmap::first(&items, &[b"mupd", b"musr"])
            .unwrap()
            .as_int()
            .unwrap();
        let poll = format!("/update?session-id={sid}&revision-number={rev}&delta=0");
        assert!(matches!(get(&svc, &poll, t0()), Outcome::Wait { .. }));
        let cue = format!(
            "/ctrl-int/1/cue?command=play&query=%27daap.songartist:Bob%27&session-id={sid}"
        );
        let r = answer(get(&svc, &cue, t0()));
        let items = dmap::decode(&r.body).unwrap();
        assert_eq!(
            dmap::first(&items, &[b"cacr", b"miid"]),
            Some(&dmap::Value::Int(2))
        );
        let r = answer(get(&svc, &poll, t0()));
        let items = dmap::decode(&r.body).unwrap();
        assert_ne!(
            dmap::first(&items, &[b"mupd", b"musr"]).unwrap().as_int(),
            Some(rev)
        );
        let state = svc.state_json(t0());
        assert_eq!(state["title"], "Two");
        assert_eq!(state["item_id"], 2);
        assert_eq!(state["state"], "playing");
        let missing = format!(
            "/ctrl-int/1/playqueue-edit?command=add&query='dmap.itemid:9'&session-id={sid}"
        );
        assert_eq!(answer(get(&svc, &missing, t0())).status, 404);
        let clear = format!("/ctrl-int/1/cue?command=clear&session-id={sid}");
        assert_eq!(answer(get(&svc, &clear, t0())).status, 200);
        assert_eq!(svc.state_json(t0())["state"], "stopped");
    }

    #[test]
    fn bad_input_gets_4xx_with_a_reason() {
        let svc = DacpCore::new(DacpConfig::itunes("lib", t0()));
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
