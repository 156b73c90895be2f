//! The AP side of one TCP connection, sans-IO: bytes and the time go in; bytes to write, events
//! and the next timer come out (`handle_input`, `handle_timeout`, `poll_transmit`, `poll_event`,
//! `poll_timeout`). It never touches a socket or a clock.
//!
//! After the handshake the AP waits for Login (0xab) and answers APWelcome (0xac) or AuthFailure
//! (0xad); after a welcome it sends, unprompted, what a real AP sends (Ping with the server time,
//! SecretBlock, LicenseVersion, CountryCode, ProductInfo, LegacyWelcome), then a Ping on every
//! `ping_interval`, answers each Pong with a PongAck, and Mercury requests (0xb2) from scripted
//! replies (`docs/protocols/spotify-ap.md`, "Session").

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use librespot_protocol::authentication::{
    APWelcome, AccountType, AuthenticationType, ClientResponseEncrypted,
};
use librespot_protocol::keyexchange::{
    APLoginFailed, ClientHello, ClientResponsePlaintext, ErrorCode,
};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use super::codec::{Decoder, Encoder, Frame};
use super::diffie_hellman::LocalKeys;
use super::handshake::{self, HandshakeError, Keys};
use super::identity::Identity;
use super::{command, mercury, transcript};
use crate::protocol_core::ConnInfo;
use crate::stream_core::{NamedTransmit, Plaintext, StreamConn, StreamCore, StreamEvent};

/// One account the AP knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Account {
    pub username: String,
    /// The password a USER_PASS login must give; absent: any password.
    #[serde(default)]
    pub password: Option<String>,
    /// Refuse this account's logins with this ErrorCode name (e.g. `PremiumAccountRequired`).
    #[serde(default)]
    pub refuse: Option<String>,
}

/// The error code an AuthFailure carries, from its proto name.
pub fn error_code(name: &str) -> Option<ErrorCode> {
    use protobuf::Enum;
    ErrorCode::VALUES
        .iter()
        .copied()
        .find(|c| format!("{c:?}") == name)
}

/// Everything a connection needs from the device, shared by its connections.
#[derive(Debug, Clone)]
pub struct ApConfig {
    pub identity: Arc<Identity>,
    /// Sign `gs` with this key instead (the `sign_with` fault: a forged AP).
    pub sign_with: Option<Arc<Identity>>,
    pub accounts: Vec<Account>,
    pub mercury: Vec<mercury::Reply>,
    pub ping_interval: Duration,
    pub country: String,
    /// ProductInfo `type`: librespot exits unless it is `premium`.
    pub product_type: String,
    /// Answer every login with AuthFailure TryAnotherAP (the first AP of a scenario can).
    pub try_another_ap: bool,
    /// Judge the client's challenge HMAC wrong even when it is right.
    pub reject_hmac: bool,
    pub seed: u64,
}

impl ApConfig {
    pub fn new(identity: Arc<Identity>, seed: u64) -> Self {
        ApConfig {
            identity,
            sign_with: None,
            accounts: Vec::new(),
            mercury: Vec::new(),
            ping_interval: Duration::from_secs(120),
            country: "SE".into(),
            product_type: "premium".into(),
            try_another_ap: false,
            reject_hmac: false,
            seed,
        }
    }

    /// The reusable credentials an APWelcome gives `username`: a keyed hash of the name, so a
    /// second connection to the same device can log in with them.
    pub fn stored_credentials(&self, username: &str) -> Vec<u8> {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&self.seed.to_be_bytes())
            .unwrap_or_else(|_| unreachable!());
        mac.update(username.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

/// Bytes to write, with what they are for the fault seam and the transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The command name (`APWelcome`, `Ping`…) or the handshake message name.
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Something for the transcript or the harness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApEvent {
    /// A packet decoded: its name, payload length, and its fields as protobuf text (or a summary).
    Received {
        name: String,
        len: usize,
        fields: String,
    },
    Sent {
        name: String,
        len: usize,
        fields: String,
    },
    LoggedIn {
        username: String,
        stored: bool,
    },
    LoginRefused {
        username: String,
        code: String,
    },
    Warning(String),
    /// The core decided to close the connection after its pending bytes are written.
    Close(String),
}

enum State {
    Hello,
    Response {
        keys: Keys,
    },
    Session {
        decoder: Box<Decoder>,
        encoder: Encoder,
        logged_in: bool,
    },
    Closed,
}

/// One connection's AP state.
pub struct ApConnection {
    config: Arc<ApConfig>,
    rng: ChaCha20Rng,
    state: State,
    buf: Vec<u8>,
    transmits: std::collections::VecDeque<Transmit>,
    events: std::collections::VecDeque<ApEvent>,
    next_ping: Option<SystemTime>,
    /// With [`ApConnection::log_plaintext`]: each message in clear, for captures.
    plaintext: Option<std::collections::VecDeque<Plaintext>>,
}

impl ApConnection {
    /// A connection; `index` is its number at the device, mixed into the seed.
    pub fn new(config: Arc<ApConfig>, index: u64) -> Self {
        let rng =
            ChaCha20Rng::seed_from_u64(config.seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        ApConnection {
            config,
            rng,
            state: State::Hello,
            buf: Vec::new(),
            transmits: Default::default(),
            events: Default::default(),
            next_ping: None,
            plaintext: None,
        }
    }

    /// From now on, keeps each message in clear for [`ApConnection::poll_plaintext`]: the hello
    /// packets as they are on the wire, each Shannon frame as command, 2-byte big-endian length
    /// and payload (docs/protocols/spotify-ap.md, "Shannon frames").
    pub fn log_plaintext(&mut self) {
        self.plaintext.get_or_insert_with(Default::default);
    }

    /// The next message kept by [`ApConnection::log_plaintext`].
    pub fn poll_plaintext(&mut self) -> Option<Plaintext> {
        self.plaintext.as_mut()?.pop_front()
    }

    fn keep_plain(&mut self, from_peer: bool, bytes: impl FnOnce() -> Vec<u8>) {
        if let Some(log) = self.plaintext.as_mut() {
            log.push_back(Plaintext {
                from_peer,
                bytes: bytes(),
            });
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ApEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` wants to be called next.
    pub fn poll_timeout(&self) -> Option<SystemTime> {
        self.next_ping
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    pub fn handle_timeout(&mut self, now: SystemTime) {
        if self.next_ping.is_some_and(|t| t <= now) {
            self.send_ping(now);
        }
    }

    pub fn handle_input(&mut self, now: SystemTime, bytes: &[u8]) {
        match &mut self.state {
            State::Closed => return,
            State::Session { decoder, .. } => decoder.push(bytes),
            _ => self.buf.extend_from_slice(bytes),
        }
        loop {
            let progressed = match std::mem::replace(&mut self.state, State::Closed) {
                State::Hello => self.on_hello(),
                State::Response { keys } => self.on_response(keys),
                State::Session {
                    mut decoder,
                    encoder,
                    logged_in,
                } => match decoder.next_frame() {
                    Ok(Some(frame)) => {
                        self.state = State::Session {
                            decoder,
                            encoder,
                            logged_in,
                        };
                        self.on_frame(now, frame);
                        true
                    }
                    Ok(None) => {
                        self.state = State::Session {
                            decoder,
                            encoder,
                            logged_in,
                        };
                        false
                    }
                    Err(e) => {
                        self.close(e.to_string());
                        false
                    }
                },
                State::Closed => false,
            };
            if !progressed || self.is_closed() {
                break;
            }
        }
    }

    fn close(&mut self, reason: String) {
        self.state = State::Closed;
        self.next_ping = None;
        self.events.push_back(ApEvent::Close(reason));
    }

    fn fail_handshake(&mut self, e: HandshakeError) -> bool {
        self.close(format!("handshake: {e}"));
        false
    }

    fn on_hello(&mut self) -> bool {
        let (packet, payload) = match handshake::split_packet(&self.buf, true) {
            Ok(Some(p)) => p,
            Ok(None) => {
                self.state = State::Hello;
                return false;
            }
            Err(e) => return self.fail_handshake(e),
        };
        self.buf.drain(..packet.len());
        self.keep_plain(true, || packet.to_vec());
        let hello: ClientHello = match handshake::parse_strict("ClientHello", &payload) {
            Ok(h) => h,
            Err(e) => return self.fail_handshake(e),
        };
        self.events.push_back(ApEvent::Received {
            name: "ClientHello".into(),
            len: payload.len(),
            fields: transcript::fields(&hello),
        });
        let facts = match handshake::check_hello(&hello) {
            Ok(f) => f,
            Err(e) => return self.fail_handshake(e),
        };
        let local = LocalKeys::random(&mut self.rng);
        let signer = self
            .config
            .sign_with
            .as_ref()
            .unwrap_or(&self.config.identity);
        let signature = match signer.sign_gs(local.public()) {
            Ok(s) => s,
            Err(e) => {
                self.close(format!("signing gs: {e}"));
                return false;
            }
        };
        let mut nonce = [0u8; 16];
        self.rng.fill_bytes(&mut nonce);
        let msg = handshake::ap_response(local.public(), &signature, &nonce);
        let response = handshake::frame_plaintext(&handshake::encode_lenient(&msg));
        let keys = handshake::derive_keys(&local.shared_secret(&facts.gc), &packet, &response);
        self.events.push_back(ApEvent::Sent {
            name: "APResponseMessage".into(),
            len: response.len() - 4,
            fields: transcript::fields(&msg),
        });
        self.keep_plain(false, || response.clone());
        self.transmits.push_back(Transmit {
            name: "APResponseMessage".into(),
            bytes: response,
        });
        self.state = State::Response { keys };
        true
    }

    fn on_response(&mut self, keys: Keys) -> bool {
        let (packet, payload) = match handshake::split_packet(&self.buf, false) {
            Ok(Some(p)) => p,
            Ok(None) => {
                self.state = State::Response { keys };
                return false;
            }
            Err(e) => return self.fail_handshake(e),
        };
        self.buf.drain(..packet.len());
        self.keep_plain(true, || packet.to_vec());
        let resp: ClientResponsePlaintext =
            match handshake::parse_strict("ClientResponsePlaintext", &payload) {
                Ok(r) => r,
                Err(e) => return self.fail_handshake(e),
            };
        self.events.push_back(ApEvent::Received {
            name: "ClientResponsePlaintext".into(),
            len: payload.len(),
            fields: transcript::fields(&resp),
        });
        let good = handshake::response_hmac(&resp) == Some(&keys.challenge[..]);
        if !good || self.config.reject_hmac {
            let why = if good {
                "challenge HMAC judged wrong (fault)"
            } else {
                "challenge HMAC wrong"
            };
            let bytes = handshake::login_failed_packet(ErrorCode::ProtocolError);
            self.keep_plain(false, || bytes.clone());
            self.transmits.push_back(Transmit {
                name: "APResponseMessage".into(),
                bytes,
            });
            self.events.push_back(ApEvent::Sent {
                name: "APResponseMessage".into(),
                len: 0,
                fields: "login_failed { error_code: ProtocolError }".into(),
            });
            self.close(why.into());
            return false;
        }
        let mut decoder = Box::new(Decoder::new(keys.send));
        decoder.push(&std::mem::take(&mut self.buf));
        self.state = State::Session {
            decoder,
            encoder: Encoder::new(keys.recv),
            logged_in: false,
        };
        true
    }

    fn send(&mut self, cmd: u8, payload: Vec<u8>, fields: String) {
        let State::Session { encoder, .. } = &mut self.state else {
            return;
        };
        let frame = Frame::new(cmd, payload);
        match encoder.encode(&frame) {
            Ok(bytes) => {
                self.keep_plain(false, || frame.plain());
                self.events.push_back(ApEvent::Sent {
                    name: frame.name(),
                    len: frame.payload.len(),
                    fields,
                });
                self.transmits.push_back(Transmit {
                    name: frame.name(),
                    bytes,
                });
            }
            Err(e) => self
                .events
                .push_back(ApEvent::Warning(format!("not sent: {e}"))),
        }
    }

    fn send_ping(&mut self, now: SystemTime) {
        let secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let secs = u32::try_from(secs).unwrap_or(u32::MAX);
        self.send(
            command::PING,
            secs.to_be_bytes().to_vec(),
            format!("server time {secs}"),
        );
        self.next_ping = Some(now + self.config.ping_interval);
    }

    fn logged_in(&self) -> bool {
        matches!(
            self.state,
            State::Session {
                logged_in: true,
                ..
            }
        )
    }

    fn on_frame(&mut self, now: SystemTime, frame: Frame) {
        self.keep_plain(true, || frame.plain());
        let fields = transcript::frame_fields(&frame);
        self.events.push_back(ApEvent::Received {
            name: frame.name(),
            len: frame.payload.len(),
            fields,
        });
        match frame.cmd {
            command::LOGIN if !self.logged_in() => self.on_login(now, &frame.payload),
            command::LOGIN => self
                .events
                .push_back(ApEvent::Warning("second Login on one connection".into())),
            _ if !self.logged_in() => {
                self.close(format!("{} before Login", frame.name()));
            }
            command::PONG => self.send(command::PONG_ACK, vec![], String::new()),
            command::MERCURY_REQ => match mercury::parse(&frame.payload) {
                Ok(req) => {
                    let reply = mercury::answer(&req, &self.config.mercury);
                    let fields = format!("uri: {:?}", req.header.uri());
                    self.send(command::MERCURY_REQ, reply, fields);
                }
                Err(e) => self.events.push_back(ApEvent::Warning(e.to_string())),
            },
            0x0f | 0x74 => {}
            _ => self.events.push_back(ApEvent::Warning(format!(
                "unhandled command {}",
                frame.name()
            ))),
        }
    }

    fn refuse(&mut self, username: &str, code: ErrorCode) {
        let mut failed = APLoginFailed::new();
        failed.error_code = Some(code.into());
        let fields = transcript::fields(&failed);
        self.send(
            command::AUTH_FAILURE,
            handshake::encode_lenient(&failed),
            fields,
        );
        self.events.push_back(ApEvent::LoginRefused {
            username: username.into(),
            code: format!("{code:?}"),
        });
        self.close(format!("login refused: {code:?}"));
    }

    fn on_login(&mut self, now: SystemTime, payload: &[u8]) {
        let login: ClientResponseEncrypted =
            match handshake::parse_strict("ClientResponseEncrypted", payload) {
                Ok(l) => l,
                Err(e) => {
                    self.events.push_back(ApEvent::Warning(e.to_string()));
                    return self.refuse("", ErrorCode::ProtocolError);
                }
            };
        let creds = &login.login_credentials;
        let username = creds.username().to_string();
        if self.config.try_another_ap {
            return self.refuse(&username, ErrorCode::TryAnotherAP);
        }
        let Some(account) = self
            .config
            .accounts
            .iter()
            .find(|a| a.username == username)
            .cloned()
        else {
            return self.refuse(&username, ErrorCode::BadCredentials);
        };
        let typ = creds.typ();
        let stored = typ == AuthenticationType::AUTHENTICATION_STORED_SPOTIFY_CREDENTIALS;
        let ok = match typ {
            AuthenticationType::AUTHENTICATION_USER_PASS => account
                .password
                .as_ref()
                .is_none_or(|p| p.as_bytes() == creds.auth_data()),
            AuthenticationType::AUTHENTICATION_STORED_SPOTIFY_CREDENTIALS => {
                creds.auth_data() == self.config.stored_credentials(&username)
            }
            _ => false,
        };
        if !ok {
            return self.refuse(&username, ErrorCode::BadCredentials);
        }
        if let Some(code) = account.refuse.as_deref() {
            return self.refuse(
                &username,
                error_code(code).unwrap_or(ErrorCode::ProtocolError),
            );
        }
        let mut welcome = APWelcome::new();
        welcome.canonical_username = Some(username.clone());
        welcome.account_type_logged_in = Some(AccountType::Spotify.into());
        welcome.credentials_type_logged_in = Some(AccountType::Spotify.into());
        welcome.reusable_auth_credentials_type =
            Some(AuthenticationType::AUTHENTICATION_STORED_SPOTIFY_CREDENTIALS.into());
        welcome.reusable_auth_credentials = Some(self.config.stored_credentials(&username));
        let fields = transcript::fields(&welcome);
        self.send(
            command::AP_WELCOME,
            handshake::encode_lenient(&welcome),
            fields,
        );
        if let State::Session { logged_in, .. } = &mut self.state {
            *logged_in = true;
        }
        self.events
            .push_back(ApEvent::LoggedIn { username, stored });
        self.send_unprompted(now);
    }

    /// What a real AP sends after APWelcome, in the order a librespot-java trace shows.
    fn send_unprompted(&mut self, now: SystemTime) {
        self.send_ping(now);
        let mut secret = vec![0u8; 16];
        self.rng.fill_bytes(&mut secret);
        self.send(command::SECRET_BLOCK, secret, String::new());
        // LicenseVersion: i16 id, then (id != 0) a u8 length and the version text.
        let version = b"1.0.2-airtwin";
        let mut license = vec![0, 1, version.len() as u8];
        license.extend_from_slice(version);
        self.send(command::LICENSE_VERSION, license, "id 1".into());
        let country = self.config.country.clone();
        self.send(
            command::COUNTRY_CODE,
            country.as_bytes().to_vec(),
            country.clone(),
        );
        let product = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\" ?><products><product><type>{}</type>\
             <head-files-url>https://heads-fa.scdn.co/head/{{file_id}}</head-files-url>\
             <image-url>https://i.scdn.co/image/{{file_id}}</image-url></product></products>",
            self.config.product_type
        );
        self.send(
            command::PRODUCT_INFO,
            product.into_bytes(),
            format!("type {}", self.config.product_type),
        );
        self.send(command::LEGACY_WELCOME, vec![], String::new());
    }
}

/// What the device's state shows: who logged in and which logins were refused, in order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApStats {
    /// Usernames of accepted logins (the latest [`crate::protocol_core::HISTORY_KEPT`]).
    pub logins: Vec<String>,
    /// `username: ErrorCode` of refused logins (the latest [`crate::protocol_core::HISTORY_KEPT`]).
    pub failures: Vec<String>,
}

/// The access point as a [`StreamCore`]: every connection gets an [`ApConnection`] on the shared
/// configuration, numbered by its index at the device; logins are counted in [`ApCore::stats`].
pub struct ApCore {
    pub config: Arc<ApConfig>,
    stats: Arc<std::sync::Mutex<ApStats>>,
}

impl ApCore {
    pub fn new(config: Arc<ApConfig>) -> Self {
        ApCore {
            config,
            stats: Default::default(),
        }
    }

    /// Logins and refusals so far.
    pub fn stats(&self) -> ApStats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// One connection of [`ApCore`]: the [`ApConnection`] and the device's login counts.
pub struct ApCoreConn {
    inner: ApConnection,
    stats: Arc<std::sync::Mutex<ApStats>>,
}

impl StreamCore for ApCore {
    type Conn = ApCoreConn;

    fn open(&self, conn: &ConnInfo) -> ApCoreConn {
        ApCoreConn {
            inner: ApConnection::new(self.config.clone(), conn.index),
            stats: self.stats.clone(),
        }
    }
}

impl StreamConn for ApCoreConn {
    fn handle_input(&mut self, bytes: &[u8], now: SystemTime) {
        self.inner.handle_input(now, bytes);
    }

    fn handle_timeout(&mut self, now: SystemTime) {
        self.inner.handle_timeout(now);
    }

    fn poll_transmit(&mut self) -> Option<NamedTransmit> {
        self.inner.poll_transmit().map(|t| NamedTransmit {
            name: t.name,
            bytes: t.bytes,
        })
    }

    fn poll_event(&mut self) -> Option<StreamEvent> {
        let event = self.inner.poll_event()?;
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        Some(match event {
            ApEvent::Received { name, len, fields } => StreamEvent::Received { name, len, fields },
            ApEvent::Sent { name, len, fields } => StreamEvent::Sent { name, len, fields },
            ApEvent::LoggedIn { username, stored } => {
                crate::protocol_core::remember(&mut stats.logins, username.clone());
                StreamEvent::Note(format!(
                    "logged in: {username}{}",
                    if stored { " (stored credentials)" } else { "" }
                ))
            }
            ApEvent::LoginRefused { username, code } => {
                crate::protocol_core::remember(&mut stats.failures, format!("{username}: {code}"));
                StreamEvent::Note(format!("login refused: {username} {code}"))
            }
            ApEvent::Warning(w) => StreamEvent::Warning(w),
            ApEvent::Close(reason) => StreamEvent::Close(reason),
        })
    }

    fn poll_timeout(&self) -> Option<SystemTime> {
        self.inner.poll_timeout()
    }

    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    fn log_plaintext(&mut self) {
        self.inner.log_plaintext();
    }

    fn poll_plaintext(&mut self) -> Option<Plaintext> {
        self.inner.poll_plaintext()
    }
}

#[cfg(test)]
mod tests {
    use super::super::client::{ApClient, ClientConfig, ClientEvent, Credentials};
    use super::super::identity::tests::test_identity;
    use super::*;

    fn config() -> ApConfig {
        let mut c = ApConfig::new(Arc::new(test_identity().clone()), 3);
        c.accounts.push(Account {
            username: "alice".into(),
            password: Some("secret".into()),
            refuse: None,
        });
        c
    }

    fn client(password: &str) -> ApClient {
        ApClient::new(ClientConfig {
            username: "alice".into(),
            credentials: Credentials::Password(password.into()),
            server_key: test_identity().public(),
            seed: 9,
        })
    }

    /// Runs both cores against each other until neither has bytes to move.
    fn pump(
        ap: &mut ApConnection,
        cl: &mut ApClient,
        now: SystemTime,
    ) -> (Vec<ApEvent>, Vec<ClientEvent>) {
        let (mut aev, mut cev) = (vec![], vec![]);
        loop {
            let mut moved = false;
            while let Some(t) = cl.poll_transmit() {
                ap.handle_input(now, &t);
                moved = true;
            }
            while let Some(t) = ap.poll_transmit() {
                cl.handle_input(&t.bytes);
                moved = true;
            }
            aev.extend(std::iter::from_fn(|| ap.poll_event()));
            cev.extend(std::iter::from_fn(|| cl.poll_event()));
            if !moved {
                return (aev, cev);
            }
        }
    }

    #[test]
    fn mercury_gets_the_scripted_reply_by_uri_and_404_otherwise() {
        let mut cfg = config();
        cfg.mercury.push(mercury::Reply {
            uri: "hm://airtwin/scripted".into(),
            status: 200,
            body: "hello".into(),
        });
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut ap = ApConnection::new(Arc::new(cfg), 0);
        let mut cl = client("secret");
        // Asked before the login: sent right after APWelcome.
        cl.mercury_get("hm://airtwin/scripted");
        cl.mercury_get("hm://airtwin/other");
        assert_eq!(cl.mercury_pending(), 2);
        let (aev, cev) = pump(&mut ap, &mut cl, now);
        let answers: Vec<_> = cev
            .iter()
            .filter(|e| matches!(e, ClientEvent::Mercury { .. }))
            .cloned()
            .collect();
        assert_eq!(
            answers,
            vec![
                ClientEvent::Mercury {
                    uri: "hm://airtwin/scripted".into(),
                    status: 200,
                    body: vec![b"hello".to_vec()],
                },
                ClientEvent::Mercury {
                    uri: "hm://airtwin/other".into(),
                    status: 404,
                    body: vec![],
                },
            ],
            "{cev:?}"
        );
        assert_eq!(cl.mercury_pending(), 0);
        let received = aev
            .iter()
            .filter(|e| matches!(e, ApEvent::Received { name, .. } if name == "MercuryReq"))
            .count();
        assert_eq!(received, 2, "{aev:?}");
        // Once logged in, a request goes out at once.
        cl.mercury_get("hm://airtwin/scripted");
        let (_, cev) = pump(&mut ap, &mut cl, now);
        assert!(
            cev.iter()
                .any(|e| matches!(e, ClientEvent::Mercury { status: 200, .. })),
            "{cev:?}"
        );
    }

    #[test]
    fn plaintext_is_kept_only_when_asked_hello_packets_whole_and_frames_as_cmd_len_payload() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut quiet = ApConnection::new(Arc::new(config()), 0);
        pump(&mut quiet, &mut client("secret"), now);
        assert_eq!(quiet.poll_plaintext(), None);

        let mut ap = ApConnection::new(Arc::new(config()), 0);
        ap.log_plaintext();
        let mut cl = client("secret");
        let hello = cl.poll_transmit().expect("ClientHello");
        ap.handle_input(now, &hello);
        let first = ap.poll_plaintext().expect("ClientHello kept");
        assert_eq!((first.from_peer, first.bytes), (true, hello));
        pump(&mut ap, &mut cl, now);
        let kept: Vec<Plaintext> = std::iter::from_fn(|| ap.poll_plaintext()).collect();
        // APResponseMessage, ClientResponsePlaintext, Login, APWelcome, then what follows it.
        assert_eq!(
            kept.iter().map(|p| p.from_peer).take(4).collect::<Vec<_>>(),
            [false, true, true, false]
        );
        let (login, welcome) = (&kept[2].bytes, &kept[3].bytes);
        assert_eq!(
            (login[0], welcome[0]),
            (command::LOGIN, command::AP_WELCOME)
        );
        assert_eq!(
            usize::from(u16::from_be_bytes([login[1], login[2]])),
            login.len() - 3
        );
        assert!(login.windows(5).any(|w| w == b"alice"));
    }

    #[test]
    fn own_client_logs_in_gets_pinged_and_reuses_credentials() {
        let cfg = Arc::new(config());
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut ap = ApConnection::new(cfg.clone(), 0);
        let mut cl = client("secret");
        let (aev, cev) = pump(&mut ap, &mut cl, now);
        assert!(
            aev.contains(&ApEvent::LoggedIn {
                username: "alice".into(),
                stored: false
            }),
            "{aev:?}"
        );
        let reusable = cev
            .iter()
            .find_map(|e| match e {
                ClientEvent::LoggedIn { reusable, .. } => Some(reusable.clone()),
                _ => None,
            })
            .expect("client logged in");
        assert!(cev.contains(&ClientEvent::Pinged(1_700_000_000)), "{cev:?}");
        // The client answered the Ping at once; the AP acknowledged.
        assert!(aev
            .iter()
            .any(|e| matches!(e, ApEvent::Sent { name, .. } if name == "PongAck")));
        assert_eq!(ap.poll_timeout(), Some(now + Duration::from_secs(120)));
        ap.handle_timeout(now + Duration::from_secs(120));
        assert!(ap.poll_transmit().is_some_and(|t| t.name == "Ping"));

        let mut ap2 = ApConnection::new(cfg, 1);
        let mut cl2 = ApClient::new(ClientConfig {
            username: "alice".into(),
            credentials: Credentials::Stored(reusable),
            server_key: test_identity().public(),
            seed: 10,
        });
        let (aev, _) = pump(&mut ap2, &mut cl2, now);
        assert!(
            aev.contains(&ApEvent::LoggedIn {
                username: "alice".into(),
                stored: true
            }),
            "{aev:?}"
        );
    }

    #[test]
    fn wrong_password_gets_bad_credentials() {
        let mut ap = ApConnection::new(Arc::new(config()), 0);
        let mut cl = client("nope");
        let (aev, cev) = pump(&mut ap, &mut cl, UNIX_EPOCH);
        assert!(aev.contains(&ApEvent::LoginRefused {
            username: "alice".into(),
            code: "BadCredentials".into()
        }));
        assert!(
            cev.contains(&ClientEvent::Failed {
                step: "login",
                detail: "AuthFailure BadCredentials".into()
            }),
            "{cev:?}"
        );
        assert!(ap.is_closed());
    }

    #[test]
    fn forged_signature_is_refused_by_the_client() {
        let mut cfg = config();
        cfg.sign_with = Some(Arc::new(Identity::from_seed(12).unwrap()));
        let mut ap = ApConnection::new(Arc::new(cfg), 0);
        let mut cl = client("secret");
        let (_, cev) = pump(&mut ap, &mut cl, UNIX_EPOCH);
        assert!(
            cev.iter().any(|e| matches!(
                e,
                ClientEvent::Failed {
                    step: "signature",
                    ..
                }
            )),
            "{cev:?}"
        );
    }

    #[test]
    fn rejected_hmac_gets_the_plaintext_login_failed() {
        let mut cfg = config();
        cfg.reject_hmac = true;
        let mut ap = ApConnection::new(Arc::new(cfg), 0);
        let mut cl = client("secret");
        let (aev, cev) = pump(&mut ap, &mut cl, UNIX_EPOCH);
        assert!(aev
            .iter()
            .any(|e| matches!(e, ApEvent::Close(r) if r.contains("HMAC"))));
        assert!(
            cev.contains(&ClientEvent::Failed {
                step: "challenge",
                detail: "AP refused the challenge: login_failed ProtocolError".into()
            }),
            "{cev:?}"
        );
    }

    #[test]
    fn try_another_ap_and_refusal_codes() {
        let mut cfg = config();
        cfg.try_another_ap = true;
        let mut ap = ApConnection::new(Arc::new(cfg), 0);
        let (aev, _) = pump(&mut ap, &mut client("secret"), UNIX_EPOCH);
        assert!(aev.contains(&ApEvent::LoginRefused {
            username: "alice".into(),
            code: "TryAnotherAP".into()
        }));
        let mut cfg = config();
        cfg.accounts[0].refuse = Some("PremiumAccountRequired".into());
        let mut ap = ApConnection::new(Arc::new(cfg), 0);
        let (aev, _) = pump(&mut ap, &mut client("secret"), UNIX_EPOCH);
        assert!(aev.contains(&ApEvent::LoginRefused {
            username: "alice".into(),
            code: "PremiumAccountRequired".into()
        }));
    }

    #[test]
    fn bad_first_bytes_close_with_one_reason() {
        let mut ap = ApConnection::new(Arc::new(config()), 0);
        ap.handle_input(UNIX_EPOCH, b"GET / HTTP/1.1\r\n\r\n");
        let events: Vec<_> = std::iter::from_fn(|| ap.poll_event()).collect();
        assert_eq!(
            events,
            vec![ApEvent::Close(
                "handshake: hello does not start with [0, 4] (got [47, 45])".into()
            )]
        );
        assert!(ap.is_closed());
        assert!(ap.poll_transmit().is_none());
    }

    #[test]
    fn unparsable_hello_closes() {
        let mut ap = ApConnection::new(Arc::new(config()), 0);
        ap.handle_input(UNIX_EPOCH, &handshake::frame_hello(&[0xff, 0xff, 0xff]));
        assert!(ap.is_closed());
        assert!(
            matches!(ap.poll_event(), Some(ApEvent::Close(r)) if r.contains("ClientHello does not parse"))
        );
    }

    /// About one handshake in 256 has a shared secret shorter than 96 bytes; it must still work
    /// (an AP that left-pads the secret fails exactly these). The client seed is chosen so the
    /// secret of connection 0 is short, by drawing both sides' keys as the cores do.
    #[test]
    fn handshake_with_a_short_shared_secret_logs_in() {
        use super::super::diffie_hellman::LocalKeys;
        let cfg = Arc::new(config());
        let server = LocalKeys::random(&mut ChaCha20Rng::seed_from_u64(cfg.seed));
        let seed = (0u64..4096)
            .find(|s| {
                let client = LocalKeys::random(&mut ChaCha20Rng::seed_from_u64(*s));
                client.shared_secret(server.public()).len() < 96
            })
            .expect("about 1 seed in 256 gives a short secret");
        let mut ap = ApConnection::new(cfg, 0);
        let mut cl = ApClient::new(ClientConfig {
            username: "alice".into(),
            credentials: Credentials::Password("secret".into()),
            server_key: test_identity().public(),
            seed,
        });
        let (aev, _) = pump(&mut ap, &mut cl, UNIX_EPOCH);
        assert!(
            aev.contains(&ApEvent::LoggedIn {
                username: "alice".into(),
                stored: false
            }),
            "{aev:?}"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(16))]
        #[test]
        fn client_bytes_split_anywhere_still_log_in(cuts in proptest::collection::vec(proptest::prelude::any::<proptest::sample::Index>(), 0..8)) {
            let mut ap = ApConnection::new(Arc::new(config()), 0);
            let mut cl = client("secret");
            let hello = cl.poll_transmit().unwrap_or_default();
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(hello.len() + 1)).collect();
            points.extend([0, hello.len()]);
            points.sort_unstable();
            for w in points.windows(2) {
                ap.handle_input(UNIX_EPOCH, &hello[w[0]..w[1]]);
            }
            let (aev, _) = pump(&mut ap, &mut cl, UNIX_EPOCH);
            let want = ApEvent::LoggedIn { username: "alice".into(), stored: false };
            proptest::prop_assert!(aev.contains(&want), "{:?}", aev);
        }
    }

    proptest::proptest! {
        #[test]
        fn any_input_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), 0..6)) {
            let mut ap = ApConnection::new(Arc::new(config()), 0);
            let mut first = true;
            for c in chunks {
                if first {
                    ap.handle_input(UNIX_EPOCH, &handshake::frame_hello(&c));
                    first = false;
                }
                ap.handle_input(UNIX_EPOCH, &c);
            }
            while ap.poll_event().is_some() {}
        }
    }
}
