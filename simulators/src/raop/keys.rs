//! RSA identities of RAOP receivers.
//!
//! The default identity is the publicly known AirPort Express key (public since 2011, shipped by
//! open-source receivers; ../shared/protocol-notes.md): unmodified senders verify `Apple-Response`
//! against its public half. Scenarios may supply their own PEM.

use std::path::Path;

use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPublicKey};
use rsa::pkcs8::DecodePrivateKey;
use rsa::{RsaPrivateKey, RsaPublicKey};
use thiserror::Error;

/// The well-known AirPort Express private key, PKCS#1 PEM wrapped at 64 columns.
pub const AIRPORT_EXPRESS_PEM: &str = include_str!("../../keys/airport-express.pem");

/// A second 2048-bit key, generated for airtwin, for scenarios that sign with the wrong key.
pub const OTHER_KEY_PEM: &str = include_str!("../../keys/other-2048.pem");

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{origin}: not an RSA private key in PKCS#1 (BEGIN RSA PRIVATE KEY) or PKCS#8 (BEGIN PRIVATE KEY) PEM: {detail}")]
    Pem { origin: String, detail: String },
}

/// Loads a private key from PEM text. Accepts PKCS#1 and PKCS#8, and lines wrapped at any width:
/// the `rsa` crate's PEM reader insists on 64 columns and rejects the 76-column copies that
/// receivers embed (protocol-notes.md), so the base64 is re-wrapped first.
pub fn private_key_from_pem(text: &str, origin: &str) -> Result<RsaPrivateKey, KeyError> {
    let normalised = rewrap(text);
    let pkcs1 = RsaPrivateKey::from_pkcs1_pem(&normalised);
    let key = match pkcs1 {
        Ok(k) => k,
        Err(e1) => RsaPrivateKey::from_pkcs8_pem(&normalised).map_err(|e8| KeyError::Pem {
            origin: origin.to_string(),
            detail: format!("PKCS#1: {e1}; PKCS#8: {e8}"),
        })?,
    };
    Ok(key)
}

/// Loads a private key from a PEM file, or the built-in names `airport-express` and `other`.
pub fn load_private_key(source: &str) -> Result<RsaPrivateKey, KeyError> {
    match source {
        "airport-express" | "builtin" => private_key_from_pem(AIRPORT_EXPRESS_PEM, source),
        "other" => private_key_from_pem(OTHER_KEY_PEM, source),
        path => {
            let text = std::fs::read_to_string(Path::new(path)).map_err(|e| KeyError::Io {
                path: path.to_string(),
                source: e,
            })?;
            private_key_from_pem(&text, path)
        }
    }
}

/// The built-in AirPort Express key.
pub fn airport_express() -> RsaPrivateKey {
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
    fn garbage_names_the_formats_it_wanted() {
        let err = private_key_from_pem("hello", "x.pem")
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.pem") && err.contains("PKCS#1"), "{err}");
    }
}
