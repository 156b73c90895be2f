//! One RAOP stream's receiver behind the three UDP ports SETUP opens (server, control, timing):
//! decrypts, decodes and captures what arrives, and answers timing requests.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use super::capture::{Capture, CaptureStats};
use super::crypto::{decrypt_payload, AesParams};
use super::format::AudioFormat;
use crate::raop::rtp::{self, SyncPacket};
use crate::service::DatagramHandler;
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
