//! MRP (the Media Remote Protocol) tunnelled over AirPlay 2, as an Apple TV 4K on tvOS 15+
//! serves it (docs/protocols/mrp.md): after pair-verify on the AirPlay port, the controller sets
//! up a remote-control-only session (an event channel), RECORDs, then SETUPs a stream of type
//! 130 with a `seed`; the device answers a `dataPort`, and on that TCP connection both sides
//! exchange [`frame`]s sealed with keys derived from the pairing secret under
//! `DataStream-Salt<seed>` (docs/protocols/mrp.md, "Keys"). The frames carry protobuf
//! [`message`]s; [`session`] is the device's side of the MRP conversation, [`channel`] the
//! byte-stream core the shell drives on the data port.
//!
//! Sans-IO: no socket, no clock; the shell hands in bytes and the time.

pub mod channel;
pub mod frame;
pub mod message;
pub mod session;

use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use crate::now_playing::Model;

/// What the device says about itself in its `DEVICE_INFO` answer.
#[derive(Debug, Clone, PartialEq)]
pub struct MrpConfig {
    /// `name`: the device's name.
    pub name: String,
    /// `uniqueIdentifier` and `deviceUID`: a stable identifier of the device (its pairing id).
    pub unique_identifier: String,
    /// `systemBuildVersion`: the tvOS build.
    pub system_build_version: String,
    /// `modelID`: `AppleTV11,1` for an Apple TV 4K (2nd generation).
    pub model_id: String,
    /// The bundle of the app that plays (`NowPlayingClient.bundleIdentifier`).
    pub player_bundle: String,
    /// That app's display name.
    pub player_name: String,
}

impl MrpConfig {
    /// tvOS 18.2's build, the one airtwin's Apple TV 4K announces as `osvers` 18.2.
    pub const BUILD: &'static str = "22K157";

    pub fn apple_tv_4k(name: &str, unique_identifier: &str, model: &str) -> Self {
        MrpConfig {
            name: name.to_string(),
            unique_identifier: unique_identifier.to_string(),
            system_build_version: Self::BUILD.to_string(),
            model_id: model.to_string(),
            player_bundle: "com.apple.TVMusic".into(),
            player_name: "Music".into(),
        }
    }
}

/// What every MRP data channel of a device saw, for `state` expectations (`mrp.*`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct MrpRecord {
    /// Data channel connections accepted.
    pub connections: u64,
    /// Messages received, by type name, in order (the latest
    /// [`crate::protocol_core::HISTORY_KEPT`]).
    pub received: Vec<String>,
    /// `sync` frames received.
    pub syncs: u64,
    /// `rply` frames the controller sent back to the device's `sync` frames.
    pub replies: u64,
    /// `SEND_COMMAND`s carried out, by command name (`pause`, `next_track`, `seek 30`…).
    pub commands: Vec<String>,
    /// Remote keys released (`up`, `select`, `volume_up`…).
    pub keys: Vec<String>,
    /// `SET_STATE` messages the device pushed.
    pub set_states: u64,
    /// Whether a controller asked for now-playing updates (`CLIENT_UPDATES_CONFIG`).
    pub subscribed: bool,
    /// What the last `DEVICE_INFO` answer said of the power: `on` (`logicalDeviceCount` 1) or
    /// `off` (0, asleep); `null` before any.
    pub power_reported: Option<String>,
    /// Messages this device does not handle, by type name.
    pub unhandled: Vec<String>,
    /// Connections that ended on bytes that were not a valid encrypted block or frame.
    pub broken: u64,
}

/// Whether the device is awake, as another part of it (Companion) knows.
pub type PowerProbe = Arc<dyn Fn() -> bool + Send + Sync>;

/// The MRP side of a device, shared by its data channels.
pub struct MrpCore {
    pub config: MrpConfig,
    /// What is playing, shared with the device's other protocols.
    pub now_playing: Arc<Model>,
    record: Mutex<MrpRecord>,
    power: Option<PowerProbe>,
}

impl MrpCore {
    pub fn new(config: MrpConfig, now_playing: Arc<Model>) -> Self {
        MrpCore {
            config,
            now_playing,
            record: Mutex::new(MrpRecord::default()),
            power: None,
        }
    }

    /// Reads whether the device is awake from `probe` (`DEVICE_INFO`'s `logicalDeviceCount`
    /// is 0 while it sleeps); awake when none is given.
    pub fn with_power(mut self, probe: PowerProbe) -> Self {
        self.power = Some(probe);
        self
    }

    pub fn awake(&self) -> bool {
        self.power.as_ref().is_none_or(|p| p())
    }

    pub fn record(&self) -> MutexGuard<'_, MrpRecord> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// State for expectations and the control API: the [`MrpRecord`] fields.
    pub fn state_json(&self) -> serde_json::Value {
        serde_json::to_value(&*self.record()).unwrap_or_default()
    }
}
