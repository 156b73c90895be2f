//! RSA identities of RAOP receivers.
//!
//! The default identity is the publicly known AirPort Express key (public since 2011, shipped by
//! open-source receivers; docs/protocols/raop.md): unmodified senders verify `Apple-Response`
//! against its public half. Scenarios may supply their own PEM.

use std::ops::Deref;

use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPublicKey};
use rsa::pkcs8::DecodePrivateKey;
use rsa::{Oaep, Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use thiserror::Error;

/// A device's RSA private key with the two operations a RAOP receiver performs.
///
/// Parsing and the public half use the `rsa` crate. The private-key operations bound every RAOP
/// handshake, and `airtwin bench raop` measured the `rsa` crate's bignum arithmetic at about a
/// sixth of OpenSSL's on the same machine (624 vs 3,964 signatures/s per core, 2026-11-24), below
/// the rate shairport-sync answers challenges at; so with the `openssl` feature (default) they run
/// on OpenSSL's assembly Montgomery multiplication. Both backends give identical bytes: PKCS#1
/// v1.5 type-1 signing is deterministic and OAEP decryption has one answer (tested).
pub struct DeviceKey {
    key: RsaPrivateKey,
    #[cfg(feature = "openssl")]
    ossl: openssl::rsa::Rsa<openssl::pkey::Private>,
}

/// Why a private-key operation failed.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("RSA private-key operation failed: {0}")]
pub struct RsaOpError(pub String);

impl DeviceKey {
    pub fn new(key: RsaPrivateKey) -> Self {
        #[cfg(feature = "openssl")]
        let ossl = {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            let der = key.to_pkcs1_der().expect("an RSA key encodes to DER");
            openssl::rsa::Rsa::private_key_from_der(der.as_bytes())
                .expect("OpenSSL reads a valid RSA key")
        };
        DeviceKey {
            key,
            #[cfg(feature = "openssl")]
            ossl,
        }
    }

    /// Which library performs the private-key operations.
    pub fn backend() -> &'static str {
        if cfg!(feature = "openssl") {
            "OpenSSL"
        } else {
            "rsa crate"
        }
    }

    /// RSA PKCS#1 v1.5 type-1 private-key operation over `msg`, no DigestInfo (the `Apple-Response`
    /// operation, docs/protocols/raop.md).
    pub fn sign_raw(&self, msg: &[u8]) -> Result<Vec<u8>, RsaOpError> {
        #[cfg(feature = "openssl")]
        {
            let mut out = vec![0u8; self.ossl.size() as usize];
            let n = self
                .ossl
                .private_encrypt(msg, &mut out, openssl::rsa::Padding::PKCS1)
                .map_err(|e| RsaOpError(e.to_string()))?;
            out.truncate(n);
            Ok(out)
        }
        #[cfg(not(feature = "openssl"))]
        self.sign_raw_rsa_crate(msg)
    }

    /// The same operation on the `rsa` crate, whatever the feature (for comparison).
    pub fn sign_raw_rsa_crate(&self, msg: &[u8]) -> Result<Vec<u8>, RsaOpError> {
        self.key
            .sign(Pkcs1v15Sign::new_unprefixed(), msg)
            .map_err(|e| RsaOpError(e.to_string()))
    }

    /// RSA-OAEP decryption with SHA-1, MGF1-SHA-1 and an empty label (`rsaaeskey`).
    pub fn decrypt_oaep_sha1(&self, ciphertext: &[u8]) -> Result<Vec<u8>, RsaOpError> {
        #[cfg(feature = "openssl")]
        {
            let mut out = vec![0u8; self.ossl.size() as usize];
            let n = self
                .ossl
                .private_decrypt(ciphertext, &mut out, openssl::rsa::Padding::PKCS1_OAEP)
                .map_err(|e| RsaOpError(e.to_string()))?;
            out.truncate(n);
            Ok(out)
        }
        #[cfg(not(feature = "openssl"))]
        self.key
            .decrypt(Oaep::new::<sha1::Sha1>(), ciphertext)
            .map_err(|e| RsaOpError(e.to_string()))
    }

    /// The same decryption on the `rsa` crate.
    pub fn decrypt_oaep_sha1_rsa_crate(&self, ciphertext: &[u8]) -> Result<Vec<u8>, RsaOpError> {
        self.key
            .decrypt(Oaep::new::<sha1::Sha1>(), ciphertext)
            .map_err(|e| RsaOpError(e.to_string()))
    }
}

impl Deref for DeviceKey {
    type Target = RsaPrivateKey;
    fn deref(&self) -> &RsaPrivateKey {
        &self.key
    }
}

impl PartialEq for DeviceKey {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use rsa::traits::PublicKeyParts;
        write!(
            f,
            "DeviceKey({} bits, {})",
            self.key.size() * 8,
            Self::backend()
        )
    }
}

/// The well-known AirPort Express private key, PKCS#1 PEM wrapped at 64 columns.
pub const AIRPORT_EXPRESS_PEM: &str = include_str!("../../keys/airport-express.pem");

/// A second 2048-bit key, generated for airtwin, for scenarios that sign with the wrong key.
pub const OTHER_KEY_PEM: &str = include_str!("../../keys/other-2048.pem");

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("{origin}: not an RSA private key in PKCS#1 (BEGIN RSA PRIVATE KEY) or PKCS#8 (BEGIN PRIVATE KEY) PEM: {detail}")]
    Pem { origin: String, detail: String },
}

/// Loads a private key from PEM text. Accepts PKCS#1 and PKCS#8, and lines wrapped at any width:
/// the `rsa` crate's PEM reader insists on 64 columns and rejects the 76-column copies that
/// receivers embed (docs/protocols/raop.md), so the base64 is re-wrapped first.
pub fn private_key_from_pem(text: &str, origin: &str) -> Result<DeviceKey, KeyError> {
    let normalised = rewrap(text);
    let pkcs1 = RsaPrivateKey::from_pkcs1_pem(&normalised);
    let key = match pkcs1 {
        Ok(k) => k,
        Err(e1) => RsaPrivateKey::from_pkcs8_pem(&normalised).map_err(|e8| KeyError::Pem {
            origin: origin.to_string(),
            detail: format!("PKCS#1: {e1}; PKCS#8: {e8}"),
        })?,
    };
    Ok(DeviceKey::new(key))
}

/// The built-in key a scenario names (`airport-express`, or its alias `builtin`, and `other`);
/// `None` for any other name, which the caller reads as a PEM file.
pub fn builtin_key(name: &str) -> Option<DeviceKey> {
    let pem = match name {
        "airport-express" | "builtin" => AIRPORT_EXPRESS_PEM,
        "other" => OTHER_KEY_PEM,
        _ => return None,
    };
    Some(private_key_from_pem(pem, name).expect("built-in key parses"))
}

/// The built-in AirPort Express key.
pub fn airport_express() -> DeviceKey {
    private_key_from_pem(AIRPORT_EXPRESS_PEM, "built-in").expect("built-in key parses")
}

/// Public half as PKCS#1 PEM (for the ready file and senders).
pub fn public_pem(key: &RsaPublicKey) -> String {
    key.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
        .unwrap_or_default()
}

fn rewrap(text: &str) -> String {
    let mut out = String::new();
    let mut body = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("-----BEGIN") {
            out.push_str(line);
            out.push('\n');
        } else if line.starts_with("-----END") {
            for chunk in body.as_bytes().chunks(64) {
                out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
                out.push('\n');
            }
            body.clear();
            out.push_str(line);
            out.push('\n');
        } else if !line.contains(':') {
            body.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::traits::PublicKeyParts;

    #[test]
    fn builtin_key_is_the_2048_bit_airport_express_key() {
        let k = airport_express();
        assert_eq!(k.size(), 256);
        assert_eq!(k.e(), &rsa::BigUint::from(65537u32));
    }

    #[test]
    fn seventy_six_column_pem_still_loads() {
        let body: String = AIRPORT_EXPRESS_PEM
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let mut wide = String::from("-----BEGIN RSA PRIVATE KEY-----\n");
        for c in body.as_bytes().chunks(76) {
            wide.push_str(std::str::from_utf8(c).unwrap());
            wide.push('\n');
        }
        wide.push_str("-----END RSA PRIVATE KEY-----\n");
        assert_eq!(
            private_key_from_pem(&wide, "wide").unwrap(),
            airport_express()
        );
    }

    #[test]
    fn both_backends_give_the_same_bytes() {
        let k = airport_express();
        let msg = [7u8; 32];
        assert_eq!(
            k.sign_raw(&msg).unwrap(),
            k.sign_raw_rsa_crate(&msg).unwrap()
        );
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(7);
        let ct = k
            .to_public_key()
            .encrypt(&mut rng, Oaep::new::<sha1::Sha1>(), &[9u8; 16])
            .unwrap();
        assert_eq!(k.decrypt_oaep_sha1(&ct).unwrap(), vec![9u8; 16]);
        assert_eq!(k.decrypt_oaep_sha1_rsa_crate(&ct).unwrap(), vec![9u8; 16]);
    }

    #[test]
    fn garbage_names_the_formats_it_wanted() {
        let err = private_key_from_pem("hello", "x.pem")
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.pem") && err.contains("PKCS#1"), "{err}");
    }
}
