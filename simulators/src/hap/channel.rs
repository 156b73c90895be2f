//! The encrypted AirPlay control connection after pair-verify (or a transient pair-setup):
//! plaintext is cut into blocks of at most 1024 bytes; each block is sent as its length (2 bytes,
//! little-endian, also the AEAD's associated data), the ChaCha20-Poly1305 ciphertext, and the
//! 16-byte tag. Each direction has its own key (HKDF-SHA512 under `Control-Salt`, info
//! `Control-Write-Encryption-Key` for what the controller writes, `Control-Read-Encryption-Key`
//! for what it reads) and its own 64-bit block counter from 0, the nonce's last 8 bytes
//! (HAP specification R2 §6.5.2; docs/protocols/hap.md).

use super::keys::{self, label, TAG_LEN};

/// Most plaintext bytes in one block.
pub const BLOCK: usize = 1024;

/// Why incoming bytes cannot be a block; the connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("encrypted block {block} says {len} bytes, more than {BLOCK}")]
    Length { block: u64, len: usize },
    #[error("encrypted block {block} does not authenticate")]
    Tag { block: u64 },
}

/// One side of an encrypted connection.
pub struct Channel {
    read_key: [u8; 32],
    write_key: [u8; 32],
    read_count: u64,
    write_count: u64,
    pending: Vec<u8>,
    broken: Option<ChannelError>,
}

impl Channel {
    fn new(read_key: [u8; 32], write_key: [u8; 32]) -> Self {
        Channel {
            read_key,
            write_key,
            read_count: 0,
            write_count: 0,
            pending: Vec::new(),
            broken: None,
        }
    }

    /// The accessory's side: it reads what the controller writes.
    pub fn accessory(shared: &[u8]) -> Self {
        Channel::new(
            keys::derive(label::CONTROL_WRITE, shared),
            keys::derive(label::CONTROL_READ, shared),
        )
    }

    /// The accessory's side of the AirPlay 2 event channel: it reads what the controller seals
    /// with the `Events-Read` key and writes with the `Events-Write` key, the same framing
    /// (docs/protocols/airplay.md, "The event channel").
    pub fn events_accessory(shared: &[u8]) -> Self {
        Channel::new(
            keys::derive(label::EVENTS_READ, shared),
            keys::derive(label::EVENTS_WRITE, shared),
        )
    }

    /// The controller's side of the event channel.
    pub fn events_controller(shared: &[u8]) -> Self {
        Channel::new(
            keys::derive(label::EVENTS_WRITE, shared),
            keys::derive(label::EVENTS_READ, shared),
        )
    }

    /// The accessory's side of an MRP data stream set up with `seed` (docs/protocols/mrp.md,
    /// "Keys"): it reads with the controller's `Output` key and writes with its `Input` key.
    pub fn data_stream_accessory(shared: &[u8], seed: u64) -> Self {
        let salt = format!("{}{seed}", label::DATA_STREAM_SALT);
        Channel::new(
            keys::derive((&salt, label::DATA_STREAM_OUTPUT), shared),
            keys::derive((&salt, label::DATA_STREAM_INPUT), shared),
        )
    }

    /// The controller's side of an MRP data stream.
    pub fn data_stream_controller(shared: &[u8], seed: u64) -> Self {
        let salt = format!("{}{seed}", label::DATA_STREAM_SALT);
        Channel::new(
            keys::derive((&salt, label::DATA_STREAM_INPUT), shared),
            keys::derive((&salt, label::DATA_STREAM_OUTPUT), shared),
        )
    }

    /// The controller's side.
    pub fn controller(shared: &[u8]) -> Self {
        Channel::new(
            keys::derive(label::CONTROL_READ, shared),
            keys::derive(label::CONTROL_WRITE, shared),
        )
    }

    /// Encrypts `plain` as blocks.
    pub fn seal(&mut self, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plain.len() + (plain.len() / BLOCK + 1) * (2 + TAG_LEN));
        for block in plain.chunks(BLOCK) {
            let len = (block.len() as u16).to_le_bytes();
            let nonce = keys::nonce(self.write_count.to_le_bytes());
            self.write_count += 1;
            out.extend_from_slice(&len);
            out.extend_from_slice(&keys::seal(&self.write_key, nonce, block, &len));
        }
        out
    }

    /// Takes bytes as they arrive and gives the plaintext of every block now complete; a partial
    /// block waits for the rest. After an error every later call gives the same error.
    pub fn open(&mut self, bytes: &[u8]) -> Result<Vec<u8>, ChannelError> {
        if let Some(e) = self.broken {
            return Err(e);
        }
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut at = 0;
        while self.pending.len() - at >= 2 {
            let aad = [self.pending[at], self.pending[at + 1]];
            let len = usize::from(u16::from_le_bytes(aad));
            if len > BLOCK {
                return Err(self.fail(ChannelError::Length {
                    block: self.read_count,
                    len,
                }));
            }
            let end = at + 2 + len + TAG_LEN;
            if self.pending.len() < end {
                break;
            }
            let nonce = keys::nonce(self.read_count.to_le_bytes());
            match keys::open(&self.read_key, nonce, &self.pending[at + 2..end], &aad) {
                Ok(plain) => out.extend_from_slice(&plain),
                Err(_) => {
                    return Err(self.fail(ChannelError::Tag {
                        block: self.read_count,
                    }))
                }
            }
            self.read_count += 1;
            at = end;
        }
        self.pending.drain(..at);
        Ok(out)
    }

    fn fail(&mut self, e: ChannelError) -> ChannelError {
        self.broken = Some(e);
        self.pending.clear();
        e
    }

    /// Bytes of an incomplete block waiting for the rest.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_first_block_matches_the_known_answer_nonce_layout() {
        // Block 0 of the controller: nonce counter 0, AAD = the 2-byte length.
        let shared = [3u8; 64];
        let mut ctl = Channel::controller(&shared);
        let wire = ctl.seal(b"GET /info RTSP/1.0\r\n\r\n");
        assert_eq!(&wire[..2], &22u16.to_le_bytes());
        let key = keys::derive(label::CONTROL_WRITE, &shared);
        let plain = keys::open(&key, keys::nonce([0; 8]), &wire[2..], &wire[..2]).unwrap();
        assert_eq!(plain, b"GET /info RTSP/1.0\r\n\r\n");
    }

    #[test]
    fn long_messages_are_cut_into_1024_byte_blocks() {
        let mut ctl = Channel::controller(&[1; 32]);
        let wire = ctl.seal(&[7u8; 2500]);
        assert_eq!(wire.len(), 2500 + 3 * (2 + TAG_LEN));
        assert_eq!(&wire[..2], &1024u16.to_le_bytes());
        let mut acc = Channel::accessory(&[1; 32]);
        assert_eq!(acc.open(&wire).unwrap(), vec![7u8; 2500]);
        assert_eq!(acc.pending(), 0);
    }

    #[test]
    fn a_corrupted_block_or_an_oversized_length_breaks_the_channel() {
        let mut ctl = Channel::controller(&[1; 32]);
        let mut acc = Channel::accessory(&[1; 32]);
        let mut wire = ctl.seal(b"hello");
        wire[4] ^= 1;
        assert_eq!(acc.open(&wire), Err(ChannelError::Tag { block: 0 }));
        assert_eq!(
            acc.open(&ctl.seal(b"x")),
            Err(ChannelError::Tag { block: 0 })
        );
        let mut acc = Channel::accessory(&[1; 32]);
        assert_eq!(
            acc.open(&[0x01, 0x04, 0, 0]),
            Err(ChannelError::Length {
                block: 0,
                len: 1025
            })
        );
    }

    #[test]
    fn the_wrong_direction_does_not_open() {
        let mut acc = Channel::accessory(&[1; 32]);
        let mut other = Channel::accessory(&[1; 32]);
        let wire = acc.seal(b"RTSP/1.0 200 OK\r\n\r\n");
        assert!(other.open(&wire).is_err());
        let mut ctl = Channel::controller(&[1; 32]);
        assert_eq!(ctl.open(&wire).unwrap(), b"RTSP/1.0 200 OK\r\n\r\n");
    }

    proptest! {
        #[test]
        fn split_at_any_bytes_round_trips(
            messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 1..4),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let mut ctl = Channel::controller(&[9; 32]);
            let mut acc = Channel::accessory(&[9; 32]);
            let wire: Vec<u8> = messages.iter().flat_map(|m| ctl.seal(m)).collect();
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
            points.push(0);
            points.push(wire.len());
            points.sort_unstable();
            let mut got = Vec::new();
            for w in points.windows(2) {
                got.extend(acc.open(&wire[w[0]..w[1]]).unwrap());
            }
            prop_assert_eq!(got, messages.concat());
            prop_assert_eq!(acc.pending(), 0);
        }

        #[test]
        fn garbage_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..1200), 1..4)) {
            let mut acc = Channel::accessory(&[9; 32]);
            for c in &chunks {
                if let Ok(p) = acc.open(c) {
                    prop_assert!(p.is_empty());
                }
            }
        }
    }
}
