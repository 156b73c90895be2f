//! The one fault seam.
//!
//! Faults are data, matched against each exchange between a device's protocol core and its I/O
//! shell. The shell asks the [`FaultPlan`] for a [`Verdict`] on every request before the core sees
//! it, and applies the verdict: wait, answer in the core's place, close, reset, stall, or let the
//! core answer and then edit the response. Device-specific actions (`sign_with`, `lose_packets`)
//! reach the core and the datagram shell as parameters from the same plan. No device has fault
//! code of its own, so a new fault works for every device.
//!
//! Every action is defined once, as a variant of [`Action`]: its name and JSON Schema come from
//! the variant, and [`Action::define`] gives what it reaches, its transcript text and its checks,
//! which [`Fault::validate`] applies for the scenario loader and the control API alike.
//!
//! Every random choice (probability, corrupted positions, lost packets) comes from a generator
//! seeded by the scenario seed, the fault's position and how often it matched, so a run with the
//! same seed makes the same choices whatever the interleaving of connections.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use thiserror::Error;

mod edit;
mod plan;

/// Moved to [`crate::wire::plist`]; kept here for callers of the old path.
pub use crate::wire::plist::plist_from_json;
pub use edit::{apply_edits, preempt_response, Edit};
pub use plan::{Applied, CoreParams, FaultPlan, FaultStatus, Preempt, RequestFacts, Verdict};

/// Which exchanges a fault applies to. Every field that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// Device name; any device when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Request method, e.g. `SETUP`, `GET` (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request path, e.g. `/info`; a trailing `*` matches any path with that prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Index of the request within its connection (0 is the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<u64>,
    /// Index of the connection at the device (0 is the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<u64>,
}

/// Part of a response that `corrupt` flips bytes in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CorruptTarget {
    /// The body.
    Body,
    /// The value of one header.
    Header(String),
}

/// What a fault does.
// Each variant is the one definition of an action: its name (`snake_case`, for serde and strum
// alike) and JSON Schema come from the derives, and `Action::define` gives what it reaches, its
// transcript text and its checks, one arm per action. (A doc comment here would reach the schema.)
#[derive(
    Debug,
    Clone,
    PartialEq,
    Serialize,
    Deserialize,
    JsonSchema,
    strum::IntoStaticStr,
    strum::VariantNames,
)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[strum(serialize_all = "snake_case")]
pub enum Action {
    /// Wait this many milliseconds before the core handles the request.
    Delay(u64),
    /// Answer in the core's place (the core never sees the request). CSeq is echoed.
    Respond {
        status: u16,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        #[serde(default)]
        body: String,
    },
    /// Close the connection without answering.
    Drop,
    /// Abort the connection with a TCP RST.
    Reset,
    /// Keep reading, never answer.
    Stall,
    /// Remove a header from the core's response.
    OmitHeader(String),
    /// Set a header of the core's response.
    SetHeader { name: String, value: String },
    /// Flip `bytes` bytes (default 1) at seeded positions of a header value or of the body.
    Corrupt {
        target: CorruptTarget,
        #[serde(default = "one")]
        bytes: usize,
    },
    /// RAOP: answer `Apple-Challenge` with this private key (PEM path) instead of the device's.
    SignWith(String),
    /// RAOP: drop this fraction (0..1) of incoming RTP audio packets, chosen by the seed.
    LosePackets(f64),
    /// RAOP over TCP: after this many interleaved RTP frames on a connection, reset it with the
    /// next frame half read (docs/protocols/raop.md, "RTP over TCP").
    CutInterleaved(u64),
    /// Cut the body of the core's response to this many bytes (`Content-Length` follows).
    Truncate(usize),
    /// Edit a binary-plist body of the core's response: `set` keys (YAML values: integer, real,
    /// string, boolean, list, map) and `remove` keys. A body that is no plist is left alone.
    EditPlist {
        #[serde(default)]
        set: BTreeMap<String, serde_json::Value>,
        #[serde(default)]
        remove: Vec<String>,
    },
    /// Edit a DMAP body of the core's response (DACP, a remote's `/pair` answer): `remove` every
    /// item with one of these 4-character tags, at any depth; the containers' lengths follow. A
    /// body that is no DMAP is left alone.
    EditDmap {
        #[serde(default)]
        remove: Vec<String>,
    },
    /// FairPlay: answer `fp-setup` phase 1 with the fixed reply of this mode (0..3), whatever
    /// mode the request asked for.
    FpReplyMode(u8),
    /// FairPlay: answer `fp-setup` phase 3 with the 20 request bytes from this offset instead of
    /// from 144.
    FpEchoOffset(usize),
    /// AirPlay video: close the event channel (the connection reversed by `POST /reverse`)
    /// instead of pushing the event after this many (0: before the first). Match it to the
    /// `/reverse` request.
    DropEventChannel(u64),
    /// HomeKit pairing: answer this `/pair-setup` or `/pair-verify` message with this error TLV
    /// (BackOff adds a RetryDelay of 60 s); the pairing under way is not disturbed.
    HapError(HapError),
    /// HomeKit pairing: the accessory's proof in pair-setup M6 and pair-verify M2 is `signature`
    /// (made with another key than its LTPK) or `identifier` (another accessory's identifier).
    HapForge(HapForge),
    /// DAAP: the library item with this id is still listed, but its own requests (artwork, the
    /// song, playing it from the remote) get 404, as when its file is gone.
    LibraryItemMissing(u32),
    /// HomeKit encrypted channel: flip one byte, at a seeded position, of the first encrypted
    /// block of the response, after sealing, so the controller's tag check fails. A response
    /// that goes out in the clear is left alone.
    CorruptEncryptedBlock,
    /// Companion (docs/protocols/companion.md): `bad_mac` spoils the tag of the matching
    /// encrypted frame the device sends; `refuse_launch` answers the matching `_launchApp` with an
    /// error and launches nothing; `sleep` puts the device to sleep before it answers.
    Companion(CompanionFault),
}

/// What a `companion` fault does.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, strum::IntoStaticStr,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum CompanionFault {
    BadMac,
    RefuseLaunch,
    Sleep,
}

/// The error a `hap_error` fault answers with (HAP Table 5-5).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, strum::IntoStaticStr,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum HapError {
    Unknown,
    Authentication,
    BackOff,
    MaxTries,
    Busy,
}

/// What a `hap_forge` fault forges.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, strum::IntoStaticStr,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum HapForge {
    Signature,
    Identifier,
}

fn one() -> usize {
    1
}

/// What an action acts on, and so which devices it reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Every request and response of every device and protocol (RTSP, HTTP, DACP, a remote's
    /// `/pair`): the shell applies it around the core.
    AnyExchange,
    /// RAOP's answer to `Apple-Challenge` (docs/protocols/raop.md): devices with a RAOP
    /// receiver (airport-express, apple-tv); the core reads it from [`CoreParams`].
    RaopChallenge,
    /// RAOP's RTP audio (docs/protocols/raop.md): datagrams the datagram port loses, interleaved
    /// frames the connection driver cuts.
    RaopAudio,
    /// AirPlay's FairPlay `fp-setup` (docs/protocols/airplay.md): apple-tv; the core reads it
    /// from [`CoreParams`].
    FairPlaySetup,
    /// HomeKit pair-setup and pair-verify (docs/protocols/hap.md): an apple-tv of generation 4k;
    /// the core reads it from [`CoreParams`].
    HapPairing,
    /// The AirPlay video API's event channel (docs/protocols/airplay.md, "The reverse event channel"):
    /// apple-tv; the core reads it from [`CoreParams`].
    VideoEvents,
    /// The shared library's per-item requests (docs/protocols/daap.md): itunes, the DACP side of
    /// an apple-tv; the core reads it from [`CoreParams`].
    DaapLibrary,
    /// The encrypted channel after pairing (docs/protocols/hap.md, "The encrypted channel"): an
    /// apple-tv of generation 4k; the connection driver applies it to the sealed bytes.
    HapChannel,
    /// Companion frames (docs/protocols/companion.md): an apple-tv of generation 4k; the core
    /// reads it from [`CoreParams`].
    Companion,
}

impl Reach {
    /// The protocol part, as the README's Faults paragraph names it.
    pub fn protocol(self) -> &'static str {
        match self {
            Reach::AnyExchange => "every device",
            Reach::RaopChallenge | Reach::RaopAudio => "RAOP",
            Reach::FairPlaySetup => "FairPlay",
            Reach::HapPairing => "HomeKit pairing",
            Reach::VideoEvents => "AirPlay video",
            Reach::DaapLibrary => "DAAP",
            Reach::HapChannel => "HomeKit encrypted channel",
            Reach::Companion => "Companion",
        }
    }
}

/// What a fault is checked against.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope<'a> {
    /// Names `when.device` may take; not checked when absent.
    pub devices: Option<&'a [&'a str]>,
    /// Keys `sign_with` may name. Absent where the faults checked are the ones that name the
    /// keys (a scenario's: every key they name is loaded when the devices start).
    pub keys: Option<&'a [&'a str]>,
}

/// A fault that cannot be applied: the field (`action.lose_packets`) and why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{path}: {message}")]
pub struct FaultError {
    /// Field path within the fault, e.g. `probability`, `action.respond.status`.
    pub path: String,
    pub message: String,
}

impl FaultError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FaultError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// An action as [`Action::define`] gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    pub reach: Reach,
    /// The transcript text: `delay 500ms`, `respond 453`, …
    pub text: String,
    /// The first thing wrong with it: field path below the action's name, and why.
    pub problem: Option<(String, String)>,
}

impl Definition {
    fn new(reach: Reach, text: impl Into<String>) -> Self {
        Definition {
            reach,
            text: text.into(),
            problem: None,
        }
    }

    /// Records `message` at `field` (below the action's name) unless `ok`.
    fn unless(mut self, ok: bool, field: &str, message: impl Into<String>) -> Self {
        if !ok && self.problem.is_none() {
            self.problem = Some((field.to_string(), message.into()));
        }
        self
    }
}

impl Action {
    /// The names of every action, in declaration order, for messages and tests.
    pub const NAMES: &'static [&'static str] = <Action as strum::VariantNames>::VARIANTS;

    /// The action's name as written in a scenario.
    pub fn name(&self) -> &'static str {
        self.into()
    }

    /// The one definition of each action beside its variant: what it reaches, how a transcript
    /// shows it, and what makes it invalid under `scope`.
    pub fn define(&self, scope: &Scope<'_>) -> Definition {
        use Reach::*;
        match self {
            Action::Delay(ms) => Definition::new(AnyExchange, format!("delay {ms}ms")),
            Action::Respond { status, .. } => {
                Definition::new(AnyExchange, format!("respond {status}")).unless(
                    (100..=999).contains(status),
                    "status",
                    "must be a status code (100..999)",
                )
            }
            Action::Drop => Definition::new(AnyExchange, "drop"),
            Action::Reset => Definition::new(AnyExchange, "reset"),
            Action::Stall => Definition::new(AnyExchange, "stall"),
            Action::OmitHeader(h) => Definition::new(AnyExchange, format!("omit_header {h}")),
            Action::SetHeader { name, value } => {
                Definition::new(AnyExchange, format!("set_header {name}: {value}"))
            }
            Action::Corrupt { target, bytes } => Definition::new(
                AnyExchange,
                match target {
                    CorruptTarget::Body => format!("corrupt {bytes} byte(s) of body"),
                    CorruptTarget::Header(h) => format!("corrupt {bytes} byte(s) of header {h}"),
                },
            ),
            Action::SignWith(key) => Definition::new(RaopChallenge, format!("sign_with {key}"))
                .unless(
                    scope.keys.is_none_or(|keys| keys.contains(&key.as_str())),
                    "",
                    format!(
                        "{key:?}: keys are loaded when the devices start; name it in a scenario \
                         fault to use it at run time"
                    ),
                ),
            Action::LosePackets(f) => Definition::new(RaopAudio, format!("lose_packets {f}"))
                .unless((0.0..=1.0).contains(f), "", "must be between 0 and 1"),
            Action::CutInterleaved(n) => {
                Definition::new(RaopAudio, format!("cut_interleaved after {n} frame(s)"))
            }
            Action::Truncate(n) => {
                Definition::new(AnyExchange, format!("truncate body to {n} byte(s)"))
            }
            Action::EditPlist { set, remove } => {
                let mut parts: Vec<String> =
                    set.iter().map(|(k, v)| format!("set {k}={v}")).collect();
                parts.extend(remove.iter().map(|k| format!("remove {k}")));
                Definition::new(AnyExchange, format!("edit_plist {}", parts.join(", ")))
            }
            Action::EditDmap { remove } => {
                let bad = remove.iter().position(|t| t.len() != 4 || !t.is_ascii());
                let mut d = Definition::new(
                    AnyExchange,
                    format!("edit_dmap remove {}", remove.join(", ")),
                );
                if let Some(i) = bad {
                    d = d.unless(
                        false,
                        &format!("remove[{i}]"),
                        format!("{:?} is not a DMAP tag (4 ASCII characters)", remove[i]),
                    );
                }
                d
            }
            Action::FpReplyMode(m) => Definition::new(FairPlaySetup, format!("fp_reply_mode {m}")),
            Action::FpEchoOffset(at) => {
                Definition::new(FairPlaySetup, format!("fp_echo_offset {at}"))
            }
            Action::DropEventChannel(n) => Definition::new(
                VideoEvents,
                format!("drop_event_channel after {n} event(s)"),
            ),
            Action::HapError(e) => {
                Definition::new(HapPairing, format!("hap_error {}", <&str>::from(e)))
            }
            Action::HapForge(f) => {
                Definition::new(HapPairing, format!("hap_forge {}", <&str>::from(f)))
            }
            Action::LibraryItemMissing(id) => Definition::new(
                DaapLibrary,
                format!("library_item_missing {id}"),
            )
            .unless(*id > 0, "", "DAAP item ids start at 1"),
            Action::CorruptEncryptedBlock => Definition::new(HapChannel, "corrupt_encrypted_block"),
            Action::Companion(f) => {
                Definition::new(Reach::Companion, format!("companion {}", <&str>::from(f)))
            }
        }
    }

    /// What the action acts on.
    pub fn reach(&self) -> Reach {
        self.define(&Scope::default()).reach
    }

    /// A short human description for transcripts: `delay 500ms`, `respond 453`, …
    pub fn describe(&self) -> String {
        self.define(&Scope::default()).text
    }

    /// Checks the action; errors name the field below `action`, e.g. `lose_packets`.
    pub fn validate(&self, scope: &Scope<'_>) -> Result<(), FaultError> {
        match self.define(scope).problem {
            None => Ok(()),
            Some((field, message)) => {
                let name = self.name();
                let path = if field.is_empty() {
                    name.to_string()
                } else {
                    format!("{name}.{field}")
                };
                Err(FaultError::new(path, message))
            }
        }
    }
}

/// One fault of a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Which exchanges it applies to.
    #[serde(default)]
    pub when: Match,
    /// What it does.
    pub action: Action,
    /// Apply at most this many times (unlimited when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
    /// Let this many matching exchanges pass untouched first.
    #[serde(default)]
    pub after: u64,
    /// Chance (0..1) of applying on each eligible match, drawn from the seed.
    #[serde(default = "certain")]
    pub probability: f64,
}

fn certain() -> f64 {
    1.0
}

impl Fault {
    /// Checks everything about the fault that the scenario loader and `POST /faults` refuse:
    /// the device it names, its probability, and its action's own rules. Errors name the field
    /// path within the fault, e.g. `action.lose_packets: must be between 0 and 1`.
    pub fn validate(&self, scope: &Scope<'_>) -> Result<(), FaultError> {
        if let (Some(name), Some(devices)) = (&self.when.device, scope.devices) {
            if !devices.contains(&name.as_str()) {
                let mut names = devices.to_vec();
                names.sort_unstable();
                return Err(FaultError::new(
                    "when.device",
                    format!("no device named {name:?} (devices: {})", names.join(", ")),
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.probability) {
            return Err(FaultError::new("probability", "must be between 0 and 1"));
        }
        self.action
            .validate(scope)
            .map_err(|e| FaultError::new(format!("action.{}", e.path), e.message))
    }
}

/// A short human description for transcripts: `delay 500ms`, `respond 453`, …
pub fn describe(action: &Action) -> String {
    action.describe()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of each action; `every_action_has_an_example` keeps it complete.
    pub(crate) fn examples() -> Vec<Action> {
        vec![
            Action::Delay(500),
            Action::Respond {
                status: 453,
                headers: BTreeMap::from([("Retry-After".into(), "1".into())]),
                body: "busy".into(),
            },
            Action::Drop,
            Action::Reset,
            Action::Stall,
            Action::OmitHeader("Apple-Response".into()),
            Action::SetHeader {
                name: "Server".into(),
                value: "x".into(),
            },
            Action::Corrupt {
                target: CorruptTarget::Body,
                bytes: 2,
            },
            Action::SignWith("other.pem".into()),
            Action::LosePackets(0.25),
            Action::CutInterleaved(3),
            Action::Truncate(8),
            Action::EditPlist {
                set: BTreeMap::from([("a".into(), serde_json::json!(1))]),
                remove: vec!["b".into()],
            },
            Action::EditDmap {
                remove: vec!["cmpg".into()],
            },
            Action::FpReplyMode(3),
            Action::FpEchoOffset(0),
            Action::DropEventChannel(1),
            Action::HapError(HapError::Busy),
            Action::HapForge(HapForge::Signature),
            Action::LibraryItemMissing(2),
            Action::CorruptEncryptedBlock,
            Action::Companion(CompanionFault::RefuseLaunch),
        ]
    }

    fn fault(action: Action) -> Fault {
        Fault {
            when: Match::default(),
            action,
            times: None,
            after: 0,
            probability: 1.0,
        }
    }

    #[test]
    fn every_action_has_an_example_and_its_name_is_the_serde_name() {
        let names: Vec<&str> = examples().iter().map(Action::name).collect();
        assert_eq!(names, Action::NAMES);
        for action in examples() {
            let json = serde_json::to_value(&action).unwrap();
            let written = match &json {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Object(m) => m.keys().next().unwrap().clone(),
                other => panic!("{other}"),
            };
            assert_eq!(written, action.name());
            let back: Action = serde_json::from_value(json).unwrap();
            assert_eq!(back, action);
        }
    }

    #[test]
    fn the_schema_lists_every_action() {
        let schema = serde_json::to_string(&schemars::schema_for!(Fault)).unwrap();
        for name in Action::NAMES {
            assert!(schema.contains(&format!("\"{name}\"")), "{name}");
        }
    }

    #[test]
    fn transcript_texts_are_the_ones_scenarios_grep() {
        let texts: Vec<String> = examples().iter().map(Action::describe).collect();
        assert_eq!(
            texts,
            [
                "delay 500ms",
                "respond 453",
                "drop",
                "reset",
                "stall",
                "omit_header Apple-Response",
                "set_header Server: x",
                "corrupt 2 byte(s) of body",
                "sign_with other.pem",
                "lose_packets 0.25",
                "cut_interleaved after 3 frame(s)",
                "truncate body to 8 byte(s)",
                "edit_plist set a=1, remove b",
                "edit_dmap remove cmpg",
                "fp_reply_mode 3",
                "fp_echo_offset 0",
                "drop_event_channel after 1 event(s)",
                "hap_error busy",
                "hap_forge signature",
                "library_item_missing 2",
                "corrupt_encrypted_block",
                "companion refuse_launch",
            ]
        );
        let header = Action::Corrupt {
            target: CorruptTarget::Header("Apple-Response".into()),
            bytes: 1,
        };
        assert_eq!(
            header.describe(),
            "corrupt 1 byte(s) of header Apple-Response"
        );
    }

    #[test]
    fn reach_says_which_protocol_part_an_action_acts_on() {
        for action in examples() {
            let want = match action {
                Action::SignWith(_) => Reach::RaopChallenge,
                Action::LosePackets(_) | Action::CutInterleaved(_) => Reach::RaopAudio,
                Action::FpReplyMode(_) | Action::FpEchoOffset(_) => Reach::FairPlaySetup,
                Action::HapError(_) | Action::HapForge(_) => Reach::HapPairing,
                Action::DropEventChannel(_) => Reach::VideoEvents,
                Action::LibraryItemMissing(_) => Reach::DaapLibrary,
                Action::CorruptEncryptedBlock => Reach::HapChannel,
                Action::Companion(_) => Reach::Companion,
                _ => Reach::AnyExchange,
            };
            assert_eq!(action.reach(), want, "{}", action.name());
        }
        assert_eq!(Reach::RaopAudio.protocol(), "RAOP");
    }

    #[test]
    fn every_example_is_valid_without_a_scope() {
        for action in examples() {
            assert_eq!(fault(action).validate(&Scope::default()), Ok(()));
        }
    }

    fn error(f: &Fault, scope: &Scope<'_>) -> String {
        f.validate(scope).unwrap_err().to_string()
    }

    #[test]
    fn probability_must_be_between_0_and_1() {
        let mut f = fault(Action::Drop);
        f.probability = 1.5;
        assert_eq!(
            error(&f, &Scope::default()),
            "probability: must be between 0 and 1"
        );
        f.probability = 0.0;
        assert!(f.validate(&Scope::default()).is_ok());
    }

    #[test]
    fn lose_packets_must_be_a_fraction() {
        let f = fault(Action::LosePackets(5.0));
        let e = f.validate(&Scope::default()).unwrap_err();
        assert_eq!(e.path, "action.lose_packets");
        assert_eq!(
            e.to_string(),
            "action.lose_packets: must be between 0 and 1"
        );
        assert!(fault(Action::LosePackets(-0.1))
            .validate(&Scope::default())
            .is_err());
    }

    #[test]
    fn sign_with_names_a_key_the_scenario_loads() {
        let keys = ["keys/a.pem"];
        let scope = Scope {
            keys: Some(&keys),
            ..Scope::default()
        };
        let e = fault(Action::SignWith("keys/b.pem".into()))
            .validate(&scope)
            .unwrap_err();
        assert_eq!(e.path, "action.sign_with");
        assert!(
            e.message.contains("keys are loaded when the devices start"),
            "{e}"
        );
        assert!(fault(Action::SignWith("keys/a.pem".into()))
            .validate(&scope)
            .is_ok());
        // A scenario's own faults name the keys that get loaded.
        assert!(fault(Action::SignWith("keys/b.pem".into()))
            .validate(&Scope::default())
            .is_ok());
    }

    #[test]
    fn when_device_names_a_known_device() {
        let devices = ["kitchen", "den"];
        let scope = Scope {
            devices: Some(&devices),
            ..Scope::default()
        };
        let mut f = fault(Action::Drop);
        f.when.device = Some("attic".into());
        assert_eq!(
            error(&f, &scope),
            "when.device: no device named \"attic\" (devices: den, kitchen)"
        );
        f.when.device = Some("den".into());
        assert!(f.validate(&scope).is_ok());
    }

    #[test]
    fn respond_needs_a_status_code() {
        let f = fault(Action::Respond {
            status: 42,
            headers: BTreeMap::new(),
            body: String::new(),
        });
        assert_eq!(
            error(&f, &Scope::default()),
            "action.respond.status: must be a status code (100..999)"
        );
    }

    #[test]
    fn edit_dmap_removes_four_character_tags() {
        let f = fault(Action::EditDmap {
            remove: vec!["cmpg".into(), "cm".into()],
        });
        assert_eq!(
            error(&f, &Scope::default()),
            "action.edit_dmap.remove[1]: \"cm\" is not a DMAP tag (4 ASCII characters)"
        );
    }
}
