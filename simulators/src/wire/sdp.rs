//! The SDP of a RAOP `ANNOUNCE`: codec, format parameters, and the AES session key.
//!
//! Parsing is done by `sdp-types`; this module only reads what a RAOP receiver needs from it.
//! Senders fold long base64 values over lines that start with whitespace
//! (docs/protocols/raop.md shows `a=rsaaeskey:` over six lines), which no SDP parser
//! accepts, so continuation lines are unfolded first.

use thiserror::Error;

/// The audio codec named by `a=rtpmap:96 …` (docs/protocols/raop.md, pyatv's
/// `L16/44100/2` in docs/peers.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Codec {
    /// `AppleLossless`: ALAC frames.
    Alac,
    /// `L16/<rate>/<channels>`: big-endian 16-bit PCM.
    L16,
    /// Anything else (AAC, AAC-ELD …): received and counted but not decoded.
    Other(String),
}

/// What a receiver takes from an ANNOUNCE body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub codec: Codec,
    pub rtpmap: String,
    /// The numbers of `a=fmtp:96 …` (for ALAC: frames per packet, compatible version, bit depth,
    /// rice history mult, rice initial history, rice limit, channels, max run, max frame bytes,
    /// average bit rate, sample rate).
    pub fmtp: Vec<u32>,
    pub sample_rate: u32,
    pub channels: u16,
    pub bits: u16,
    pub frames_per_packet: u32,
    /// `c=` address: the receiver as the sender sees it.
    pub connection: Option<String>,
    /// `a=rsaaeskey:` base64 (RSA-OAEP encrypted AES key), unfolded, as sent.
    pub rsaaeskey: Option<String>,
    /// `a=aesiv:` base64.
    pub aesiv: Option<String>,
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum SdpError {
    #[error("SDP body is not UTF-8")]
    Utf8,
    #[error("SDP does not parse: {0}")]
    Parse(String),
    #[error("SDP has no audio media line")]
    NoAudio,
    #[error("SDP has no a=rtpmap for the audio format")]
    NoRtpmap,
    #[error("SDP fmtp {0:?} is not a list of numbers")]
    Fmtp(String),
}

/// Joins lines that start with a space or tab onto the line before (continuations of base64).
pub fn unfold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.starts_with([' ', '\t']) && !out.is_empty() {
            out.push_str(line.trim());
        } else if !line.trim().is_empty() {
            if !out.is_empty() {
                out.push_str("\r\n");
            }
            out.push_str(line);
        }
    }
    out.push_str("\r\n");
    out
}

/// Parses an ANNOUNCE body.
pub fn parse_announce(body: &[u8]) -> Result<Announce, SdpError> {
    let text = std::str::from_utf8(body).map_err(|_| SdpError::Utf8)?;
    let unfolded = unfold(text);
    let session = sdp_types::Session::parse(unfolded.as_bytes())
        .map_err(|e| SdpError::Parse(e.to_string()))?;
    let media = session
        .medias
        .iter()
        .find(|m| m.media == "audio")
        .ok_or(SdpError::NoAudio)?;
    let attr = |name: &str| -> Option<String> {
        media
            .get_first_attribute_value(name)
            .flatten()
            .or_else(|| session.get_first_attribute_value(name).flatten())
            .map(|v| v.trim().to_string())
    };
    let rtpmap_full = attr("rtpmap").ok_or(SdpError::NoRtpmap)?;
    // `96 AppleLossless` or `96 L16/44100/2`.
    let rtpmap = rtpmap_full
        .split_once(' ')
        .map(|(_, r)| r.trim().to_string())
        .unwrap_or(rtpmap_full.clone());
    let fmtp = match attr("fmtp") {
        None => Vec::new(),
        Some(f) => f
            .split_whitespace()
            .skip(1)
            .map(|n| n.parse::<u32>().map_err(|_| SdpError::Fmtp(f.clone())))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let mut parts = rtpmap.split('/');
    let name = parts.next().unwrap_or_default();
    let (codec, mut sample_rate, mut channels, mut bits) = match name {
        "AppleLossless" => (Codec::Alac, 44100, 2, 16),
        "L16" => (Codec::L16, 44100, 2, 16),
        other => (Codec::Other(other.to_string()), 44100, 2, 16),
    };
    if let Some(rate) = parts.next().and_then(|r| r.parse().ok()) {
        sample_rate = rate;
    }
    if let Some(ch) = parts.next().and_then(|r| r.parse().ok()) {
        channels = ch;
    }
    let mut frames_per_packet = 352;
    if codec == Codec::Alac && fmtp.len() >= 11 {
        frames_per_packet = fmtp[0];
        bits = fmtp[2] as u16;
        channels = fmtp[6] as u16;
        sample_rate = fmtp[10];
    } else if let Some(&fpp) = fmtp.first() {
        frames_per_packet = fpp;
    }
    Ok(Announce {
        codec,
        rtpmap,
        fmtp,
        sample_rate,
        channels,
        bits,
        frames_per_packet,
        connection: session
            .connection
            .as_ref()
            .or(media.connections.first())
            .map(|c| c.connection_address.clone()),
        rsaaeskey: attr("rsaaeskey"),
        aesiv: attr("aesiv"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The ANNOUNCE body of docs/protocols/raop.md, folding and all.
    pub const SEED_SDP: &str = "v=0\r\no=iTunes 3172942895 0 IN IP4 10.0.1.101\r\ns=iTunes\r\nc=IN IP4 10.0.1.103\r\nt=0 0\r\nm=audio 0 RTP/AVP 96\r\na=rtpmap:96 AppleLossless\r\na=fmtp:96 4096 0 16 40 10 14 2 255 0 0 44100\r\na=rsaaeskey:5QYIqmdZGTONY5SHjEJrqAhaa0W9wzDC5i6q221mdGZJ5ubO6Kg\r\n      yhC6U83wpY87TFdPRdfPQl2kVC7+Uefmx1bXdIUo07ZcJsqMbgtje4w2JQw0b\r\n      Uw2BlzNPmVGQOxfdpGc3LXZzNE0jI1D4conUEiW6rrzikXBhk7Y/i2naw13ayy\r\n      xaSwtkiJ0ltBQGYGErbV2tx43QSNj7O0JIG9GrF2GZZ6/UHo4VH+ZXgQ4NZvP/\r\n      QXPCsLutZsvusFDzIEq7TN1fveINOiwrzlN+bckEixvhXlvoQTWE2tjbmQYhMvO\r\n      FIly5gNbZiXi0l5AdolX4jDC2vndFHqWDks/3sPikNg\r\na=aesiv:zcZmAZtqh7uGcEwPXk0QeA\r\n";

    #[test]
    fn seed_announce_parses_with_folded_key() {
        let a = parse_announce(SEED_SDP.as_bytes()).unwrap();
        assert_eq!(a.codec, Codec::Alac);
        assert_eq!(a.frames_per_packet, 4096);
        assert_eq!((a.sample_rate, a.channels, a.bits), (44100, 2, 16));
        assert_eq!(a.connection.as_deref(), Some("10.0.1.103"));
        let key = a.rsaaeskey.unwrap();
        assert!(key.starts_with("5QYIqmdZ") && key.ends_with("3sPikNg"));
        assert!(!key.contains(char::is_whitespace));
        assert_eq!(a.aesiv.as_deref(), Some("zcZmAZtqh7uGcEwPXk0QeA"));
    }

    #[test]
    fn pyatv_l16_announce_parses() {
        let body = "v=0\r\no=iTunes 1 0 IN IP4 127.0.0.1\r\ns=iTunes\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 0 RTP/AVP 96\r\na=rtpmap:96 L16/44100/2\r\na=fmtp:96 352\r\n";
        let a = parse_announce(body.as_bytes()).unwrap();
        assert_eq!(a.codec, Codec::L16);
        assert_eq!(a.frames_per_packet, 352);
        assert_eq!(a.rsaaeskey, None);
    }

    #[test]
    fn missing_audio_is_an_error() {
        assert_eq!(parse_announce(b"v=0\r\ns=x\r\n"), Err(SdpError::NoAudio));
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_announce(&bytes);
        }

        #[test]
        fn arbitrary_sdp_lines_never_panic(lines in proptest::collection::vec("[vosctma]=[ -~]{0,40}", 0..12)) {
            let _ = parse_announce(lines.join("\r\n").as_bytes());
        }
    }
}
