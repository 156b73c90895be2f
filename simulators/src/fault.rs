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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::wire::{Protocol, Request, Response};

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

/// The request-side facts a fault matches on.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    pub device: &'a str,
    pub connection: u64,
    pub request: u64,
    pub method: &'a str,
    pub path: &'a str,
}

/// What the shell does in the core's place.
#[derive(Debug, Clone, PartialEq)]
pub enum Preempt {
    Respond(Response),
    Drop,
    Reset,
    Stall,
}

/// An edit of the core's response.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    Omit(String),
    Set(String, String),
    Corrupt {
        target: CorruptTarget,
        bytes: usize,
        seed: u64,
    },
    /// Cut the body to this many bytes.
    Truncate(usize),
    /// Set and remove keys of a binary-plist body.
    Plist {
        set: BTreeMap<String, serde_json::Value>,
        remove: Vec<String>,
    },
}

/// A fault that acted, for the transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub fault: usize,
    pub action: String,
}

/// Parameters the core reads from the plan for this request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CoreParams {
    /// PEM path of a key to answer `Apple-Challenge` with.
    pub sign_with: Option<String>,
    /// FairPlay phase-1 reply mode to answer with instead of the requested one.
    pub fp_reply_mode: Option<u8>,
    /// FairPlay phase-3 echo offset to use instead of 144.
    pub fp_echo_offset: Option<usize>,
}

/// The plan's answer for one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    pub delay: Duration,
    pub preempt: Option<Preempt>,
    pub edits: Vec<Edit>,
    pub params: CoreParams,
    pub applied: Vec<Applied>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    matched: u64,
    applied: u64,
}

/// One fault of the plan with its counters. Positions never change: a fault removed at run time
/// stays in its slot, inactive, so indexes in transcripts and `faults_applied` stay valid.
#[derive(Debug)]
struct Slot {
    fault: Fault,
    active: bool,
    counters: Counters,
    /// Datagrams seen, for `lose_packets`.
    datagrams: u64,
}

/// A fault of the plan as the control API lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultStatus {
    /// Position in the plan: the scenario's faults first, then those added at run time.
    pub index: usize,
    pub fault: Fault,
    /// False once removed.
    pub active: bool,
    pub matched: u64,
    pub applied: u64,
}

/// The faults of one run with their counters and the seed. Faults can be added and removed while
/// the devices run (`add`, `remove`); every decision still comes from the seed, the fault's
/// position and how often it matched.
#[derive(Debug)]
pub struct FaultPlan {
    seed: u64,
    slots: Mutex<Vec<Slot>>,
    /// Active faults, so that a plan without any costs no lock per request or datagram.
    active: AtomicU64,
}

impl FaultPlan {
    pub fn new(seed: u64, faults: Vec<Fault>) -> Self {
        let plan = FaultPlan {
            seed,
            slots: Mutex::new(Vec::new()),
            active: AtomicU64::new(0),
        };
        for f in faults {
            plan.add(f);
        }
        plan
    }

    pub fn empty() -> Self {
        Self::new(0, Vec::new())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every fault ever in the plan, by position (removed ones too).
    pub fn faults(&self) -> Vec<Fault> {
        self.lock().iter().map(|s| s.fault.clone()).collect()
    }

    /// Every fault with its position, state and counters.
    pub fn status(&self) -> Vec<FaultStatus> {
        self.lock()
            .iter()
            .enumerate()
            .map(|(index, s)| FaultStatus {
                index,
                fault: s.fault.clone(),
                active: s.active,
                matched: s.counters.matched,
                applied: s.counters.applied,
            })
            .collect()
    }

    /// Adds a fault at the end of the plan; returns its position.
    pub fn add(&self, fault: Fault) -> usize {
        let mut slots = self.lock();
        slots.push(Slot {
            fault,
            active: true,
            counters: Counters::default(),
            datagrams: 0,
        });
        self.active.fetch_add(1, Ordering::Relaxed);
        slots.len() - 1
    }

    /// Deactivates the fault at `index`; false when there is none or it was already removed.
    pub fn remove(&self, index: usize) -> bool {
        let mut slots = self.lock();
        match slots.get_mut(index) {
            Some(s) if s.active => {
                s.active = false;
                self.active.fetch_sub(1, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    /// Removes every active fault; returns how many.
    pub fn clear(&self) -> usize {
        let mut slots = self.lock();
        let mut n = 0;
        for s in slots.iter_mut().filter(|s| s.active) {
            s.active = false;
            n += 1;
        }
        self.active.store(0, Ordering::Relaxed);
        n
    }

    /// A generator for the `nth` decision of fault `index`.
    fn rng(&self, index: usize, nth: u64, salt: u64) -> ChaCha8Rng {
        let mut s = self.seed ^ 0x9E37_79B9_7F4A_7C15;
        for v in [index as u64, nth, salt] {
            s = s.rotate_left(17) ^ v.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        }
        ChaCha8Rng::seed_from_u64(s)
    }

    /// Decides what happens to one request. Counters advance here, once per request.
    pub fn on_request(&self, ex: &Exchange<'_>) -> Verdict {
        let mut verdict = Verdict::default();
        if self.active.load(Ordering::Relaxed) == 0 {
            return verdict;
        }
        let mut slots = self.lock();
        for (i, slot) in slots.iter_mut().enumerate() {
            let fault = &slot.fault;
            if !slot.active
                || matches!(fault.action, Action::LosePackets(_))
                || !matches(&fault.when, ex)
            {
                continue;
            }
            let c = &mut slot.counters;
            c.matched += 1;
            if c.matched <= fault.after || fault.times.is_some_and(|t| c.applied >= t) {
                continue;
            }
            let mut rng = self.rng(i, c.matched, 0);
            if fault.probability < 1.0 && !rng.gen_bool(fault.probability.clamp(0.0, 1.0)) {
                continue;
            }
            c.applied += 1;
            let label = describe(&fault.action);
            match &fault.action {
                Action::Delay(ms) => verdict.delay += Duration::from_millis(*ms),
                Action::Respond {
                    status,
                    headers,
                    body,
                } => {
                    if verdict.preempt.is_none() {
                        let mut r = Response::new(Protocol::Rtsp10, *status);
                        for (k, v) in headers {
                            r.headers.set(k, v.clone());
                        }
                        r.body = body.clone().into_bytes();
                        verdict.preempt = Some(Preempt::Respond(r));
                    }
                }
                Action::Drop => verdict.preempt = verdict.preempt.take().or(Some(Preempt::Drop)),
                Action::Reset => verdict.preempt = verdict.preempt.take().or(Some(Preempt::Reset)),
                Action::Stall => verdict.preempt = verdict.preempt.take().or(Some(Preempt::Stall)),
                Action::OmitHeader(h) => verdict.edits.push(Edit::Omit(h.clone())),
                Action::SetHeader { name, value } => {
                    verdict.edits.push(Edit::Set(name.clone(), value.clone()))
                }
                Action::Corrupt { target, bytes } => verdict.edits.push(Edit::Corrupt {
                    target: target.clone(),
                    bytes: *bytes,
                    seed: rng.gen(),
                }),
                Action::SignWith(path) => verdict.params.sign_with = Some(path.clone()),
                Action::LosePackets(_) => unreachable!("filtered above"),
                Action::Truncate(n) => verdict.edits.push(Edit::Truncate(*n)),
                Action::EditPlist { set, remove } => verdict.edits.push(Edit::Plist {
                    set: set.clone(),
                    remove: remove.clone(),
                }),
                Action::FpReplyMode(mode) => verdict.params.fp_reply_mode = Some(*mode),
                Action::FpEchoOffset(at) => verdict.params.fp_echo_offset = Some(*at),
            }
            verdict.applied.push(Applied {
                fault: i,
                action: label,
            });
        }
        verdict
    }

    /// Whether a datagram arriving at `device` is lost. Returns the fault that lost it.
    pub fn lose_datagram(&self, device: &str) -> Option<usize> {
        if self.active.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut slots = self.lock();
        for (i, slot) in slots.iter_mut().enumerate() {
            let Action::LosePackets(fraction) = slot.fault.action else {
                continue;
            };
            if !slot.active
                || slot
                    .fault
                    .when
                    .device
                    .as_deref()
                    .is_some_and(|d| d != device)
            {
                continue;
            }
            let nth = slot.datagrams;
            slot.datagrams += 1;
            if nth < slot.fault.after {
                continue;
            }
            if self.rng(i, nth, 1).gen_bool(fraction.clamp(0.0, 1.0)) {
                return Some(i);
            }
        }
        None
    }
}

fn matches(m: &Match, ex: &Exchange<'_>) -> bool {
    m.device.as_deref().is_none_or(|d| d == ex.device)
        && m.method
            .as_deref()
            .is_none_or(|x| x.eq_ignore_ascii_case(ex.method))
        && m.path.as_deref().is_none_or(|p| match p.strip_suffix('*') {
            Some(prefix) => ex.path.starts_with(prefix),
            None => p == ex.path,
        })
        && m.request.is_none_or(|r| r == ex.request)
        && m.connection.is_none_or(|c| c == ex.connection)
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

/// Applies the response edits of a verdict. `request` gives the CSeq a `respond` echoes.
pub fn apply_edits(response: &mut Response, edits: &[Edit]) {
    for edit in edits {
        match edit {
            Edit::Omit(h) => {
                response.headers.remove(h);
            }
            Edit::Set(h, v) => response.headers.set(h, v.clone()),
            Edit::Corrupt {
                target,
                bytes,
                seed,
            } => {
                let mut rng = ChaCha8Rng::seed_from_u64(*seed);
                match target {
                    CorruptTarget::Body => flip(&mut response.body, *bytes, &mut rng),
                    CorruptTarget::Header(name) => {
                        let Some(value) = response.headers.get(name) else {
                            continue;
                        };
                        // Flip within printable ASCII so the header block stays parseable: the
                        // fault is a wrong value, not a framing error.
                        let mut raw = value.as_bytes().to_vec();
                        for _ in 0..*bytes {
                            if raw.is_empty() {
                                break;
                            }
                            let pos = rng.gen_range(0..raw.len());
                            let old = raw[pos];
                            let mut new = rng.gen_range(b'!'..=b'~');
                            if new == old {
                                new = if old == b'~' { b'!' } else { old + 1 };
                            }
                            raw[pos] = new;
                        }
                        let value = String::from_utf8_lossy(&raw).into_owned();
                        response.headers.set(name, value);
                    }
                }
            }
            Edit::Truncate(n) => response.body.truncate(*n),
            Edit::Plist { set, remove } => edit_plist(&mut response.body, set, remove),
        }
    }
}

/// Rewrites a binary-plist dictionary body with keys set and removed; other bodies stay as they
/// are.
fn edit_plist(body: &mut Vec<u8>, set: &BTreeMap<String, serde_json::Value>, remove: &[String]) {
    let Ok(plist::Value::Dictionary(mut dict)) =
        plist::Value::from_reader(std::io::Cursor::new(&body[..]))
    else {
        return;
    };
    for k in remove {
        dict.remove(k);
    }
    for (k, v) in set {
        dict.insert(k.clone(), plist_from_json(v));
    }
    let mut out = Vec::new();
    if plist::Value::Dictionary(dict)
        .to_writer_binary(&mut out)
        .is_ok()
    {
        *body = out;
    }
}

/// A YAML/JSON value as a plist value: integers stay integers, other numbers become reals, null
/// becomes an empty string (plists have no null).
pub fn plist_from_json(v: &serde_json::Value) -> plist::Value {
    use serde_json::Value as J;
    match v {
        J::Null => plist::Value::String(String::new()),
        J::Bool(b) => plist::Value::Boolean(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => plist::Value::Integer(i.into()),
            (None, Some(u)) => plist::Value::Integer(u.into()),
            _ => plist::Value::Real(n.as_f64().unwrap_or(0.0)),
        },
        J::String(s) => plist::Value::String(s.clone()),
        J::Array(a) => plist::Value::Array(a.iter().map(plist_from_json).collect()),
        J::Object(m) => plist::Value::Dictionary(
            m.iter()
                .map(|(k, v)| (k.clone(), plist_from_json(v)))
                .collect(),
        ),
    }
}

fn flip(buf: &mut [u8], count: usize, rng: &mut ChaCha8Rng) {
    if buf.is_empty() {
        return;
    }
    for _ in 0..count {
        let pos = rng.gen_range(0..buf.len());
        let mask: u8 = rng.gen_range(1..=255);
        buf[pos] ^= mask;
    }
}

/// The response a `respond` fault sends for `request`: CSeq echoed, protocol of the request.
pub fn preempt_response(mut response: Response, request: &Request) -> Response {
    response.protocol = request.protocol;
    if let Some(cseq) = request.cseq() {
        if !response.headers.contains("CSeq") {
            response.headers.set("CSeq", cseq);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex<'a>(method: &'a str, request: u64) -> Exchange<'a> {
        Exchange {
            device: "apx",
            connection: 0,
            request,
            method,
            path: "/x",
        }
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
    fn after_and_times_bound_the_matches() {
        let mut f = fault(Action::Drop);
        f.when.method = Some("setup".into());
        f.after = 1;
        f.times = Some(1);
        let plan = FaultPlan::new(1, vec![f]);
        let hits: Vec<bool> = (0..4)
            .map(|i| plan.on_request(&ex("SETUP", i)).preempt.is_some())
            .collect();
        assert_eq!(hits, [false, true, false, false]);
        assert!(plan.on_request(&ex("OPTIONS", 9)).preempt.is_none());
    }

    #[test]
    fn probability_is_replayable_from_the_seed() {
        let run = |seed| {
            let mut f = fault(Action::Delay(1));
            f.probability = 0.5;
            let plan = FaultPlan::new(seed, vec![f]);
            (0..64)
                .map(|i| !plan.on_request(&ex("GET", i)).applied.is_empty())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let hits = run(7).iter().filter(|h| **h).count();
        assert!((16..48).contains(&hits), "{hits} of 64");
    }

    #[test]
    fn lost_packets_follow_the_fraction_and_seed() {
        let plan = |seed| FaultPlan::new(seed, vec![fault(Action::LosePackets(0.25))]);
        let a = plan(3);
        let lost: Vec<bool> = (0..400).map(|_| a.lose_datagram("apx").is_some()).collect();
        let b = plan(3);
        let again: Vec<bool> = (0..400).map(|_| b.lose_datagram("apx").is_some()).collect();
        assert_eq!(lost, again);
        let n = lost.iter().filter(|l| **l).count();
        assert!((60..140).contains(&n), "{n} of 400 lost");
    }

    #[test]
    fn corrupt_changes_header_but_keeps_it_printable() {
        let mut r = Response::new(Protocol::Rtsp10, 200);
        r.headers.set("Apple-Response", "abcdef");
        let edits = [Edit::Corrupt {
            target: CorruptTarget::Header("Apple-Response".into()),
            bytes: 2,
            seed: 5,
        }];
        apply_edits(&mut r, &edits);
        let v = r.headers.get("Apple-Response").unwrap();
        assert_ne!(v, "abcdef");
        assert!(v.bytes().all(|b| b.is_ascii_graphic()));
    }

    #[test]
    fn faults_added_and_removed_at_run_time_keep_their_positions() {
        let plan = FaultPlan::new(1, vec![fault(Action::Delay(5))]);
        let added = plan.add(fault(Action::Drop));
        assert_eq!(added, 1);
        let v = plan.on_request(&ex("GET", 0));
        assert_eq!(v.preempt, Some(Preempt::Drop));
        assert_eq!(
            v.applied.iter().map(|a| a.fault).collect::<Vec<_>>(),
            [0, 1]
        );
        assert!(plan.remove(0));
        assert!(!plan.remove(0), "already removed");
        assert!(!plan.remove(9));
        let v = plan.on_request(&ex("GET", 1));
        assert_eq!(v.applied.iter().map(|a| a.fault).collect::<Vec<_>>(), [1]);
        assert_eq!(plan.clear(), 1);
        assert_eq!(plan.on_request(&ex("GET", 2)), Verdict::default());
        let st = plan.status();
        assert_eq!(st.len(), 2);
        assert!(st.iter().all(|s| !s.active));
        assert_eq!(st[1].applied, 2);
    }

    #[test]
    fn path_prefix_matches() {
        let mut f = fault(Action::Stall);
        f.when.path = Some("/ctrl-int/*".into());
        let plan = FaultPlan::new(0, vec![f]);
        let mut e = ex("GET", 0);
        e.path = "/ctrl-int/1/playstatusupdate";
        assert_eq!(plan.on_request(&e).preempt, Some(Preempt::Stall));
        e.path = "/login";
        assert_eq!(plan.on_request(&e).preempt, None);
    }
}
