//! The client side, sans-IO, for `airtwin client spotify`: hello, the AP's signature checked with
//! the key the client was given, keys derived, Login, and every Ping answered at once with a Pong
//! echoing it (as librespot-python and librespot-java do), and Mercury GET requests sent once
//! logged in, each answer matched to its request by sequence. Each step is reported; a failure
//! names its step (`docs/protocols/spotify-ap.md`).

use std::collections::VecDeque;

use librespot_protocol::authentication::{
    APWelcome, AuthenticationType, ClientResponseEncrypted, CpuFamily, LoginCredentials, Os,
    SystemInfo,
};
use librespot_protocol::keyexchange::{
    APLoginFailed, APResponseMessage, BuildInfo, ClientHello, ClientResponsePlaintext,
    CryptoResponseUnion, Cryptosuite, LoginCryptoDiffieHellmanHello,
    LoginCryptoDiffieHellmanResponse, LoginCryptoHelloUnion, LoginCryptoResponseUnion, Platform,
    PoWResponseUnion, Product,
};
use protobuf::Message;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rsa::RsaPublicKey;

use super::codec::{Decoder, Encoder, Frame};
use super::diffie_hellman::LocalKeys;
use super::handshake::{self, encode_lenient};
use super::{command, identity, mercury};

/// How the client proves who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    Password(String),
    /// Reusable credentials from an earlier APWelcome.
    Stored(Vec<u8>),
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub username: String,
    pub credentials: Credentials,
    /// The key the AP's `gs_signature` must verify with.
    pub server_key: RsaPublicKey,
    pub seed: u64,
}

/// A step done or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A step that went well, for the report (`hello`, `signature`, `keys`, `login`…).
    Step {
        step: &'static str,
        detail: String,
    },
    LoggedIn {
        username: String,
        reusable: Vec<u8>,
    },
    /// A Ping with this server time, answered.
    Pinged(u32),
    /// The answer to a Mercury request: its URI, the header's `status_code`, the body parts.
    Mercury {
        uri: String,
        status: i32,
        body: Vec<Vec<u8>>,
    },
    /// A frame the client does not act on.
    Received {
        name: String,
        len: usize,
    },
    /// The step that failed and what differed; the connection is over.
    Failed {
        step: &'static str,
        detail: String,
    },
}

enum State {
    Start,
    AwaitChallenge {
        hello: Vec<u8>,
        local: LocalKeys,
    },
    Session {
        decoder: Box<Decoder>,
        encoder: Encoder,
        logged_in: bool,
    },
    Done,
}

pub struct ApClient {
    config: ClientConfig,
    rng: ChaCha20Rng,
    state: State,
    buf: Vec<u8>,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<ClientEvent>,
    /// Every byte received between the challenge and the login answer: a real AP refuses a wrong
    /// challenge HMAC with a plaintext packet there instead of a Shannon frame.
    before_login: Vec<u8>,
    /// Mercury URIs to GET once logged in.
    mercury_queued: VecDeque<String>,
    /// Mercury requests sent and not answered: sequence, URI.
    mercury_waiting: Vec<(Vec<u8>, String)>,
    mercury_seq: u64,
}

impl ApClient {
    /// A client with its ClientHello already queued.
    pub fn new(config: ClientConfig) -> Self {
        let rng = ChaCha20Rng::seed_from_u64(config.seed);
        let mut c = ApClient {
            config,
            rng,
            state: State::Start,
            buf: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            before_login: Vec::new(),
            mercury_queued: VecDeque::new(),
            mercury_waiting: Vec::new(),
            mercury_seq: 0,
        };
        c.send_hello();
        c
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Sends a Mercury GET of `uri` (0xb2) now, or right after APWelcome when not logged in
    /// yet; its answer is a [`ClientEvent::Mercury`].
    pub fn mercury_get(&mut self, uri: impl Into<String>) {
        self.mercury_queued.push_back(uri.into());
        self.send_mercury();
    }

    /// Mercury requests queued or sent and not answered yet.
    pub fn mercury_pending(&self) -> usize {
        self.mercury_queued.len() + self.mercury_waiting.len()
    }

    /// The sequence is a u64 BE counter, as librespot numbers its requests (`mercury/mod.rs`).
    fn send_mercury(&mut self) {
        let State::Session {
            encoder,
            logged_in: true,
            ..
        } = &mut self.state
        else {
            return;
        };
        let mut failed = None;
        while let Some(uri) = self.mercury_queued.pop_front() {
            let seq = self.mercury_seq.to_be_bytes().to_vec();
            self.mercury_seq += 1;
            let mut header = librespot_protocol::mercury::Header::new();
            header.uri = Some(uri.clone());
            header.method = Some("GET".into());
            let payload = mercury::encode(&seq, &header, &[]);
            match encoder.encode(&Frame::new(command::MERCURY_REQ, payload)) {
                Ok(bytes) => {
                    self.transmits.push_back(bytes);
                    self.mercury_waiting.push((seq, uri));
                }
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        if let Some(e) = failed {
            self.fail("mercury", e);
        }
    }

    fn on_mercury(&mut self, payload: &[u8]) {
        let reply = match mercury::parse(payload) {
            Ok(r) => r,
            Err(e) => return self.fail("mercury", e.to_string()),
        };
        let Some(at) = self
            .mercury_waiting
            .iter()
            .position(|(seq, _)| *seq == reply.seq)
        else {
            return self.fail(
                "mercury",
                format!("answer with sequence {:02x?} no request has", reply.seq),
            );
        };
        let (_, uri) = self.mercury_waiting.remove(at);
        if reply.header.uri() != uri {
            return self.fail(
                "mercury",
                format!("answer for {uri} names {}", reply.header.uri()),
            );
        }
        self.events.push_back(ClientEvent::Mercury {
            uri,
            status: reply.header.status_code(),
            body: reply.body,
        });
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn fail(&mut self, step: &'static str, detail: impl Into<String>) {
        self.state = State::Done;
        self.events.push_back(ClientEvent::Failed {
            step,
            detail: detail.into(),
        });
    }

    fn send_hello(&mut self) {
        let local = LocalKeys::random(&mut self.rng);
        let mut build = BuildInfo::new();
        build.product = Some(Product::PRODUCT_CLIENT.into());
        build.platform = Some(Platform::PLATFORM_LINUX_X86_64.into());
        build.version = Some(124_200_290);
        let mut dh = LoginCryptoDiffieHellmanHello::new();
        dh.gc = Some(local.public().to_vec());
        dh.server_keys_known = Some(1);
        let mut lch = LoginCryptoHelloUnion::new();
        lch.diffie_hellman = Some(dh).into();
        let mut hello = ClientHello::new();
        hello.build_info = Some(build).into();
        hello.cryptosuites_supported = vec![Cryptosuite::CRYPTO_SUITE_SHANNON.into()];
        hello.login_crypto_hello = Some(lch).into();
        let mut nonce = vec![0u8; 16];
        self.rng.fill_bytes(&mut nonce);
        hello.client_nonce = Some(nonce);
        hello.padding = Some(vec![0x1e]);
        let packet = handshake::frame_hello(&encode_lenient(&hello));
        self.transmits.push_back(packet.clone());
        self.events.push_back(ClientEvent::Step {
            step: "hello",
            detail: format!("ClientHello, {} bytes", packet.len()),
        });
        self.state = State::AwaitChallenge {
            hello: packet,
            local,
        };
    }

    pub fn handle_input(&mut self, bytes: &[u8]) {
        match &mut self.state {
            State::Session {
                decoder, logged_in, ..
            } => {
                decoder.push(bytes);
                if !*logged_in {
                    self.before_login.extend_from_slice(bytes);
                    if let Some(code) = plaintext_refusal(&self.before_login) {
                        return self.fail(
                            "challenge",
                            format!("AP refused the challenge: login_failed {code}"),
                        );
                    }
                }
            }
            State::Done => return,
            _ => self.buf.extend_from_slice(bytes),
        }
        loop {
            match std::mem::replace(&mut self.state, State::Done) {
                State::AwaitChallenge { hello, local } => {
                    let (packet, payload) = match handshake::split_packet(&self.buf, false) {
                        Ok(Some(p)) => p,
                        Ok(None) => {
                            self.state = State::AwaitChallenge { hello, local };
                            return;
                        }
                        Err(e) => return self.fail("challenge", e.to_string()),
                    };
                    self.buf.drain(..packet.len());
                    self.on_challenge(&hello, &local, &packet, &payload);
                }
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
                        self.on_frame(frame);
                    }
                    Ok(None) => {
                        self.state = State::Session {
                            decoder,
                            encoder,
                            logged_in,
                        };
                        return;
                    }
                    Err(e) => {
                        return self
                            .fail(if logged_in { "session" } else { "login" }, e.to_string());
                    }
                },
                State::Start | State::Done => return,
            }
        }
    }

    fn on_challenge(&mut self, hello: &[u8], local: &LocalKeys, packet: &[u8], payload: &[u8]) {
        let msg: APResponseMessage = match handshake::parse_strict("APResponseMessage", payload) {
            Ok(m) => m,
            Err(e) => return self.fail("challenge", e.to_string()),
        };
        if msg.login_failed.is_some() {
            return self.fail(
                "challenge",
                format!("login_failed {:?}", msg.login_failed.error_code()),
            );
        }
        let Some(dh) = msg.challenge.login_crypto_challenge.diffie_hellman.as_ref() else {
            return self.fail("challenge", "no diffie_hellman challenge");
        };
        let (gs, sig) = (dh.gs(), dh.gs_signature());
        if !identity::verify_gs(&self.config.server_key, gs, sig) {
            return self.fail(
                "signature",
                "gs_signature does not verify with the expected AP key",
            );
        }
        self.events.push_back(ClientEvent::Step {
            step: "signature",
            detail: "gs_signature verifies".into(),
        });
        let keys = handshake::derive_keys(&local.shared_secret(gs), hello, packet);
        self.before_login = self.buf.clone();
        let mut resp = ClientResponsePlaintext::new();
        let mut dhr = LoginCryptoDiffieHellmanResponse::new();
        dhr.hmac = Some(keys.challenge.to_vec());
        let mut lcr = LoginCryptoResponseUnion::new();
        lcr.diffie_hellman = Some(dhr).into();
        resp.login_crypto_response = Some(lcr).into();
        resp.pow_response = Some(PoWResponseUnion::new()).into();
        resp.crypto_response = Some(CryptoResponseUnion::new()).into();
        self.transmits
            .push_back(handshake::frame_plaintext(&encode_lenient(&resp)));
        self.events.push_back(ClientEvent::Step {
            step: "keys",
            detail: "keys derived, challenge sent".into(),
        });
        let mut encoder = Encoder::new(keys.send);
        let mut decoder = Box::new(Decoder::new(keys.recv));
        decoder.push(&std::mem::take(&mut self.buf));
        let login = self.login_frame();
        match encoder.encode(&login) {
            Ok(bytes) => self.transmits.push_back(bytes),
            Err(e) => return self.fail("login", e.to_string()),
        }
        self.state = State::Session {
            decoder,
            encoder,
            logged_in: false,
        };
    }

    fn login_frame(&self) -> Frame {
        let mut creds = LoginCredentials::new();
        creds.username = Some(self.config.username.clone());
        let (typ, data) = match &self.config.credentials {
            Credentials::Password(p) => (
                AuthenticationType::AUTHENTICATION_USER_PASS,
                p.as_bytes().to_vec(),
            ),
            Credentials::Stored(s) => (
                AuthenticationType::AUTHENTICATION_STORED_SPOTIFY_CREDENTIALS,
                s.clone(),
            ),
        };
        creds.typ = Some(typ.into());
        creds.auth_data = Some(data);
        let mut sys = SystemInfo::new();
        sys.cpu_family = Some(CpuFamily::CPU_X86_64.into());
        sys.os = Some(Os::OS_LINUX.into());
        sys.system_information_string = Some("airtwin".into());
        sys.device_id = Some(format!("airtwin-{:016x}", self.config.seed));
        let mut login = ClientResponseEncrypted::new();
        login.login_credentials = Some(creds).into();
        login.system_info = Some(sys).into();
        login.version_string = Some(concat!("airtwin ", env!("CARGO_PKG_VERSION")).into());
        Frame::new(command::LOGIN, encode_lenient(&login))
    }

    fn on_frame(&mut self, frame: Frame) {
        let State::Session {
            encoder, logged_in, ..
        } = &mut self.state
        else {
            return;
        };
        match frame.cmd {
            command::AP_WELCOME => match APWelcome::parse_from_bytes(&frame.payload) {
                Ok(w) => {
                    *logged_in = true;
                    self.before_login.clear();
                    self.events.push_back(ClientEvent::LoggedIn {
                        username: w.canonical_username().to_string(),
                        reusable: w.reusable_auth_credentials().to_vec(),
                    });
                    self.send_mercury();
                }
                Err(e) => self.fail("login", format!("APWelcome does not parse: {e}")),
            },
            command::AUTH_FAILURE => {
                let code = APLoginFailed::parse_from_bytes(&frame.payload)
                    .map(|f| format!("{:?}", f.error_code()))
                    .unwrap_or_else(|e| format!("(unparsable: {e})"));
                self.fail("login", format!("AuthFailure {code}"));
            }
            _ if !*logged_in => self.fail("login", format!("{} before APWelcome", frame.name())),
            command::PING => {
                let p = &frame.payload;
                if p.len() != 4 {
                    return self.fail(
                        "session",
                        format!("Ping payload of {} bytes, not 4", p.len()),
                    );
                }
                match encoder.encode(&Frame::new(command::PONG, p.clone())) {
                    Ok(bytes) => self.transmits.push_back(bytes),
                    Err(e) => return self.fail("session", e.to_string()),
                }
                self.events
                    .push_back(ClientEvent::Pinged(u32::from_be_bytes([
                        p[0], p[1], p[2], p[3],
                    ])));
            }
            command::MERCURY_REQ => self.on_mercury(&frame.payload),
            _ => self.events.push_back(ClientEvent::Received {
                name: frame.name(),
                len: frame.payload.len(),
            }),
        }
    }
}

/// The error code of a plaintext `APResponseMessage { login_failed }` at the start of `bytes`.
fn plaintext_refusal(bytes: &[u8]) -> Option<String> {
    let (_, payload) = handshake::split_packet(bytes, false).ok().flatten()?;
    let msg = APResponseMessage::parse_from_bytes(&payload).ok()?;
    msg.login_failed
        .as_ref()
        .map(|f| format!("{:?}", f.error_code()))
}
