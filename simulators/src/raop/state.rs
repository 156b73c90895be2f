//! What a RAOP receiver remembers across connections: volume, metadata, artwork, progress, and
//! every audio session it received. The harness reads it for expectations and captures.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;

use super::audio::AudioReceiver;

/// One audio session (ANNOUNCE … TEARDOWN) as the device saw it.
#[derive(Clone)]
pub struct SessionRecord {
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
    #[serde(skip)]
    pub sessions: Vec<SessionRecord>,
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
