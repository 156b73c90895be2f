//! SRP-6a as HomeKit pair-setup uses it: the RFC 5054 3072-bit group, generator 5, SHA-512,
//! username `Pair-Setup`, password the setup code (docs/protocols/hap.md, HAP specification R2
//! §5.6).
//!
//! The formulas are RFC 5054's, with the byte encodings of the `srptools` Python library that
//! pyatv (and so Home Assistant) computes the controller side with; an accessory must match them
//! byte for byte or the proofs differ:
//!
//! - `k = H(N | PAD(g))`, `u = H(PAD(A) | PAD(B))`, `x = H(s | H("Pair-Setup:" | PIN))`;
//! - `K = H(S)` with `S` as minimal big-endian bytes;
//! - `M1 = H(H(N) xor H(g) | H(I) | s | A | B | K)`, where `g` is the one byte 0x05, the XOR and
//!   `H(I)` are numbers written as minimal big-endian bytes, `A` and `B` minimal bytes, and `s`
//!   the salt as sent;
//! - `M2 = H(A | M1 | K)`.
//!
//! This is written on `num-bigint` rather than the `srp` crate: `srp` 0.6 computes
//! `M1 = H(A | B | S)` and `u` over unpadded keys, which no HomeKit peer accepts, and the RFC 5054
//! variant is only in 0.7 release candidates (digest 0.11, Rust 1.85), newer than this workspace.

use num_bigint::BigUint;
use sha2::{Digest, Sha512};

/// SRP username of every HomeKit pair-setup (HAP §5.6.2).
pub const USERNAME: &str = "Pair-Setup";

/// The setup code of a transient pair-setup (`X-Apple-HKP: 4`): always 3939 (docs/protocols/hap.md).
pub const TRANSIENT_PIN: &str = "3939";

/// RFC 5054 Appendix A, the 3072-bit group.
const N_HEX: &str = concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33",
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864",
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2",
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
);

/// The group generator g.
const G: u32 = 5;

/// Bytes of the modulus: the width `PAD` fills to.
const N_LEN: usize = 384;

/// Why an SRP step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SrpError {
    #[error("SRP public key is 0 mod N")]
    BadPublicKey,
    #[error("SRP proof does not match")]
    BadProof,
}

struct Group {
    n: BigUint,
    g: BigUint,
    k: BigUint,
}

fn group() -> Group {
    let n = BigUint::parse_bytes(N_HEX.as_bytes(), 16).expect("RFC 5054 modulus is hex");
    let g = BigUint::from(G);
    let k = BigUint::from_bytes_be(&hash(&[&n.to_bytes_be(), &pad(&g)]));
    Group { n, g, k }
}

fn hash(parts: &[&[u8]]) -> [u8; 64] {
    let mut h = Sha512::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// A number as exactly `N_LEN` big-endian bytes.
fn pad(v: &BigUint) -> Vec<u8> {
    let b = v.to_bytes_be();
    let mut out = vec![0u8; N_LEN.saturating_sub(b.len())];
    out.extend_from_slice(&b);
    out
}

/// A hash read as a number and written back as minimal bytes (leading zeros dropped), as
/// srptools hashes numbers.
fn minimal(bytes: &[u8]) -> Vec<u8> {
    BigUint::from_bytes_be(bytes).to_bytes_be()
}

/// `x = H(s | H("Pair-Setup:" | PIN))`.
fn private_x(salt: &[u8], pin: &str) -> BigUint {
    let inner = hash(&[USERNAME.as_bytes(), b":", pin.as_bytes()]);
    BigUint::from_bytes_be(&hash(&[salt, &inner]))
}

/// `M1` and `M2` from the session key and the public values as exchanged.
fn proofs(grp: &Group, salt: &[u8], a: &BigUint, b: &BigUint, key: &[u8]) -> ([u8; 64], [u8; 64]) {
    let hn = BigUint::from_bytes_be(&hash(&[&grp.n.to_bytes_be()]));
    let hg = BigUint::from_bytes_be(&hash(&[&grp.g.to_bytes_be()]));
    let xor = (hn ^ hg).to_bytes_be();
    let hi = minimal(&hash(&[USERNAME.as_bytes()]));
    let a = a.to_bytes_be();
    let m1 = hash(&[&xor, &hi, salt, &a, &b.to_bytes_be(), key]);
    let m2 = hash(&[&a, &m1, key]);
    (m1, m2)
}

/// `K = H(S)`, S as minimal bytes.
fn session_key(s: &BigUint) -> [u8; 64] {
    hash(&[&s.to_bytes_be()])
}

/// The accessory side: verifier and `B` from the PIN, the salt and the secret `b`.
pub struct SrpServer {
    grp: Group,
    salt: Vec<u8>,
    v: BigUint,
    b: BigUint,
    b_pub: BigUint,
}

/// What the accessory knows once the controller's proof checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// `M2`, sent back in M4.
    pub proof: [u8; 64],
    /// `K`, the shared secret every later key is derived from.
    pub key: [u8; 64],
}

impl SrpServer {
    pub fn new(pin: &str, salt: &[u8], secret: &[u8]) -> Self {
        let grp = group();
        let x = private_x(salt, pin);
        let v = grp.g.modpow(&x, &grp.n);
        let b = BigUint::from_bytes_be(secret);
        let b_pub = (&grp.k * &v + grp.g.modpow(&b, &grp.n)) % &grp.n;
        SrpServer {
            grp,
            salt: salt.to_vec(),
            v,
            b,
            b_pub,
        }
    }

    /// `B`, minimal big-endian bytes (384 but for one time in 256).
    pub fn public_key(&self) -> Vec<u8> {
        self.b_pub.to_bytes_be()
    }

    pub fn salt(&self) -> &[u8] {
        &self.salt
    }

    /// M3: checks the controller's `A` and `M1`; on success gives `M2` and `K`.
    pub fn verify(&self, client_public: &[u8], client_proof: &[u8]) -> Result<Verified, SrpError> {
        let a = BigUint::from_bytes_be(client_public);
        if (&a % &self.grp.n) == BigUint::ZERO {
            return Err(SrpError::BadPublicKey);
        }
        let u = BigUint::from_bytes_be(&hash(&[&pad(&a), &pad(&self.b_pub)]));
        let s = (&a * self.v.modpow(&u, &self.grp.n)).modpow(&self.b, &self.grp.n);
        let key = session_key(&s);
        let (m1, m2) = proofs(&self.grp, &self.salt, &a, &self.b_pub, &key);
        if m1.as_slice() != client_proof {
            return Err(SrpError::BadProof);
        }
        Ok(Verified { proof: m2, key })
    }
}

/// The controller side: `A` from the secret `a`, then `M1` and `K` from the accessory's salt
/// and `B`.
pub struct SrpClient {
    grp: Group,
    pin: String,
    a: BigUint,
    a_pub: BigUint,
}

/// What the controller sends in M3 and keeps for M4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientProof {
    /// `A`, minimal big-endian bytes.
    pub public_key: Vec<u8>,
    /// `M1`.
    pub proof: [u8; 64],
    /// `M2` as the accessory must send it in M4.
    pub expected_reply: [u8; 64],
    /// `K`.
    pub key: [u8; 64],
}

impl SrpClient {
    pub fn new(pin: &str, secret: &[u8]) -> Self {
        let grp = group();
        let a = BigUint::from_bytes_be(secret);
        let a_pub = grp.g.modpow(&a, &grp.n);
        SrpClient {
            grp,
            pin: pin.to_string(),
            a,
            a_pub,
        }
    }

    /// M2 → M3: `A`, `M1`, and what M4 must prove.
    pub fn respond(&self, salt: &[u8], server_public: &[u8]) -> Result<ClientProof, SrpError> {
        let n = &self.grp.n;
        let b = BigUint::from_bytes_be(server_public);
        if (&b % n) == BigUint::ZERO {
            return Err(SrpError::BadPublicKey);
        }
        let u = BigUint::from_bytes_be(&hash(&[&pad(&self.a_pub), &pad(&b)]));
        let x = private_x(salt, &self.pin);
        let kv = (&self.grp.k * self.grp.g.modpow(&x, n)) % n;
        let base = ((&b % n) + n - kv) % n;
        let s = base.modpow(&(&self.a + &u * &x), n);
        let key = session_key(&s);
        let (m1, m2) = proofs(&self.grp, salt, &self.a_pub, &b, &key);
        Ok(ClientProof {
            public_key: self.a_pub.to_bytes_be(),
            proof: m1,
            expected_reply: m2,
            key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hap::keys::tests::unhex;

    // Made with Python's srptools 1.0.1 (the version pyatv pins), in a scratch venv
    // (`python3 -m venv /tmp/v && /tmp/v/bin/pip install srptools==1.0.1`):
    //   ctx = SRPContext("Pair-Setup", "1234", prime=constants.PRIME_3072,
    //                    generator=constants.PRIME_3072_GEN, hash_func=hashlib.sha512)
    //   client = SRPClientSession(ctx, bytes(range(0x40, 0x60)).hex())
    //   v = ctx.get_common_password_verifier(ctx.get_common_password_hash(bytes(range(16))))
    //   server = SRPServerSession(SRPContext("Pair-Setup", prime=…, generator=…,
    //                    hash_func=hashlib.sha512), "%x" % v, bytes(range(0x80, 0xA0)).hex())
    //   client.process(server.public, bytes(range(16)).hex())  -> K, M1, M2
    // and both sessions' verify_proof accepted the other's proof.
    const A: &str = "834013c314682b58f3597a00833e508c1239fef5ba32ab644ee9d6b2ed188938ffcf1646dd251cb458bd01ba086daa4564e4583067383a39387f174452da24edf34aa55a42379a5966f7aa13f1f171537da624e887ae95e09e108c96fd5950a119ef5b8812bf283ea0a9429e322948d87d6093b407f5382baf569472c857d9bd0032af1fb046a8052d42edc2332c7821e84c7afd1ea3823123574633acad7c4f028c78000c270d067ed2378ec859b700eee9d71338e0ccce5bf02a8bf5fd80735872ccc4a2df085ca009d9cb1650d58c2c20caaa4a542d2f019aced421798f05fe53598cb4457af2382fba455971dbbd8be858dbdc9baac6b6046ce7b773d0324d3df9dc68209a3ed42a276b2d9a8ad52aa790ddf451d347e3bbdfd1fdbdc8e9a19d88bb2e4680e16a44ddb5775b914d7ef4363174519a828647d43f5c68ec605110a74157f68d6bbc8094510b5918ed40836a7206a8c72a9017429e8e09b4cd62fe8c3c9c8fe2961c4be8de687412ce4b6df19ac8a6c64cf2c1b3d49d6b0749";
    const B: &str = "746a911f85214f6ce3755739694ed0ee8a73bbe8abe4dd13f6a8521f852120e701c8fbd253f797f0d1b82a0239e3ca61ef8cef47f81d1367438dcd8da2c05523c22291163e97603df0d7101929a4b19c6b8deafc737f502b0d235998679e28aa753f1eb86536a9115f1c48e97902e44b7703f6be7c76a0242e3e73830cfe04c4c7468269d3208ecab51664835a0554457ed223d4bf10b50d21e483292595bfc55ce2dcbd8e5a2303c7fb276980b5f96f40d3ce2713522eeadbf5eff469b573dadef32713a56a00265841b7859ff18a931534a9137a5efeaf8ae6fe5aa4fdf9c25c8ddc2f89991068a81305b343cedcd6fded99dee0e6c89b2e8cf1811ca0801b7c24fbded38c6d227b2c71eddaf3ebbabc9ac4fb1cb1d38d6114f2f1c48486f8e83f440fb91e5cf9f2bc8493902f20c7bea4e2e84569a044deb742e417021765a369145dab5ac0f3933b71b9904f30f136c94069c1a6f8e65fa13f2374646fc1dd6b045e11bb1fe859caed192eba18e63cd8cb260e025c14304cd6e3eb5dd10b";
    const K: &str = "5e541e1d7b0fe8d2d9da25688c28eb1368aff781cfc6937b0d18e1e7c84fbfece7a68b5929304e857bbd7e215fa1b14ea1796d219a262f4d507837121d9bd9a5";
    const M1: &str = "a0f27edaaa091c10c485d6f7a02ebae3f55ad44f8559f16c338ea9317478af15c90aa21ca7d231cfa99180d788fba3cff8257bef5efa03e9ea736b0e01bcd595";
    const M2: &str = "cc472bfd42700c29faf1e6badbe0ec9c341aa3035ef7d68d1c53307f7559c045da9689713083795a07eb0fbee5bd679b2bcfbd5311fb787cd94f7b4184f362e7";

    fn salt() -> Vec<u8> {
        (0u8..16).collect()
    }

    #[test]
    fn server_matches_srptools() {
        let server = SrpServer::new("1234", &salt(), &(0x80u8..0xA0).collect::<Vec<_>>());
        assert_eq!(server.public_key(), unhex(B));
        let ok = server.verify(&unhex(A), &unhex(M1)).unwrap();
        assert_eq!(ok.key.to_vec(), unhex(K));
        assert_eq!(ok.proof.to_vec(), unhex(M2));
    }

    #[test]
    fn client_matches_srptools() {
        let client = SrpClient::new("1234", &(0x40u8..0x60).collect::<Vec<_>>());
        let p = client.respond(&salt(), &unhex(B)).unwrap();
        assert_eq!(p.public_key, unhex(A));
        assert_eq!(p.proof.to_vec(), unhex(M1));
        assert_eq!(p.expected_reply.to_vec(), unhex(M2));
        assert_eq!(p.key.to_vec(), unhex(K));
    }

    #[test]
    fn a_wrong_pin_gives_a_proof_the_server_refuses() {
        let server = SrpServer::new("1234", &salt(), &[9; 32]);
        let client = SrpClient::new("1235", &[7; 32]);
        let p = client.respond(&salt(), &server.public_key()).unwrap();
        assert_eq!(
            server.verify(&p.public_key, &p.proof),
            Err(SrpError::BadProof)
        );
        let right = SrpClient::new("1234", &[7; 32]);
        let p = right.respond(&salt(), &server.public_key()).unwrap();
        assert_eq!(server.verify(&p.public_key, &p.proof).unwrap().key, p.key);
    }

    #[test]
    fn public_keys_that_are_zero_mod_n_are_refused() {
        let server = SrpServer::new("1234", &salt(), &[9; 32]);
        assert_eq!(server.verify(&[], &[0; 64]), Err(SrpError::BadPublicKey));
        let n = group().n.to_bytes_be();
        assert_eq!(server.verify(&n, &[0; 64]), Err(SrpError::BadPublicKey));
        let client = SrpClient::new("1234", &[7; 32]);
        assert_eq!(client.respond(&salt(), &n), Err(SrpError::BadPublicKey));
    }
}
