//! Long-term identities: the accessory's (an Ed25519 key pair and a pairing identifier, stable
//! across runs because controllers store them) and the controllers it has paired with
//! (docs/protocols/hap.md, HAP specification R2 §5.6.6 and §5.11).

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The accessory's long-term identity: `AccessoryPairingID` and `AccessoryLTSK`/`LTPK`.
#[derive(Clone)]
pub struct Identity {
    /// Pairing identifier sent in M6 and pair-verify M2 (an upper-case UUID on Apple TVs).
    pub id: String,
    pub signing_key: SigningKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.id)
            .field("public_key", &hex(&self.public_key()))
            .finish()
    }
}

impl Identity {
    pub fn new(id: impl Into<String>, signing_key: SigningKey) -> Self {
        Identity {
            id: id.into(),
            signing_key,
        }
    }

    /// The identity of device `name` under `seed`: the same on every run.
    pub fn from_seed(seed: u64, name: &str) -> Self {
        // FNV-1a of the name, so two devices of one scenario differ.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ h ^ 0x4841_5000_0000_0001);
        let signing_key = SigningKey::from_bytes(&rng.gen::<[u8; 32]>());
        Identity::new(uuid(rng.gen()), signing_key)
    }

    /// `LTPK`, the public half (`pk` in the `_airplay._tcp` record).
    pub fn public_key(&self) -> [u8; 32] {
        self.signing_key.verifying_key().to_bytes()
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing_key.sign(message).to_bytes()
    }
}

/// A deliberate flaw in how the accessory proves who it is (pair-setup M6, pair-verify M2), for
/// faults: a controller must refuse either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgery {
    /// Signed by another key than the `LTPK` the accessory announces.
    Signature,
    /// Another accessory's pairing identifier, correctly signed.
    Identifier,
}

/// The identifier a forged identity claims.
pub const FOREIGN_ID: &str = "00000000-0000-4000-8000-000000000000";

impl Identity {
    /// The identifier to send and the key to sign with, `forgery` applied.
    pub fn claim(&self, forgery: Option<Forgery>) -> (String, SigningKey) {
        match forgery {
            None => (self.id.clone(), self.signing_key.clone()),
            Some(Forgery::Identifier) => (FOREIGN_ID.to_string(), self.signing_key.clone()),
            Some(Forgery::Signature) => {
                let mut seed = self.signing_key.to_bytes();
                seed.iter_mut().for_each(|b| *b = !*b);
                (self.id.clone(), SigningKey::from_bytes(&seed))
            }
        }
    }
}

/// A controller the accessory paired with in pair-setup M5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    /// `iOSDevicePairingID` as sent (pyatv: a UUID in ASCII).
    pub id: Vec<u8>,
    /// `iOSDeviceLTPK`.
    pub public_key: [u8; 32],
    /// The name from the M5 `Name` item, when there was one.
    pub name: Option<String>,
}

/// A controller paired before the device started (a scenario's `identity.controllers`), as a
/// real Apple TV remembers the controllers it paired with: its keys and pairing identifier are
/// drawn from the seed, so the credentials it keeps are the same on every run and a client can be
/// given them instead of pairing first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownController {
    /// The scenario's name for it.
    pub name: String,
    pub controller: Controller,
    /// What the controller keeps, for `accessory` (pyatv's credentials).
    pub credentials: Credentials,
}

impl KnownController {
    /// Controller `name` of the accessory `accessory` under `seed` (`label` tells the devices of
    /// one scenario apart).
    pub fn from_seed(seed: u64, label: &str, name: &str, accessory: &Identity) -> Self {
        let label = format!("{label}/controller/{name}");
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ crate::seed::label_hash(&label));
        let secret: [u8; 32] = rng.gen();
        let id = uuid(rng.gen()).into_bytes();
        KnownController {
            name: name.to_string(),
            controller: Controller {
                id: id.clone(),
                public_key: SigningKey::from_bytes(&secret).verifying_key().to_bytes(),
                name: Some(name.to_string()),
            },
            credentials: Credentials {
                accessory_key: accessory.public_key(),
                secret,
                accessory_id: accessory.id.as_bytes().to_vec(),
                controller_id: id,
            },
        }
    }
}

impl Controller {
    /// The identifier as text (lossy for non-UTF-8 identifiers).
    pub fn id_text(&self) -> String {
        String::from_utf8_lossy(&self.id).into_owned()
    }
}

/// What a controller keeps after pair-setup to pair-verify later, in pyatv's credential format
/// `ltpk:ltsk:atv_id:client_id` (four hex strings).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The accessory's `LTPK` from M6.
    pub accessory_key: [u8; 32],
    /// The controller's own Ed25519 secret seed.
    pub secret: [u8; 32],
    /// The accessory's pairing identifier from M6.
    pub accessory_id: Vec<u8>,
    /// The controller's pairing identifier.
    pub controller_id: Vec<u8>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("accessory_id", &String::from_utf8_lossy(&self.accessory_id))
            .field(
                "controller_id",
                &String::from_utf8_lossy(&self.controller_id),
            )
            .finish_non_exhaustive()
    }
}

/// Why a credentials string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("credentials need 4 hex fields ltpk:ltsk:atv_id:client_id, got {0}")]
    Fields(usize),
    #[error("credentials field {0} is not hex")]
    Hex(&'static str),
    #[error("credentials field {0} must be 32 bytes")]
    KeyLength(&'static str),
}

impl Credentials {
    pub fn signing_key(&self) -> SigningKey {
        SigningKey::from_bytes(&self.secret)
    }

    pub fn parse(text: &str) -> Result<Self, CredentialsError> {
        let fields: Vec<&str> = text.trim().split(':').collect();
        if fields.len() != 4 {
            return Err(CredentialsError::Fields(fields.len()));
        }
        let names = ["ltpk", "ltsk", "atv_id", "client_id"];
        let mut bytes = Vec::new();
        for (f, name) in fields.iter().zip(names) {
            bytes.push(unhex(f).ok_or(CredentialsError::Hex(name))?);
        }
        let key = |i: usize| -> Result<[u8; 32], CredentialsError> {
            bytes[i]
                .as_slice()
                .try_into()
                .map_err(|_| CredentialsError::KeyLength(names[i]))
        };
        Ok(Credentials {
            accessory_key: key(0)?,
            secret: key(1)?,
            accessory_id: bytes[2].clone(),
            controller_id: bytes[3].clone(),
        })
    }
}

impl std::fmt::Display for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            hex(&self.accessory_key),
            hex(&self.secret),
            hex(&self.accessory_id),
            hex(&self.controller_id)
        )
    }
}

/// Whether `signature` is `key`'s Ed25519 signature of `message`.
pub fn verify(key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = <[u8; 32]>::try_from(key) else {
        return false;
    };
    let Ok(sig) = <[u8; 64]>::try_from(signature) else {
        return false;
    };
    VerifyingKey::from_bytes(&key)
        .map(|k| k.verify(message, &Signature::from_bytes(&sig)).is_ok())
        .unwrap_or(false)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    s.as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [hi, lo] => u8::from_str_radix(std::str::from_utf8(&[*hi, *lo]).ok()?, 16).ok(),
            _ => None,
        })
        .collect()
}

/// A version-4-shaped upper-case UUID from 16 random bytes.
pub(crate) fn uuid(bytes: [u8; 16]) -> String {
    let mut b = bytes;
    b[6] = (b[6] & 0x0F) | 0x40;
    b[8] = (b[8] & 0x3F) | 0x80;
    let h = hex(&b).to_uppercase();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_fixes_the_identity_and_the_name_changes_it() {
        let a = Identity::from_seed(7, "tv");
        let b = Identity::from_seed(7, "tv");
        assert_eq!(a.id, b.id);
        assert_eq!(a.public_key(), b.public_key());
        let c = Identity::from_seed(7, "den");
        assert_ne!(a.public_key(), c.public_key());
        assert_ne!(a.id, c.id);
        assert_eq!(a.id.len(), 36);
        assert_eq!(&a.id[14..15], "4");
    }

    #[test]
    fn signatures_verify_only_under_their_key() {
        let a = Identity::from_seed(1, "a");
        let sig = a.sign(b"msg");
        assert!(verify(&a.public_key(), b"msg", &sig));
        assert!(!verify(&a.public_key(), b"msh", &sig));
        assert!(!verify(
            &Identity::from_seed(2, "a").public_key(),
            b"msg",
            &sig
        ));
        assert!(!verify(&[1, 2], b"msg", &sig));
        assert!(!verify(&a.public_key(), b"msg", &sig[..10]));
    }

    #[test]
    fn credentials_round_trip_in_pyatv_format() {
        let c = Credentials {
            accessory_key: [1; 32],
            secret: [2; 32],
            accessory_id: b"ATV".to_vec(),
            controller_id: b"ctl".to_vec(),
        };
        let text = c.to_string();
        assert!(text.starts_with(&"01".repeat(32)));
        assert!(text.ends_with(":415456:63746c"));
        assert_eq!(Credentials::parse(&text).unwrap(), c);
        assert_eq!(Credentials::parse("a:b"), Err(CredentialsError::Fields(2)));
        assert_eq!(
            Credentials::parse("zz:00:00:00"),
            Err(CredentialsError::Hex("ltpk"))
        );
        assert_eq!(
            Credentials::parse("00:00:00:00"),
            Err(CredentialsError::KeyLength("ltpk"))
        );
    }
}
