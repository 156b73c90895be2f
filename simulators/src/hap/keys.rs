//! The keys of a HomeKit session and how messages are sealed with them (docs/protocols/hap.md,
//! HAP specification R2 §5.6–5.7 and §6.5.2).
//!
//! - Every key is HKDF-SHA512 (RFC 5869) of a shared secret (SRP `K` in pair-setup, the X25519
//!   secret in pair-verify) with an ASCII salt and info, 32 bytes long.
//! - Every message is sealed with ChaCha20-Poly1305 (RFC 8439): a 12-byte nonce of 4 zero bytes
//!   followed by 8 bytes, which are the message label (`PS-Msg05`, `PS-Msg06`, `PV-Msg02`,
//!   `PV-Msg03`) in pairing and a little-endian counter on an encrypted channel; the 16-byte tag
//!   follows the ciphertext.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::ChaCha20Poly1305;
use hkdf::Hkdf;
use sha2::Sha512;

/// Salt and info of each key (HAP §5.6.5–5.6.6, §5.7.2; pyatv `protocols/airplay/auth`).
pub mod label {
    pub const SETUP_ENCRYPT: (&str, &str) = ("Pair-Setup-Encrypt-Salt", "Pair-Setup-Encrypt-Info");
    pub const SETUP_CONTROLLER_SIGN: (&str, &str) = (
        "Pair-Setup-Controller-Sign-Salt",
        "Pair-Setup-Controller-Sign-Info",
    );
    pub const SETUP_ACCESSORY_SIGN: (&str, &str) = (
        "Pair-Setup-Accessory-Sign-Salt",
        "Pair-Setup-Accessory-Sign-Info",
    );
    pub const VERIFY_ENCRYPT: (&str, &str) =
        ("Pair-Verify-Encrypt-Salt", "Pair-Verify-Encrypt-Info");
    /// The AirPlay control connection after pair-verify: the controller writes with this key…
    pub const CONTROL_WRITE: (&str, &str) = ("Control-Salt", "Control-Write-Encryption-Key");
    /// …and reads with this one.
    pub const CONTROL_READ: (&str, &str) = ("Control-Salt", "Control-Read-Encryption-Key");
    /// The AirPlay 2 event channel, named from the controller's side the other way round: the
    /// controller writes with the `Read` key and reads with the `Write` key
    /// (docs/protocols/airplay.md, "The event channel").
    pub const EVENTS_READ: (&str, &str) = ("Events-Salt", "Events-Read-Encryption-Key");
    pub const EVENTS_WRITE: (&str, &str) = ("Events-Salt", "Events-Write-Encryption-Key");
    /// The MRP data stream (docs/protocols/mrp.md, "Keys"): the salt is this prefix followed by
    /// the decimal `seed` of the stream's SETUP; the controller writes with the `Output` key and
    /// reads with the `Input` key.
    pub const DATA_STREAM_SALT: &str = "DataStream-Salt";
    pub const DATA_STREAM_OUTPUT: &str = "DataStream-Output-Encryption-Key";
    pub const DATA_STREAM_INPUT: &str = "DataStream-Input-Encryption-Key";
}

/// Nonce labels of the sealed pairing messages.
pub const PS_MSG05: &[u8; 8] = b"PS-Msg05";
pub const PS_MSG06: &[u8; 8] = b"PS-Msg06";
pub const PV_MSG02: &[u8; 8] = b"PV-Msg02";
pub const PV_MSG03: &[u8; 8] = b"PV-Msg03";

/// Length of the Poly1305 tag after every sealed message.
pub const TAG_LEN: usize = 16;

/// A sealed message did not authenticate under its key and nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ChaCha20-Poly1305 tag does not match")]
pub struct OpenError;

/// HKDF-SHA512 of `secret` under `(salt, info)`, 32 bytes.
pub fn derive((salt, info): (&str, &str), secret: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    Hkdf::<Sha512>::new(Some(salt.as_bytes()), secret)
        .expand(info.as_bytes(), &mut out)
        .expect("32 bytes is a valid HKDF-SHA512 length");
    out
}

/// The 12-byte nonce: 4 zero bytes, then the 8 given.
pub fn nonce(tail: [u8; 8]) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&tail);
    n
}

/// Seals `plain` under `key`: ciphertext then tag.
pub fn seal(key: &[u8; 32], nonce: [u8; 12], plain: &[u8], aad: &[u8]) -> Vec<u8> {
    ChaCha20Poly1305::new(key.into())
        .encrypt(&nonce.into(), Payload { msg: plain, aad })
        .expect("ChaCha20-Poly1305 seals any length a message can have")
}

/// Opens `sealed` (ciphertext then tag) under `key`.
pub fn open(
    key: &[u8; 32],
    nonce: [u8; 12],
    sealed: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, OpenError> {
    ChaCha20Poly1305::new(key.into())
        .decrypt(&nonce.into(), Payload { msg: sealed, aad })
        .map_err(|_| OpenError)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // Known answers computed with Python's standard library (hmac, hashlib: HKDF by RFC 5869's
    // two steps) and the `cryptography` package's ChaCha20Poly1305, from the SRP key `K` of the
    // srptools vector in `srp.rs`:
    //   ek = hkdf(b"Pair-Setup-Encrypt-Salt", b"Pair-Setup-Encrypt-Info", K)
    //   ChaCha20Poly1305(ek).encrypt(b"\0\0\0\0PS-Msg05", b"\x01\x03abc", None)
    //   cw = hkdf(b"Control-Salt", b"Control-Write-Encryption-Key", K)
    //   ChaCha20Poly1305(cw).encrypt(b"\0" * 4 + (1).to_bytes(8, "little"),
    //                                b"GET /info RTSP/1.0\r\n\r\n", (22).to_bytes(2, "little"))
    const K: &str = "5e541e1d7b0fe8d2d9da25688c28eb1368aff781cfc6937b0d18e1e7c84fbfece7a68b5929304e857bbd7e215fa1b14ea1796d219a262f4d507837121d9bd9a5";

    #[test]
    fn hkdf_sha512_known_answers() {
        let k = unhex(K);
        assert_eq!(
            derive(label::SETUP_ENCRYPT, &k).to_vec(),
            unhex("2906c321922870c75b4aaaa277552f2bb4c3d4c6b6ddb2de84bd1c7783db2c0b")
        );
        assert_eq!(
            derive(label::CONTROL_WRITE, &k).to_vec(),
            unhex("45697a52e57d0f1c1c5f39a8b1f7989a85c584712f34fd84a6a86773b06bd755")
        );
    }

    #[test]
    fn chacha20_poly1305_known_answers_with_both_nonce_layouts() {
        let k = unhex(K);
        let ek = derive(label::SETUP_ENCRYPT, &k);
        let sealed = seal(&ek, nonce(*PS_MSG05), b"\x01\x03abc", &[]);
        assert_eq!(sealed, unhex("f8d8e0b19db6b5df85d43ffb2ed2a69a10bff6c99e"));
        assert_eq!(
            open(&ek, nonce(*PS_MSG05), &sealed, &[]).unwrap(),
            b"\x01\x03abc"
        );
        assert_eq!(open(&ek, nonce(*PS_MSG06), &sealed, &[]), Err(OpenError));

        let cw = derive(label::CONTROL_WRITE, &k);
        let plain = b"GET /info RTSP/1.0\r\n\r\n";
        let frame = seal(&cw, nonce(1u64.to_le_bytes()), plain, &22u16.to_le_bytes());
        assert_eq!(
            frame,
            unhex("29c3595e9b06af7f0548963fa0e15e445a3fab8d67183016949e7e7ed465d4f0935ce73c879a")
        );
        assert_eq!(
            open(&cw, nonce(1u64.to_le_bytes()), &frame, &23u16.to_le_bytes()),
            Err(OpenError)
        );
    }
}
