//! The stream format a RAOP receiver takes from ANNOUNCE: codec, rate, channels and the ALAC
//! `fmtp` numbers (docs/protocols/raop.md).

use crate::wire::sdp::{Announce, Codec};

/// Smallest ALAC frames-per-packet airtwin's sender uses: `alac-encoder`'s predictor reads the
/// first 9 samples of its frame buffer (up to 8 coefficients) whatever the packet length, and
/// indexes out of bounds for shorter frames. Short *packets* within a longer frame are fine.
pub const MIN_ALAC_FRAMES_PER_PACKET: u32 = 9;

/// Largest ALAC frames-per-packet the receiver accepts from an fmtp line (senders use 352 or
/// 4096); bigger values would only make the decoder allocate a lot for a hostile ANNOUNCE.
pub const MAX_ALAC_FRAMES_PER_PACKET: u32 = 1 << 16;

/// The ALAC `fmtp` numbers RAOP senders announce: `frames_per_packet 0 16 40 10 14 channels 255
/// 0 0 rate` (docs/protocols/raop.md; the seed SDP has `4096 0 16 40 10 14 2 255 0 0 44100`). In order:
/// frame length, compatible version, bit depth, rice history mult, rice initial history, rice
/// limit, channels, max run, max frame bytes, average bit rate, sample rate. 40/10/14 are also the
/// rice parameters `alac-encoder` writes into its magic cookie, so its frames decode with them.
pub fn alac_fmtp(frames_per_packet: u32, channels: u16, sample_rate: u32) -> [u32; 11] {
    [
        frames_per_packet,
        0,
        16,
        40,
        10,
        14,
        u32::from(channels),
        255,
        0,
        0,
        sample_rate,
    ]
}

/// L16 payload: big-endian signed 16-bit samples, interleaved (docs/peers.md: pyatv sends "raw
/// big-endian PCM").
pub fn encode_l16(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_be_bytes()).collect()
}

/// The stream format a receiver takes from ANNOUNCE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFormat {
    pub codec: Codec,
    pub sample_rate: u32,
    pub channels: u16,
    pub bits: u16,
    pub frames_per_packet: u32,
    /// The numbers of `a=fmtp:96 …`, as sent.
    pub fmtp: Vec<u32>,
}

impl AudioFormat {
    pub fn from_announce(announce: &Announce) -> Self {
        AudioFormat {
            codec: announce.codec.clone(),
            sample_rate: announce.sample_rate,
            channels: announce.channels,
            bits: announce.bits,
            frames_per_packet: announce.frames_per_packet,
            fmtp: announce.fmtp.clone(),
        }
    }

    /// ALAC with the fmtp of [`alac_fmtp`].
    pub fn alac(sample_rate: u32, channels: u16, frames_per_packet: u32) -> Self {
        AudioFormat {
            codec: Codec::Alac,
            sample_rate,
            channels,
            bits: 16,
            frames_per_packet,
            fmtp: alac_fmtp(frames_per_packet, channels, sample_rate).to_vec(),
        }
    }

    /// L16 as pyatv announces it (`L16/44100/2`, fmtp `352`, docs/peers.md).
    pub fn l16(sample_rate: u32, channels: u16, frames_per_packet: u32) -> Self {
        AudioFormat {
            codec: Codec::L16,
            sample_rate,
            channels,
            bits: 16,
            frames_per_packet,
            fmtp: vec![frames_per_packet],
        }
    }

    /// `ALAC`, `L16`, or the rtpmap name of another codec.
    pub fn codec_name(&self) -> String {
        match &self.codec {
            Codec::Alac => "ALAC".to_string(),
            Codec::L16 => "L16".to_string(),
            Codec::Other(name) => name.clone(),
        }
    }
}

impl From<&Announce> for AudioFormat {
    fn from(announce: &Announce) -> Self {
        AudioFormat::from_announce(announce)
    }
}
