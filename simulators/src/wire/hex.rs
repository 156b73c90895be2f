//! Hex text of bytes, and MAC addresses as text.
//!
//! A MAC address is six bytes, written as upper-case hex pairs joined by `:` in the `macAddress`
//! and `deviceID` fields, and without separators as the `_raop._tcp` instance-name prefix
//! (docs/protocols/raop.md, docs/protocols/dns-sd.md).

/// Lower-case hex, two digits a byte.
pub fn encode(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Upper-case hex, two digits a byte.
pub fn encode_upper(bytes: &[u8]) -> String {
    hex::encode_upper(bytes)
}

/// Hex text (either case, no separators) → bytes; `None` on an odd length or a non-hex digit.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    hex::decode(text).ok()
}

/// `00:11:24:00:44:91`, `00-11-24-00-44-91` or `001124004491` → bytes.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let digits: String = text.chars().filter(|c| *c != ':' && *c != '-').collect();
    let mut out = [0u8; 6];
    hex::decode_to_slice(digits, &mut out).ok()?;
    Some(out)
}

/// `00:11:24:00:44:91`: upper-case pairs joined by `:`.
pub fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trips_through_every_spelling() {
        let mac = [0x00, 0x11, 0x24, 0x00, 0x44, 0x91];
        let want = Some(mac);
        assert_eq!(parse_mac("00:11:24:00:44:91"), want);
        assert_eq!(parse_mac("00-11-24-00-44-91"), want);
        assert_eq!(parse_mac("001124004491"), want);
        assert_eq!(
            parse_mac("aa:bb:cc:dd:ee:ff"),
            Some([0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF])
        );
        assert_eq!(parse_mac("00:11:24:00:44"), None);
        assert_eq!(parse_mac("00:11:24:00:44:9g"), None);
        assert_eq!(parse_mac("00:11:24:00:44:91:00"), None);
        assert_eq!(parse_mac("ééééé00"), None);
        assert_eq!(mac_text(&mac), "00:11:24:00:44:91");
        assert_eq!(encode_upper(&mac), "001124004491");
    }

    #[test]
    fn bytes_round_trip_in_either_case() {
        assert_eq!(encode(&[0x46, 0x50, 0xab]), "4650ab");
        assert_eq!(decode("4650ab"), Some(vec![0x46, 0x50, 0xab]));
        assert_eq!(decode("4650AB"), Some(vec![0x46, 0x50, 0xab]));
        assert_eq!(decode("465"), None);
        assert_eq!(decode("46+1"), None);
    }
}
