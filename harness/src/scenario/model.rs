//! The scenario format: which devices exist, the clients that drive them, the faults, and the
//! expectations. `airtwin schema` prints the JSON Schema generated from these types.

use std::collections::BTreeMap;

use airtwin_simulators::fault::Fault;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One scenario file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short identifier, shown in reports.
    pub name: String,
    /// What the scenario shows and what the client must do.
    pub description: String,
    /// Seed of every random choice (faults, session ids, keys); `airtwin run --seed` overrides it.
    #[serde(default)]
    pub seed: u64,
    /// Devices to start, each on 127.0.0.1.
    pub devices: Vec<DeviceSpec>,
    /// Clients run one after another, in order.
    #[serde(default)]
    pub clients: Vec<ClientSpec>,
    /// Faults injected at the devices' fault seam.
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// What must hold when the clients are done.
    #[serde(default)]
    pub expect: Vec<Expectation>,
}

/// Device kinds airtwin simulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceKind {
    /// AirPort Express: a RAOP (AirTunes v2) receiver; ready-file service `raop`.
    AirportExpress,
}

impl DeviceKind {
    pub const NAMES: &'static [&'static str] = &["airport-express"];

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::AirportExpress => "airport-express",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "airport-express" => Some(DeviceKind::AirportExpress),
            _ => None,
        }
    }
}

/// One simulated device.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    pub kind: DeviceKind,
    /// Unique within the scenario; used in `${device.<name>.port}` and expectations.
    pub name: String,
    /// TCP port on 127.0.0.1; 0 (the default) picks a free one.
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub identity: Identity,
    /// Sessions served at once; later ANNOUNCEs get 453 (default 1, like an AirPort Express).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<usize>,
    /// Seconds of silence after which a connection is closed (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<f64>,
}

/// Who the device says it is.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// MAC address `00:11:24:00:44:91` (also the 6 bytes signed into `Apple-Response`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// RSA private key: `builtin` (the well-known AirPort Express key, default), `other`, or a PEM
    /// path relative to the scenario file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Model string, e.g. `AirPort10,115`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `sourceVersion` / `Server: AirTunes/<v>` (default 220.68).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_version: Option<String>,
    /// Fixed RTSP `Session` value (default: derived from the seed, decimal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Extra or overriding `_raop._tcp` TXT properties.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub txt: BTreeMap<String, String>,
}

/// A client that drives the devices.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    /// Unique within the scenario; used by `client` expectations.
    pub name: String,
    pub run: ClientKind,
    /// Seconds before the client (its whole process group) is killed (default 60).
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    /// Exit status the client must end with (default 0). A killed client has none.
    #[serde(default)]
    pub exit: i32,
    /// Extra environment variables for external commands (values are substituted).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

fn default_timeout() -> f64 {
    60.0
}

/// What a client is.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientKind {
    /// airtwin's own RAOP sender (`airtwin client raop`).
    Raop(RaopClientSpec),
    /// An external program: argv, with `${device.<name>.port}`, `${device.<name>.address}`,
    /// `${device.<name>.ports.<service>}`, `${peers}` (third-party peers folder),
    /// `${scenario_dir}` and `${out}` substituted.
    Command(Vec<String>),
}

/// Options of airtwin's reference RAOP sender.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RaopClientSpec {
    /// Device to stream to.
    pub to: String,
    /// WAV file (16-bit PCM), relative to the scenario file.
    pub file: String,
    /// Where `Apple-Challenge` goes: `options` (default), `announce` or `none`.
    #[serde(default)]
    pub challenge: ChallengeOn,
    /// Encrypt audio with RSA/AES (default true).
    #[serde(default = "yes")]
    pub encrypt: bool,
    /// Key whose public half verifies `Apple-Response`: `builtin` (default) or a PEM path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_key: Option<String>,
    /// MAC expected in `Apple-Response` (default: the device's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Seconds to wait for each response (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_timeout: Option<f64>,
}

fn yes() -> bool {
    true
}

/// Which request carries `Apple-Challenge`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChallengeOn {
    #[default]
    Options,
    Announce,
    None,
}

/// A condition checked after the clients ran.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Expectation {
    /// Requests a device saw, and what it answered.
    Exchanges(ExchangesExpect),
    /// A client's exit status and output.
    Client(ClientExpect),
    /// Every request a device saw is one of `allowed` (`METHOD` or `METHOD /path`).
    NoUnexpectedRequests {
        device: String,
        allowed: Vec<String>,
    },
    /// Audio a device received.
    Audio(AudioExpect),
    /// The device logged no protocol warning.
    NoWarnings { device: String },
    /// Faults that must have acted (by position in `faults`), at least once each.
    FaultsApplied(Vec<usize>),
    /// Values of the device's state after the run (e.g. `volume`, `active_sessions`).
    State {
        device: String,
        values: BTreeMap<String, serde_json::Value>,
    },
}

/// Request/response patterns at one device.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExchangesExpect {
    pub device: String,
    /// `in_order` (default): the patterns match requests in this order, others may come between;
    /// `any_order`: each pattern matches some request.
    #[serde(default)]
    pub order: Order,
    pub requests: Vec<ExchangePattern>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    #[default]
    InOrder,
    AnyOrder,
}

/// What one request and its response look like. Every field set must hold.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExchangePattern {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Status the device sent; absent in the transcript when it sent none (drop, reset, stall).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The device sent no response at all.
    #[serde(default)]
    pub no_response: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_headers: BTreeMap<String, HeaderCheck>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub response_headers: BTreeMap<String, HeaderCheck>,
}

/// A check of one header.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HeaderCheck {
    Present,
    Absent,
    Equals(String),
    /// A regular expression the value must match.
    Matches(String),
}

/// A client's outcome.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientExpect {
    pub name: String,
    /// Exit status; overrides the client's `exit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<i32>,
    /// Regular expression that stdout+stderr must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Regular expression that stdout+stderr must not match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_not: Option<String>,
    /// The client must have been killed at its timeout.
    #[serde(default)]
    pub timed_out: bool,
}

/// Audio received by a device, over all its sessions.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AudioExpect {
    pub device: String,
    /// At least this many RTP audio packets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_packets: Option<u64>,
    /// At least this many PCM frames decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_frames: Option<u64>,
    /// At most this many packets missing from the sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_missing: Option<u64>,
    /// At least this many packets missing (to check a `lose_packets` fault acted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_missing: Option<u64>,
    /// The decoded audio equals this WAV sample for sample (relative to the scenario file).
    /// Silence that the sender adds before and after the file is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals_wav: Option<String>,
    /// Every session was AES-encrypted (true) or clear (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<bool>,
}
