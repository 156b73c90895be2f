//! One RAOP stream's receiver behind the three UDP ports SETUP opens (server, control, timing):
//! decrypts, decodes and captures what arrives, and answers timing requests.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use super::capture::{AudioSink, Capture, CaptureStats};
use super::crypto::{decrypt_payload, open_sealed, AesParams};
use super::decode::AudioError;
use super::format::AudioFormat;
use crate::protocol_core::DatagramHandler;
use crate::raop::rtp::{self, SyncPacket};
use crate::wire::sdp::Announce;

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
    /// AirPlay 2: the SETUP's `shk`, which seals every packet (docs/protocols/airplay.md).
    shk: Option<[u8; 32]>,
    capture: Mutex<Capture>,
}

impl AudioReceiver {
    /// `aes` is `None` when the ANNOUNCE had no key (pyatv's unencrypted L16, docs/peers.md).
    pub fn new(format: AudioFormat, aes: Option<AesParams>) -> Self {
        AudioReceiver {
            capture: Mutex::new(Capture::new(format.clone())),
            format,
            aes,
            shk: None,
        }
    }

    /// An AirPlay 2 realtime stream: every packet sealed with ChaCha20-Poly1305 under `shk`.
    pub fn sealed(format: AudioFormat, shk: [u8; 32]) -> Self {
        AudioReceiver::new(format, None).sealed_with(shk)
    }

    /// This receiver (bounded or not) for an AirPlay 2 realtime stream sealed under `shk`.
    pub fn sealed_with(self, shk: [u8; 32]) -> Self {
        AudioReceiver {
            shk: Some(shk),
            ..self
        }
    }

    /// A receiver whose capture keeps the last `window` packets in memory and hands older ones
    /// to `sink` ([`Capture::bounded`]).
    pub fn bounded(
        format: AudioFormat,
        aes: Option<AesParams>,
        window: usize,
        sink: Option<Box<dyn AudioSink>>,
    ) -> Self {
        AudioReceiver {
            capture: Mutex::new(Capture::bounded(format.clone(), window, sink)),
            format,
            aes,
            shk: None,
        }
    }

    /// Hands on what a bounded capture still keeps and finishes its sink
    /// ([`Capture::finish_stream`]).
    pub fn finish_stream(&self) {
        self.capture().finish_stream();
    }

    pub fn from_announce(announce: &Announce, aes: Option<AesParams>) -> Self {
        AudioReceiver::new(AudioFormat::from_announce(announce), aes)
    }

    pub fn format(&self) -> &AudioFormat {
        &self.format
    }

    pub fn is_encrypted(&self) -> bool {
        self.aes.is_some() || self.shk.is_some()
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

    /// An audio packet as it reads decrypted: its RTP header, then the payload with the AES-CBC
    /// blocks decrypted (docs/protocols/raop.md, "Audio encryption"), or, for AirPlay 2's
    /// ChaCha20-Poly1305 packets, the opened payload without tag and nonce
    /// (docs/protocols/airplay.md, "AirPlay 2 audio"). `None`: not an encrypted audio packet.
    pub fn plain_audio(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let (header, payload) = rtp::parse(bytes)?;
        if header.payload_type != rtp::PT_AUDIO {
            return None;
        }
        let head = &bytes[..bytes.len() - payload.len()];
        let opened = if let Some(key) = &self.shk {
            open_sealed(key, bytes).ok()?
        } else {
            let mut payload = payload.to_vec();
            decrypt_payload(self.aes.as_ref()?, &mut payload);
            payload
        };
        let mut plain = head.to_vec();
        plain.extend(opened);
        Some(plain)
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
        if let Some(key) = &self.shk {
            match open_sealed(key, bytes) {
                Ok(plain) => {
                    self.capture().push(&header, &plain, retransmit);
                }
                Err(e) => self
                    .capture()
                    .fail(&header, AudioError::Sealed(e.to_string())),
            }
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

    fn plaintext(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        match self.port {
            Port::Server => self.receiver.plain_audio(bytes),
            // A retransmit reply's 4-byte header, then the audio packet it carries
            // (docs/protocols/raop.md, "RTP streams").
            Port::Control if rtp::packet_type(bytes) == Some(rtp::PT_RETRANSMIT_REPLY) => {
                let inner = rtp::parse_retransmit_reply(bytes)?;
                let mut plain = bytes[..bytes.len() - inner.len()].to_vec();
                plain.extend(self.receiver.plain_audio(inner)?);
                Some(plain)
            }
            _ => None,
        }
    }
}
