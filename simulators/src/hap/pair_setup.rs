//! Pair-setup (HAP specification R2 §5.6; docs/protocols/hap.md): M1–M6 with a PIN
//! (`X-Apple-HKP: 3`), or M1–M4 when transient (`X-Apple-HKP: 4`, or `Flags` 0x10 in M1, PIN
//! 3939), after which both sides derive session keys from the SRP key `K` directly.
//!
//! - M1 {State 1, Method 0 [, Flags]} → M2 {State 2, Salt (16), PublicKey `B` (384, in two items)}
//! - M3 {State 3, PublicKey `A`, Proof `M1`} → M4 {State 4, Proof `M2`}
//! - M5 {State 5, EncryptedData} → M6 {State 6, EncryptedData}, both sealed under
//!   `Pair-Setup-Encrypt` with the nonces `PS-Msg05`/`PS-Msg06`; inside, each side's pairing
//!   identifier, `LTPK`, and the Ed25519 signature of (HKDF `…-Sign` of `K` ‖ identifier ‖ LTPK).
//!
//! Errors are answered as an accessory does: the next State and an `Error` item (HAP Table 5-5).

use std::time::Duration;

use rand::RngCore;

use super::identity::{self, Controller, Credentials, Forgery, Identity};
use super::keys::{self, label, PS_MSG05, PS_MSG06};
use super::srp::{SrpClient, SrpServer, TRANSIENT_PIN};
use super::tlv8::{kind, ErrorCode, Tlv8, FLAG_TRANSIENT};

/// The pair-setup method of M1 (HAP Table 5-3).
const METHOD_PAIR_SETUP: u8 = 0;

/// `X-Apple-HKP`: which pair-setup the controller asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hkp {
    /// 3: with the PIN shown on the device.
    Pin,
    /// 4: transient, PIN 3939, M1–M4 only.
    Transient,
}

impl Hkp {
    pub fn from_header(value: &str) -> Option<Self> {
        match value.trim() {
            "3" => Some(Hkp::Pin),
            "4" => Some(Hkp::Transient),
            _ => None,
        }
    }
}

/// How an accessory limits pairing attempts (HAP §5.6.1: after 100 unsuccessful attempts it
/// refuses every further M1 with MaxTries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub max_tries: u32,
    /// After a wrong PIN, M1s within this long get BackOff with the seconds left as
    /// `RetryDelay`; zero: no back-off.
    pub backoff: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_tries: 100,
            backoff: Duration::ZERO,
        }
    }
}

/// What one message did to the pairing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// M2 or (PIN) M4 sent; the exchange goes on.
    Continue,
    /// Transient M4 sent: the connection's keys come from this `K` from now on.
    Transient { shared: [u8; 64] },
    /// M6 sent: the controller is paired.
    Paired(Controller),
    /// An error TLV was sent.
    Failed { code: ErrorCode, reason: String },
}

/// The answer to one `POST /pair-setup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// TLV8 body.
    pub body: Vec<u8>,
    pub outcome: Outcome,
}

enum Step {
    Idle,
    /// M2 sent to connection `owner`.
    AwaitM3 {
        owner: u64,
        srp: Box<SrpServer>,
        transient: bool,
    },
    /// M4 sent.
    AwaitM5 {
        owner: u64,
        key: [u8; 64],
    },
}

/// One `POST /pair-setup` as the accessory receives it.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The connection it came on (one pair-setup runs on one connection).
    pub conn: u64,
    /// Its `X-Apple-HKP`.
    pub hkp: Hkp,
    /// The TLV8 body.
    pub body: &'a [u8],
    /// Time since the device started (for back-off).
    pub now: Duration,
    /// A fault's flaw in the accessory's M6 proof.
    pub forgery: Option<Forgery>,
}

/// The accessory side, one per device: HAP allows one pair-setup at a time, so an M1 from
/// another connection while one runs gets Busy.
pub struct PairSetup {
    step: Step,
    failures: u32,
    backoff_until: Option<Duration>,
    policy: Policy,
}

impl Default for PairSetup {
    fn default() -> Self {
        Self::new(Policy::default())
    }
}

fn error_reply(state: u8, code: ErrorCode, reason: impl Into<String>) -> Reply {
    Reply {
        body: Tlv8::new()
            .with(kind::STATE, [state])
            .with(kind::ERROR, [code as u8])
            .encode(),
        outcome: Outcome::Failed {
            code,
            reason: reason.into(),
        },
    }
}

impl PairSetup {
    pub fn new(policy: Policy) -> Self {
        PairSetup {
            step: Step::Idle,
            failures: 0,
            backoff_until: None,
            policy,
        }
    }

    /// Unsuccessful attempts so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Whether a pair-setup is under way.
    pub fn busy(&self) -> bool {
        !matches!(self.step, Step::Idle)
    }

    /// Forgets an exchange whose connection `conn` closed.
    pub fn connection_closed(&mut self, conn: u64) {
        let owner = match &self.step {
            Step::Idle => return,
            Step::AwaitM3 { owner, .. } | Step::AwaitM5 { owner, .. } => *owner,
        };
        if owner == conn {
            self.step = Step::Idle;
        }
    }

    /// Handles one pair-setup message. `pin` is the code the device shows (ignored when
    /// transient); `rng` draws the salt and the SRP secret.
    pub fn handle(
        &mut self,
        msg: Message<'_>,
        identity: &Identity,
        pin: &str,
        rng: &mut dyn RngCore,
    ) -> Reply {
        let Message {
            conn,
            hkp,
            body,
            now,
            forgery,
        } = msg;
        let msg = match Tlv8::decode(body) {
            Ok(m) => m,
            Err(e) => {
                return error_reply(self.reply_state(body), ErrorCode::Unknown, e.to_string())
            }
        };
        match msg.state() {
            Some(1) => self.m1(conn, hkp, &msg, now, pin, rng),
            Some(3) => self.m3(conn, &msg, now),
            Some(5) => self.m5(conn, &msg, identity, forgery),
            Some(s) => error_reply(
                s.saturating_add(1),
                ErrorCode::Unknown,
                format!("unexpected state M{s}"),
            ),
            None => error_reply(2, ErrorCode::Unknown, "no State item"),
        }
    }

    /// The state an error answer to unreadable `body` carries: one after the State byte when
    /// it can be found, else M2.
    fn reply_state(&self, body: &[u8]) -> u8 {
        match body {
            [kind::STATE, 1, s, ..] => s.saturating_add(1),
            _ => 2,
        }
    }

    fn m1(
        &mut self,
        conn: u64,
        hkp: Hkp,
        msg: &Tlv8,
        now: Duration,
        pin: &str,
        rng: &mut dyn RngCore,
    ) -> Reply {
        if let Step::AwaitM3 { owner, .. } | Step::AwaitM5 { owner, .. } = &self.step {
            if *owner != conn {
                return error_reply(2, ErrorCode::Busy, "another pair-setup is under way");
            }
        }
        if self.failures >= self.policy.max_tries {
            return error_reply(
                2,
                ErrorCode::MaxTries,
                format!("{} unsuccessful attempts", self.failures),
            );
        }
        if let Some(until) = self.backoff_until {
            if now < until {
                let left = (until - now).as_secs_f64().ceil() as u16;
                let mut reply = error_reply(
                    2,
                    ErrorCode::BackOff,
                    format!("back off {left} s after a wrong PIN"),
                );
                reply.body = Tlv8::new()
                    .with(kind::STATE, [2])
                    .with(kind::ERROR, [ErrorCode::BackOff as u8])
                    .with(kind::RETRY_DELAY, left.to_le_bytes())
                    .encode();
                return reply;
            }
        }
        if msg.byte(kind::METHOD).unwrap_or(METHOD_PAIR_SETUP) != METHOD_PAIR_SETUP {
            return error_reply(2, ErrorCode::Unknown, "M1 method is not pair-setup");
        }
        let transient = hkp == Hkp::Transient
            || msg
                .byte(kind::FLAGS)
                .is_some_and(|f| f & FLAG_TRANSIENT != 0);
        let mut salt = [0u8; 16];
        rng.fill_bytes(&mut salt);
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let code = if transient { TRANSIENT_PIN } else { pin };
        let srp = SrpServer::new(code, &salt, &secret);
        let body = Tlv8::new()
            .with(kind::STATE, [2])
            .with(kind::SALT, salt)
            .with(kind::PUBLIC_KEY, srp.public_key())
            .encode();
        self.step = Step::AwaitM3 {
            owner: conn,
            srp: Box::new(srp),
            transient,
        };
        Reply {
            body,
            outcome: Outcome::Continue,
        }
    }

    fn m3(&mut self, conn: u64, msg: &Tlv8, now: Duration) -> Reply {
        let (srp, transient) = match std::mem::replace(&mut self.step, Step::Idle) {
            Step::AwaitM3 {
                owner,
                srp,
                transient,
            } if owner == conn => (srp, transient),
            other => {
                self.step = other;
                return error_reply(4, ErrorCode::Unknown, "M3 without M1 on this connection");
            }
        };
        let (Some(a), Some(proof)) = (msg.get(kind::PUBLIC_KEY), msg.get(kind::PROOF)) else {
            return error_reply(4, ErrorCode::Unknown, "M3 without PublicKey or Proof");
        };
        match srp.verify(a, proof) {
            Ok(ok) => {
                let body = Tlv8::new()
                    .with(kind::STATE, [4])
                    .with(kind::PROOF, ok.proof)
                    .encode();
                let outcome = if transient {
                    Outcome::Transient { shared: ok.key }
                } else {
                    self.step = Step::AwaitM5 {
                        owner: conn,
                        key: ok.key,
                    };
                    Outcome::Continue
                };
                Reply { body, outcome }
            }
            Err(e) => {
                self.failures += 1;
                if !self.policy.backoff.is_zero() {
                    self.backoff_until = Some(now + self.policy.backoff);
                }
                error_reply(4, ErrorCode::Authentication, e.to_string())
            }
        }
    }

    fn m5(
        &mut self,
        conn: u64,
        msg: &Tlv8,
        identity: &Identity,
        forgery: Option<Forgery>,
    ) -> Reply {
        let key = match std::mem::replace(&mut self.step, Step::Idle) {
            Step::AwaitM5 { owner, key } if owner == conn => key,
            other => {
                self.step = other;
                return error_reply(6, ErrorCode::Unknown, "M5 without M3 on this connection");
            }
        };
        let Some(sealed) = msg.get(kind::ENCRYPTED_DATA) else {
            return error_reply(6, ErrorCode::Unknown, "M5 without EncryptedData");
        };
        let enc = keys::derive(label::SETUP_ENCRYPT, &key);
        let Ok(plain) = keys::open(&enc, keys::nonce(*PS_MSG05), sealed, &[]) else {
            return error_reply(6, ErrorCode::Authentication, "M5 does not decrypt");
        };
        let Ok(inner) = Tlv8::decode(&plain) else {
            return error_reply(6, ErrorCode::Unknown, "M5 sub-TLV is malformed");
        };
        let (Some(id), Some(ltpk), Some(sig)) = (
            inner.get(kind::IDENTIFIER),
            inner.get(kind::PUBLIC_KEY),
            inner.get(kind::SIGNATURE),
        ) else {
            return error_reply(
                6,
                ErrorCode::Unknown,
                "M5 sub-TLV lacks Identifier, PublicKey or Signature",
            );
        };
        let x = keys::derive(label::SETUP_CONTROLLER_SIGN, &key);
        let signed = [&x[..], id, ltpk].concat();
        if !identity::verify(ltpk, &signed, sig) {
            return error_reply(6, ErrorCode::Authentication, "M5 signature does not verify");
        }
        let Ok(public_key) = <[u8; 32]>::try_from(ltpk) else {
            return error_reply(6, ErrorCode::Authentication, "M5 LTPK is not 32 bytes");
        };
        let controller = Controller {
            id: id.to_vec(),
            public_key,
            name: inner.get(kind::NAME).and_then(opack_name),
        };
        let ax = keys::derive(label::SETUP_ACCESSORY_SIGN, &key);
        let acc_ltpk = identity.public_key();
        let (id, signer) = identity.claim(forgery);
        let signature = {
            use ed25519_dalek::Signer;
            signer
                .sign(&[&ax[..], id.as_bytes(), &acc_ltpk].concat())
                .to_bytes()
        };
        let sub = Tlv8::new()
            .with(kind::IDENTIFIER, id.as_bytes())
            .with(kind::PUBLIC_KEY, acc_ltpk)
            .with(kind::SIGNATURE, signature)
            .encode();
        let body = Tlv8::new()
            .with(kind::STATE, [6])
            .with(
                kind::ENCRYPTED_DATA,
                keys::seal(&enc, keys::nonce(*PS_MSG06), &sub, &[]),
            )
            .encode();
        Reply {
            body,
            outcome: Outcome::Paired(controller),
        }
    }
}

/// The name in Apple's M5 `Name` item: an OPACK dictionary `{"name": "…"}` (one entry 0xE1,
/// short strings 0x40+len, longer ones 0x61 with a one-byte length).
fn opack_name(bytes: &[u8]) -> Option<String> {
    fn string(b: &[u8]) -> Option<(&[u8], &[u8])> {
        let (len, rest) = match *b.first()? {
            t @ 0x40..=0x60 => (usize::from(t - 0x40), &b[1..]),
            0x61 => (usize::from(*b.get(1)?), &b[2..]),
            _ => return None,
        };
        (rest.len() >= len).then(|| rest.split_at(len))
    }
    let rest = bytes.strip_prefix(&[0xE1])?;
    let (key, rest) = string(rest)?;
    if key != b"name" {
        return None;
    }
    let (value, _) = string(rest)?;
    String::from_utf8(value.to_vec()).ok()
}

/// Why the controller side stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("device answered M{state} with error {code}")]
    Device { state: u8, code: ErrorCode },
    #[error("malformed answer: {0}")]
    Malformed(String),
    #[error("M4 proof does not match: the device does not know the PIN")]
    BadProof,
    #[error("M6 does not decrypt")]
    Decrypt,
    #[error("M6 signature does not verify under the LTPK it carries")]
    BadSignature,
    #[error("{0}")]
    Srp(#[from] super::srp::SrpError),
    #[error("step out of order: {0}")]
    Order(&'static str),
}

/// The controller side, as pyatv runs it, but checking the M4 proof and the M6 signature.
pub struct SetupClient {
    transient: bool,
    srp: SrpClient,
    signing: ed25519_dalek::SigningKey,
    id: Vec<u8>,
    key: Option<[u8; 64]>,
    expected_m4: Option<[u8; 64]>,
}

impl SetupClient {
    /// `secret` is both the SRP `a` and the Ed25519 seed, as pyatv uses one 32-byte value for both.
    pub fn new(pin: &str, transient: bool, secret: [u8; 32], id: impl Into<Vec<u8>>) -> Self {
        let code = if transient { TRANSIENT_PIN } else { pin };
        SetupClient {
            transient,
            srp: SrpClient::new(code, &secret),
            signing: ed25519_dalek::SigningKey::from_bytes(&secret),
            id: id.into(),
            key: None,
            expected_m4: None,
        }
    }

    pub fn m1(&self) -> Vec<u8> {
        let mut m = Tlv8::new()
            .with(kind::METHOD, [METHOD_PAIR_SETUP])
            .with(kind::STATE, [1]);
        if self.transient {
            m.push(kind::FLAGS, [FLAG_TRANSIENT]);
        }
        m.encode()
    }

    fn read(body: &[u8], state: u8) -> Result<Tlv8, ClientError> {
        let msg = Tlv8::decode(body).map_err(|e| ClientError::Malformed(e.to_string()))?;
        if let Some(code) = msg.error() {
            return Err(ClientError::Device { state, code });
        }
        if msg.state() != Some(state) {
            return Err(ClientError::Malformed(format!(
                "expected State {state}, got {:?}",
                msg.state()
            )));
        }
        Ok(msg)
    }

    /// M2 → M3.
    pub fn m3(&mut self, m2: &[u8]) -> Result<Vec<u8>, ClientError> {
        let msg = Self::read(m2, 2)?;
        let (Some(salt), Some(b)) = (msg.get(kind::SALT), msg.get(kind::PUBLIC_KEY)) else {
            return Err(ClientError::Malformed(
                "M2 without Salt or PublicKey".into(),
            ));
        };
        let p = self.srp.respond(salt, b)?;
        self.key = Some(p.key);
        self.expected_m4 = Some(p.expected_reply);
        Ok(Tlv8::new()
            .with(kind::STATE, [3])
            .with(kind::PUBLIC_KEY, p.public_key)
            .with(kind::PROOF, p.proof)
            .encode())
    }

    /// Checks M4's proof; gives `K`, which a transient pairing derives its keys from.
    pub fn m4(&mut self, m4: &[u8]) -> Result<[u8; 64], ClientError> {
        let msg = Self::read(m4, 4)?;
        let expected = self.expected_m4.ok_or(ClientError::Order("M4 before M3"))?;
        if msg.get(kind::PROOF) != Some(&expected[..]) {
            return Err(ClientError::BadProof);
        }
        self.key.ok_or(ClientError::Order("M4 before M3"))
    }

    /// M5, with the controller's name as Apple sends it when `name` is given.
    pub fn m5(&self, name: Option<&str>) -> Result<Vec<u8>, ClientError> {
        let key = self.key.ok_or(ClientError::Order("M5 before M3"))?;
        let x = keys::derive(label::SETUP_CONTROLLER_SIGN, &key);
        let ltpk = self.signing.verifying_key().to_bytes();
        use ed25519_dalek::Signer;
        let sig = self
            .signing
            .sign(&[&x[..], &self.id, &ltpk].concat())
            .to_bytes();
        let mut sub = Tlv8::new()
            .with(kind::IDENTIFIER, self.id.clone())
            .with(kind::PUBLIC_KEY, ltpk)
            .with(kind::SIGNATURE, sig);
        if let Some(n) = name.filter(|n| n.len() <= 255) {
            let mut o = vec![0xE1, 0x44];
            o.extend_from_slice(b"name");
            if n.len() <= 0x20 {
                o.push(0x40 + n.len() as u8);
            } else {
                o.extend_from_slice(&[0x61, n.len() as u8]);
            }
            o.extend_from_slice(n.as_bytes());
            sub.push(kind::NAME, o);
        }
        let enc = keys::derive(label::SETUP_ENCRYPT, &key);
        Ok(Tlv8::new()
            .with(kind::STATE, [5])
            .with(
                kind::ENCRYPTED_DATA,
                keys::seal(&enc, keys::nonce(*PS_MSG05), &sub.encode(), &[]),
            )
            .encode())
    }

    /// Checks M6 (decryption and the accessory's signature) and gives the credentials to keep.
    pub fn m6(&self, m6: &[u8]) -> Result<Credentials, ClientError> {
        let key = self.key.ok_or(ClientError::Order("M6 before M3"))?;
        let msg = Self::read(m6, 6)?;
        let sealed = msg
            .get(kind::ENCRYPTED_DATA)
            .ok_or_else(|| ClientError::Malformed("M6 without EncryptedData".into()))?;
        let enc = keys::derive(label::SETUP_ENCRYPT, &key);
        let plain = keys::open(&enc, keys::nonce(*PS_MSG06), sealed, &[])
            .map_err(|_| ClientError::Decrypt)?;
        let inner = Tlv8::decode(&plain).map_err(|e| ClientError::Malformed(e.to_string()))?;
        let (Some(id), Some(ltpk), Some(sig)) = (
            inner.get(kind::IDENTIFIER),
            inner.get(kind::PUBLIC_KEY),
            inner.get(kind::SIGNATURE),
        ) else {
            return Err(ClientError::Malformed(
                "M6 sub-TLV lacks Identifier, PublicKey or Signature".into(),
            ));
        };
        let ax = keys::derive(label::SETUP_ACCESSORY_SIGN, &key);
        if !identity::verify(ltpk, &[&ax[..], id, ltpk].concat(), sig) {
            return Err(ClientError::BadSignature);
        }
        Ok(Credentials {
            accessory_key: ltpk.try_into().map_err(|_| ClientError::BadSignature)?,
            secret: self.signing.to_bytes(),
            accessory_id: id.to_vec(),
            controller_id: self.id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const SEC: Duration = Duration::from_secs(1);

    struct Bench {
        device: PairSetup,
        identity: Identity,
        rng: ChaCha8Rng,
    }

    impl Bench {
        fn new(policy: Policy) -> Self {
            Bench {
                device: PairSetup::new(policy),
                identity: Identity::from_seed(3, "tv"),
                rng: ChaCha8Rng::seed_from_u64(5),
            }
        }

        fn send(&mut self, conn: u64, hkp: Hkp, body: &[u8], now: Duration) -> Reply {
            let msg = Message {
                conn,
                hkp,
                body,
                now,
                forgery: None,
            };
            self.device
                .handle(msg, &self.identity, "1234", &mut self.rng)
        }
    }

    fn client(pin: &str, transient: bool) -> SetupClient {
        SetupClient::new(
            pin,
            transient,
            [0x42; 32],
            b"5C1D3E2F-0000-4000-8000-000000000001".to_vec(),
        )
    }

    #[test]
    fn pin_pairing_m1_to_m6_pairs_the_controller_and_both_sides_check_each_other() {
        let mut b = Bench::new(Policy::default());
        let mut c = client("1234", false);
        let m2 = b.send(1, Hkp::Pin, &c.m1(), SEC);
        assert_eq!(m2.outcome, Outcome::Continue);
        let m2t = Tlv8::decode(&m2.body).unwrap();
        assert_eq!(m2t.get(kind::SALT).unwrap().len(), 16);
        assert!(m2t.get(kind::PUBLIC_KEY).unwrap().len() >= 383);
        let m4 = b.send(1, Hkp::Pin, &c.m3(&m2.body).unwrap(), SEC);
        assert_eq!(m4.outcome, Outcome::Continue);
        c.m4(&m4.body).unwrap();
        let m6 = b.send(1, Hkp::Pin, &c.m5(Some("Kitchen iPad")).unwrap(), SEC);
        let Outcome::Paired(ctl) = &m6.outcome else {
            panic!("not paired: {:?}", m6.outcome)
        };
        assert_eq!(ctl.name.as_deref(), Some("Kitchen iPad"));
        assert_eq!(ctl.id, b"5C1D3E2F-0000-4000-8000-000000000001");
        let creds = c.m6(&m6.body).unwrap();
        assert_eq!(creds.accessory_key, b.identity.public_key());
        assert_eq!(creds.accessory_id, b.identity.id.as_bytes());
        assert_eq!(
            ctl.public_key,
            creds.signing_key().verifying_key().to_bytes()
        );
        assert!(!b.device.busy());
    }

    #[test]
    fn a_wrong_pin_gets_authentication_at_m4_and_counts_as_a_failure() {
        let mut b = Bench::new(Policy::default());
        let mut c = client("9999", false);
        let m2 = b.send(1, Hkp::Pin, &c.m1(), SEC);
        let m4 = b.send(1, Hkp::Pin, &c.m3(&m2.body).unwrap(), SEC);
        assert_eq!(m4.body, [kind::STATE, 1, 4, kind::ERROR, 1, 2]);
        assert!(matches!(
            m4.outcome,
            Outcome::Failed {
                code: ErrorCode::Authentication,
                ..
            }
        ));
        assert_eq!(
            c.m4(&m4.body),
            Err(ClientError::Device {
                state: 4,
                code: ErrorCode::Authentication
            })
        );
        assert_eq!(b.device.failures(), 1);
        assert!(!b.device.busy());
    }

    #[test]
    fn transient_stops_at_m4_with_the_same_key_on_both_sides() {
        let mut b = Bench::new(Policy::default());
        // The PIN given to the client is ignored: transient always uses 3939.
        let mut c = client("0000", true);
        let m1 = Tlv8::decode(&c.m1()).unwrap();
        assert_eq!(m1.byte(kind::FLAGS), Some(FLAG_TRANSIENT));
        let m2 = b.send(1, Hkp::Transient, &c.m1(), SEC);
        let m4 = b.send(1, Hkp::Transient, &c.m3(&m2.body).unwrap(), SEC);
        let key = c.m4(&m4.body).unwrap();
        assert_eq!(m4.outcome, Outcome::Transient { shared: key });
        assert!(!b.device.busy());
    }

    #[test]
    fn a_client_detects_a_forged_m4_proof_and_m6_signature() {
        let mut b = Bench::new(Policy::default());
        let mut c = client("1234", false);
        let m2 = b.send(1, Hkp::Pin, &c.m1(), SEC);
        let m4 = b.send(1, Hkp::Pin, &c.m3(&m2.body).unwrap(), SEC);
        let mut forged = Tlv8::decode(&m4.body).unwrap().items().to_vec();
        forged[1].1[0] ^= 1;
        let forged = Tlv8::decode(
            &forged
                .iter()
                .fold(Tlv8::new(), |t, (k, v)| t.with(*k, v.clone()))
                .encode(),
        )
        .unwrap();
        assert_eq!(c.m4(&forged.encode()), Err(ClientError::BadProof));
        c.m4(&m4.body).unwrap();
        let m6 = b.send(1, Hkp::Pin, &c.m5(None).unwrap(), SEC);
        let mut bytes = m6.body.clone();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(c.m6(&bytes), Err(ClientError::Decrypt));
        assert!(c.m6(&m6.body).is_ok());
        // A well-sealed M6 whose signature is not over this session's accessory X.
        let key = c.key.unwrap();
        let enc = keys::derive(label::SETUP_ENCRYPT, &key);
        let ltpk = b.identity.public_key();
        let sub = Tlv8::new()
            .with(kind::IDENTIFIER, b.identity.id.as_bytes())
            .with(kind::PUBLIC_KEY, ltpk)
            .with(
                kind::SIGNATURE,
                b.identity.sign(&[b.identity.id.as_bytes(), &ltpk].concat()),
            )
            .encode();
        let m6 = Tlv8::new()
            .with(kind::STATE, [6])
            .with(
                kind::ENCRYPTED_DATA,
                keys::seal(&enc, keys::nonce(*PS_MSG06), &sub, &[]),
            )
            .encode();
        assert_eq!(c.m6(&m6), Err(ClientError::BadSignature));
    }

    #[test]
    fn an_m5_signed_by_another_key_gets_authentication() {
        let mut b = Bench::new(Policy::default());
        let mut c = client("1234", false);
        let m2 = b.send(1, Hkp::Pin, &c.m1(), SEC);
        let m4 = b.send(1, Hkp::Pin, &c.m3(&m2.body).unwrap(), SEC);
        c.m4(&m4.body).unwrap();
        // Another controller's M5 under the right session key: its signature covers another
        // LTPK than the one sent.
        let mut other = client("1234", false);
        other.key = c.key;
        other.signing = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let good = other.m5(None).unwrap();
        let enc = keys::derive(label::SETUP_ENCRYPT, &c.key.unwrap());
        let sealed = Tlv8::decode(&good)
            .unwrap()
            .get(kind::ENCRYPTED_DATA)
            .unwrap()
            .to_vec();
        let sub =
            Tlv8::decode(&keys::open(&enc, keys::nonce(*PS_MSG05), &sealed, &[]).unwrap()).unwrap();
        let tampered = Tlv8::new()
            .with(kind::IDENTIFIER, sub.get(kind::IDENTIFIER).unwrap())
            .with(kind::PUBLIC_KEY, [9u8; 32])
            .with(kind::SIGNATURE, sub.get(kind::SIGNATURE).unwrap());
        let m5 = Tlv8::new()
            .with(kind::STATE, [5])
            .with(
                kind::ENCRYPTED_DATA,
                keys::seal(&enc, keys::nonce(*PS_MSG05), &tampered.encode(), &[]),
            )
            .encode();
        let m6 = b.send(1, Hkp::Pin, &m5, SEC);
        assert_eq!(m6.body, [kind::STATE, 1, 6, kind::ERROR, 1, 2]);
    }

    #[test]
    fn a_second_pair_setup_while_one_runs_is_busy_until_its_connection_closes() {
        let mut b = Bench::new(Policy::default());
        let c = client("1234", false);
        b.send(1, Hkp::Pin, &c.m1(), SEC);
        let busy = b.send(2, Hkp::Pin, &c.m1(), SEC);
        assert_eq!(busy.body, [kind::STATE, 1, 2, kind::ERROR, 1, 7]);
        b.device.connection_closed(2);
        assert!(b.device.busy());
        b.device.connection_closed(1);
        assert_eq!(b.send(2, Hkp::Pin, &c.m1(), SEC).outcome, Outcome::Continue);
    }

    #[test]
    fn max_tries_and_back_off_answer_m1_with_their_errors() {
        let mut b = Bench::new(Policy {
            max_tries: 2,
            backoff: Duration::from_secs(5),
        });
        let mut wrong = client("1111", false);
        let m2 = b.send(1, Hkp::Pin, &wrong.m1(), SEC);
        b.send(1, Hkp::Pin, &wrong.m3(&m2.body).unwrap(), SEC);
        let off = b.send(1, Hkp::Pin, &wrong.m1(), 3 * SEC);
        let t = Tlv8::decode(&off.body).unwrap();
        assert_eq!(t.error(), Some(ErrorCode::BackOff));
        assert_eq!(t.get(kind::RETRY_DELAY), Some(&3u16.to_le_bytes()[..]));
        let m2 = b.send(1, Hkp::Pin, &wrong.m1(), 6 * SEC);
        assert_eq!(m2.outcome, Outcome::Continue);
        b.send(1, Hkp::Pin, &wrong.m3(&m2.body).unwrap(), 6 * SEC);
        let max = b.send(1, Hkp::Pin, &wrong.m1(), 60 * SEC);
        assert_eq!(max.body, [kind::STATE, 1, 2, kind::ERROR, 1, 5]);
    }

    #[test]
    fn out_of_order_and_malformed_messages_get_unknown() {
        let mut b = Bench::new(Policy::default());
        let mut c = client("1234", false);
        let m3 = Tlv8::new()
            .with(kind::STATE, [3])
            .with(kind::PROOF, [0; 64])
            .encode();
        assert_eq!(
            b.send(1, Hkp::Pin, &m3, SEC).body,
            [kind::STATE, 1, 4, kind::ERROR, 1, 1]
        );
        assert_eq!(
            b.send(1, Hkp::Pin, &[kind::STATE, 1, 5], SEC).body,
            [kind::STATE, 1, 6, kind::ERROR, 1, 1]
        );
        assert_eq!(
            b.send(1, Hkp::Pin, &[kind::STATE, 9], SEC).body,
            [kind::STATE, 1, 2, kind::ERROR, 1, 1]
        );
        assert_eq!(
            b.send(1, Hkp::Pin, &[kind::STATE, 1, 3, 4, 80], SEC).body,
            [kind::STATE, 1, 4, kind::ERROR, 1, 1]
        );
        assert_eq!(
            b.send(1, Hkp::Pin, &[], SEC).body,
            [kind::STATE, 1, 2, kind::ERROR, 1, 1]
        );
        // An M3 from another connection does not disturb the pairing under way.
        let m2 = b.send(1, Hkp::Pin, &c.m1(), SEC);
        let m3 = c.m3(&m2.body).unwrap();
        assert!(matches!(
            b.send(2, Hkp::Pin, &m3, SEC).outcome,
            Outcome::Failed {
                code: ErrorCode::Unknown,
                ..
            }
        ));
        c.m4(&b.send(1, Hkp::Pin, &m3, SEC).body).unwrap();
        assert_eq!(b.device.failures(), 0);
    }

    #[test]
    fn opack_names_short_and_long() {
        assert_eq!(opack_name(b"\xE1\x44name\x42ab").as_deref(), Some("ab"));
        let long = "x".repeat(40);
        let mut o = b"\xE1\x44name\x61\x28".to_vec();
        o.extend_from_slice(long.as_bytes());
        assert_eq!(opack_name(&o).as_deref(), Some(long.as_str()));
        assert_eq!(opack_name(b"\xE1\x44nam"), None);
        assert_eq!(opack_name(b"\xE1\x44name\x45ab"), None);
    }
}
