//! RAOP payload encryption: AES-128-CBC with the session key from `rsaaeskey` and the IV from
//! `aesiv` (docs/protocols/raop.md); AirPlay 2 realtime audio: ChaCha20-Poly1305 per packet
//! under the SETUP's `shk` (docs/protocols/airplay.md, "AirPlay 2 audio").

use std::fmt;

use aes::Aes128;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};

/// AES block size: only whole blocks of a payload are encrypted (docs/protocols/raop.md).
pub const AES_BLOCK: usize = 16;

/// The session's AES-128 key (from `rsaaeskey`) and IV (from `aesiv`).
#[derive(Clone, PartialEq, Eq)]
pub struct AesParams {
    pub key: [u8; 16],
    pub iv: [u8; 16],
}

impl fmt::Debug for AesParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is a test key, but keep it out of logs by habit.
        f.debug_struct("AesParams").finish_non_exhaustive()
    }
}

/// Decrypts an RTP payload in place: AES-128-CBC with the session key and `aesiv`, the chain
/// restarted for every packet; only whole 16-byte blocks are encrypted, a trailing remainder
/// travels in clear (docs/protocols/raop.md).
pub fn decrypt_payload(aes: &AesParams, payload: &mut [u8]) {
    let whole = payload.len() / AES_BLOCK * AES_BLOCK;
    let mut cipher = cbc::Decryptor::<Aes128>::new(&aes.key.into(), &aes.iv.into());
    for block in payload[..whole].chunks_exact_mut(AES_BLOCK) {
        cipher.decrypt_block_mut(block.into());
    }
}

/// Encrypts an RTP payload in place, the inverse of [`decrypt_payload`] (same rules).
pub fn encrypt_payload(aes: &AesParams, payload: &mut [u8]) {
    let whole = payload.len() / AES_BLOCK * AES_BLOCK;
    let mut cipher = cbc::Encryptor::<Aes128>::new(&aes.key.into(), &aes.iv.into());
    for block in payload[..whole].chunks_exact_mut(AES_BLOCK) {
        cipher.encrypt_block_mut(block.into());
    }
}

/// Bytes a sealed AirPlay 2 payload carries beyond the audio: the 16-byte tag and the 8-byte nonce.
pub const SEALED_OVERHEAD: usize = crate::hap::keys::TAG_LEN + 8;

/// Opens an AirPlay 2 realtime audio packet (`packet` is the whole RTP packet): after the 12-byte
/// header come the ChaCha20-Poly1305 ciphertext, its 16-byte tag and the last 8 bytes of the nonce
/// (the first 4 are zero); the associated data is the header's bytes 4..12, timestamp and SSRC
/// (docs/protocols/airplay.md, "AirPlay 2 audio").
pub fn open_sealed(key: &[u8; 32], packet: &[u8]) -> Result<Vec<u8>, &'static str> {
    if packet.len() < 12 + SEALED_OVERHEAD {
        return Err("shorter than a header, a tag and a nonce");
    }
    let (sealed, tail) = packet[12..].split_at(packet.len() - 12 - 8);
    let mut nonce = [0u8; 8];
    nonce.copy_from_slice(tail);
    crate::hap::keys::open(key, crate::hap::keys::nonce(nonce), sealed, &packet[4..12])
        .map_err(|_| "ChaCha20-Poly1305 tag does not match")
}

/// Seals `payload` as an AirPlay 2 sender does (the inverse of [`open_sealed`]): `header` (12
/// bytes) then the sealed payload and the 8-byte nonce `counter` (little-endian).
pub fn seal(key: &[u8; 32], header: &[u8; 12], payload: &[u8], counter: u64) -> Vec<u8> {
    let nonce = counter.to_le_bytes();
    let mut packet = header.to_vec();
    packet.extend(crate::hap::keys::seal(
        key,
        crate::hap::keys::nonce(nonce),
        payload,
        &header[4..12],
    ));
    packet.extend_from_slice(&nonce);
    packet
}
