//! What a RAOP receiver keeps of a stream: every packet by extended sequence number, decoded,
//! with the counters expectations check, and the capture as WAV bytes.
//!
//! A bounded capture ([`Capture::bounded`]) keeps only the last packets in memory (the window in
//! which late and reordered packets still find their place) and hands older ones, in sequence
//! order, to an [`AudioSink`]; its counters still cover the whole stream. That is how a long-running
//! `serve` stays flat and still writes every sample to disk.

use std::collections::BTreeMap;
use std::io;

use serde::Serialize;

use super::decode::{AudioError, Decoder};
use super::format::AudioFormat;
use crate::raop::rtp::{RtpHeader, SyncPacket};

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

/// Where a bounded capture sends the samples it no longer keeps, in sequence order.
pub trait AudioSink: Send {
    /// Interleaved samples of one packet.
    fn write(&mut self, samples: &[i16]);
    /// The stream is over: nothing more comes.
    fn finish(&mut self) {}
}

/// What a bounded capture has already handed on.
#[derive(Debug, Default)]
struct Flushed {
    /// Packets handed on (stored ones, whatever their entry).
    entries: u64,
    /// Samples handed on.
    samples: u64,
    /// Extended sequence numbers of the first and last packet handed on.
    first: Option<i64>,
    last: Option<i64>,
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
    /// Packets that arrived after their place had left a bounded capture's window.
    pub late: u64,
    pub last_error: Option<String>,
}

/// What a capture holds in memory against what it received: a bounded capture keeps at most
/// `window` packets and hands older ones on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Retention {
    /// Most packets kept in memory (`None`: all of them).
    pub window: Option<usize>,
    /// Packets in memory now.
    pub kept: usize,
    /// Packets that left memory: handed to the sink (the `--out` WAV), or forgotten without one.
    pub handed_on: u64,
    /// Packets that arrived after their place had left the window.
    pub late: u64,
}

/// Everything received on one stream, keyed by extended sequence number.
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
    /// Most packets kept in memory (`None`: all).
    window: Option<usize>,
    sink: Option<Box<dyn AudioSink>>,
    flushed: Flushed,
    late: u64,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("format", &self.format)
            .field("kept", &self.entries.len())
            .field("window", &self.window)
            .field("flushed", &self.flushed)
            .field("sink", &self.sink.is_some())
            .finish()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.finish_stream();
    }
}

impl Capture {
    /// A capture that keeps every packet.
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
            window: None,
            sink: None,
            flushed: Flushed::default(),
            late: 0,
        }
    }

    /// A capture that keeps the last `window` packets (at least one) and hands older ones to
    /// `sink` (or forgets their samples when there is none).
    pub fn bounded(format: AudioFormat, window: usize, sink: Option<Box<dyn AudioSink>>) -> Self {
        let mut capture = Capture::new(format);
        capture.window = Some(window.max(1));
        capture.sink = sink;
        capture
    }

    /// Whether the capture keeps only a window of packets ([`Capture::bounded`]).
    pub fn is_bounded(&self) -> bool {
        self.window.is_some()
    }

    /// Packets kept in memory.
    pub fn kept(&self) -> usize {
        self.entries.len()
    }

    /// Hands the lowest packets on until at most `keep` remain.
    fn flush_to(&mut self, keep: usize) {
        while self.entries.len() > keep {
            let Some((ext, entry)) = self.entries.pop_first() else {
                break;
            };
            self.flushed.entries += 1;
            self.flushed.first.get_or_insert(ext);
            self.flushed.last = Some(ext);
            if let Entry::Pcm(samples) = entry {
                self.flushed.samples += samples.len() as u64;
                if let Some(sink) = self.sink.as_mut() {
                    sink.write(&samples);
                }
            }
        }
    }

    /// The stream is over: a bounded capture hands on every packet it still keeps and finishes
    /// its sink (a capture that keeps everything keeps it).
    pub fn finish_stream(&mut self) {
        if self.window.is_none() {
            return;
        }
        self.flush_to(0);
        if let Some(mut sink) = self.sink.take() {
            sink.finish();
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
        if self.handed_on(ext) {
            return PacketOutcome::Duplicate;
        }
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
        let outcome = if !self.decoder.is_decodable() {
            self.entries.insert(ext, Entry::Opaque);
            PacketOutcome::Undecoded
        } else {
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
        };
        if let Some(window) = self.window {
            self.flush_to(window);
        }
        outcome
    }

    /// Records an audio packet whose payload could not be decrypted: a decode error, and a
    /// retransmit of it may still fill its place.
    pub fn fail(&mut self, header: &RtpHeader, error: AudioError) {
        self.packets += 1;
        let ext = self.extend_seq(header.seq);
        if self.handed_on(ext) {
            return;
        }
        if self.entries.contains_key(&ext) {
            self.duplicates += 1;
            return;
        }
        self.decode_errors += 1;
        self.last_error = Some(error);
        self.entries.insert(ext, Entry::Failed);
        if let Some(window) = self.window {
            self.flush_to(window);
        }
    }

    /// Whether the place of packet `ext` already left a bounded capture's window (handed on as
    /// received or as missing): the packet is late and counted so.
    fn handed_on(&mut self, ext: i64) -> bool {
        let late = self.flushed.last.is_some_and(|last| ext <= last);
        if late {
            self.late += 1;
        }
        late
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

    /// The decoded samples of all packets kept in memory (all packets, unless the capture is
    /// bounded) in sequence order, interleaved. Missing packets and packets that did not decode
    /// contribute nothing (see [`Capture::stats`]).
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

    /// What it keeps in memory and what it handed on.
    pub fn retention(&self) -> Retention {
        Retention {
            window: self.window,
            kept: self.entries.len(),
            handed_on: self.flushed.entries,
            late: self.late,
        }
    }

    pub fn stats(&self) -> CaptureStats {
        let first = self
            .flushed
            .first
            .or_else(|| self.entries.keys().next().copied());
        let last = self
            .entries
            .keys()
            .next_back()
            .copied()
            .or(self.flushed.last);
        let stored = self.entries.len() as u64 + self.flushed.entries;
        let missing = match (first, last) {
            (Some(f), Some(l)) => (l - f + 1) as u64 - stored,
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
            .sum::<u64>()
            + self.flushed.samples;
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
            late: self.late,
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
