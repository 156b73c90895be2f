//! HomeKit pairing on a modern Apple TV's AirPlay port (docs/protocols/hap.md): `POST
//! /pair-pin-start` shows the PIN, `POST /pair-setup` and `POST /pair-verify` carry the TLV8
//! messages to the sans-IO cores of [`crate::hap`], and a completed pairing switches the
//! connection to the encrypted channel ([`Context::encrypt_after`]).

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::fault::{HapError, HapForge};
use crate::hap::identity::Forgery;
use crate::hap::pair_setup::{self, Hkp, Message, PairSetup, Policy};
use crate::hap::pair_verify::{self, PairVerify};
use crate::hap::tlv8::kind;
use crate::hap::Tlv8;
use crate::hap::{Controller, ErrorCode, Identity, KnownController};
use crate::protocol_core::Context;
use crate::wire::{Request, Response};

/// How the device pairs: its PIN and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairingConfig {
    /// The 4 digits shown on screen at `/pair-pin-start`.
    pub pin: String,
    pub policy: Policy,
    /// Controllers paired before the device started.
    pub known: Vec<KnownController>,
}

impl PairingConfig {
    /// A PIN drawn from `seed` and the device's name: the same on every run.
    pub fn from_seed(seed: u64, name: &str) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ h ^ 0x5049_4E00);
        PairingConfig {
            pin: format!("{:04}", rng.gen_range(0..10_000u32)),
            policy: Policy::default(),
            known: Vec::new(),
        }
    }
}

/// Device-wide pairing state.
pub struct Pairing {
    config: PairingConfig,
    identity: Identity,
    inner: Mutex<Inner>,
}

struct Inner {
    setup: PairSetup,
    controllers: Vec<Controller>,
    rng: ChaCha8Rng,
    pin_starts: u64,
    verified: u64,
    transient: u64,
    failed: u64,
}

/// Per-connection pairing state.
#[derive(Default)]
pub struct PairingConn {
    verify: PairVerify,
}

fn since_epoch(now: SystemTime) -> Duration {
    now.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
}

impl Pairing {
    /// `seed` draws salts, SRP secrets and ephemeral keys.
    pub fn new(config: PairingConfig, identity: Identity, seed: u64) -> Self {
        let policy = config.policy;
        let controllers = config.known.iter().map(|k| k.controller.clone()).collect();
        Pairing {
            config,
            identity,
            inner: Mutex::new(Inner {
                setup: PairSetup::new(policy),
                controllers,
                rng: ChaCha8Rng::seed_from_u64(seed ^ 0x4841_5053),
                pin_starts: 0,
                verified: 0,
                transient: 0,
                failed: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn pin(&self) -> &str {
        &self.config.pin
    }

    /// The controllers paired before the device started.
    pub fn known(&self) -> &[KnownController] {
        &self.config.known
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The controllers paired so far.
    pub fn controllers(&self) -> Vec<Controller> {
        self.lock().controllers.clone()
    }

    /// State for expectations and the control API: `pin`, `paired` (controller identifiers),
    /// `controllers` (with names), `pin_starts`, `verified`, `transient`, `failed`.
    pub fn state_json(&self) -> serde_json::Value {
        let st = self.lock();
        json!({
            "pin": self.config.pin,
            "identifier": self.identity.id,
            "paired": st.controllers.iter().map(Controller::id_text).collect::<Vec<_>>(),
            "controllers": st.controllers.iter().map(|c| json!({
                "id": c.id_text(),
                "name": c.name,
            })).collect::<Vec<_>>(),
            "pin_starts": st.pin_starts,
            "verified": st.verified,
            "transient": st.transient,
            "failed": st.failed,
        })
    }

    /// A connection closed: a pair-setup it was running is abandoned.
    pub fn connection_closed(&self, conn: u64) {
        self.lock().setup.connection_closed(conn);
    }

    /// `POST /pair-pin-start`: the device shows its PIN.
    pub fn pin_start(&self, cx: &mut Context<'_>) {
        self.lock().pin_starts += 1;
        cx.info(format!("enter PIN {} on the client", self.config.pin));
    }

    /// `POST /pair-setup`: the TLV8 answer body, or `None` when `X-Apple-HKP` is missing or
    /// unknown (the caller answers 501 as pyatv's reference server does).
    pub fn setup(&self, req: &Request, cx: &mut Context<'_>) -> Option<Vec<u8>> {
        let hkp = Hkp::from_header(req.headers.get("X-Apple-HKP")?)?;
        if let Some(body) = forced_error(req, cx) {
            return Some(body);
        }
        let mut st = self.lock();
        let Inner { setup, rng, .. } = &mut *st;
        let msg = Message {
            conn: cx.conn.index,
            hkp,
            body: &req.body,
            now: since_epoch(cx.now),
            forgery: forgery(cx),
        };
        let reply = setup.handle(msg, &self.identity, &self.config.pin, rng);
        match reply.outcome {
            pair_setup::Outcome::Continue => {}
            pair_setup::Outcome::Transient { shared } => {
                st.transient += 1;
                cx.info("transient pair-setup done; connection encrypted from here");
                cx.encrypt_after = Some(shared.to_vec());
            }
            pair_setup::Outcome::Paired(c) => {
                cx.info(format!(
                    "paired controller {}{}",
                    c.id_text(),
                    c.name
                        .as_deref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default()
                ));
                st.controllers.retain(|k| k.id != c.id);
                st.controllers.push(c);
            }
            pair_setup::Outcome::Failed { code, reason } => {
                st.failed += 1;
                note_failure(cx, "pair-setup", code, &reason);
            }
        }
        Some(reply.body)
    }

    /// `POST /pair-verify`.
    pub fn verify(&self, conn: &mut PairingConn, req: &Request, cx: &mut Context<'_>) -> Vec<u8> {
        if let Some(body) = forced_error(req, cx) {
            return body;
        }
        let forgery = forgery(cx);
        // The key exchange and signatures run outside the device-wide lock, on a generator
        // seeded from the device's, so that connections verify in parallel.
        let (mut rng, controllers) = {
            let mut st = self.lock();
            (
                ChaCha8Rng::seed_from_u64(st.rng.gen()),
                st.controllers.clone(),
            )
        };
        let reply =
            conn.verify
                .handle_forged(&req.body, &self.identity, &controllers, &mut rng, forgery);
        let mut st = self.lock();
        match reply.outcome {
            pair_verify::Outcome::Continue => {}
            pair_verify::Outcome::Verified { controller, shared } => {
                st.verified += 1;
                cx.info(format!(
                    "pair-verify: controller {} verified; connection encrypted from here",
                    String::from_utf8_lossy(&controller)
                ));
                cx.encrypt_after = Some(shared.to_vec());
            }
            pair_verify::Outcome::Failed { code, reason } => {
                st.failed += 1;
                note_failure(cx, "pair-verify", code, &reason);
            }
        }
        reply.body
    }
}

/// The forgery a `hap_forge` fault asks for.
fn forgery(cx: &Context<'_>) -> Option<Forgery> {
    cx.params.hap_forge.map(|f| match f {
        HapForge::Signature => Forgery::Signature,
        HapForge::Identifier => Forgery::Identifier,
    })
}

/// The error TLV a `hap_error` fault answers with: the State after the request's, the error, and
/// for BackOff a RetryDelay of 60 s (HAP Table 5-5).
fn forced_error(req: &Request, cx: &mut Context<'_>) -> Option<Vec<u8>> {
    let e = cx.params.hap_error?;
    let code = match e {
        HapError::Unknown => ErrorCode::Unknown,
        HapError::Authentication => ErrorCode::Authentication,
        HapError::BackOff => ErrorCode::BackOff,
        HapError::MaxTries => ErrorCode::MaxTries,
        HapError::Busy => ErrorCode::Busy,
    };
    let state = Tlv8::decode(&req.body)
        .ok()
        .and_then(|t| t.state())
        .unwrap_or(1)
        .saturating_add(1);
    let mut reply = Tlv8::new()
        .with(kind::STATE, [state])
        .with(kind::ERROR, [code as u8]);
    if code == ErrorCode::BackOff {
        reply.push(kind::RETRY_DELAY, 60u16.to_le_bytes());
    }
    cx.info(format!("{}: answered error {code} (fault)", req.path()));
    Some(reply.encode())
}

/// A refusal a real accessory gives in normal use (a wrong PIN, an unknown controller, Busy …) is
/// a note; Unknown answers a message no conforming controller sends, so it is a warning.
fn note_failure(cx: &mut Context<'_>, what: &str, code: ErrorCode, reason: &str) {
    let text = format!("{what}: error {code}: {reason}");
    if code == ErrorCode::Unknown {
        cx.warn(text);
    } else {
        cx.info(text);
    }
}

/// The answer to a pairing request: 200 with the TLV8 body.
pub fn tlv_response(resp: Response, body: Vec<u8>) -> Response {
    resp.with_body("application/octet-stream", body)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::airplay::{AirplayConfig, AirplayCore};
    use crate::connection::Connection;
    use crate::event::EventKind;
    use crate::fault::FaultPlan;
    use crate::hap::channel::Channel;
    use crate::hap::identity::Credentials;
    use crate::hap::pair_setup::SetupClient;
    use crate::hap::pair_verify::VerifyClient;
    use crate::hap::tlv8::kind;
    use crate::hap::Tlv8;
    use crate::testkit;
    use crate::wire::{self, Limits, Protocol};

    fn tv() -> Arc<AirplayCore> {
        let config = AirplayConfig::apple_tv_4k("tv", 7);
        let raop = config.raop_config(7);
        Arc::new(AirplayCore::new(config, raop))
    }

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn connect(tv: &Arc<AirplayCore>, index: u64) -> Connection<AirplayCore> {
        Connection::new(
            tv.clone(),
            testkit::conn("tv", index, 7000),
            Arc::new(FaultPlan::new(7, Vec::new())),
            Limits::default(),
            Duration::from_secs(30),
            t0(),
        )
    }

    fn post(path: &str, hkp: &str, body: Vec<u8>) -> Vec<u8> {
        let mut r = Request::new("POST", path, Protocol::Http11);
        r.headers.set("X-Apple-HKP", hkp);
        r.headers.set("Content-Type", "application/octet-stream");
        r.headers.set("Content-Length", body.len().to_string());
        r.body = body;
        r.encode()
    }

    /// Sends `bytes` and reads the one response, through `channel` when given.
    fn exchange(
        conn: &mut Connection<AirplayCore>,
        bytes: &[u8],
        channel: Option<&mut Channel>,
    ) -> Response {
        let (sent, ch) = match channel {
            Some(ch) => (ch.seal(bytes), Some(ch)),
            None => (bytes.to_vec(), None),
        };
        conn.receive(&sent, t0());
        let out = conn.poll_transmit().unwrap_or_default();
        let plain = match ch {
            Some(ch) => ch.open(&out).expect("the device seals its answers"),
            None => out,
        };
        let (resp, used) = wire::parse_response(&plain, &Limits::default())
            .unwrap()
            .expect("one whole response");
        assert_eq!(used, plain.len());
        resp
    }

    fn notes(conn: &mut Connection<AirplayCore>) -> Vec<String> {
        std::iter::from_fn(|| conn.poll_event())
            .filter_map(|e| match e {
                EventKind::Note { message } | EventKind::Warning { message } => Some(message),
                _ => None,
            })
            .collect()
    }

    fn pair(tv: &Arc<AirplayCore>, pin: &str) -> Result<Credentials, pair_setup::ClientError> {
        let mut conn = connect(tv, 0);
        let r = exchange(&mut conn, &post("/pair-pin-start", "3", vec![]), None);
        assert_eq!(r.status, 200);
        let mut c = SetupClient::new(pin, false, [0x11; 32], b"CTL-A".to_vec());
        let m2 = exchange(&mut conn, &post("/pair-setup", "3", c.m1()), None);
        let m4 = exchange(&mut conn, &post("/pair-setup", "3", c.m3(&m2.body)?), None);
        c.m4(&m4.body)?;
        let m6 = exchange(
            &mut conn,
            &post("/pair-setup", "3", c.m5(Some("Test"))?),
            None,
        );
        c.m6(&m6.body)
    }

    #[test]
    fn a_4k_announces_homekit_bits_flags_and_its_key() {
        let tv = tv();
        let id = &tv.config.info;
        assert_eq!(id.model, "AppleTV11,1");
        for bit in [30, 38, 40, 41, 43, 46, 48] {
            assert!(id.features & (1 << bit) != 0, "bit {bit}");
        }
        assert_eq!(id.status_flags, 0x244);
        let p = tv.pairing.as_ref().unwrap();
        assert_eq!(p.identity().public_key(), id.pk);
        assert_eq!(p.identity().id, id.pi);
        assert_eq!(p.pin().len(), 4);
        assert_eq!(
            AirplayConfig::apple_tv_4k("tv", 7).pairing.unwrap().pin,
            p.pin()
        );
        assert!(AirplayConfig::apple_tv("tv", 7).pairing.is_none());
    }

    #[test]
    fn pin_pairing_stores_the_controller_and_a_verify_then_encrypts_the_connection() {
        let tv = tv();
        let pin = tv.pairing.as_ref().unwrap().pin().to_string();
        let mut conn = connect(&tv, 0);
        exchange(&mut conn, &post("/pair-pin-start", "3", vec![]), None);
        assert!(notes(&mut conn).contains(&format!("enter PIN {pin} on the client")));
        let creds = pair(&tv, &pin).unwrap();
        let state = tv.state_json(t0());
        assert_eq!(state["hap"]["paired"], serde_json::json!(["CTL-A"]));
        assert_eq!(state["hap"]["controllers"][0]["name"], "Test");
        assert_eq!(creds.accessory_id, tv.config.info.pi.as_bytes());

        let mut conn = connect(&tv, 1);
        let mut v = VerifyClient::new(creds, [0x22; 32]);
        let m2 = exchange(&mut conn, &post("/pair-verify", "3", v.m1()), None);
        let m4 = exchange(
            &mut conn,
            &post("/pair-verify", "3", v.m3(&m2.body).unwrap()),
            None,
        );
        assert_eq!(m4.body, [kind::STATE, 1, 4]);
        let shared = v.m4(&m4.body).unwrap();
        let mut ch = Channel::controller(&shared);
        let info = Request::new("GET", "/info", Protocol::Http11).encode();
        let r = exchange(&mut conn, &info, Some(&mut ch));
        assert_eq!(r.status, 200);
        assert!(notes(&mut conn)
            .iter()
            .any(|n| n == crate::connection::ENCRYPTED_CHANNEL_ON));
        assert_eq!(tv.state_json(t0())["hap"]["verified"], 1);

        // Bytes that are not an encrypted block end the connection with one warning.
        conn.receive(&info, t0());
        assert!(conn.end_reason().is_some());
        let warnings: Vec<String> = notes(&mut conn)
            .into_iter()
            .filter(|n| n.starts_with("encrypted channel:"))
            .collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }

    #[test]
    fn a_wrong_pin_gets_authentication_and_nothing_is_stored() {
        let tv = tv();
        let wrong = if tv.pairing.as_ref().unwrap().pin() == "0000" {
            "1111"
        } else {
            "0000"
        };
        assert_eq!(
            pair(&tv, wrong).err(),
            Some(pair_setup::ClientError::Device {
                state: 4,
                code: ErrorCode::Authentication
            })
        );
        assert_eq!(tv.state_json(t0())["hap"]["paired"], serde_json::json!([]));
        assert_eq!(tv.state_json(t0())["hap"]["failed"], 1);
    }

    #[test]
    fn transient_pairing_encrypts_after_m4() {
        let tv = tv();
        let mut conn = connect(&tv, 0);
        let mut c = SetupClient::new("", true, [0x33; 32], b"T".to_vec());
        let m2 = exchange(&mut conn, &post("/pair-setup", "4", c.m1()), None);
        let m4 = exchange(
            &mut conn,
            &post("/pair-setup", "4", c.m3(&m2.body).unwrap()),
            None,
        );
        let key = c.m4(&m4.body).unwrap();
        let mut ch = Channel::controller(&key);
        let r = exchange(
            &mut conn,
            &Request::new("GET", "/info", Protocol::Http11).encode(),
            Some(&mut ch),
        );
        assert_eq!(r.status, 200);
        assert_eq!(tv.state_json(t0())["hap"]["transient"], 1);
    }

    #[test]
    fn an_unknown_controller_gets_authentication_and_stays_in_the_clear() {
        let tv = tv();
        let creds = Credentials {
            accessory_key: tv.config.info.pk,
            secret: [5; 32],
            accessory_id: tv.config.info.pi.as_bytes().to_vec(),
            controller_id: b"NEVER-PAIRED".to_vec(),
        };
        let mut conn = connect(&tv, 0);
        let mut v = VerifyClient::new(creds, [0x22; 32]);
        let m2 = exchange(&mut conn, &post("/pair-verify", "3", v.m1()), None);
        let m4 = exchange(
            &mut conn,
            &post("/pair-verify", "3", v.m3(&m2.body).unwrap()),
            None,
        );
        assert_eq!(
            Tlv8::decode(&m4.body).unwrap().error(),
            Some(ErrorCode::Authentication)
        );
        let r = exchange(
            &mut conn,
            &Request::new("GET", "/info", Protocol::Http11).encode(),
            None,
        );
        assert_eq!(r.status, 200);
    }

    #[test]
    fn pair_setup_without_hkp_is_501_and_an_apple_tv_3_has_no_pairing() {
        let tv = tv();
        let mut conn = connect(&tv, 0);
        let mut r = Request::new("POST", "/pair-setup", Protocol::Http11);
        r.headers.set("Content-Length", "0");
        assert_eq!(exchange(&mut conn, &r.encode(), None).status, 501);
        let config = AirplayConfig::apple_tv("old", 1);
        let raop = config.raop_config(1);
        assert!(AirplayCore::new(config, raop).pairing.is_none());
    }
}
