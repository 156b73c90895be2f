//! The plan: which faults act on an exchange, with every random choice drawn from the seed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::{Action, Edit, Fault, Match, Reach};
use crate::wire::{Protocol, Response};

/// The request-side facts a fault matches on.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
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
    /// AirPlay video: close the event channel instead of pushing the event after this many.
    pub drop_event_channel: Option<u64>,
    /// HomeKit pairing: the error TLV to answer with instead of the core's answer.
    pub hap_error: Option<super::HapError>,
    /// HomeKit pairing: what to forge in the accessory's proof.
    pub hap_forge: Option<super::HapForge>,
    /// DAAP: the library item whose own requests get 404 while it stays listed.
    pub library_item_missing: Option<u32>,
    /// Companion: what to do to the frame or the request.
    pub companion: Option<super::CompanionFault>,
}

/// The plan's answer for one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    pub delay: Duration,
    pub preempt: Option<Preempt>,
    pub edits: Vec<Edit>,
    pub params: CoreParams,
    /// `corrupt_encrypted_block`: the seed of the byte the connection driver flips in the sealed
    /// response.
    pub corrupt_block: Option<u64>,
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
    pub fn on_request(&self, ex: &RequestFacts<'_>) -> Verdict {
        let mut verdict = Verdict::default();
        if self.active.load(Ordering::Relaxed) == 0 {
            return verdict;
        }
        let mut slots = self.lock();
        for (i, slot) in slots.iter_mut().enumerate() {
            let fault = &slot.fault;
            if !slot.active || fault.action.reach() == Reach::RaopAudio || !matches(&fault.when, ex)
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
            let label = fault.action.describe();
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
                Action::LosePackets(_) | Action::CutInterleaved(_) => {
                    unreachable!("filtered above")
                }
                Action::Truncate(n) => verdict.edits.push(Edit::Truncate(*n)),
                Action::EditPlist { set, remove } => verdict.edits.push(Edit::Plist {
                    set: set.clone(),
                    remove: remove.clone(),
                }),
                Action::EditDmap { remove } => verdict.edits.push(Edit::Dmap {
                    remove: remove.clone(),
                }),
                Action::FpReplyMode(mode) => verdict.params.fp_reply_mode = Some(*mode),
                Action::FpEchoOffset(at) => verdict.params.fp_echo_offset = Some(*at),
                Action::DropEventChannel(n) => verdict.params.drop_event_channel = Some(*n),
                Action::HapError(e) => verdict.params.hap_error = Some(*e),
                Action::HapForge(f) => verdict.params.hap_forge = Some(*f),
                Action::LibraryItemMissing(id) => verdict.params.library_item_missing = Some(*id),
                Action::CorruptEncryptedBlock => verdict.corrupt_block = Some(rng.gen()),
                Action::Companion(f) => verdict.params.companion = Some(*f),
            }
            verdict.applied.push(Applied {
                fault: i,
                action: label,
            });
        }
        verdict
    }

    /// Whether the interleaved frame that starts after `frames` whole ones on a connection of
    /// `device` is cut (`cut_interleaved`). Returns the fault that cuts it.
    pub fn cut_interleaved(&self, device: &str, frames: u64) -> Option<usize> {
        if self.active.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut slots = self.lock();
        for (i, slot) in slots.iter_mut().enumerate() {
            let Action::CutInterleaved(after) = slot.fault.action else {
                continue;
            };
            if !slot.active
                || frames < after
                || slot
                    .fault
                    .when
                    .device
                    .as_deref()
                    .is_some_and(|d| d != device)
            {
                continue;
            }
            slot.counters.matched += 1;
            slot.counters.applied += 1;
            return Some(i);
        }
        None
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

fn matches(m: &Match, ex: &RequestFacts<'_>) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::CorruptTarget;

    fn ex<'a>(method: &'a str, request: u64) -> RequestFacts<'a> {
        RequestFacts {
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

    // One test per action: the verdict the plan gives on a request, and what it does to the
    // core's response.

    /// The verdict of a plan holding only `action`, on the first GET of the first connection.
    fn verdict(seed: u64, action: Action) -> Verdict {
        FaultPlan::new(seed, vec![fault(action)]).on_request(&ex("GET", 0))
    }

    /// What the core answered, before any edit.
    fn core_response() -> Response {
        let mut r = Response::new(Protocol::Http11, 200)
            .with_body("application/octet-stream", b"0123456789abcdef".to_vec());
        r.headers.set("Apple-Response", "abcdef");
        r.headers.set("Server", "AirTunes/105.1");
        r
    }

    fn edited(v: &Verdict) -> Response {
        let mut r = core_response();
        crate::fault::apply_edits(&mut r, &v.edits);
        r
    }

    fn labels(v: &Verdict) -> Vec<&str> {
        v.applied.iter().map(|a| a.action.as_str()).collect()
    }

    #[test]
    fn delay_waits_before_the_core() {
        let v = verdict(0, Action::Delay(500));
        assert_eq!(v.delay, Duration::from_millis(500));
        assert_eq!((&v.preempt, v.edits.is_empty()), (&None, true));
        assert_eq!(labels(&v), ["delay 500ms"]);
    }

    #[test]
    fn respond_answers_in_the_cores_place_with_the_cseq_echoed() {
        let v = verdict(
            0,
            Action::Respond {
                status: 453,
                headers: [("Retry-After".to_string(), "1".to_string())].into(),
                body: "busy".into(),
            },
        );
        let Some(Preempt::Respond(r)) = v.preempt else {
            panic!("{v:?}")
        };
        let mut req = crate::wire::Request::new("ANNOUNCE", "rtsp://x/1", Protocol::Rtsp10);
        req.headers.set("CSeq", "7");
        let r = crate::fault::preempt_response(r, &req);
        assert_eq!(r.status, 453);
        assert_eq!(r.headers.get("CSeq"), Some("7"));
        assert_eq!(r.headers.get("Retry-After"), Some("1"));
        assert_eq!(r.body, b"busy");
    }

    #[test]
    fn drop_reset_and_stall_preempt_the_core() {
        for (action, want) in [
            (Action::Drop, Preempt::Drop),
            (Action::Reset, Preempt::Reset),
            (Action::Stall, Preempt::Stall),
        ] {
            let v = verdict(0, action);
            assert_eq!(v.preempt, Some(want));
            assert!(v.edits.is_empty());
        }
    }

    #[test]
    fn omit_header_removes_it_from_the_response() {
        let r = edited(&verdict(0, Action::OmitHeader("apple-response".into())));
        assert_eq!(r.headers.get("Apple-Response"), None);
        assert_eq!(r.headers.get("Server"), Some("AirTunes/105.1"));
    }

    #[test]
    fn set_header_sets_it_on_the_response() {
        let r = edited(&verdict(
            0,
            Action::SetHeader {
                name: "Server".into(),
                value: "Other/1.0".into(),
            },
        ));
        assert_eq!(r.headers.get("Server"), Some("Other/1.0"));
    }

    #[test]
    fn corrupt_flips_seeded_bytes_of_the_body() {
        let action = Action::Corrupt {
            target: CorruptTarget::Body,
            bytes: 3,
        };
        let a = edited(&verdict(11, action.clone()));
        let again = edited(&verdict(11, action.clone()));
        let other = edited(&verdict(12, action));
        assert_ne!(a.body, core_response().body);
        assert_eq!(a.body.len(), core_response().body.len());
        assert_eq!(a.body, again.body, "same seed, same bytes");
        assert_ne!(a.body, other.body, "another seed, other bytes");
    }

    #[test]
    fn sign_with_reaches_the_core_as_a_parameter() {
        let v = verdict(0, Action::SignWith("other.pem".into()));
        assert_eq!(v.params.sign_with.as_deref(), Some("other.pem"));
        assert_eq!((&v.preempt, edited(&v)), (&None, core_response()));
    }

    #[test]
    fn lose_packets_never_acts_on_requests() {
        let plan = FaultPlan::new(0, vec![fault(Action::LosePackets(1.0))]);
        assert_eq!(plan.on_request(&ex("GET", 0)), Verdict::default());
        assert_eq!(plan.lose_datagram("apx"), Some(0));
        assert_eq!(plan.status()[0].matched, 0);
    }

    #[test]
    fn truncate_cuts_the_body_and_content_length_follows() {
        let r = edited(&verdict(0, Action::Truncate(4)));
        assert_eq!(r.body, b"0123");
        let wire = String::from_utf8(r.encode()).unwrap();
        assert!(wire.contains("Content-Length: 4\r\n"), "{wire}");
    }

    #[test]
    fn edit_plist_sets_and_removes_keys_of_a_plist_body() {
        let mut dict = plist::Dictionary::new();
        dict.insert("keep".into(), 1.into());
        dict.insert("gone".into(), 2.into());
        let mut body = Vec::new();
        plist::Value::Dictionary(dict)
            .to_writer_binary(&mut body)
            .unwrap();
        let v = verdict(
            0,
            Action::EditPlist {
                set: [("features".to_string(), serde_json::json!(7))].into(),
                remove: vec!["gone".into()],
            },
        );
        let mut r = core_response();
        r.body = body;
        crate::fault::apply_edits(&mut r, &v.edits);
        let out = plist::Value::from_reader(std::io::Cursor::new(&r.body)).unwrap();
        let out = out.as_dictionary().unwrap();
        assert_eq!(out.get("keep"), Some(&plist::Value::from(1)));
        assert_eq!(out.get("features"), Some(&plist::Value::from(7)));
        assert!(out.get("gone").is_none());
        // Not a plist: left alone.
        assert_eq!(edited(&v).body, core_response().body);
    }

    #[test]
    fn edit_dmap_removes_tags_at_any_depth() {
        use crate::wire::dmap::{self, Item};
        let v = verdict(
            0,
            Action::EditDmap {
                remove: vec!["cmpg".into()],
            },
        );
        let mut r = core_response();
        r.body = dmap::encode(&[Item::container(
            b"cmpa",
            vec![Item::int(b"cmpg", 1u64), Item::str(b"cmnm", "remote")],
        )]);
        crate::fault::apply_edits(&mut r, &v.edits);
        let items = dmap::decode(&r.body).unwrap();
        assert_eq!(
            items,
            [Item::container(b"cmpa", vec![Item::str(b"cmnm", "remote")])]
        );
        // Not DMAP: left alone.
        assert_eq!(edited(&v).body, core_response().body);
    }

    #[test]
    fn fairplay_actions_reach_the_core_as_parameters() {
        let v = verdict(0, Action::FpReplyMode(3));
        assert_eq!(v.params.fp_reply_mode, Some(3));
        let v = verdict(0, Action::FpEchoOffset(0));
        assert_eq!(v.params.fp_echo_offset, Some(0));
        assert!(v.preempt.is_none() && v.edits.is_empty());
    }
}
