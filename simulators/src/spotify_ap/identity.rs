//! The AP's RSA signing key: it signs the DH public value `gs` (PKCS#1 v1.5 over SHA-1 of the raw
//! `gs` bytes), and clients check that signature against the key they pin
//! (`docs/protocols/spotify-ap.md`, "Server signature").

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use sha1::{Digest, Sha1};
use thiserror::Error;

/// RSA modulus size: clients pin a 2048-bit key (256-byte modulus, e = 65537).
pub const KEY_BITS: usize = 2048;

#[derive(Debug, Error)]
pub enum IdentityError {
    #[error("signing key is neither PKCS#1 nor PKCS#8 PEM: {0}")]
    Pem(String),
    #[error("RSA: {0}")]
    Rsa(#[from] rsa::Error),
    #[error("public key encoding: {0}")]
    Encoding(String),
}

/// A signing key.
#[derive(Clone)]
pub struct Identity {
    key: RsaPrivateKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity(modulus {:02x?}…)", &self.modulus()[..4])
    }
}

impl Identity {
    /// A 2048-bit key drawn from the scenario seed.
    pub fn from_seed(seed: u64) -> Result<Self, IdentityError> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        Ok(Identity {
            key: RsaPrivateKey::new(&mut rng, KEY_BITS)?,
        })
    }

    /// A key from PKCS#1 or PKCS#8 PEM text.
    pub fn from_pem(text: &str) -> Result<Self, IdentityError> {
        let key = RsaPrivateKey::from_pkcs1_pem(text).or_else(|e1| {
            RsaPrivateKey::from_pkcs8_pem(text)
                .map_err(|e8| IdentityError::Pem(format!("{e1}; {e8}")))
        })?;
        Ok(Identity { key })
    }

    pub fn public(&self) -> RsaPublicKey {
        self.key.to_public_key()
    }

    /// The modulus, big-endian: what librespot-python pins as its server key.
    pub fn modulus(&self) -> Vec<u8> {
        self.key.n().to_bytes_be()
    }

    /// The public half as PKCS#1 PEM (for the ready file and `--out`).
    pub fn public_pem(&self) -> Result<String, IdentityError> {
        self.public()
            .to_pkcs1_pem(LineEnding::LF)
            .map_err(|e| IdentityError::Encoding(e.to_string()))
    }

    /// PKCS#1 v1.5 signature over SHA-1 of `gs`.
    pub fn sign_gs(&self, gs: &[u8]) -> Result<Vec<u8>, IdentityError> {
        let hash = Sha1::digest(gs);
        Ok(self.key.sign(Pkcs1v15Sign::new::<Sha1>(), &hash)?)
    }
}

/// Checks a `gs_signature` as clients do.
pub fn verify_gs(key: &RsaPublicKey, gs: &[u8], signature: &[u8]) -> bool {
    let hash = Sha1::digest(gs);
    key.verify(Pkcs1v15Sign::new::<Sha1>(), &hash, signature)
        .is_ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// One seeded key per test binary: generating RSA keys is slow.
    pub(crate) fn test_identity() -> &'static Identity {
        static KEY: OnceLock<Identity> = OnceLock::new();
        KEY.get_or_init(|| Identity::from_seed(11).unwrap())
    }

    #[test]
    fn signature_verifies_with_its_own_key_only() {
        let id = test_identity();
        let sig = id.sign_gs(b"gs").unwrap();
        assert!(verify_gs(&id.public(), b"gs", &sig));
        assert!(!verify_gs(&id.public(), b"gt", &sig));
        assert_eq!(id.modulus().len(), 256);
    }

    #[test]
    fn pem_round_trip_and_garbage() {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let id = test_identity();
        let pem = id.key.to_pkcs1_pem(LineEnding::LF).unwrap();
        assert_eq!(Identity::from_pem(&pem).unwrap().modulus(), id.modulus());
        assert!(matches!(
            Identity::from_pem("nope"),
            Err(IdentityError::Pem(_))
        ));
        assert!(id
            .public_pem()
            .unwrap()
            .starts_with("-----BEGIN RSA PUBLIC KEY-----"));
    }
}
