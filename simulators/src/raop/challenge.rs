//! `Apple-Challenge` → `Apple-Response`, and the `rsaaeskey` of ANNOUNCE.
//!
//! From docs/protocols/raop.md:
//! - the sender puts 16 random bytes, base64 without padding, in `Apple-Challenge` (on OPTIONS or
//!   ANNOUNCE; it is answered on whichever request carries it);
//! - the receiver builds challenge ‖ IP of the accepted socket (4 bytes, 16 for IPv6) ‖ its 6-byte
//!   hardware id, zero-padded up to 32 bytes but never cut, and applies the RSA PKCS#1 v1.5 type-1
//!   private-key operation with no DigestInfo; `Apple-Response` is that, base64 without padding;
//! - a challenge longer than 16 bytes gets no `Apple-Response`;
//! - `rsaaeskey` is the AES-128 key encrypted with RSA-OAEP (SHA-1, MGF1-SHA-1, empty label).

use std::net::IpAddr;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use rsa::{Oaep, Pkcs1v15Sign, RsaPublicKey};

use super::keys::DeviceKey;
use thiserror::Error;

/// Base64 as RAOP uses it: written without `=`, read with or without.
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ChallengeError {
    #[error("not base64: {0}")]
    Base64(String),
    #[error("challenge is {0} bytes; senders send 16 and longer ones get no Apple-Response")]
    TooLong(usize),
    #[error("RSA operation failed: {0}")]
    Rsa(String),
    #[error("rsaaeskey decrypts to {0} bytes, not the 16 of an AES-128 key")]
    KeyLength(usize),
    #[error("Apple-Response does not verify against the device's public key, address and hardware id: {0}")]
    Mismatch(String),
}

/// Decodes RAOP base64: padding optional, whitespace (folded lines) ignored.
pub fn decode_b64(text: &str) -> Result<Vec<u8>, ChallengeError> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    B64.decode(compact.as_bytes())
        .map_err(|e| ChallengeError::Base64(e.to_string()))
}

/// Encodes RAOP base64 (no padding).
pub fn encode_b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// The address bytes that go into the signed buffer: 4 for IPv4 (also IPv4-mapped IPv6), 16 for
/// IPv6.
fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.octets().to_vec(),
            None => v6.octets().to_vec(),
        },
    }
}

/// challenge ‖ ip ‖ hw, zero-padded to 32 bytes (never cut).
pub fn signed_buffer(challenge: &[u8], ip: IpAddr, hw: &[u8; 6]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(38);
    buf.extend_from_slice(challenge);
    buf.extend_from_slice(&ip_bytes(ip));
    buf.extend_from_slice(hw);
    if buf.len() < 32 {
        buf.resize(32, 0);
    }
    buf
}

/// The `Apple-Response` value for an `Apple-Challenge` value.
pub fn apple_response(
    key: &DeviceKey,
    challenge_b64: &str,
    ip: IpAddr,
    hw: &[u8; 6],
) -> Result<String, ChallengeError> {
    let challenge = decode_b64(challenge_b64)?;
    if challenge.len() > 16 {
        return Err(ChallengeError::TooLong(challenge.len()));
    }
    let buf = signed_buffer(&challenge, ip, hw);
    // The bare PKCS#1 v1.5 type-1 operation (no DigestInfo) is deterministic: the seed's response
    // is reproduced byte for byte.
    let sig = key.sign_raw(&buf).map_err(|e| ChallengeError::Rsa(e.0))?;
    Ok(encode_b64(&sig))
}

/// Checks an `Apple-Response` as a conforming sender must (the common open-source senders don't).
pub fn verify_apple_response(
    key: &RsaPublicKey,
    response_b64: &str,
    challenge: &[u8],
    ip: IpAddr,
    hw: &[u8; 6],
) -> Result<(), ChallengeError> {
    let sig = decode_b64(response_b64)?;
    let buf = signed_buffer(challenge, ip, hw);
    key.verify(Pkcs1v15Sign::new_unprefixed(), &buf, &sig)
        .map_err(|e| ChallengeError::Mismatch(e.to_string()))
}

/// Decrypts `rsaaeskey` to the AES-128 session key.
pub fn decrypt_aes_key(key: &DeviceKey, rsaaeskey_b64: &str) -> Result<[u8; 16], ChallengeError> {
    let wrapped = decode_b64(rsaaeskey_b64)?;
    let plain = key
        .decrypt_oaep_sha1(&wrapped)
        .map_err(|e| ChallengeError::Rsa(e.0))?;
    plain
        .as_slice()
        .try_into()
        .map_err(|_| ChallengeError::KeyLength(plain.len()))
}

/// Encrypts an AES key for `rsaaeskey` (sender side).
pub fn encrypt_aes_key<R: rand::CryptoRng + rand::RngCore>(
    key: &RsaPublicKey,
    aes_key: &[u8; 16],
    rng: &mut R,
) -> Result<String, ChallengeError> {
    let wrapped = key
        .encrypt(rng, Oaep::new::<sha1::Sha1>(), aes_key)
        .map_err(|e| ChallengeError::Rsa(e.to_string()))?;
    Ok(encode_b64(&wrapped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raop::keys::airport_express;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use std::net::Ipv4Addr;

    /// docs/protocols/raop.md: `Apple-Response`, folded lines joined.
    const SEED_RESPONSE: &str = "u+msU8Cc7KBrVPjI/Ir8fOL8+C5D3Jsw1+acaW3MNTndrTQAeb/a5m10UVBX6wb/DYQGY+b28ksSwBjN0nFOk4Y2cODEf83FAh7BmkLpmpkpplp7zVXQ+Z9DcB6gC60ZsS3t98aoR7tSzVLKZNgi2X2sC+vGsz utQxX03HK008VjcdngHv3g1p2knoETd07T6eVfZCmPqp6Ga7Dj8VIIj/GEP3AjjDx3lJnQBXUDmxM484YXLXZjWFXCiY8GJt6whjf7/2c3rIoT3Z7PQpEvPmM1MXU9cv4NL59Y/q0OAVQ38foOz7eGAhfvjOsCnHU25aik7/7ToIYt1tyVtap/kA";
    const SEED_CHALLENGE: &str = "09KF45soMYmvj6dpsUGiIg";
    /// The receiver of the seed: 10.0.1.103, hardware id 00:11:24:00:44:91 (docs/protocols/raop.md).
    const SEED_HW: [u8; 6] = [0x00, 0x11, 0x24, 0x00, 0x44, 0x91];
    const SEED_RSAAESKEY: &str = "5QYIqmdZGTONY5SHjEJrqAhaa0W9wzDC5i6q221mdGZJ5ubO6KgyhC6U83wpY87TFdPRdfPQl2kVC7+Uefmx1bXdIUo07ZcJsqMbgtje4w2JQw0bUw2BlzNPmVGQOxfdpGc3LXZzNE0jI1D4conUEiW6rrzikXBhk7Y/i2naw13ayyxaSwtkiJ0ltBQGYGErbV2tx43QSNj7O0JIG9GrF2GZZ6/UHo4VH+ZXgQ4NZvP/QXPCsLutZsvusFDzIEq7TN1fveINOiwrzlN+bckEixvhXlvoQTWE2tjbmQYhMvOFIly5gNbZiXi0l5AdolX4jDC2vndFHqWDks/3sPikNg";

    fn seed_ip() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 1, 103))
    }

    #[test]
    fn seed_challenge_is_answered_byte_for_byte() {
        let got = apple_response(&airport_express(), SEED_CHALLENGE, seed_ip(), &SEED_HW).unwrap();
        let want: String = SEED_RESPONSE
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn seed_rsaaeskey_decrypts_to_the_known_aes_key() {
        let k = decrypt_aes_key(&airport_express(), SEED_RSAAESKEY).unwrap();
        assert_eq!(
            k,
            [
                0x02, 0x7d, 0x72, 0x93, 0xd8, 0xcc, 0x56, 0xa9, 0x1a, 0x3b, 0x0a, 0x08, 0x6d, 0x47,
                0x59, 0x96
            ]
        );
    }

    #[test]
    fn padded_challenge_gets_the_same_answer() {
        let key = airport_express();
        let a = apple_response(&key, SEED_CHALLENGE, seed_ip(), &SEED_HW).unwrap();
        let b = apple_response(&key, "09KF45soMYmvj6dpsUGiIg==", seed_ip(), &SEED_HW).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn long_challenge_gets_no_response() {
        let long = encode_b64(&[7u8; 17]);
        assert_eq!(
            apple_response(&airport_express(), &long, seed_ip(), &SEED_HW),
            Err(ChallengeError::TooLong(17))
        );
    }

    #[test]
    fn ipv6_buffer_is_38_bytes_not_cut() {
        let buf = signed_buffer(&[1; 16], "::1".parse().unwrap(), &SEED_HW);
        assert_eq!(buf.len(), 38);
        let mapped = signed_buffer(&[1; 16], "::ffff:10.0.1.103".parse().unwrap(), &SEED_HW);
        assert_eq!(mapped, signed_buffer(&[1; 16], seed_ip(), &SEED_HW));
    }

    #[test]
    fn verification_catches_a_wrong_key_and_a_wrong_address() {
        let key = airport_express();
        let public = key.to_public_key();
        let challenge = decode_b64(SEED_CHALLENGE).unwrap();
        let good = apple_response(&key, SEED_CHALLENGE, seed_ip(), &SEED_HW).unwrap();
        verify_apple_response(&public, &good, &challenge, seed_ip(), &SEED_HW).unwrap();
        let other = crate::raop::keys::builtin_key("other").unwrap();
        let bad = apple_response(&other, SEED_CHALLENGE, seed_ip(), &SEED_HW).unwrap();
        assert!(verify_apple_response(&public, &bad, &challenge, seed_ip(), &SEED_HW).is_err());
        let elsewhere = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert!(verify_apple_response(&public, &good, &challenge, elsewhere, &SEED_HW).is_err());
    }

    #[test]
    fn aes_key_round_trips_through_oaep() {
        let key = airport_express();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let wrapped = encrypt_aes_key(&key.to_public_key(), &[9; 16], &mut rng).unwrap();
        assert_eq!(decrypt_aes_key(&key, &wrapped).unwrap(), [9; 16]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn arbitrary_challenge_text_never_panics(s in "[ -~]{0,64}", ip in any::<[u8; 4]>()) {
            let key = airport_express();
            let ip = IpAddr::V4(Ipv4Addr::from(ip));
            if let Ok(resp) = apple_response(&key, &s, ip, &SEED_HW) {
                let challenge = decode_b64(&s).unwrap();
                prop_assert!(verify_apple_response(&key.to_public_key(), &resp, &challenge, ip, &SEED_HW).is_ok());
            }
            let _ = decrypt_aes_key(&key, &s);
        }
    }
}
