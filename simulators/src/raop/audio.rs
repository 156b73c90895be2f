//! The receiving end of a RAOP audio stream: payload decryption, ALAC / L16 decoding, and a
//! capture of what arrived, fed by the three UDP ports SETUP opens (server, control, timing).
//!
//! Sans-IO: [`AudioReceiver`] gets datagrams and the time from the shell through
//! [`DatagramHandler`] and answers with datagrams; it never touches a socket or a clock.
//! Nothing here panics on arbitrary datagrams: every parser is length-checked and the third-party
//! ALAC decoder (which asserts on some corrupt input) runs under `catch_unwind`.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use aes::Aes128;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use serde::Serialize;
use thiserror::Error;

use super::rtp::{self, RtpHeader, SyncPacket};
use crate::service::DatagramHandler;
use crate::wire::sdp::{Announce, Codec};

/// AES block size: only whole blocks of a payload are encrypted (docs/protocols/raop.md).
pub const AES_BLOCK: usize = 16;

/// Smallest ALAC frames-per-packet airtwin's sender uses: `alac-encoder`'s predictor reads the
/// first 9 samples of its frame buffer (up to 8 coefficients) whatever the packet length, and
/// indexes out of bounds for shorter frames. Short *packets* within a longer frame are fine.
pub const MIN_ALAC_FRAMES_PER_PACKET: u32 = 9;

/// Largest ALAC frames-per-packet the receiver accepts from an fmtp line (senders use 352 or
/// 4096); bigger values would only make the decoder allocate a lot for a hostile ANNOUNCE.
pub const MAX_ALAC_FRAMES_PER_PACKET: u32 = 1 << 16;

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

/// What [`Capture::push`] did with a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketOutcome {
    /// Decoded and stored.
    Stored,
    /// Its sequence number was already stored; dropped.
    Duplicate,
    /// Stored as received, but its payload gave no samples.
    DecodeError(AudioError),
    /// Stored as received; the codec is not decoded.
    Undecoded,
}

#[derive(Debug)]
enum Entry {
    Pcm(Vec<i16>),
    Failed,
    Opaque,
}

/// Summary of a capture, for the transcript and expectations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaptureStats {
    /// Audio packets received, duplicates and retransmits included.
    pub packets: u64,
    /// Decoded frames (samples per channel) in the capture.
    pub frames: u64,
    /// Packets whose sequence number had already arrived.
    pub duplicates: u64,
    /// Packets whose payload did not decode (the codec is decodable but this packet was not).
    pub decode_errors: u64,
    /// Sequence numbers between the first and the last that never arrived.
    pub missing: u64,
    /// Lowest and highest sequence number received (in extended order, so across a wrap
    /// `first_seq` can be larger than `last_seq`).
    pub first_seq: Option<u16>,
    pub last_seq: Option<u16>,
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u16,
    /// Audio packets that came as retransmit replies on the control port.
    pub retransmits: u64,
    pub sync_packets: u64,
    pub timing_requests: u64,
    /// Datagrams on any port that were none of the above.
    pub ignored: u64,
    pub last_error: Option<String>,
}

/// Everything received on one stream, keyed by extended sequence number.
#[derive(Debug)]
pub struct Capture {
    format: AudioFormat,
    decoder: Decoder,
    entries: BTreeMap<i64, Entry>,
    /// Highest extended sequence number so far and its 16-bit value.
    highest: Option<(i64, u16)>,
    packets: u64,
    duplicates: u64,
    decode_errors: u64,
    retransmits: u64,
    sync_packets: u64,
    timing_requests: u64,
    ignored: u64,
    last_error: Option<AudioError>,
    last_sync: Option<SyncPacket>,
}

impl Capture {
    pub fn new(format: AudioFormat) -> Self {
        Capture {
            decoder: Decoder::new(&format),
            format,
            entries: BTreeMap::new(),
            highest: None,
            packets: 0,
            duplicates: 0,
            decode_errors: 0,
            retransmits: 0,
            sync_packets: 0,
            timing_requests: 0,
            ignored: 0,
            last_error: None,
            last_sync: None,
        }
    }

    pub fn format(&self) -> &AudioFormat {
        &self.format
    }

    /// Maps a 16-bit sequence number onto the extended sequence: the nearest value (within
    /// ±2^15) to the highest so far (RFC 3550 §A.1's idea, without the probation).
    fn extend_seq(&mut self, seq: u16) -> i64 {
        match self.highest {
            None => {
                let ext = i64::from(seq);
                self.highest = Some((ext, seq));
                ext
            }
            Some((high_ext, high_seq)) => {
                let ext = high_ext + i64::from(seq.wrapping_sub(high_seq) as i16);
                if ext > high_ext {
                    self.highest = Some((ext, seq));
                }
                ext
            }
        }
    }

    /// Adds one audio packet whose payload is already decrypted. Retransmits are packets that
    /// came wrapped in a retransmit reply; they count as duplicates when the original arrived.
    pub fn push(&mut self, header: &RtpHeader, payload: &[u8], retransmit: bool) -> PacketOutcome {
        self.packets += 1;
        if retransmit {
            self.retransmits += 1;
        }
        let ext = self.extend_seq(header.seq);
        let retry = match self.entries.get(&ext) {
            // A packet that failed to decode may come again (a retransmit): try it.
            Some(Entry::Failed) => true,
            Some(_) => {
                self.duplicates += 1;
                return PacketOutcome::Duplicate;
            }
            None => false,
        };
        if retry {
            self.duplicates += 1;
        }
        if !self.decoder.is_decodable() {
            self.entries.insert(ext, Entry::Opaque);
            return PacketOutcome::Undecoded;
        }
        match self.decoder.decode(payload) {
            Ok(samples) => {
                self.entries.insert(ext, Entry::Pcm(samples));
                PacketOutcome::Stored
            }
            Err(e) => {
                self.decode_errors += 1;
                self.last_error = Some(e.clone());
                self.entries.insert(ext, Entry::Failed);
                PacketOutcome::DecodeError(e)
            }
        }
    }

    /// Records a sync packet from the control port.
    pub fn note_sync(&mut self, sync: SyncPacket) {
        self.sync_packets += 1;
        self.last_sync = Some(sync);
    }

    pub fn note_timing_request(&mut self) {
        self.timing_requests += 1;
    }

    pub fn note_ignored(&mut self) {
        self.ignored += 1;
    }

    pub fn last_sync(&self) -> Option<SyncPacket> {
        self.last_sync
    }

    /// The decoded samples of all packets in sequence order, interleaved. Missing packets and
    /// packets that did not decode contribute nothing (see [`Capture::stats`]).
    pub fn pcm(&self) -> Vec<i16> {
        let mut out = Vec::new();
        for entry in self.entries.values() {
            if let Entry::Pcm(samples) = entry {
                out.extend_from_slice(samples);
            }
        }
        out
    }

    /// Runs of sequence numbers that never arrived, as `(first seq, count)`, in order; what a
    /// receiver would ask to be retransmitted.
    pub fn missing_ranges(&self) -> Vec<(u16, u16)> {
        let mut out = Vec::new();
        let mut prev: Option<i64> = None;
        for &ext in self.entries.keys() {
            if let Some(p) = prev {
                let gap = ext - p - 1;
                if gap > 0 {
                    out.push(((p + 1) as u16, gap.min(i64::from(u16::MAX)) as u16));
                }
            }
            prev = Some(ext);
        }
        out
    }

    pub fn stats(&self) -> CaptureStats {
        let first = self.entries.keys().next().copied();
        let last = self.entries.keys().next_back().copied();
        let missing = match (first, last) {
            (Some(f), Some(l)) => (l - f + 1) as u64 - self.entries.len() as u64,
            _ => 0,
        };
        let channels = u64::from(self.format.channels.max(1));
        let samples: u64 = self
            .entries
            .values()
            .map(|e| match e {
                Entry::Pcm(s) => s.len() as u64,
                _ => 0,
            })
            .sum();
        CaptureStats {
            packets: self.packets,
            frames: samples / channels,
            duplicates: self.duplicates,
            decode_errors: self.decode_errors,
            missing,
            first_seq: first.map(|e| e as u16),
            last_seq: last.map(|e| e as u16),
            codec: self.format.codec_name(),
            sample_rate: self.format.sample_rate,
            channels: self.format.channels,
            retransmits: self.retransmits,
            sync_packets: self.sync_packets,
            timing_requests: self.timing_requests,
            ignored: self.ignored,
            last_error: self.last_error.as_ref().map(ToString::to_string),
        }
    }

    /// [`Capture::pcm`] as a 16-bit WAV file's bytes (the caller writes them where it wants).
    pub fn to_wav(&self) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels: self.format.channels.max(1),
            sample_rate: self.format.sample_rate.max(1),
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut out = io::Cursor::new(Vec::new());
        // Writing 16-bit samples to memory fails only past WAV's 4 GiB size limit; what was
        // written up to there is kept.
        if let Ok(mut writer) = hound::WavWriter::new(&mut out, spec) {
            'samples: for entry in self.entries.values() {
                if let Entry::Pcm(samples) = entry {
                    for &s in samples {
                        if writer.write_sample(s).is_err() {
                            break 'samples;
                        }
                    }
                }
            }
            let _ = writer.finalize();
        }
        out.into_inner()
    }
}

/// The three UDP ports of a RAOP session (named as the SETUP `Transport` header names them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Port {
    /// Audio packets.
    Server,
    /// Sync packets and retransmit replies.
    Control,
    /// Timing requests, answered.
    Timing,
}

impl Port {
    pub const ALL: [Port; 3] = [Port::Server, Port::Control, Port::Timing];

    /// `server`, `control` or `timing`.
    pub fn name(self) -> &'static str {
        match self {
            Port::Server => "server",
            Port::Control => "control",
            Port::Timing => "timing",
        }
    }
}

/// One RAOP stream's receiver: decrypts, decodes and captures what arrives on its three ports.
#[derive(Debug)]
pub struct AudioReceiver {
    format: AudioFormat,
    aes: Option<AesParams>,
    capture: Mutex<Capture>,
}

impl AudioReceiver {
    /// `aes` is `None` when the ANNOUNCE had no key (pyatv's unencrypted L16, docs/peers.md).
    pub fn new(format: AudioFormat, aes: Option<AesParams>) -> Self {
        AudioReceiver {
            capture: Mutex::new(Capture::new(format.clone())),
            format,
            aes,
        }
    }

    pub fn from_announce(announce: &Announce, aes: Option<AesParams>) -> Self {
        AudioReceiver::new(AudioFormat::from_announce(announce), aes)
    }

    pub fn format(&self) -> &AudioFormat {
        &self.format
    }

    pub fn is_encrypted(&self) -> bool {
        self.aes.is_some()
    }

    /// The handler the shell drives for one port.
    pub fn handler(self: &Arc<Self>, port: Port) -> Arc<dyn DatagramHandler> {
        Arc::new(PortHandler {
            receiver: Arc::clone(self),
            port,
        })
    }

    /// The handler of the audio (`server`) port.
    pub fn server_port(self: &Arc<Self>) -> Arc<dyn DatagramHandler> {
        self.handler(Port::Server)
    }

    /// The handler of the `control` port (sync packets, retransmit replies).
    pub fn control_port(self: &Arc<Self>) -> Arc<dyn DatagramHandler> {
        self.handler(Port::Control)
    }

    /// The handler of the `timing` port (answers timing requests).
    pub fn timing_port(self: &Arc<Self>) -> Arc<dyn DatagramHandler> {
        self.handler(Port::Timing)
    }

    /// The capture, locked (a poisoned lock is taken over: the capture stays consistent).
    pub fn capture(&self) -> MutexGuard<'_, Capture> {
        self.capture.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> CaptureStats {
        self.capture().stats()
    }

    pub fn pcm(&self) -> Vec<i16> {
        self.capture().pcm()
    }

    pub fn to_wav(&self) -> Vec<u8> {
        self.capture().to_wav()
    }

    /// Handles one datagram that arrived on `port`; returns the datagrams to send back.
    pub fn on_port_datagram(&self, port: Port, bytes: &[u8], now: SystemTime) -> Vec<Vec<u8>> {
        match port {
            Port::Server => {
                self.on_audio(bytes, false);
                Vec::new()
            }
            Port::Control => {
                match rtp::packet_type(bytes) {
                    Some(rtp::PT_SYNC) => match SyncPacket::parse(bytes) {
                        Some(sync) => self.capture().note_sync(sync),
                        None => self.capture().note_ignored(),
                    },
                    // A retransmit reply carries a whole audio packet after its 4-byte header
                    // (docs/protocols/raop.md): it goes to the capture like one from the server port.
                    Some(rtp::PT_RETRANSMIT_REPLY) => match rtp::parse_retransmit_reply(bytes) {
                        Some(inner) => self.on_audio(inner, true),
                        None => self.capture().note_ignored(),
                    },
                    _ => self.capture().note_ignored(),
                }
                Vec::new()
            }
            Port::Timing => match rtp::timing_reply(bytes, now) {
                Some(reply) => {
                    self.capture().note_timing_request();
                    vec![reply]
                }
                None => {
                    self.capture().note_ignored();
                    Vec::new()
                }
            },
        }
    }

    fn on_audio(&self, bytes: &[u8], retransmit: bool) {
        let Some((header, payload)) = rtp::parse(bytes) else {
            self.capture().note_ignored();
            return;
        };
        // Audio is payload type 96 (docs/protocols/raop.md); anything else on this port is ignored.
        if header.payload_type != rtp::PT_AUDIO {
            self.capture().note_ignored();
            return;
        }
        let mut payload = payload.to_vec();
        if let Some(aes) = &self.aes {
            decrypt_payload(aes, &mut payload);
        }
        self.capture().push(&header, &payload, retransmit);
    }
}

/// An [`AudioReceiver`] seen through one of its ports.
pub struct PortHandler {
    pub receiver: Arc<AudioReceiver>,
    pub port: Port,
}

impl DatagramHandler for PortHandler {
    fn on_datagram(&self, bytes: &[u8], _from: SocketAddr, now: SystemTime) -> Vec<Vec<u8>> {
        self.receiver.on_port_datagram(self.port, bytes, now)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raop::sender::{AlacPacketizer, RtpSender};
    use crate::wire::sdp::parse_announce;
    use proptest::prelude::*;
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    use std::time::{Duration, UNIX_EPOCH};

    fn from() -> SocketAddr {
        "127.0.0.1:50000".parse().unwrap()
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn nist_params() -> AesParams {
        // NIST SP 800-38A, F.2.1 CBC-AES128.Encrypt.
        AesParams {
            key: hex("2b7e151628aed2a6abf7158809cf4f3c").try_into().unwrap(),
            iv: hex("000102030405060708090a0b0c0d0e0f").try_into().unwrap(),
        }
    }

    /// Deterministic test signal: a sine per channel plus LCG noise, full 16-bit range used.
    pub(crate) fn signal(frames: usize, channels: usize) -> Vec<i16> {
        let mut state: u32 = 0x1234_5678;
        let mut out = Vec::with_capacity(frames * channels);
        for i in 0..frames {
            for c in 0..channels {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let noise = f64::from((state >> 16) as i16) / 8.0;
                let sine = 20_000.0
                    * (i as f64 * 2.0 * std::f64::consts::PI * (440.0 + 110.0 * c as f64)
                        / 44_100.0)
                        .sin();
                out.push((sine + noise).clamp(-32768.0, 32767.0) as i16);
            }
        }
        out
    }

    #[test]
    fn aes_known_answer_and_remainder_in_clear() {
        let aes = nist_params();
        let mut payload = hex(concat!(
            "6bc1bee22e409f96e93d7e117393172a",
            "ae2d8a571e03ac9c9eb76fac45af8e51",
            "0102030405"
        ));
        let plain = payload.clone();
        encrypt_payload(&aes, &mut payload);
        assert_eq!(
            payload[..32],
            hex("7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2")[..]
        );
        assert_eq!(
            &payload[32..],
            &[1, 2, 3, 4, 5],
            "remainder travels in clear"
        );
        decrypt_payload(&aes, &mut payload);
        assert_eq!(payload, plain);
    }

    #[test]
    fn aes_chain_restarts_per_packet_and_short_payloads_stay_clear() {
        let aes = nist_params();
        let mut a = plain_block();
        let mut b = plain_block();
        encrypt_payload(&aes, &mut a);
        encrypt_payload(&aes, &mut b);
        assert_eq!(a, b, "same IV for every packet");
        assert_ne!(a, plain_block());
        let mut short = vec![9u8; 15];
        encrypt_payload(&aes, &mut short);
        assert_eq!(short, vec![9u8; 15]);
        let mut empty: Vec<u8> = Vec::new();
        decrypt_payload(&aes, &mut empty);
        assert!(empty.is_empty());
    }

    fn plain_block() -> Vec<u8> {
        (0u8..40).collect()
    }

    #[test]
    fn l16_round_trip_big_endian() {
        let samples = [0i16, 1, -1, 0x1234, i16::MIN, i16::MAX];
        let bytes = encode_l16(&samples);
        assert_eq!(&bytes[..8], &[0, 0, 0, 1, 0xff, 0xff, 0x12, 0x34]);
        let mut d = Decoder::new(&AudioFormat::l16(44_100, 2, 352));
        assert_eq!(d.decode(&bytes).unwrap(), samples);
        assert_eq!(
            d.decode(&bytes[..6]),
            Err(AudioError::L16Length {
                len: 6,
                frame_bytes: 4
            })
        );
    }

    #[test]
    fn l16_stream_through_receiver_reordered_with_wrap() {
        let source = signal(352 * 5 + 100, 2);
        let receiver = Arc::new(AudioReceiver::new(AudioFormat::l16(44_100, 2, 352), None));
        let server = receiver.handler(Port::Server);
        let mut sender = RtpSender::new(65_533, 0, 0x0bad_cafe, None);
        let mut packets: Vec<Vec<u8>> = source
            .chunks(352 * 2)
            .map(|c| sender.next_packet(&encode_l16(c), (c.len() / 2) as u32))
            .collect();
        assert_eq!(packets.len(), 6);
        packets.reverse();
        for p in &packets {
            assert!(server.on_datagram(p, from(), now()).is_empty());
        }
        assert_eq!(receiver.pcm(), source);
        let stats = receiver.stats();
        assert_eq!(stats.codec, "L16");
        assert_eq!((stats.first_seq, stats.last_seq), (Some(65_533), Some(2)));
        assert_eq!((stats.packets, stats.missing, stats.duplicates), (6, 0, 0));
        assert_eq!(stats.frames, 352 * 5 + 100);
    }

    /// The end-to-end test the brief asks for: ALAC (alac-encoder) → AES → RTP → the receiver's
    /// ports → the captured PCM is the source, exactly.
    #[test]
    fn alac_encrypted_shuffled_duplicated_retransmitted_round_trip() {
        let channels = 2;
        let fpp = 352;
        // 10 full packets and a short one of 123 frames.
        let source = signal(fpp * 10 + 123, channels);
        let mut packetizer = AlacPacketizer::new(channels as u16, 44_100, fpp as u32).unwrap();
        let frames = packetizer.packets(&source);
        assert_eq!(frames.len(), 11);

        let aes = nist_params();
        let mut sender = RtpSender::new(65_530, 12_345, 0xfeed_f00d, Some(aes.clone()));
        let mut packets: Vec<Vec<u8>> = frames
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let n = if i == 10 { 123 } else { fpp as u32 };
                sender.next_packet(f, n)
            })
            .collect();
        assert_eq!(packets[0][1], 0xE0, "marker on the first packet");
        assert_eq!(packets[1][1], 0x60);
        // The payload really is encrypted: the first 16 bytes differ from the ALAC frame.
        assert_ne!(&packets[0][12..28], &frames[0][..16]);

        let announce = parse_announce(
            format!(
                "v=0\r\no=iTunes 1 0 IN IP4 127.0.0.1\r\ns=iTunes\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio 0 RTP/AVP 96\r\na=rtpmap:96 {}\r\na=fmtp:96 {}\r\n",
                packetizer.rtpmap(),
                packetizer.fmtp()
            )
            .as_bytes(),
        )
        .unwrap();
        let receiver = Arc::new(AudioReceiver::from_announce(&announce, Some(aes)));
        assert_eq!(receiver.format(), &AudioFormat::alac(44_100, 2, 352));
        let server = receiver.handler(Port::Server);
        let control = receiver.handler(Port::Control);
        let timing = receiver.handler(Port::Timing);

        // Packet 4 is lost on the server port and comes as a retransmit reply on the control
        // port; packet 7 is sent twice; the rest arrive shuffled.
        let lost = packets.remove(4);
        let twice = packets[6].clone();
        packets.push(twice);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        packets.shuffle(&mut rng);
        for p in &packets {
            assert!(server.on_datagram(p, from(), now()).is_empty());
        }
        assert_eq!(receiver.stats().missing, 1);
        assert_eq!(receiver.capture().missing_ranges(), vec![(65_534, 1)]);
        let retransmit = rtp::retransmit_reply(65_534, &lost);
        assert!(control.on_datagram(&retransmit, from(), now()).is_empty());
        control.on_datagram(&rtp::sync_packet(true, 0, now(), 12_345), from(), now());
        let reply = timing.on_datagram(&rtp::timing_request(now()), from(), now());
        assert_eq!(reply.len(), 1);
        assert_eq!(reply[0][1], 0xD3);

        let pcm = receiver.pcm();
        assert_eq!(pcm.len(), source.len());
        assert!(pcm == source, "captured PCM differs from the source");

        let stats = receiver.stats();
        assert_eq!(
            stats,
            CaptureStats {
                packets: 12,
                frames: (fpp * 10 + 123) as u64,
                duplicates: 1,
                decode_errors: 0,
                missing: 0,
                first_seq: Some(65_530),
                last_seq: Some(4),
                codec: "ALAC".into(),
                sample_rate: 44_100,
                channels: 2,
                retransmits: 1,
                sync_packets: 1,
                timing_requests: 1,
                ignored: 0,
                last_error: None,
            }
        );
        assert_eq!(receiver.capture().last_sync().unwrap().rtp_now, 12_345);

        // The WAV bytes hold the same samples.
        let wav = receiver.to_wav();
        let mut reader = hound::WavReader::new(wav.as_slice()).unwrap();
        assert_eq!(reader.spec().channels, 2);
        assert_eq!(reader.spec().sample_rate, 44_100);
        let back: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
        assert!(back == source);
    }

    #[test]
    fn alac_mono_and_4096_frames() {
        for (channels, fpp, frames) in [(1usize, 4096usize, 4096 * 2 + 1), (2, 4096, 4096)] {
            let source = signal(frames, channels);
            let mut p = AlacPacketizer::new(channels as u16, 48_000, fpp as u32).unwrap();
            let mut d = Decoder::new(&AudioFormat::alac(48_000, channels as u16, fpp as u32));
            let decoded: Vec<i16> = p
                .packets(&source)
                .iter()
                .flat_map(|f| d.decode(f).unwrap())
                .collect();
            assert!(decoded == source, "{channels} channels, {fpp} frames");
        }
    }

    #[test]
    fn gaps_and_decode_errors_are_counted() {
        let source = signal(352 * 4, 2);
        let mut packetizer = AlacPacketizer::new(2, 44_100, 352).unwrap();
        let frames = packetizer.packets(&source);
        let receiver = AudioReceiver::new(AudioFormat::alac(44_100, 2, 352), None);
        let mut sender = RtpSender::new(100, 0, 1, None);
        let packets: Vec<_> = frames.iter().map(|f| sender.next_packet(f, 352)).collect();
        receiver.on_port_datagram(Port::Server, &packets[0], now());
        receiver.on_port_datagram(Port::Server, &packets[3], now());
        // A packet whose payload is not ALAC.
        let junk = rtp::encode(&RtpHeader::audio(false, 105, 0, 1), &[0xff; 7]);
        receiver.on_port_datagram(Port::Server, &junk, now());
        // Not audio at all.
        receiver.on_port_datagram(Port::Server, b"hello", now());
        let mut other_pt = packets[1].clone();
        other_pt[1] = 0x61;
        receiver.on_port_datagram(Port::Server, &other_pt, now());
        let stats = receiver.stats();
        assert_eq!(stats.packets, 3);
        assert_eq!(stats.decode_errors, 1);
        assert!(stats.last_error.is_some());
        assert_eq!(stats.missing, 3, "101, 102 and 104 never came");
        assert_eq!(stats.ignored, 2);
        assert_eq!((stats.first_seq, stats.last_seq), (Some(100), Some(105)));
        assert_eq!(
            receiver.capture().missing_ranges(),
            vec![(101, 2), (104, 1)]
        );
        let mut expected = source[..704].to_vec();
        expected.extend_from_slice(&source[704 * 3..]);
        assert_eq!(receiver.pcm(), expected);
        assert_eq!(stats.frames, 704);
    }

    /// A FIL element whose 4-bit count is 15 followed by an 8-bit count of 0: the `alac` crate
    /// computes `0usize - 1` (a panic with overflow checks). The receiver reports a decode error
    /// and goes on.
    #[test]
    fn alac_input_that_panics_the_decoder_is_a_decode_error() {
        let receiver = AudioReceiver::new(AudioFormat::alac(44_100, 2, 352), None);
        let evil = rtp::encode(&RtpHeader::audio(true, 1, 0, 1), &[0xDE, 0x00, 0x00, 0x00]);
        receiver.on_port_datagram(Port::Server, &evil, now());
        let good = {
            let mut p = AlacPacketizer::new(2, 44_100, 352).unwrap();
            let mut s = RtpSender::new(2, 352, 1, None);
            s.next_packet(&p.packets(&signal(352, 2))[0], 352)
        };
        receiver.on_port_datagram(Port::Server, &good, now());
        let stats = receiver.stats();
        assert_eq!(
            (stats.packets, stats.decode_errors, stats.frames),
            (2, 1, 352)
        );
        if cfg!(debug_assertions) {
            assert_eq!(
                stats.last_error.as_deref(),
                Some("ALAC decoder panicked on this packet (corrupt data)")
            );
        }
        assert!(receiver.pcm() == signal(352, 2));
    }

    #[test]
    fn other_codecs_are_counted_not_decoded() {
        let mut format = AudioFormat::l16(44_100, 2, 352);
        format.codec = Codec::Other("mpeg4-generic".into());
        let receiver = AudioReceiver::new(format, None);
        for seq in 0..3u16 {
            let p = rtp::encode(&RtpHeader::audio(seq == 0, seq, 0, 1), &[1, 2, 3]);
            receiver.on_port_datagram(Port::Server, &p, now());
        }
        let stats = receiver.stats();
        assert_eq!(
            (stats.packets, stats.frames, stats.decode_errors),
            (3, 0, 0)
        );
        assert_eq!(stats.codec, "mpeg4-generic");
        assert!(receiver.pcm().is_empty());
    }

    #[test]
    fn unusable_alac_configs_do_not_decode_and_do_not_panic() {
        for fmtp in [
            vec![352, 0, 24, 40, 10, 14, 2, 255, 0, 0, 44_100],
            vec![352, 0, 16, 40, 10, 14, 0, 255, 0, 0, 44_100],
            vec![u32::MAX, 0, 16, 40, 10, 14, 2, 255, 0, 0, 44_100],
            vec![352, 0, 300, 40, 10, 14, 2, 255, 0, 0, 44_100],
        ] {
            let mut format = AudioFormat::alac(44_100, 2, 352);
            format.fmtp = fmtp.clone();
            let mut d = Decoder::new(&format);
            assert!(!d.is_decodable(), "{fmtp:?}");
            assert!(matches!(
                d.decode(&[0; 10]),
                Err(AudioError::Undecodable(_))
            ));
        }
    }

    #[test]
    fn timing_port_answers_and_ignores() {
        let receiver = AudioReceiver::new(AudioFormat::l16(44_100, 2, 352), None);
        let request = rtp::timing_request(now() - Duration::from_secs(1));
        let replies = receiver.on_port_datagram(Port::Timing, &request, now());
        assert_eq!(replies.len(), 1);
        assert_eq!(&replies[0][8..16], &request[24..32]);
        assert!(receiver
            .on_port_datagram(Port::Timing, &replies[0], now())
            .is_empty());
        let stats = receiver.stats();
        assert_eq!((stats.timing_requests, stats.ignored), (1, 1));
    }

    fn receivers() -> Vec<AudioReceiver> {
        let mut other = AudioFormat::l16(44_100, 2, 352);
        other.codec = Codec::Other("AAC".into());
        vec![
            AudioReceiver::new(AudioFormat::alac(44_100, 2, 352), Some(nist_params())),
            AudioReceiver::new(AudioFormat::alac(44_100, 2, 352), None),
            AudioReceiver::new(AudioFormat::alac(44_100, 1, 4096), None),
            AudioReceiver::new(AudioFormat::l16(44_100, 2, 352), None),
            AudioReceiver::new(other, None),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_datagrams_never_panic(
            datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..8),
        ) {
            for receiver in receivers() {
                for d in &datagrams {
                    for port in Port::ALL {
                        let replies = receiver.on_port_datagram(port, d, now());
                        prop_assert!(replies.len() <= 1);
                    }
                }
                let stats = receiver.stats();
                prop_assert!(stats.packets >= stats.duplicates);
                let _ = receiver.pcm();
            }
        }

        /// Real ALAC packets with bytes changed and cut: garbage that gets past the first checks
        /// of the decoder, down to the paths where the `alac` crate asserts.
        #[test]
        fn mutated_alac_packets_never_panic(
            channels in 1u16..=2,
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..12),
            cut in any::<prop::sample::Index>(),
            loud: bool,
        ) {
            let pcm = if loud { signal(352, usize::from(channels)) } else { vec![3; 352 * usize::from(channels)] };
            let mut p = AlacPacketizer::new(channels, 44_100, 352).unwrap();
            let mut payload = p.packets(&pcm).remove(0);
            for (at, byte) in &edits {
                let i = at.index(payload.len());
                payload[i] ^= byte;
            }
            payload.truncate(cut.index(payload.len() + 1));
            let receiver = AudioReceiver::new(AudioFormat::alac(44_100, channels, 352), None);
            let packet = rtp::encode(&RtpHeader::audio(true, 1, 0, 1), &payload);
            receiver.on_port_datagram(Port::Server, &packet, now());
            let stats = receiver.stats();
            prop_assert_eq!(stats.packets, 1);
            prop_assert!(stats.frames <= 352);
            prop_assert!(stats.decode_errors <= 1);
            prop_assert_eq!(stats.decode_errors == 1, stats.last_error.is_some());
        }

        /// Valid RTP headers with arbitrary payloads, so the decoders see garbage.
        #[test]
        fn arbitrary_payloads_never_panic(
            packets in proptest::collection::vec(
                (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..600)), 1..6),
            retransmit: bool,
        ) {
            for receiver in receivers() {
                for (seq, payload) in &packets {
                    let p = rtp::encode(&RtpHeader::audio(false, *seq, 0, 1), payload);
                    if retransmit {
                        receiver.on_port_datagram(Port::Control, &rtp::retransmit_reply(*seq, &p), now());
                    } else {
                        receiver.on_port_datagram(Port::Server, &p, now());
                    }
                }
                let stats = receiver.stats();
                prop_assert_eq!(stats.packets, packets.len() as u64);
                let _ = receiver.pcm();
            }
        }
    }
}
