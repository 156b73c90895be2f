//! How a DACP library presents itself and what it allows: its name and ids, the remotes it
//! trusts, sessions, compression and speakers (docs/protocols/dacp.md).

use std::time::{Duration, SystemTime};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::state::NowPlaying;
use crate::daap::Catalog;

/// The pairing GUID `airtwin serve --device itunes|apple-tv` trusts, so a client developer can log
/// in at once with `--dmap-credentials 0x0000000000000001`.
pub const DEFAULT_GUID: u64 = 1;

/// An AirPlay speaker the library lists in `getspeakers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Speaker {
    pub name: String,
    /// `msma`: the speaker id (0 is the computer itself).
    #[serde(default)]
    pub id: u64,
    #[serde(default = "yes")]
    pub active: bool,
    /// 0..100.
    #[serde(default = "hundred")]
    pub volume: u32,
}

fn yes() -> bool {
    true
}

fn hundred() -> u32 {
    100
}

/// How a DACP library presents itself and what it allows.
#[derive(Debug, Clone)]
pub struct DacpConfig {
    /// `minm` of `/server-info` and the database name.
    pub name: String,
    /// The 64-bit library id (`DbId` / `mper`).
    pub library_id: u64,
    /// Pairing GUIDs allowed to log in (besides those paired at run time).
    pub known_guids: Vec<u64>,
    /// Status answered to a login with an unknown GUID (503 by default).
    pub login_status: u16,
    /// A session unused this long is gone (`mstm` of `/server-info`).
    pub session_timeout: Duration,
    /// Compress bodies when the client accepts gzip.
    pub gzip: bool,
    /// Value of the `DAAP-Server` header.
    pub server: String,
    pub now_playing: NowPlaying,
    /// PNG bytes per track, in the order of `now_playing.tracks`.
    pub artwork: Vec<Option<Vec<u8>>>,
    pub speakers: Vec<Speaker>,
    /// The shared library (DAAP); `None`: the now-playing queue's tracks.
    pub library: Option<Catalog>,
    /// Whether `/login` without a pairing GUID opens a session: iTunes' library sharing lets any
    /// client browse as a guest (docs/protocols/daap.md, "Login").
    pub guest_login: bool,
    /// Seed of session ids.
    pub seed: u64,
    /// When the device started: the timeline counts from here.
    pub start: SystemTime,
}

impl DacpConfig {
    /// An iTunes library named `name` trusting [`DEFAULT_GUID`].
    pub fn itunes(name: &str, start: SystemTime) -> Self {
        DacpConfig {
            name: name.to_string(),
            library_id: 0xA1B2_C3D4_E5F6_0718,
            known_guids: vec![DEFAULT_GUID],
            login_status: 503,
            session_timeout: Duration::from_secs(1800),
            gzip: true,
            server: "iTunes/11.1b37 (OS X)".into(),
            now_playing: NowPlaying::default(),
            artwork: Vec::new(),
            speakers: vec![Speaker {
                name: "Computer".into(),
                id: 0,
                active: true,
                volume: 100,
            }],
            library: None,
            guest_login: true,
            seed: 0,
            start,
        }
    }
}
