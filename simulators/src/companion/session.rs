//! Companion session encryption after pair-verify (docs/protocols/companion.md, "Session
//! encryption"): each direction has its own key, HKDF-SHA512 of the pair-verify X25519 secret
//! with an empty salt and the info `ClientEncrypt-main` (what the client writes) or
//! `ServerEncrypt-main` (what the device writes), and its own counter from 0. The nonce is the
//! counter as 12 bytes little-endian, so its zero bytes come after it, unlike HAP's 4 leading
//! zeros (docs/protocols/hap.md). The frame header is the associated data.

use super::frame::{self, Frame, FrameError, FrameType, HEADER_LEN};
use crate::hap::keys::{self, OpenError, TAG_LEN};

/// HKDF salt and info of the key the client encrypts with.
pub const CLIENT_ENCRYPT: (&str, &str) = ("", "ClientEncrypt-main");
/// HKDF salt and info of the key the device encrypts with.
pub const SERVER_ENCRYPT: (&str, &str) = ("", "ServerEncrypt-main");

/// The nonce of message `counter`.
pub fn nonce(counter: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&counter.to_le_bytes());
    n
}

/// One side of an encrypted Companion connection.
#[derive(Clone)]
pub struct Session {
    read_key: [u8; 32],
    write_key: [u8; 32],
    read_count: u64,
    write_count: u64,
}

impl Session {
    /// The device's side: it reads what the client encrypts.
    pub fn device(shared: &[u8]) -> Self {
        Session {
            read_key: keys::derive(CLIENT_ENCRYPT, shared),
            write_key: keys::derive(SERVER_ENCRYPT, shared),
            read_count: 0,
            write_count: 0,
        }
    }

    /// The client's side.
    pub fn client(shared: &[u8]) -> Self {
        Session {
            read_key: keys::derive(SERVER_ENCRYPT, shared),
            write_key: keys::derive(CLIENT_ENCRYPT, shared),
            read_count: 0,
            write_count: 0,
        }
    }

    /// Header and sealed payload of a frame carrying `plain` (an empty payload stays empty and
    /// uses no nonce).
    pub fn seal(&mut self, kind: FrameType, plain: &[u8]) -> Result<Vec<u8>, FrameError> {
        if plain.is_empty() {
            return Ok(frame::header(kind, 0)?.to_vec());
        }
        let header = frame::header(kind, plain.len() + TAG_LEN)?;
        let sealed = keys::seal(&self.write_key, nonce(self.write_count), plain, &header);
        self.write_count += 1;
        let mut out = header.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The plaintext of a frame read from the peer.
    pub fn open(&mut self, frame: &Frame) -> Result<Vec<u8>, OpenError> {
        if frame.payload.is_empty() {
            return Ok(Vec::new());
        }
        let plain = keys::open(
            &self.read_key,
            nonce(self.read_count),
            &frame.payload,
            &frame.header,
        )?;
        self.read_count += 1;
        Ok(plain)
    }
}

/// A frame in the clear: header and payload.
pub fn plain(kind: FrameType, payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    let mut out = frame::header(kind, payload.len())?.to_vec();
    out.extend_from_slice(payload);
    Ok(out)
}

/// Flips one bit of a sealed frame's tag (its last byte), so that it no longer authenticates.
pub fn spoil_tag(frame: &mut [u8]) {
    if frame.len() > HEADER_LEN {
        if let Some(last) = frame.last_mut() {
            *last ^= 0x01;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hap::keys::tests::unhex;

    // Computed with Python's `cryptography` package (HKDF-SHA512 with salt b"", then
    // ChaCha20Poly1305 with nonce (0).to_bytes(12, "little")), as pyatv's client does:
    //   shared = bytes(range(32))
    //   ck = HKDF(SHA512(), 32, b"", b"ClientEncrypt-main").derive(shared)
    //   ChaCha20Poly1305(ck).encrypt((1).to_bytes(12, "little"), b"\xe0", bytes.fromhex("08000011"))
    const CLIENT_KEY: &str = "9f8aa265911271e6d6e90daf564d82b5913d4b760373afbd6c03e675af681f8d";
    const SEALED: &str = "08000011d9cee48a60aab82128a9049eb9b4f28a15";

    #[test]
    fn keys_and_nonces_match_pyatv() {
        let shared: Vec<u8> = (0u8..32).collect();
        let mut client = Session::client(&shared);
        assert_eq!(client.write_key.to_vec(), unhex(CLIENT_KEY));
        client.write_count = 1;
        let sealed = client.seal(FrameType::EOpack, &[0xE0]).unwrap();
        assert_eq!(sealed, unhex(SEALED));
        let mut device = Session::device(&shared);
        device.read_count = 1;
        let frame = Frame {
            header: sealed[..4].try_into().unwrap(),
            payload: sealed[4..].to_vec(),
        };
        assert_eq!(device.open(&frame).unwrap(), [0xE0]);
        assert_eq!(device.open(&frame), Err(OpenError), "counter moved on");
    }

    #[test]
    fn both_sides_talk_and_a_spoiled_tag_is_refused() {
        let shared = [7u8; 32];
        let (mut c, mut d) = (Session::client(&shared), Session::device(&shared));
        for msg in [&b"one"[..], b"", b"three"] {
            let bytes = d.seal(FrameType::EOpack, msg).unwrap();
            let frame = Frame {
                header: bytes[..4].try_into().unwrap(),
                payload: bytes[4..].to_vec(),
            };
            assert_eq!(c.open(&frame).unwrap(), msg);
        }
        let mut bytes = c.seal(FrameType::EOpack, b"x").unwrap();
        spoil_tag(&mut bytes);
        let frame = Frame {
            header: bytes[..4].try_into().unwrap(),
            payload: bytes[4..].to_vec(),
        };
        assert_eq!(d.open(&frame), Err(OpenError));
        assert_eq!(nonce(1)[..], [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
}
