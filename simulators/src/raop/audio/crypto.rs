//! RAOP payload encryption: AES-128-CBC with the session key from `rsaaeskey` and the IV from
//! `aesiv` (docs/protocols/raop.md).

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
