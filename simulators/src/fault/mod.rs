//! The one fault seam.
//!
//! Faults are data, matched against each exchange between a device's protocol core and its I/O
//! shell. The shell asks the [`FaultPlan`] for a [`Verdict`] on every request before the core sees
//! it, and applies the verdict: wait, answer in the core's place, close, reset, stall, or let the
//! core answer and then edit the response. Device-specific actions (`sign_with`, `lose_packets`)
//! reach the core and the datagram shell as parameters from the same plan. No device has fault
//! code of its own, so a new fault works for every device.
//!
//! Every random choice (probability, corrupted positions, lost packets) comes from a generator
//! seeded by the scenario seed, the fault's position and how often it matched, so a run with the
//! same seed makes the same choices whatever the interleaving of connections.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod edit;
mod plan;

/// Moved to [`crate::wire::plist`]; kept here for callers of the old path.
pub use crate::wire::plist::plist_from_json;
pub use edit::{apply_edits, preempt_response, Edit};
pub use plan::{Applied, CoreParams, Exchange, FaultPlan, FaultStatus, Preempt, Verdict};

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
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
    /// FairPlay: answer `fp-setup` phase 1 with the fixed reply of this mode (0..3), whatever
    /// mode the request asked for.
    FpReplyMode(u8),
    /// FairPlay: answer `fp-setup` phase 3 with the 20 request bytes from this offset instead of
    /// from 144.
    FpEchoOffset(usize),
}

fn one() -> usize {
    1
}

impl Action {
    /// The action's name as written in a scenario.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Delay(_) => "delay",
            Action::Respond { .. } => "respond",
            Action::Drop => "drop",
            Action::Reset => "reset",
            Action::Stall => "stall",
            Action::OmitHeader(_) => "omit_header",
            Action::SetHeader { .. } => "set_header",
            Action::Corrupt { .. } => "corrupt",
            Action::SignWith(_) => "sign_with",
            Action::LosePackets(_) => "lose_packets",
            Action::Truncate(_) => "truncate",
            Action::EditPlist { .. } => "edit_plist",
            Action::FpReplyMode(_) => "fp_reply_mode",
            Action::FpEchoOffset(_) => "fp_echo_offset",
        }
    }

    /// The names of every action, for error messages.
    pub const NAMES: &'static [&'static str] = &[
        "delay",
        "respond",
        "drop",
        "reset",
        "stall",
        "omit_header",
        "set_header",
        "corrupt",
        "sign_with",
        "lose_packets",
        "truncate",
        "edit_plist",
        "fp_reply_mode",
        "fp_echo_offset",
    ];
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

/// A short human description for transcripts: `delay 500ms`, `respond 453`, …
pub fn describe(action: &Action) -> String {
    match action {
        Action::Delay(ms) => format!("delay {ms}ms"),
        Action::Respond { status, .. } => format!("respond {status}"),
        Action::OmitHeader(h) => format!("omit_header {h}"),
        Action::SetHeader { name, value } => format!("set_header {name}: {value}"),
        Action::Corrupt { target, bytes } => match target {
            CorruptTarget::Body => format!("corrupt {bytes} byte(s) of body"),
            CorruptTarget::Header(h) => format!("corrupt {bytes} byte(s) of header {h}"),
        },
        Action::SignWith(p) => format!("sign_with {p}"),
        Action::LosePackets(f) => format!("lose_packets {f}"),
        Action::Truncate(n) => format!("truncate body to {n} byte(s)"),
        Action::EditPlist { set, remove } => {
            let mut parts: Vec<String> = set.iter().map(|(k, v)| format!("set {k}={v}")).collect();
            parts.extend(remove.iter().map(|k| format!("remove {k}")));
            format!("edit_plist {}", parts.join(", "))
        }
        Action::FpReplyMode(m) => format!("fp_reply_mode {m}"),
        Action::FpEchoOffset(at) => format!("fp_echo_offset {at}"),
        other => other.name().to_string(),
    }
}
