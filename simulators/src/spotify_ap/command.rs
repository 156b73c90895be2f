//! The command byte in front of every Shannon frame after the handshake.
//!
//! Values and names as librespot's `core/src/packet.rs` (ported from librespot-java) and
//! go-librespot's `ap/packets.go` list them; see `docs/protocols/spotify-ap.md`.

/// Login, sent by the client in its first encrypted frame (`ClientResponseEncrypted`).
pub const LOGIN: u8 = 0xab;
/// The AP's answer to a good login (`APWelcome`).
pub const AP_WELCOME: u8 = 0xac;
/// The AP's answer to a refused login (`APLoginFailed`).
pub const AUTH_FAILURE: u8 = 0xad;
/// AP → client keep-alive; payload: u32 BE server unix time.
pub const PING: u8 = 0x04;
/// Client → AP answer to a Ping.
pub const PONG: u8 = 0x49;
/// AP → client acknowledgement of a Pong.
pub const PONG_ACK: u8 = 0x4a;
pub const SECRET_BLOCK: u8 = 0x02;
pub const COUNTRY_CODE: u8 = 0x1b;
pub const LICENSE_VERSION: u8 = 0x76;
pub const PRODUCT_INFO: u8 = 0x50;
pub const LEGACY_WELCOME: u8 = 0x69;
pub const MERCURY_REQ: u8 = 0xb2;

/// The name of a command byte, as librespot's `PacketType` spells it, or `Unknown0x..`.
pub fn name(cmd: u8) -> String {
    let known = match cmd {
        0x02 => "SecretBlock",
        0x04 => "Ping",
        0x08 => "StreamChunk",
        0x09 => "StreamChunkRes",
        0x0a => "ChannelError",
        0x0b => "ChannelAbort",
        0x0c => "RequestKey",
        0x0d => "AesKey",
        0x0e => "AesKeyError",
        0x19 => "Image",
        0x1b => "CountryCode",
        0x1f => "UnknownDataAllZeros",
        0x49 => "Pong",
        0x4a => "PongAck",
        0x4b => "Pause",
        0x50 => "ProductInfo",
        0x69 => "LegacyWelcome",
        0x74 => "PreferredLocale",
        0x76 => "LicenseVersion",
        0x82 => "TrackEndedTime",
        0xab => "Login",
        0xac => "APWelcome",
        0xad => "AuthFailure",
        0xb2 => "MercuryReq",
        0xb3 => "MercurySub",
        0xb4 => "MercuryUnsub",
        0xb5 => "MercuryEvent",
        _ => return format!("Unknown0x{cmd:02x}"),
    };
    known.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_librespot_packet_type() {
        assert_eq!(name(LOGIN), "Login");
        assert_eq!(name(PONG_ACK), "PongAck");
        assert_eq!(name(0x0f), "Unknown0x0f");
    }
}
