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

/// A signing key. With the `openssl` feature (default) the signature runs on OpenSSL, as the RAOP
/// devices' private-key operations do, for the rate (docs/performance.md, "Spotify access point");
/// both give the same bytes, PKCS#1 v1.5 signing being deterministic (tested).
#[derive(Clone)]
pub struct Identity {
    key: RsaPrivateKey,
    #[cfg(feature = "openssl")]
    ossl: openssl::rsa::Rsa<openssl::pkey::Private>,
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
        Self::new(RsaPrivateKey::new(&mut rng, KEY_BITS)?)
    }

    fn new(key: RsaPrivateKey) -> Result<Self, IdentityError> {
        #[cfg(feature = "openssl")]
        let ossl = {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            let der = key
                .to_pkcs1_der()
                .map_err(|e| IdentityError::Encoding(e.to_string()))?;
            openssl::rsa::Rsa::private_key_from_der(der.as_bytes())
                .map_err(|e| IdentityError::Encoding(e.to_string()))?
        };
        Ok(Identity {
            key,
            #[cfg(feature = "openssl")]
            ossl,
        })
    }

    /// Which library signs.
    pub fn backend() -> &'static str {
        if cfg!(feature = "openssl") {
            "OpenSSL"
        } else {
            "rsa crate"
        }
    }

    /// A key from PKCS#1 or PKCS#8 PEM text.
    pub fn from_pem(text: &str) -> Result<Self, IdentityError> {
        let key = RsaPrivateKey::from_pkcs1_pem(text).or_else(|e1| {
            RsaPrivateKey::from_pkcs8_pem(text)
                .map_err(|e8| IdentityError::Pem(format!("{e1}; {e8}")))
        })?;
        Self::new(key)
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
        #[cfg(feature = "openssl")]
        {
            // RFC 8017 §9.2: the type-1 padded DigestInfo of SHA-1, then the private-key
            // operation.
            const SHA1_DIGEST_INFO: [u8; 15] = [
                0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04,
                0x14,
            ];
            let msg = [&SHA1_DIGEST_INFO[..], &Sha1::digest(gs)[..]].concat();
            let mut out = vec![0u8; self.ossl.size() as usize];
            let n = self
                .ossl
                .private_encrypt(&msg, &mut out, openssl::rsa::Padding::PKCS1)
                .map_err(|e| IdentityError::Encoding(format!("OpenSSL signature: {e}")))?;
            out.truncate(n);
            Ok(out)
        }
        #[cfg(not(feature = "openssl"))]
        self.sign_gs_rsa_crate(gs)
    }

    /// The same signature on the `rsa` crate, whatever the feature.
    pub fn sign_gs_rsa_crate(&self, gs: &[u8]) -> Result<Vec<u8>, IdentityError> {
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
    fn both_backends_sign_the_same_bytes() {
        let id = test_identity();
        for gs in [&b"gs"[..], &[0u8; 96][..], &[0xff; 95][..]] {
            assert_eq!(id.sign_gs(gs).unwrap(), id.sign_gs_rsa_crate(gs).unwrap());
        }
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
