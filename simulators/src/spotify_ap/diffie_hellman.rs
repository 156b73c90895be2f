//! Diffie-Hellman over the 768-bit MODP group of RFC 2409 §6.1 (Oakley group 1), generator 2,
//! as the Spotify AP handshake uses it (`docs/protocols/spotify-ap.md`, "Key exchange").
//!
//! Public values and the shared secret travel as minimal big-endian bytes: no leading zeros.
//! The secret keys HMAC-SHA1, and a 96-byte key left-padded with zeros is hashed by HMAC (keys over
//! 64 bytes are) to a different key than the shorter one, so padding breaks about 1 handshake in
//! 256.

use rand::RngCore;
use rsa::BigUint;

/// RFC 2409 §6.1, the First Oakley Group prime: 2^768 - 2^704 - 1 + 2^64 * { [2^638 pi] + 149686 }.
pub const PRIME: [u8; 96] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc9, 0x0f, 0xda, 0xa2, 0x21, 0x68, 0xc2, 0x34,
    0xc4, 0xc6, 0x62, 0x8b, 0x80, 0xdc, 0x1c, 0xd1, 0x29, 0x02, 0x4e, 0x08, 0x8a, 0x67, 0xcc, 0x74,
    0x02, 0x0b, 0xbe, 0xa6, 0x3b, 0x13, 0x9b, 0x22, 0x51, 0x4a, 0x08, 0x79, 0x8e, 0x34, 0x04, 0xdd,
    0xef, 0x95, 0x19, 0xb3, 0xcd, 0x3a, 0x43, 0x1b, 0x30, 0x2b, 0x0a, 0x6d, 0xf2, 0x5f, 0x14, 0x37,
    0x4f, 0xe1, 0x35, 0x6d, 0x6d, 0x51, 0xc2, 0x45, 0xe4, 0x85, 0xb5, 0x76, 0x62, 0x5e, 0x7e, 0xc6,
    0xf4, 0x4c, 0x42, 0xe9, 0xa6, 0x3a, 0x36, 0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
];

/// The generator.
pub const GENERATOR: u32 = 2;

/// One side's key pair.
pub struct LocalKeys {
    private: BigUint,
    public: Vec<u8>,
}

impl LocalKeys {
    /// A key pair from 95 random bytes (the size librespot draws).
    pub fn random(rng: &mut impl RngCore) -> Self {
        let mut bytes = [0u8; 95];
        rng.fill_bytes(&mut bytes);
        Self::from_private(&bytes)
    }

    /// A key pair from big-endian private-key bytes.
    pub fn from_private(bytes: &[u8]) -> Self {
        let private = BigUint::from_bytes_be(bytes);
        let public = modpow(&BigUint::from(GENERATOR), &private);
        LocalKeys { private, public }
    }

    /// The public value, minimal big-endian.
    pub fn public(&self) -> &[u8] {
        &self.public
    }

    /// The shared secret with the peer's public value, minimal big-endian.
    pub fn shared_secret(&self, remote_public: &[u8]) -> Vec<u8> {
        modpow(&BigUint::from_bytes_be(remote_public), &self.private)
    }
}

fn prime() -> BigUint {
    BigUint::from_bytes_be(&PRIME)
}

/// `base^exp mod p`, minimal big-endian. Each handshake costs two of these per side, so with the
/// `openssl` feature (default) they run on OpenSSL's `BN_mod_exp` (assembly Montgomery
/// multiplication) rather than the `rsa` crate's portable bignums (docs/performance.md, "Spotify
/// access point"); both give the same bytes (tested).
fn modpow(base: &BigUint, exp: &BigUint) -> Vec<u8> {
    #[cfg(feature = "openssl")]
    if let Some(out) = modpow_openssl(&base.to_bytes_be(), &exp.to_bytes_be()) {
        return out;
    }
    modpow_rsa_crate(base, exp)
}

fn modpow_rsa_crate(base: &BigUint, exp: &BigUint) -> Vec<u8> {
    base.modpow(exp, &prime()).to_bytes_be()
}

/// None only when OpenSSL cannot allocate.
#[cfg(feature = "openssl")]
fn modpow_openssl(base: &[u8], exp: &[u8]) -> Option<Vec<u8>> {
    use openssl::bn::{BigNum, BigNumContext};
    let mut ctx = BigNumContext::new().ok()?;
    let (base, exp) = (
        BigNum::from_slice(base).ok()?,
        BigNum::from_slice(exp).ok()?,
    );
    let p = BigNum::from_slice(&PRIME).ok()?;
    let mut out = BigNum::new().ok()?;
    out.mod_exp(&base, &exp, &p, &mut ctx).ok()?;
    let bytes = out.to_vec();
    // OpenSSL writes zero as no bytes; BigUint as one zero byte.
    Some(if bytes.is_empty() { vec![0] } else { bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prime_is_the_rfc_2409_formula() {
        // 2^768 - 2^704 - 1 + 2^64 * (floor(2^638 pi) + 149686); floor(2^638 pi) is the 2^638
        // multiple of pi, so it suffices that p has the 64 one-bits at each end the formula gives.
        assert_eq!(PRIME[..8], [0xff; 8]);
        assert_eq!(PRIME[88..], [0xff; 8]);
        // The pi digits start C90FDAA2 2168C234 C4C6628B (RFC 2409 §6.1).
        assert_eq!(
            PRIME[8..20],
            [0xc9, 0x0f, 0xda, 0xa2, 0x21, 0x68, 0xc2, 0x34, 0xc4, 0xc6, 0x62, 0x8b]
        );
    }

    #[cfg(feature = "openssl")]
    #[test]
    fn openssl_and_the_rsa_crate_give_the_same_bytes() {
        let mut over_p = PRIME.to_vec();
        over_p.push(7);
        for (base, exp) in [
            (vec![2u8], vec![0x5a; 95]),
            (vec![0x3c; 96], vec![0xa5; 95]),
            (over_p, vec![3; 10]),
            (PRIME.to_vec(), vec![1]),
            (vec![0], vec![9]),
            (vec![9], vec![0]),
        ] {
            let (b, e) = (BigUint::from_bytes_be(&base), BigUint::from_bytes_be(&exp));
            assert_eq!(
                modpow_openssl(&base, &exp),
                Some(modpow_rsa_crate(&b, &e)),
                "{base:02x?} ^ {exp:02x?}"
            );
        }
    }

    #[test]
    fn both_sides_agree() {
        let a = LocalKeys::from_private(&[3; 95]);
        let b = LocalKeys::from_private(&[5; 95]);
        assert_eq!(a.shared_secret(b.public()), b.shared_secret(a.public()));
    }

    #[test]
    fn small_values_are_minimal_big_endian() {
        let k = LocalKeys::from_private(&[10]);
        assert_eq!(
            k.public(),
            [0x04, 0x00],
            "2^10 = 0x0400, two bytes, no padding"
        );
        // (p - 1)^even = 1 mod p: a one-byte shared secret.
        let mut p_minus_1 = PRIME;
        p_minus_1[95] -= 1;
        assert_eq!(k.shared_secret(&p_minus_1), [0x01]);
    }

    #[test]
    fn a_secret_with_a_leading_zero_byte_is_shorter_than_96_bytes() {
        // About 1 private key in 256 gives a secret below 2^760; find one deterministically.
        let peer = LocalKeys::from_private(&[0x5a; 95]);
        let short = (0u8..=255)
            .flat_map(|a| (0u8..=255).map(move |b| [a, b, 1, 2, 3]))
            .map(|k| LocalKeys::from_private(&k))
            .find(|k| k.shared_secret(peer.public()).len() < 96)
            .expect("one in ~256 keys gives a short secret");
        let secret = short.shared_secret(peer.public());
        assert_ne!(secret[0], 0, "minimal: no leading zero");
        assert_eq!(secret, peer.shared_secret(short.public()));
    }
}
