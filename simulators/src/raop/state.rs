//! What a RAOP receiver remembers across connections: volume, metadata, artwork, progress, and
//! every audio session it received. The harness reads it for expectations and captures.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;

use super::audio::{AudioFormat, AudioReceiver, AudioSink};

/// Makes the sink a session's bounded capture hands its samples to: called with the device's
/// name, the session's number (counted from 0 over the device's life) and its format.
pub type SinkFactory =
    dyn Fn(&str, usize, &AudioFormat) -> Option<Box<dyn AudioSink>> + Send + Sync;

/// How much of what it receives a RAOP receiver keeps in memory. The default keeps everything,
/// as a scenario run needs for its expectations; `serve` bounds both and streams the audio to
/// `--out` through `sink`.
#[derive(Clone, Default)]
pub struct CapturePolicy {
    /// Packets of each session kept in memory (`None`: all).
    pub window: Option<usize>,
    /// Sessions kept in [`RaopState::sessions`], the latest (`None`: all).
    pub sessions: Option<usize>,
    pub sink: Option<Arc<SinkFactory>>,
}

impl CapturePolicy {
    /// The receiver of session `number`.
    pub fn receiver(
        &self,
        device: &str,
        number: usize,
        format: AudioFormat,
        aes: Option<super::audio::AesParams>,
    ) -> AudioReceiver {
        match self.window {
            None => AudioReceiver::new(format, aes),
            Some(window) => {
                let sink = self
                    .sink
                    .as_ref()
                    .and_then(|make| make(device, number, &format));
                AudioReceiver::bounded(format, aes, window, sink)
            }
        }
    }
}

/// One audio session (ANNOUNCE … TEARDOWN) as the device saw it.
#[derive(Clone)]
pub struct SessionRecord {
    /// The session's number at the device, counted from 0 (it stays the same when older
    /// sessions are forgotten).
    pub number: usize,
    pub connection: u64,
    pub peer: SocketAddr,
    pub rtpmap: String,
    pub encrypted: bool,
    /// `DACP-ID` and `Active-Remote` the sender announced, if any.
    pub dacp_id: Option<String>,
    pub active_remote: Option<String>,
    pub user_agent: Option<String>,
    pub receiver: Arc<AudioReceiver>,
}

/// Device-wide state of a RAOP receiver.
#[derive(Default, Clone, Serialize)]
pub struct RaopState {
    /// Last `volume:` of SET_PARAMETER, dB (-144 mute, -30..0).
    pub volume: Option<f64>,
    /// Last `progress:` of SET_PARAMETER (`start/current/end` RTP timestamps).
    pub progress: Option<String>,
    /// Items of the last DMAP metadata SET_PARAMETER: (tag, text) for string-valued tags.
    pub metadata: Vec<(String, String)>,
    /// Content type and size of the last artwork SET_PARAMETER.
    pub artwork: Option<(String, usize)>,
    /// Sessions announced and not yet torn down.
    pub active_sessions: usize,
    /// Number of sessions ever announced.
    pub sessions_total: usize,
    /// Audio sessions set up so far (the next [`SessionRecord::number`]).
    #[serde(skip)]
    pub sessions_started: usize,
    /// The audio sessions set up, all of them unless [`CapturePolicy::sessions`] bounds them.
    #[serde(skip)]
    pub sessions: Vec<SessionRecord>,
    /// The receiver of the last session set up with `RTP/AVP/TCP`, until its teardown: where
    /// interleaved frames on a connection without a session of its own go.
    #[serde(skip)]
    pub interleaved_to: Option<Arc<AudioReceiver>>,
}

impl RaopState {
    /// Decoded audio of every session, concatenated in session order.
    pub fn captured_pcm(&self) -> Vec<i16> {
        let mut all = Vec::new();
        for s in &self.sessions {
            all.extend(s.receiver.pcm());
        }
        all
    }
}
