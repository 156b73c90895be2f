//! Pair-verify (HAP specification R2 §5.7; docs/protocols/hap.md): a fresh X25519 exchange,
//! authenticated by both sides' long-term Ed25519 keys from pair-setup.
//!
//! - M1 {State 1, PublicKey = controller's ephemeral X25519 key}
//! - M2 {State 2, PublicKey = accessory's ephemeral key, EncryptedData sealed under
//!   `Pair-Verify-Encrypt` with nonce `PV-Msg02` {Identifier = accessory id, Signature of
//!   (accessory eph ‖ accessory id ‖ controller eph)}}
//! - M3 {State 3, EncryptedData (`PV-Msg03`) {Identifier = controller id, Signature of
//!   (controller eph ‖ controller id ‖ accessory eph)}}
//! - M4 {State 4}, or {State 4, Error Authentication} when the controller is not paired or its
//!   signature does not verify (HAP §5.7.4). The X25519 shared secret then keys the channel.

use rand::RngCore;
use x25519_dalek::{PublicKey, StaticSecret};

use super::identity::{self, Controller, Credentials, Forgery, Identity};
use super::keys::{self, label, PV_MSG02, PV_MSG03};
use super::tlv8::{kind, ErrorCode, Tlv8};

/// What one message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// M2 sent.
    Continue,
    /// M4 sent: controller `controller` is verified; the channel's keys come from `shared`.
    Verified {
        controller: Vec<u8>,
        shared: [u8; 32],
    },
    /// An error TLV was sent.
    Failed { code: ErrorCode, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub body: Vec<u8>,
    pub outcome: Outcome,
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

struct Pending {
    ours: [u8; 32],
    theirs: [u8; 32],
    shared: [u8; 32],
}

/// The accessory side, one per connection.
#[derive(Default)]
pub struct PairVerify {
    pending: Option<Pending>,
}

impl PairVerify {
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles one pair-verify message; `controllers` are those pair-setup paired, `rng` draws
    /// the ephemeral key.
    pub fn handle(
        &mut self,
        body: &[u8],
        identity: &Identity,
        controllers: &[Controller],
        rng: &mut dyn RngCore,
    ) -> Reply {
        self.handle_forged(body, identity, controllers, rng, None)
    }

    /// [`PairVerify::handle`] with a fault's flaw in the accessory's M2 proof.
    pub fn handle_forged(
        &mut self,
        body: &[u8],
        identity: &Identity,
        controllers: &[Controller],
        rng: &mut dyn RngCore,
        forgery: Option<Forgery>,
    ) -> Reply {
        let msg = match Tlv8::decode(body) {
            Ok(m) => m,
            Err(e) => return error_reply(2, ErrorCode::Unknown, e.to_string()),
        };
        match msg.state() {
            Some(1) => self.m1(&msg, identity, rng, forgery),
            Some(3) => self.m3(&msg, controllers),
            Some(s) => error_reply(
                s.saturating_add(1),
                ErrorCode::Unknown,
                format!("unexpected state M{s}"),
            ),
            None => error_reply(2, ErrorCode::Unknown, "no State item"),
        }
    }

    fn m1(
        &mut self,
        msg: &Tlv8,
        identity: &Identity,
        rng: &mut dyn RngCore,
        forgery: Option<Forgery>,
    ) -> Reply {
        let Some(theirs) = msg
            .get(kind::PUBLIC_KEY)
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
        else {
            return error_reply(2, ErrorCode::Unknown, "M1 without a 32-byte PublicKey");
        };
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let secret = StaticSecret::from(seed);
        let ours = PublicKey::from(&secret).to_bytes();
        let shared = secret.diffie_hellman(&PublicKey::from(theirs)).to_bytes();
        let (id, signer) = identity.claim(forgery);
        let signature = {
            use ed25519_dalek::Signer;
            signer
                .sign(&[&ours[..], id.as_bytes(), &theirs].concat())
                .to_bytes()
        };
        let sub = Tlv8::new()
            .with(kind::IDENTIFIER, id.as_bytes())
            .with(kind::SIGNATURE, signature)
            .encode();
        let key = keys::derive(label::VERIFY_ENCRYPT, &shared);
        let body = Tlv8::new()
            .with(kind::STATE, [2])
            .with(kind::PUBLIC_KEY, ours)
            .with(
                kind::ENCRYPTED_DATA,
                keys::seal(&key, keys::nonce(*PV_MSG02), &sub, &[]),
            )
            .encode();
        self.pending = Some(Pending {
            ours,
            theirs,
            shared,
        });
        Reply {
            body,
            outcome: Outcome::Continue,
        }
    }

    fn m3(&mut self, msg: &Tlv8, controllers: &[Controller]) -> Reply {
        let Some(p) = self.pending.take() else {
            return error_reply(4, ErrorCode::Unknown, "M3 without M1 on this connection");
        };
        let Some(sealed) = msg.get(kind::ENCRYPTED_DATA) else {
            return error_reply(4, ErrorCode::Unknown, "M3 without EncryptedData");
        };
        let key = keys::derive(label::VERIFY_ENCRYPT, &p.shared);
        let Ok(plain) = keys::open(&key, keys::nonce(*PV_MSG03), sealed, &[]) else {
            return error_reply(4, ErrorCode::Authentication, "M3 does not decrypt");
        };
        let Ok(inner) = Tlv8::decode(&plain) else {
            return error_reply(4, ErrorCode::Unknown, "M3 sub-TLV is malformed");
        };
        let (Some(id), Some(sig)) = (inner.get(kind::IDENTIFIER), inner.get(kind::SIGNATURE))
        else {
            return error_reply(
                4,
                ErrorCode::Unknown,
                "M3 sub-TLV lacks Identifier or Signature",
            );
        };
        let Some(controller) = controllers.iter().find(|c| c.id == id) else {
            return error_reply(
                4,
                ErrorCode::Authentication,
                format!("controller {} is not paired", String::from_utf8_lossy(id)),
            );
        };
        let signed = [&p.theirs[..], id, &p.ours].concat();
        if !identity::verify(&controller.public_key, &signed, sig) {
            return error_reply(4, ErrorCode::Authentication, "M3 signature does not verify");
        }
        Reply {
            body: Tlv8::new().with(kind::STATE, [4]).encode(),
            outcome: Outcome::Verified {
                controller: id.to_vec(),
                shared: p.shared,
            },
        }
    }
}

/// Why the controller side stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("device answered M{state} with error {code}")]
    Device { state: u8, code: ErrorCode },
    #[error("malformed answer: {0}")]
    Malformed(String),
    #[error("M2 does not decrypt")]
    Decrypt,
    #[error("M2 identifier {0:?} is not the paired accessory's")]
    WrongAccessory(String),
    #[error("M2 signature does not verify under the paired accessory's LTPK")]
    BadSignature,
    #[error("step out of order: {0}")]
    Order(&'static str),
}

/// The controller side, with credentials from pair-setup.
pub struct VerifyClient {
    credentials: Credentials,
    secret: StaticSecret,
    shared: Option<[u8; 32]>,
}

impl VerifyClient {
    /// `ephemeral` seeds the X25519 key of this verify.
    pub fn new(credentials: Credentials, ephemeral: [u8; 32]) -> Self {
        VerifyClient {
            credentials,
            secret: StaticSecret::from(ephemeral),
            shared: None,
        }
    }

    fn ours(&self) -> [u8; 32] {
        PublicKey::from(&self.secret).to_bytes()
    }

    pub fn m1(&self) -> Vec<u8> {
        Tlv8::new()
            .with(kind::STATE, [1])
            .with(kind::PUBLIC_KEY, self.ours())
            .encode()
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

    /// M2 → M3: checks the accessory's identifier and signature.
    pub fn m3(&mut self, m2: &[u8]) -> Result<Vec<u8>, ClientError> {
        let msg = Self::read(m2, 2)?;
        let (Some(theirs), Some(sealed)) = (
            msg.get(kind::PUBLIC_KEY)
                .and_then(|k| <[u8; 32]>::try_from(k).ok()),
            msg.get(kind::ENCRYPTED_DATA),
        ) else {
            return Err(ClientError::Malformed(
                "M2 without a 32-byte PublicKey or EncryptedData".into(),
            ));
        };
        let shared = self
            .secret
            .diffie_hellman(&PublicKey::from(theirs))
            .to_bytes();
        let key = keys::derive(label::VERIFY_ENCRYPT, &shared);
        let plain = keys::open(&key, keys::nonce(*PV_MSG02), sealed, &[])
            .map_err(|_| ClientError::Decrypt)?;
        let inner = Tlv8::decode(&plain).map_err(|e| ClientError::Malformed(e.to_string()))?;
        let (Some(id), Some(sig)) = (inner.get(kind::IDENTIFIER), inner.get(kind::SIGNATURE))
        else {
            return Err(ClientError::Malformed(
                "M2 sub-TLV lacks Identifier or Signature".into(),
            ));
        };
        if id != self.credentials.accessory_id.as_slice() {
            return Err(ClientError::WrongAccessory(
                String::from_utf8_lossy(id).into_owned(),
            ));
        }
        let ours = self.ours();
        if !identity::verify(
            &self.credentials.accessory_key,
            &[&theirs[..], id, &ours].concat(),
            sig,
        ) {
            return Err(ClientError::BadSignature);
        }
        use ed25519_dalek::Signer;
        let cid = &self.credentials.controller_id;
        let signature = self
            .credentials
            .signing_key()
            .sign(&[&ours[..], cid, &theirs].concat())
            .to_bytes();
        let sub = Tlv8::new()
            .with(kind::IDENTIFIER, cid.clone())
            .with(kind::SIGNATURE, signature)
            .encode();
        self.shared = Some(shared);
        Ok(Tlv8::new()
            .with(kind::STATE, [3])
            .with(
                kind::ENCRYPTED_DATA,
                keys::seal(&key, keys::nonce(*PV_MSG03), &sub, &[]),
            )
            .encode())
    }

    /// M4: gives the shared secret the channel's keys come from.
    pub fn m4(&self, m4: &[u8]) -> Result<[u8; 32], ClientError> {
        Self::read(m4, 4)?;
        self.shared.ok_or(ClientError::Order("M4 before M2"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hap::channel::Channel;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn paired() -> (Identity, Controller, Credentials) {
        let identity = Identity::from_seed(3, "tv");
        let secret = [0x42; 32];
        let ctl_key = ed25519_dalek::SigningKey::from_bytes(&secret);
        let controller = Controller {
            id: b"CTL-1".to_vec(),
            public_key: ctl_key.verifying_key().to_bytes(),
            name: None,
        };
        let creds = Credentials {
            accessory_key: identity.public_key(),
            secret,
            accessory_id: identity.id.as_bytes().to_vec(),
            controller_id: b"CTL-1".to_vec(),
        };
        (identity, controller, creds)
    }

    #[test]
    fn a_paired_controller_verifies_and_both_channels_agree() {
        let (identity, controller, creds) = paired();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut dev = PairVerify::new();
        let mut c = VerifyClient::new(creds, [5; 32]);
        let m2 = dev.handle(
            &c.m1(),
            &identity,
            std::slice::from_ref(&controller),
            &mut rng,
        );
        let m4 = dev.handle(&c.m3(&m2.body).unwrap(), &identity, &[controller], &mut rng);
        assert_eq!(m4.body, [kind::STATE, 1, 4]);
        let shared = c.m4(&m4.body).unwrap();
        assert_eq!(
            m4.outcome,
            Outcome::Verified {
                controller: b"CTL-1".to_vec(),
                shared
            }
        );
        let mut ctl = Channel::controller(&shared);
        let mut acc = Channel::accessory(&shared);
        assert_eq!(acc.open(&ctl.seal(b"RECORD")).unwrap(), b"RECORD");
        assert_eq!(ctl.open(&acc.seal(b"200")).unwrap(), b"200");
    }

    #[test]
    fn an_unknown_controller_gets_authentication_at_m4() {
        let (identity, _, creds) = paired();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut dev = PairVerify::new();
        let mut c = VerifyClient::new(creds, [5; 32]);
        let m2 = dev.handle(&c.m1(), &identity, &[], &mut rng);
        let m4 = dev.handle(&c.m3(&m2.body).unwrap(), &identity, &[], &mut rng);
        assert_eq!(m4.body, [kind::STATE, 1, 4, kind::ERROR, 1, 2]);
        assert_eq!(
            c.m4(&m4.body),
            Err(ClientError::Device {
                state: 4,
                code: ErrorCode::Authentication
            })
        );
    }

    #[test]
    fn a_known_identifier_with_another_key_gets_authentication() {
        let (identity, mut controller, creds) = paired();
        controller.public_key = Identity::from_seed(9, "x").public_key();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut dev = PairVerify::new();
        let mut c = VerifyClient::new(creds, [5; 32]);
        let m2 = dev.handle(
            &c.m1(),
            &identity,
            std::slice::from_ref(&controller),
            &mut rng,
        );
        let m4 = dev.handle(&c.m3(&m2.body).unwrap(), &identity, &[controller], &mut rng);
        assert!(matches!(
            m4.outcome,
            Outcome::Failed {
                code: ErrorCode::Authentication,
                ..
            }
        ));
    }

    #[test]
    fn the_client_refuses_another_accessory_or_a_bad_signature() {
        let (identity, controller, creds) = paired();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let impostor = Identity::new(identity.id.clone(), Identity::from_seed(8, "y").signing_key);
        let mut c = VerifyClient::new(creds.clone(), [5; 32]);
        let m2 = PairVerify::new().handle(
            &c.m1(),
            &impostor,
            std::slice::from_ref(&controller),
            &mut rng,
        );
        assert_eq!(c.m3(&m2.body), Err(ClientError::BadSignature));
        let other = Identity::new("OTHER", identity.signing_key.clone());
        let mut c = VerifyClient::new(creds, [5; 32]);
        let m2 = PairVerify::new().handle(&c.m1(), &other, &[controller], &mut rng);
        assert_eq!(
            c.m3(&m2.body),
            Err(ClientError::WrongAccessory("OTHER".into()))
        );
    }

    #[test]
    fn out_of_order_and_malformed_messages_get_unknown() {
        let (identity, controller, _) = paired();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut dev = PairVerify::new();
        let m3 = Tlv8::new()
            .with(kind::STATE, [3])
            .with(kind::ENCRYPTED_DATA, [0; 40])
            .encode();
        assert_eq!(
            dev.handle(&m3, &identity, std::slice::from_ref(&controller), &mut rng)
                .body,
            [kind::STATE, 1, 4, kind::ERROR, 1, 1]
        );
        let short = Tlv8::new()
            .with(kind::STATE, [1])
            .with(kind::PUBLIC_KEY, [1; 31])
            .encode();
        assert_eq!(
            dev.handle(
                &short,
                &identity,
                std::slice::from_ref(&controller),
                &mut rng
            )
            .body,
            [kind::STATE, 1, 2, kind::ERROR, 1, 1]
        );
        assert_eq!(
            dev.handle(&[6, 7], &identity, &[controller], &mut rng).body,
            [kind::STATE, 1, 2, kind::ERROR, 1, 1]
        );
    }
}
