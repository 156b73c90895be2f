//! Checking a scenario's expectations against what the devices recorded and the clients did.

pub mod audio_match;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};

use airtwin_simulators::event::{Event, EventKind};
use regex::Regex;

use crate::devices::Device;
use crate::engine::{Failure, ScenarioResult};
use crate::scenario::{
    AudioExpect, ClientExpect, ExchangePattern, ExchangesExpect, Expectation, HeaderCheck, Loaded,
    Order,
};

/// One request and the response sent to it, if any.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub device: String,
    pub connection: u64,
    pub index: u64,
    pub method: String,
    pub uri: String,
    pub path: String,
    pub request_headers: Vec<(String, String)>,
    pub status: Option<u16>,
    pub response_headers: Vec<(String, String)>,
}

/// Pairs requests with their responses, in the order requests arrived.
pub fn exchanges(events: &[Event]) -> Vec<Exchange> {
    let mut out: Vec<Exchange> = Vec::new();
    for e in events {
        match &e.kind {
            EventKind::Request {
                index,
                method,
                uri,
                headers,
                ..
            } => {
                let path = airtwin_simulators::wire::Request::new(
                    method,
                    uri,
                    airtwin_simulators::wire::Protocol::Rtsp10,
                )
                .path()
                .to_string();
                out.push(Exchange {
                    device: e.device.clone(),
                    connection: e.connection.unwrap_or(0),
                    index: *index,
                    method: method.clone(),
                    uri: uri.clone(),
                    path,
                    request_headers: headers.clone(),
                    status: None,
                    response_headers: Vec::new(),
                })
            }
            EventKind::Response {
                index,
                status,
                headers,
                ..
            } => {
                if let Some(x) = out.iter_mut().rev().find(|x| {
                    x.device == e.device && Some(x.connection) == e.connection && x.index == *index
                }) {
                    x.status = Some(*status);
                    x.response_headers = headers.clone();
                }
            }
            _ => {}
        }
    }
    out
}

fn header<'a>(list: &'a [(String, String)], name: &str) -> Option<&'a str> {
    list.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn check_header(list: &[(String, String)], name: &str, check: &HeaderCheck) -> Result<(), String> {
    let value = header(list, name);
    match (check, value) {
        (HeaderCheck::Present, Some(_)) | (HeaderCheck::Absent, None) => Ok(()),
        (HeaderCheck::Present, None) => Err(format!("{name} absent")),
        (HeaderCheck::Absent, Some(v)) => Err(format!("{name}: {v}")),
        (HeaderCheck::Equals(want), Some(v)) if v == want => Ok(()),
        (HeaderCheck::Matches(re), Some(v)) if Regex::new(re).is_ok_and(|r| r.is_match(v)) => {
            Ok(())
        }
        (_, Some(v)) => Err(format!("{name}: {v}")),
        (_, None) => Err(format!("{name} absent")),
    }
}

/// Whether `x` matches `p`; on a near miss (same method and path), why not.
fn matches(p: &ExchangePattern, x: &Exchange) -> Result<(), String> {
    if p.method
        .as_deref()
        .is_some_and(|m| !m.eq_ignore_ascii_case(&x.method))
    {
        return Err(format!("method {}", x.method));
    }
    if p.path
        .as_deref()
        .is_some_and(|path| path != x.path && path != x.uri)
    {
        return Err(format!("path {}", x.path));
    }
    if p.no_response && x.status.is_some() {
        return Err(format!("response {}", x.status.unwrap_or_default()));
    }
    if let Some(s) = p.status {
        if x.status != Some(s) {
            return Err(match x.status {
                Some(got) => format!("{} {} answered {got}", x.method, x.path),
                None => format!("{} {} not answered", x.method, x.path),
            });
        }
    }
    for (name, check) in &p.request_headers {
        check_header(&x.request_headers, name, check)
            .map_err(|e| format!("{} {} request {e}", x.method, x.path))?;
    }
    for (name, check) in &p.response_headers {
        check_header(&x.response_headers, name, check)
            .map_err(|e| format!("{} {} response {e}", x.method, x.path))?;
    }
    Ok(())
}

fn describe(p: &ExchangePattern) -> String {
    let mut parts = vec![format!(
        "{} {}",
        p.method.as_deref().unwrap_or("*"),
        p.path.as_deref().unwrap_or("*")
    )];
    if let Some(s) = p.status {
        parts.push(format!("→ {s}"));
    }
    if p.no_response {
        parts.push("→ no response".into());
    }
    for (n, c) in p.request_headers.iter().chain(&p.response_headers) {
        parts.push(format!("{n} {c:?}").to_lowercase());
    }
    parts.join(" ")
}

fn summary(list: &[&Exchange]) -> String {
    if list.is_empty() {
        return "no requests".into();
    }
    list.iter()
        .map(|x| match x.status {
            Some(s) => format!("{} {} → {s}", x.method, x.path),
            None => format!("{} {} → none", x.method, x.path),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_exchanges(what: &str, e: &ExchangesExpect, all: &[Exchange]) -> Option<Failure> {
    let seen: Vec<&Exchange> = all.iter().filter(|x| x.device == e.device).collect();
    let fail = |expected: String, actual: String| Failure {
        what: what.to_string(),
        expected,
        actual,
    };
    match e.order {
        Order::InOrder => {
            let mut pos = 0;
            for p in &e.requests {
                let mut near = None;
                let found = seen[pos..].iter().position(|x| match matches(p, x) {
                    Ok(()) => true,
                    Err(why) => {
                        if near.is_none() && !why.starts_with("method") && !why.starts_with("path")
                        {
                            near = Some(why);
                        }
                        false
                    }
                });
                match found {
                    Some(i) => pos += i + 1,
                    None => {
                        let actual = near.unwrap_or_else(|| summary(&seen));
                        return Some(fail(describe(p), actual));
                    }
                }
            }
            None
        }
        Order::AnyOrder => {
            for p in &e.requests {
                if !seen.iter().any(|x| matches(p, x).is_ok()) {
                    let near = seen.iter().find_map(|x| {
                        matches(p, x)
                            .err()
                            .filter(|w| !w.starts_with("method") && !w.starts_with("path"))
                    });
                    return Some(fail(describe(p), near.unwrap_or_else(|| summary(&seen))));
                }
            }
            None
        }
    }
}

fn check_client(
    what: &str,
    c: &ClientExpect,
    default_exit: i32,
    result: &ScenarioResult,
) -> Option<Failure> {
    let fail = |expected: String, actual: String| {
        Some(Failure {
            what: what.to_string(),
            expected,
            actual,
        })
    };
    let Some((_, o)) = result.clients.iter().find(|(n, _)| *n == c.name) else {
        return fail(format!("client {} ran", c.name), "it did not run".into());
    };
    if let Some(err) = &o.error {
        return fail(format!("client {} ran", c.name), err.clone());
    }
    if c.timed_out {
        if !o.timed_out {
            return fail("killed at its timeout".into(), format!("exit {:?}", o.exit));
        }
    } else if o.timed_out {
        return fail(
            format!("exit {}", c.exit.unwrap_or(default_exit)),
            format!(
                "killed at its timeout after {:.1}s",
                o.duration.as_secs_f64()
            ),
        );
    } else {
        let want = c.exit.unwrap_or(default_exit);
        if o.exit != Some(want) {
            let got = match (o.exit, o.signal) {
                (Some(x), _) => format!("exit {x}; output: {}", tail(&o.output())),
                (None, Some(s)) => format!("killed by signal {s}"),
                _ => "no exit status".into(),
            };
            return fail(format!("exit {want}"), got);
        }
    }
    let out = o.output();
    if let Some(re) = &c.output {
        if !Regex::new(re).is_ok_and(|r| r.is_match(&out)) {
            return fail(format!("output matching /{re}/"), tail(&out));
        }
    }
    if let Some(re) = &c.output_not {
        if let Some(m) = Regex::new(re)
            .ok()
            .and_then(|r| r.find(&out).map(|m| m.as_str().to_string()))
        {
            return fail(
                format!("output not matching /{re}/"),
                format!("found {m:?}"),
            );
        }
    }
    None
}

/// The last 300 characters of some output, on one line.
fn tail(s: &str) -> String {
    let t = s.trim();
    let start = t.char_indices().rev().nth(299).map(|(i, _)| i).unwrap_or(0);
    let cut = &t[start..];
    let one = cut.replace('\n', " ⏎ ");
    if start > 0 {
        format!("…{one}")
    } else if one.is_empty() {
        "(no output)".into()
    } else {
        one
    }
}

/// The expectation `value` breaks, `at most {max} {unit}` or `at least {min} {unit}`, if any.
fn bound(value: u64, min: Option<u64>, max: Option<u64>, unit: &str) -> Option<String> {
    if let Some(max) = max.filter(|max| value > *max) {
        return Some(format!("at most {max} {unit}"));
    }
    if let Some(min) = min.filter(|min| value < *min) {
        return Some(format!("at least {min} {unit}"));
    }
    None
}

fn check_audio(
    what: &str,
    a: &AudioExpect,
    loaded: &Loaded,
    devices: &[Device],
) -> Option<Failure> {
    let fail = |expected: String, actual: String| {
        Some(Failure {
            what: what.to_string(),
            expected,
            actual,
        })
    };
    let device = devices.iter().find(|d| d.name == a.device)?;
    let Some(service) = &device.parts.raop else {
        return fail(
            "a device that receives audio".into(),
            format!("{} receives none", device.kind.as_str()),
        );
    };
    let state = service
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let stats: Vec<_> = state.sessions.iter().map(|s| s.receiver.stats()).collect();
    let packets: u64 = stats.iter().map(|s| s.packets).sum();
    let frames: u64 = stats.iter().map(|s| s.frames).sum();
    let missing: u64 = stats.iter().map(|s| s.missing).sum();
    if let Some(expected) = bound(packets, a.min_packets, None, "audio packets") {
        return fail(expected, format!("{packets}"));
    }
    if let Some(expected) = bound(frames, a.min_frames, None, "frames") {
        return fail(expected, format!("{frames}"));
    }
    if let Some(expected) = bound(missing, a.min_missing, a.max_missing, "missing packets") {
        return fail(expected, format!("{missing} missing"));
    }
    if let Some(enc) = a.encrypted {
        if let Some(s) = state.sessions.iter().find(|s| s.encrypted != enc) {
            return fail(
                format!("every session {}", if enc { "encrypted" } else { "clear" }),
                format!(
                    "session on connection {} is {}",
                    s.connection,
                    if s.encrypted { "encrypted" } else { "clear" }
                ),
            );
        }
    }
    if let Some(wav) = &a.equals_wav {
        let path = loaded.resolve(wav);
        let source = match audio_match::read_wav(&path) {
            Ok(s) => s,
            Err(e) => return fail(format!("readable WAV {}", path.display()), e),
        };
        let captured = state.captured_pcm();
        let channels = stats.first().map(|s| s.channels).unwrap_or(2) as usize;
        if let Err(diff) = audio_match::compare(&source.samples, &captured, channels) {
            // A sender that gave up and retried (PulseAudio's sink can abort mid-session) leaves
            // a partial session before a whole one: the last session alone may be the match.
            let last = state
                .sessions
                .iter()
                .rev()
                .find(|s| s.receiver.stats().packets > 0);
            let retried_ok = state.sessions.len() > 1
                && last.is_some_and(|s| {
                    audio_match::compare(&source.samples, &s.receiver.pcm(), channels).is_ok()
                });
            if !retried_ok {
                return fail(format!("decoded audio equal to {wav}"), diff);
            }
        }
    }
    None
}

/// Checks every expectation of the scenario, plus each client's expected exit status.
pub fn evaluate(loaded: &Loaded, devices: &[Device], result: &ScenarioResult) -> Vec<Failure> {
    let scenario = &loaded.scenario;
    let all = exchanges(&result.events);
    let mut failures = Vec::new();
    // Each client's `exit` is an expectation of its own unless a `client` expectation covers it.
    let covered: HashSet<&str> = scenario
        .expect
        .iter()
        .filter_map(|e| match e {
            Expectation::Client(c) => Some(c.name.as_str()),
            _ => None,
        })
        .collect();
    for client in &scenario.clients {
        if covered.contains(client.name.as_str()) {
            continue;
        }
        let c = ClientExpect {
            name: client.name.clone(),
            exit: None,
            output: None,
            output_not: None,
            timed_out: false,
        };
        if let Some(f) = check_client(&format!("client {}", client.name), &c, client.exit, result) {
            failures.push(f);
        }
    }
    let exits: BTreeMap<&str, i32> = scenario
        .clients
        .iter()
        .map(|c| (c.name.as_str(), c.exit))
        .collect();
    for (i, e) in scenario.expect.iter().enumerate() {
        let failure = match e {
            Expectation::Exchanges(x) => {
                check_exchanges(&format!("expect[{i}] exchanges at {}", x.device), x, &all)
            }
            Expectation::Client(c) => check_client(
                &format!("expect[{i}] client {}", c.name),
                c,
                exits.get(c.name.as_str()).copied().unwrap_or(0),
                result,
            ),
            Expectation::NoUnexpectedRequests { device, allowed } => {
                let bad = all.iter().find(|x| {
                    x.device == *device
                        && !allowed.iter().any(|a| match a.split_once(' ') {
                            Some((m, p)) => m.eq_ignore_ascii_case(&x.method) && p == x.path,
                            None => a.eq_ignore_ascii_case(&x.method),
                        })
                });
                bad.map(|x| Failure {
                    what: format!("expect[{i}] no unexpected requests at {device}"),
                    expected: format!("only {}", allowed.join(", ")),
                    actual: format!("{} {}", x.method, x.path),
                })
            }
            Expectation::Audio(a) => check_audio(
                &format!("expect[{i}] audio at {}", a.device),
                a,
                loaded,
                devices,
            ),
            Expectation::NoWarnings { device } => result
                .events
                .iter()
                .find_map(|ev| match &ev.kind {
                    EventKind::Warning { message } if ev.device == *device => Some(message.clone()),
                    _ => None,
                })
                .map(|w| Failure {
                    what: format!("expect[{i}] no warnings at {device}"),
                    expected: "no protocol warnings".into(),
                    actual: w,
                }),
            Expectation::Warnings {
                device,
                matches,
                min,
            } => {
                let re = matches.as_deref().and_then(|m| Regex::new(m).ok());
                let all: Vec<&String> = result
                    .events
                    .iter()
                    .filter_map(|ev| match &ev.kind {
                        EventKind::Warning { message } if ev.device == *device => Some(message),
                        _ => None,
                    })
                    .collect();
                let hits = all
                    .iter()
                    .filter(|m| re.as_ref().is_none_or(|r| r.is_match(m)))
                    .count() as u64;
                (hits < *min).then(|| Failure {
                    what: format!("expect[{i}] warnings at {device}"),
                    expected: format!(
                        "at least {min} protocol warning(s){}",
                        matches
                            .as_ref()
                            .map(|m| format!(" matching /{m}/"))
                            .unwrap_or_default()
                    ),
                    actual: if all.is_empty() {
                        "none".into()
                    } else {
                        format!("{hits} matching of {}: {:?}", all.len(), all)
                    },
                })
            }
            Expectation::FaultsApplied(list) => {
                let applied: HashSet<usize> = result
                    .events
                    .iter()
                    .filter_map(|ev| match &ev.kind {
                        EventKind::Fault { fault, .. } => Some(*fault),
                        _ => None,
                    })
                    .collect();
                list.iter().find(|f| !applied.contains(f)).map(|f| Failure {
                    what: format!("expect[{i}] faults applied"),
                    expected: format!("fault {f} applied"),
                    actual: format!("applied: {:?}", {
                        let mut v: Vec<_> = applied.iter().collect();
                        v.sort();
                        v
                    }),
                })
            }
            Expectation::State { device, values } => {
                let state = devices
                    .iter()
                    .find(|d| d.name == *device)
                    .map(|d| d.state_json())
                    .unwrap_or_default();
                values.iter().find_map(|(k, want)| {
                    let got = airtwin_simulators::device::state_key(&state, k);
                    (!json_equal(want, &got)).then(|| Failure {
                        what: format!("expect[{i}] state of {device}"),
                        expected: format!("{k} = {want}"),
                        actual: format!("{k} = {got}"),
                    })
                })
            }
        };
        failures.extend(failure);
    }
    failures
}

/// Equality where 3 and 3.0 are the same number.
fn json_equal(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() < 1e-9,
        _ => a == b,
    }
}
