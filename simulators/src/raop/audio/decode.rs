//! Decoding RTP payloads (already decrypted) into interleaved 16-bit samples: ALAC through the
//! `alac` crate, PulseAudio's verbatim ALAC frames, and L16.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use thiserror::Error;

use super::format::{alac_fmtp, AudioFormat, MAX_ALAC_FRAMES_PER_PACKET};
use crate::wire::sdp::Codec;

/// Why a packet's payload gave no samples.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum AudioError {
    #[error("{0}")]
    Undecodable(String),
    #[error("ALAC packet does not decode: {0}")]
    Alac(String),
    #[error("ALAC decoder panicked on this packet (corrupt data)")]
    AlacPanic,
    #[error("L16 payload of {len} bytes is not a whole number of {frame_bytes}-byte frames")]
    L16Length { len: usize, frame_bytes: usize },
    #[error("sealed audio payload does not open: {0}")]
    Sealed(String),
}

enum DecoderKind {
    Alac {
        decoder: Box<alac::Decoder>,
        max_samples: usize,
        channels: usize,
    },
    L16 {
        channels: usize,
    },
    Undecodable(String),
}

/// Turns payloads (already decrypted) into interleaved 16-bit samples.
pub struct Decoder {
    kind: DecoderKind,
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            DecoderKind::Alac { max_samples, .. } => {
                write!(f, "Decoder::Alac(max {max_samples} samples)")
            }
            DecoderKind::L16 { channels } => write!(f, "Decoder::L16({channels} channels)"),
            DecoderKind::Undecodable(why) => write!(f, "Decoder::Undecodable({why:?})"),
        }
    }
}

impl Decoder {
    /// A decoder for `format`; formats it cannot decode give a decoder whose every `decode` says
    /// why (other codecs, ALAC other than 16-bit, bad channel counts).
    pub fn new(format: &AudioFormat) -> Decoder {
        let kind = match format.codec {
            Codec::Alac => match alac_decoder(format) {
                Ok((decoder, max_samples)) => DecoderKind::Alac {
                    decoder: Box::new(decoder),
                    max_samples,
                    channels: usize::from(format.channels.max(1)),
                },
                Err(why) => DecoderKind::Undecodable(why),
            },
            Codec::L16 if format.bits == 16 && (1..=8).contains(&format.channels) => {
                DecoderKind::L16 {
                    channels: usize::from(format.channels),
                }
            }
            Codec::L16 => DecoderKind::Undecodable(format!(
                "L16 with {} bits and {} channels is not decoded",
                format.bits, format.channels
            )),
            Codec::Other(ref name) => {
                DecoderKind::Undecodable(format!("codec {name} is received but not decoded"))
            }
        };
        Decoder { kind }
    }

    pub fn is_decodable(&self) -> bool {
        !matches!(self.kind, DecoderKind::Undecodable(_))
    }

    /// Decodes one packet's payload into interleaved samples.
    pub fn decode(&mut self, payload: &[u8]) -> Result<Vec<i16>, AudioError> {
        match &mut self.kind {
            DecoderKind::Undecodable(why) => Err(AudioError::Undecodable(why.clone())),
            DecoderKind::L16 { channels } => {
                let frame_bytes = 2 * *channels;
                // (Not `is_multiple_of`: the workspace's rust-version is 1.80.)
                if !payload.chunks_exact(frame_bytes).remainder().is_empty() {
                    return Err(AudioError::L16Length {
                        len: payload.len(),
                        frame_bytes,
                    });
                }
                Ok(payload
                    .chunks_exact(2)
                    .map(|b| i16::from_be_bytes([b[0], b[1]]))
                    .collect())
            }
            DecoderKind::Alac {
                decoder,
                max_samples,
                channels,
            } => {
                let mut out = vec![0i16; *max_samples];
                // The `alac` crate asserts (and overflows) on some corrupt packets; the decoder
                // keeps no state between packets that a panic could leave inconsistent (its
                // buffer is scratch space), so catching the unwind is safe.
                let decoded = catch_unwind(AssertUnwindSafe(|| {
                    decoder
                        .decode_packet(payload, &mut out)
                        .map(|samples| samples.len())
                }));
                match decoded {
                    Ok(Ok(len)) => {
                        out.truncate(len);
                        Ok(out)
                    }
                    Ok(Err(e)) => verbatim_frame(payload, *channels, *max_samples)
                        .ok_or_else(|| AudioError::Alac(e.to_string())),
                    Err(_) => Err(AudioError::AlacPanic),
                }
            }
        }
    }
}

/// Reads an uncompressed ("escape") ALAC frame of 16-bit samples whose END element is missing.
///
/// PulseAudio's RAOP sink (and other senders derived from the same code) send every packet as
/// one verbatim frame: element tag (3 bits, 0 SCE mono / 1 CPE stereo), instance tag (4), 12
/// unused bits, has-size (1), bytes shifted (2), escape (1) = 1, a 32-bit frame count when
/// has-size is set, then the samples big-endian and interleaved — and no END element (tag 7),
/// which the `alac` crate requires. Frame layout from Apple's ALAC specification
/// (ALACDecoder.cpp, public); PulseAudio's omission observed against this receiver. Hand-written
/// because no kept crate decodes such frames; everything else goes to the `alac` crate.
fn verbatim_frame(payload: &[u8], channels: usize, max_samples: usize) -> Option<Vec<i16>> {
    let mut bits = BitReader {
        data: payload,
        pos: 0,
    };
    let tag = bits.read(3)?;
    let expected_tag = match channels {
        1 => 0,
        2 => 1,
        _ => return None,
    };
    if tag != expected_tag {
        return None;
    }
    bits.read(4)?;
    if bits.read(12)? != 0 {
        return None;
    }
    let has_size = bits.read(1)? == 1;
    let shift = bits.read(2)?;
    let escape = bits.read(1)? == 1;
    if !escape || shift != 0 {
        return None;
    }
    let frames = if has_size {
        bits.read(32)? as usize
    } else {
        max_samples / channels
    };
    let samples = frames.checked_mul(channels)?;
    if samples == 0 || samples > max_samples {
        return None;
    }
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        out.push(bits.read(16)? as u16 as i16);
    }
    // What may follow: an END element (7) or nothing but byte padding.
    let rest = payload.len() * 8 - bits.pos;
    if rest >= 3 && bits.read(3)? != 7 && rest >= 8 {
        return None;
    }
    Some(out)
}

/// MSB-first bit reader for [`verbatim_frame`].
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn read(&mut self, n: usize) -> Option<u32> {
        if n > 32 || self.pos + n > self.data.len() * 8 {
            return None;
        }
        let mut v: u64 = 0;
        for _ in 0..n {
            let byte = self.data[self.pos / 8];
            let bit = (byte >> (7 - self.pos % 8)) & 1;
            v = (v << 1) | u64::from(bit);
            self.pos += 1;
        }
        Some(v as u32)
    }
}

/// Builds the `alac` decoder from the fmtp numbers (the SDP form of the ALAC magic cookie).
fn alac_decoder(format: &AudioFormat) -> Result<(alac::Decoder, usize), String> {
    let numbers = if format.fmtp.len() == 11 {
        format.fmtp.clone()
    } else {
        let mut n = alac_fmtp(
            format.frames_per_packet,
            format.channels,
            format.sample_rate,
        );
        n[2] = u32::from(format.bits);
        n.to_vec()
    };
    let text = numbers
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    let info = alac::StreamInfo::from_sdp_format_parameters(&text)
        .map_err(|e| format!("ALAC fmtp {text:?} is not usable: {e}"))?;
    if info.bit_depth() != 16 {
        return Err(format!(
            "ALAC with bit depth {} is not decoded (16 only)",
            info.bit_depth()
        ));
    }
    if !(1..=8).contains(&info.channels()) {
        return Err(format!(
            "ALAC with {} channels is not decoded",
            info.channels()
        ));
    }
    let frames = info.max_frames_per_packet();
    if frames == 0 || frames > MAX_ALAC_FRAMES_PER_PACKET {
        return Err(format!(
            "ALAC with {frames} frames per packet is not decoded"
        ));
    }
    let max_samples = info.max_samples_per_packet() as usize;
    Ok((alac::Decoder::new(info), max_samples))
}

#[cfg(test)]
mod verbatim_tests {
    use super::*;

    /// A verbatim stereo frame as PulseAudio's RAOP sink writes it: no END element.
    fn pulse_frame(samples: &[i16], has_size: bool) -> Vec<u8> {
        let mut bits: Vec<u8> = Vec::new();
        let mut push = |v: u32, n: usize| {
            for i in (0..n).rev() {
                bits.push(((v >> i) & 1) as u8);
            }
        };
        push(1, 3);
        push(0, 4);
        push(0, 12);
        push(u32::from(has_size), 1);
        push(0, 2);
        push(1, 1);
        if has_size {
            push((samples.len() / 2) as u32, 32);
        }
        for s in samples {
            push(*s as u16 as u32, 16);
        }
        bits.chunks(8)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0u8, |b, (i, bit)| b | (bit << (7 - i)))
            })
            .collect()
    }

    #[test]
    fn pulseaudio_frames_without_end_element_decode() {
        let samples: Vec<i16> = (0..704).map(|i| (i * 37 - 9000) as i16).collect();
        let format = AudioFormat::alac(44100, 2, 352);
        let mut d = Decoder::new(&format);
        assert_eq!(d.decode(&pulse_frame(&samples, true)).unwrap(), samples);
        assert_eq!(d.decode(&pulse_frame(&samples, false)).unwrap(), samples);
        let short = &samples[..200];
        assert_eq!(d.decode(&pulse_frame(short, true)).unwrap(), short);
    }

    #[test]
    fn verbatim_reader_refuses_what_it_does_not_know() {
        let samples = [1i16, 2, 3, 4];
        let mut frame = pulse_frame(&samples, true);
        assert_eq!(
            verbatim_frame(&frame, 1, 704),
            None,
            "stereo frame read as mono"
        );
        frame[0] |= 0x80; // element tag 5
        assert_eq!(verbatim_frame(&frame, 2, 704), None);
        assert_eq!(
            verbatim_frame(&pulse_frame(&samples, true), 2, 2),
            None,
            "over the maximum"
        );
        assert_eq!(verbatim_frame(&[], 2, 704), None);
    }
}
