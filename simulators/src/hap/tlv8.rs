//! TLV8, the item list of every HomeKit pairing message: a type byte, a length byte, then that
//! many value bytes (HAP specification R2, §14.1 "TLV8"; docs/protocols/hap.md).
//!
//! A value longer than 255 bytes is sent as consecutive items of the same type, each but the last
//! 255 bytes long, and the reader joins them again (HAP §14.1.1): the 384-byte SRP public keys
//! always arrive that way. Two values of one type that follow each other are separated by an empty
//! item of type 0xFF (HAP §14.1.2).

/// Item types of pair-setup and pair-verify (HAP Table 5-6; pyatv `auth/hap_tlv8.py`).
pub mod kind {
    pub const METHOD: u8 = 0x00;
    pub const IDENTIFIER: u8 = 0x01;
    pub const SALT: u8 = 0x02;
    pub const PUBLIC_KEY: u8 = 0x03;
    pub const PROOF: u8 = 0x04;
    pub const ENCRYPTED_DATA: u8 = 0x05;
    /// `kTLVType_State`: the message number M1..M6.
    pub const STATE: u8 = 0x06;
    pub const ERROR: u8 = 0x07;
    pub const RETRY_DELAY: u8 = 0x08;
    pub const SIGNATURE: u8 = 0x0A;
    /// Apple's controller name, an OPACK dictionary `{"name": …}` in M5.
    pub const NAME: u8 = 0x11;
    pub const FLAGS: u8 = 0x13;
    pub const SEPARATOR: u8 = 0xFF;
}

/// `kTLVType_Flags` bit of a transient pair-setup (M1–M4 only, no long-term keys exchanged).
pub const FLAG_TRANSIENT: u8 = 0x10;

/// The error codes an accessory answers with in an `Error` item (HAP Table 5-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display, strum::EnumString)]
#[repr(u8)]
pub enum ErrorCode {
    Unknown = 0x01,
    Authentication = 0x02,
    BackOff = 0x03,
    MaxPeers = 0x04,
    MaxTries = 0x05,
    Unavailable = 0x06,
    Busy = 0x07,
}

impl ErrorCode {
    pub fn from_byte(b: u8) -> Option<Self> {
        use ErrorCode::*;
        [
            Unknown,
            Authentication,
            BackOff,
            MaxPeers,
            MaxTries,
            Unavailable,
            Busy,
        ]
        .into_iter()
        .find(|e| *e as u8 == b)
    }
}

/// Why bytes are not TLV8.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Tlv8Error {
    #[error("TLV8 item of type {kind:#04x} at byte {at} says {len} bytes, only {left} follow")]
    Truncated {
        kind: u8,
        at: usize,
        len: usize,
        left: usize,
    },
    #[error("TLV8 item of type {kind:#04x} at byte {at} has no length byte")]
    NoLength { kind: u8, at: usize },
}

/// A decoded TLV8 message: its values in order, fragments already joined.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tlv8 {
    items: Vec<(u8, Vec<u8>)>,
}

impl Tlv8 {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a value (any length) of type `kind`.
    pub fn with(mut self, kind: u8, value: impl Into<Vec<u8>>) -> Self {
        self.push(kind, value);
        self
    }

    pub fn push(&mut self, kind: u8, value: impl Into<Vec<u8>>) {
        self.items.push((kind, value.into()));
    }

    /// The first value of type `kind`.
    pub fn get(&self, kind: u8) -> Option<&[u8]> {
        self.items
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of type `kind` when it is exactly one byte (State, Method, Error, Flags).
    pub fn byte(&self, kind: u8) -> Option<u8> {
        match self.get(kind) {
            Some([b]) => Some(*b),
            _ => None,
        }
    }

    /// The `State` item: which message this is.
    pub fn state(&self) -> Option<u8> {
        self.byte(kind::STATE)
    }

    /// The `Error` item, when the message carries one.
    pub fn error(&self) -> Option<ErrorCode> {
        self.byte(kind::ERROR).and_then(ErrorCode::from_byte)
    }

    pub fn items(&self) -> &[(u8, Vec<u8>)] {
        &self.items
    }

    /// Reads a whole message: consecutive items of one type are one value; empty separator
    /// items end a value without adding one.
    pub fn decode(bytes: &[u8]) -> Result<Self, Tlv8Error> {
        let mut items: Vec<(u8, Vec<u8>)> = Vec::new();
        let mut at = 0;
        // Whether the previous item was a full 255-byte fragment that the next may continue.
        let mut open = false;
        while at < bytes.len() {
            let kind = bytes[at];
            let Some(&len) = bytes.get(at + 1) else {
                return Err(Tlv8Error::NoLength { kind, at });
            };
            let len = usize::from(len);
            let start = at + 2;
            let left = bytes.len() - start;
            if len > left {
                return Err(Tlv8Error::Truncated {
                    kind,
                    at,
                    len,
                    left,
                });
            }
            let value = &bytes[start..start + len];
            match items.last_mut() {
                Some((k, v)) if open && *k == kind => v.extend_from_slice(value),
                _ if kind == kind::SEPARATOR && len == 0 => {}
                _ => items.push((kind, value.to_vec())),
            }
            open = len == 255;
            at = start + len;
        }
        Ok(Tlv8 { items })
    }

    /// Writes the message, splitting values over 255 bytes and separating two consecutive values
    /// of one type.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut previous: Option<u8> = None;
        for (kind, value) in &self.items {
            if previous == Some(*kind) {
                out.extend_from_slice(&[kind::SEPARATOR, 0]);
            }
            if value.is_empty() {
                out.extend_from_slice(&[*kind, 0]);
            }
            for chunk in value.chunks(255) {
                out.push(*kind);
                out.push(chunk.len() as u8);
                out.extend_from_slice(chunk);
            }
            previous = Some(*kind);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_384_byte_key_is_split_255_129_and_joined_again() {
        let key: Vec<u8> = (0..384u32).map(|i| (i % 251) as u8).collect();
        let msg = Tlv8::new()
            .with(kind::STATE, [2])
            .with(kind::PUBLIC_KEY, key.clone());
        let bytes = msg.encode();
        assert_eq!(&bytes[..3], &[kind::STATE, 1, 2]);
        assert_eq!(&bytes[3..5], &[kind::PUBLIC_KEY, 255]);
        assert_eq!(&bytes[5 + 255..5 + 257], &[kind::PUBLIC_KEY, 129]);
        assert_eq!(bytes.len(), 3 + 2 + 255 + 2 + 129);
        let back = Tlv8::decode(&bytes).unwrap();
        assert_eq!(back.get(kind::PUBLIC_KEY), Some(key.as_slice()));
        assert_eq!(back.state(), Some(2));
    }

    #[test]
    fn exactly_255_bytes_then_a_new_value_of_the_same_type_stays_two_values() {
        let msg = Tlv8::new()
            .with(kind::IDENTIFIER, vec![1u8; 255])
            .with(kind::IDENTIFIER, vec![2u8; 3]);
        let bytes = msg.encode();
        assert_eq!(&bytes[257..259], &[kind::SEPARATOR, 0]);
        assert_eq!(Tlv8::decode(&bytes).unwrap(), msg);
    }

    #[test]
    fn pyatv_m1_bytes_decode() {
        // pyatv's transient M1: Method 0, State 1, Flags 0x10.
        let m1 = Tlv8::decode(&[0x00, 1, 0x00, 0x06, 1, 0x01, 0x13, 1, 0x10]).unwrap();
        assert_eq!(m1.byte(kind::METHOD), Some(0));
        assert_eq!(m1.state(), Some(1));
        assert_eq!(m1.byte(kind::FLAGS), Some(FLAG_TRANSIENT));
    }

    #[test]
    fn truncated_items_are_errors() {
        assert_eq!(
            Tlv8::decode(&[0x06, 3, 1]),
            Err(Tlv8Error::Truncated {
                kind: 6,
                at: 0,
                len: 3,
                left: 1
            })
        );
        assert_eq!(
            Tlv8::decode(&[0x06, 1, 1, 0x07]),
            Err(Tlv8Error::NoLength { kind: 7, at: 3 })
        );
    }

    #[test]
    fn error_items_read_as_codes() {
        let msg = Tlv8::decode(&[0x06, 1, 4, 0x07, 1, 2]).unwrap();
        assert_eq!(msg.error(), Some(ErrorCode::Authentication));
        assert_eq!(ErrorCode::from_byte(7), Some(ErrorCode::Busy));
        assert_eq!(ErrorCode::from_byte(9), None);
    }

    fn message() -> impl Strategy<Value = Tlv8> {
        proptest::collection::vec(
            (0u8..0xFF, proptest::collection::vec(any::<u8>(), 0..700)),
            0..6,
        )
        .prop_map(|items| Tlv8 { items })
    }

    proptest! {
        #[test]
        fn any_message_round_trips(msg in message()) {
            prop_assert_eq!(Tlv8::decode(&msg.encode()).unwrap(), msg);
        }

        #[test]
        fn cut_at_any_byte_never_panics_and_the_whole_reads_back(msg in message(), cut in any::<prop::sample::Index>()) {
            let bytes = msg.encode();
            let at = cut.index(bytes.len() + 1);
            let _ = Tlv8::decode(&bytes[..at]);
            let _ = Tlv8::decode(&bytes[at..]);
            prop_assert_eq!(Tlv8::decode(&bytes).unwrap(), msg);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(msg) = Tlv8::decode(&bytes) {
                // What decodes encodes to something that decodes to the same values.
                prop_assert_eq!(Tlv8::decode(&msg.encode()).unwrap(), msg);
            }
        }
    }
}
