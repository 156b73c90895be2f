//! Differential mode: the scenario's clients run once against the fake and once against a real
//! receiver (the scenario's `reference`), each through a recording proxy ([`proxy`]); the two
//! recordings are compared exchange by exchange ([`compare`]). Differences listed for the
//! reference in its module (and in `docs/differences.md`) are accepted; any other one fails the
//! scenario. A reference that exits is reported as such ([`ReferenceExit`]), never as a failure
//! of the fake.

pub mod kodi;
pub mod proxy;
pub mod reference;
pub mod run;
pub mod rust_receivers;
pub mod shairport_sync;
pub mod uxplay;

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Real receivers a scenario can be compared against (`reference:` / `--differential`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ReferenceKind {
    /// The Rust crate `openairplay1` 0.3.0 (docs/peers.md, "Rust RAOP receivers").
    Openairplay1,
    /// The Rust crate `shairplay` 0.10.0 (docs/peers.md, "Rust RAOP receivers").
    Shairplay,
    /// shairport-sync 3.3.8 (Debian), inside `ci/netns` with its own avahi (docs/peers.md).
    ShairportSync,
    /// UxPlay 1.62 (Debian), inside `ci/netns` with its own dbus and avahi ([`uxplay`]).
    Uxplay,
    /// Kodi 20.1 (Debian), under Xvfb, inside `ci/netns` (docs/peers.md, "Kodi").
    Kodi,
}

impl ReferenceKind {
    /// The name used in scenarios and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ReferenceKind::Openairplay1 => "openairplay1",
            ReferenceKind::Shairplay => "shairplay",
            ReferenceKind::ShairportSync => "shairport-sync",
            ReferenceKind::Uxplay => "uxplay",
            ReferenceKind::Kodi => "kodi",
        }
    }

    /// Parses `--differential REF`.
    pub fn parse(text: &str) -> Result<Self, String> {
        [
            ReferenceKind::Openairplay1,
            ReferenceKind::Shairplay,
            ReferenceKind::ShairportSync,
            ReferenceKind::Uxplay,
            ReferenceKind::Kodi,
        ]
        .into_iter()
        .find(|k| k.name() == text)
        .ok_or_else(|| {
            format!("unknown reference {text:?} (openairplay1, shairplay, shairport-sync, uxplay, kodi)")
        })
    }

    /// Whether the reference multicasts mDNS or binds every interface, so that it may run only
    /// inside `ci/netns` (docs/peers.md): shairport-sync and UxPlay publish through avahi-daemon,
    /// Kodi binds 0.0.0.0. The Rust receivers bind 127.0.0.1 and advertise nothing.
    pub fn needs_namespace(self) -> bool {
        match self {
            ReferenceKind::Openairplay1 | ReferenceKind::Shairplay => false,
            ReferenceKind::ShairportSync => true,
            ReferenceKind::Uxplay => true,
            ReferenceKind::Kodi => true,
        }
    }

    /// The differences accepted against this reference (mirrored in `docs/differences.md`).
    pub fn accepted(self) -> Vec<Accepted> {
        let own = match self {
            ReferenceKind::Openairplay1 => rust_receivers::OPENAIRPLAY1_ACCEPTED,
            ReferenceKind::Shairplay => rust_receivers::SHAIRPLAY_ACCEPTED,
            ReferenceKind::ShairportSync => return shairport_sync::ACCEPTED.to_vec(),
            ReferenceKind::Uxplay => return uxplay::UXPLAY_ACCEPTED.to_vec(),
            ReferenceKind::Kodi => return kodi::ACCEPTED.to_vec(),
        };
        [rust_receivers::RUST_RECEIVERS_ACCEPTED, own].concat()
    }
}

/// One request and its response as seen on the wire by the recording proxy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exchange {
    /// Which client connection (0, 1, …, in accept order).
    pub connection: usize,
    pub method: String,
    pub uri: String,
    /// `None`: the connection closed before a response came.
    pub status: Option<u16>,
    /// Response headers, names lower-cased, in order; for a request the receiver pushed on a
    /// reversed connection (`POST /event`), that request's headers.
    pub headers: Vec<(String, String)>,
    /// Response body; for a pushed request, that request's body.
    pub body: Vec<u8>,
}

/// A difference between the fake's and the reference's answer to the same request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// `METHOD` (or `METHOD /path` for HTTP-style requests) of the exchange, or `exchanges`.
    pub exchange: String,
    /// What differs: `status`, `header NAME`, `body`, `missing exchange`, …
    pub what: String,
    pub fake: String,
    pub reference: String,
    /// Why it is accepted, if it is (from the reference's list; owned when read back from a
    /// child run inside `ci/netns`).
    pub accepted: Option<Cow<'static, str>>,
}

/// A difference accepted against one reference: `exchange` (`*` for any) and `what` must match.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accepted {
    pub exchange: &'static str,
    pub what: &'static str,
    pub why: &'static str,
}

/// How a reference process ended before airtwin stopped it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceExit {
    pub reference: String,
    pub status: String,
    pub log_tail: String,
}

/// Headers whose values are chosen per run (a clock, a signature over the client's random
/// challenge) or by the client (CSeq echoes the request's, RFC 2326 §12.17, and a client whose
/// timing adds a request numbers the rest differently): compared for presence only. The
/// signature itself is verified by the client under each side's own key and address
/// (docs/protocols/raop.md, Apple-Challenge).
const RANDOM_VALUED: &[&str] = &["date", "apple-response", "cseq"];

/// Transport values carry ports each side picked: they are compared with digits normalised.
const PORT_VALUED: &[&str] = &["transport"];

fn exchange_label(e: &Exchange) -> String {
    if e.uri.starts_with('/') {
        format!(
            "{} {}",
            e.method,
            e.uri.split('?').next().unwrap_or_default()
        )
    } else {
        e.method.clone()
    }
}

fn normalise_digits(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut in_number = false;
    for c in value.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('N');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

/// A Transport value as the set of its parameters, numbers normalised: the order of parameters
/// carries no meaning (RFC 2326 §12.39).
fn transport_shape(value: &str) -> std::collections::BTreeSet<String> {
    value
        .split(';')
        .map(|p| normalise_digits(p.trim()))
        .collect()
}

/// The shape of a body: its kind and, for property lists, each key with its value's type; for
/// DMAP, the tag tree; otherwise its length class. fp-setup bytes are compared as bytes.
pub fn body_shape(content_type: Option<&str>, body: &[u8]) -> String {
    if body.is_empty() {
        return "empty".into();
    }
    let ct = content_type.unwrap_or_default();
    if ct.contains("plist") || body.starts_with(b"bplist00") || body.starts_with(b"<?xml") {
        return match plist::Value::from_reader(std::io::Cursor::new(body)) {
            Ok(v) => format!("plist {}", plist_shape(&v)),
            Err(_) => format!("unparsable plist, {} bytes", body.len()),
        };
    }
    if ct.contains("dmap") {
        return format!("dmap, {} bytes", body.len());
    }
    // Whole up to 256 bytes: an fp-setup reply (142 bytes in phase 1, 32 in phase 3,
    // docs/protocols/airplay.md) is compared byte for byte.
    if ct.contains("octet-stream") {
        return format!(
            "bytes {}",
            airtwin_simulators::wire::hex::encode(body)
                .chars()
                .take(512)
                .collect::<String>()
        );
    }
    format!("{ct} non-empty")
}

fn plist_shape(v: &plist::Value) -> String {
    match v {
        plist::Value::Dictionary(d) => {
            // A dictionary's keys carry no order (Apple's property list format).
            let mut inner: Vec<String> = d
                .iter()
                .map(|(k, v)| format!("{k}: {}", plist_shape(v)))
                .collect();
            inner.sort();
            format!("{{{}}}", inner.join(", "))
        }
        plist::Value::Array(a) => match a.first() {
            Some(first) => format!("[{}]", plist_shape(first)),
            None => "[]".into(),
        },
        plist::Value::Boolean(_) => "bool".into(),
        plist::Value::Data(_) => "data".into(),
        plist::Value::Date(_) => "date".into(),
        plist::Value::Real(_) => "real".into(),
        plist::Value::Integer(_) => "integer".into(),
        plist::Value::String(_) => "string".into(),
        plist::Value::Uid(_) => "uid".into(),
        _ => "other".into(),
    }
}

/// A body as a property-list dictionary, if it is one.
fn plist_dict(body: &[u8]) -> Option<plist::Dictionary> {
    if !(body.starts_with(b"bplist00") || body.starts_with(b"<?xml")) {
        return None;
    }
    plist::Value::from_reader(std::io::Cursor::new(body))
        .ok()?
        .into_dictionary()
}

/// The differences between two property lists, key by key (`path` names the key: `displays[0].
/// width`), each as `(path, fake's shape, reference's shape)`; a missing key's shape is
/// `absent`. Arrays compare their first elements, as [`plist_shape`] does.
fn plist_differences(
    path: &str,
    fake: Option<&plist::Value>,
    reference: Option<&plist::Value>,
    out: &mut Vec<(String, String, String)>,
) {
    let shape = |v: Option<&plist::Value>| v.map_or_else(|| "absent".to_string(), plist_shape);
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match (fake, reference) {
        (Some(plist::Value::Dictionary(f)), Some(plist::Value::Dictionary(r))) => {
            let keys: std::collections::BTreeSet<&String> = f.keys().chain(r.keys()).collect();
            for k in keys {
                plist_differences(&join(k), f.get(k), r.get(k), out);
            }
        }
        (Some(plist::Value::Array(f)), Some(plist::Value::Array(r)))
            if !f.is_empty() && !r.is_empty() =>
        {
            plist_differences(&format!("{path}[0]"), f.first(), r.first(), out);
        }
        (f, r) => {
            let (fs, rs) = (shape(f), shape(r));
            if fs != rs {
                out.push((path.to_string(), fs, rs));
            }
        }
    }
}

fn header_map(e: &Exchange) -> BTreeMap<String, String> {
    e.headers.iter().cloned().collect()
}

/// Compares the fake's exchanges with the reference's, in order, and marks the differences
/// `accepted` lists.
pub fn compare(
    fake: &[Exchange],
    reference: &[Exchange],
    accepted: &[Accepted],
) -> Vec<Difference> {
    let mut out = Vec::new();
    for step in align(fake, reference) {
        match step {
            (Some(f), Some(r)) => compare_one(f, r, &mut out),
            (Some(f), None) => out.push(Difference {
                exchange: exchange_label(f),
                what: "missing exchange".into(),
                fake: format!("{} → {:?}", exchange_label(f), f.status),
                reference: "no such request".into(),
                accepted: None,
            }),
            (None, Some(r)) => out.push(Difference {
                exchange: exchange_label(r),
                what: "missing exchange".into(),
                fake: "no such request".into(),
                reference: format!("{} → {:?}", exchange_label(r), r.status),
                accepted: None,
            }),
            (None, None) => {}
        }
    }
    let (fs, rs) = (event_states(fake), event_states(reference));
    if fs != rs {
        out.push(Difference {
            exchange: "POST /event".into(),
            what: "event states".into(),
            fake: fs.join(", "),
            reference: rs.join(", "),
            accepted: None,
        });
    }
    mark_accepted(&mut out, accepted);
    out
}

/// The `state` of each event the receiver pushed (`POST /event`, a plist with category, sessionID
/// and state: docs/protocols/airplay.md), in the order they came, connection by connection.
pub fn event_states(exchanges: &[Exchange]) -> Vec<String> {
    exchanges
        .iter()
        .filter(|e| e.method == "POST" && e.uri == "/event")
        .map(|e| {
            plist::Value::from_reader(std::io::Cursor::new(&e.body))
                .ok()
                .and_then(|v| {
                    v.as_dictionary()?
                        .get("state")?
                        .as_string()
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "(no state)".into())
        })
        .collect()
}

/// Marks each difference `accepted` lists (same `what`, same exchange or `*`).
pub fn mark_accepted(differences: &mut [Difference], accepted: &[Accepted]) {
    for d in differences {
        d.accepted = accepted
            .iter()
            .find(|a| (a.exchange == "*" || a.exchange == d.exchange) && a.what == d.what)
            .map(|a| Cow::Borrowed(a.why));
    }
}

/// Pairs the two sides' exchanges by request (method and path) along their longest common
/// subsequence: a client whose timing differs (one more SET_PARAMETER progress update) shows
/// one missing exchange, not a shifted tail.
fn align<'a>(
    fake: &'a [Exchange],
    reference: &'a [Exchange],
) -> Vec<(Option<&'a Exchange>, Option<&'a Exchange>)> {
    let (n, m) = (fake.len(), reference.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if exchange_label(&fake[i]) == exchange_label(&reference[j]) {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut steps) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && exchange_label(&fake[i]) == exchange_label(&reference[j]) {
            steps.push((Some(&fake[i]), Some(&reference[j])));
            i += 1;
            j += 1;
        } else if j == m || (i < n && lcs[i + 1][j] >= lcs[i][j + 1]) {
            steps.push((Some(&fake[i]), None));
            i += 1;
        } else {
            steps.push((None, Some(&reference[j])));
            j += 1;
        }
    }
    steps
}

/// A Session value's form: RAOP senders parse it as a decimal number (docs/peers.md, pyatv),
/// so its form is compared, not its value.
fn session_form(value: &str) -> String {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        "decimal".into()
    } else {
        format!("not decimal ({value})")
    }
}

fn compare_one(f: &Exchange, r: &Exchange, out: &mut Vec<Difference>) {
    let label = exchange_label(f);
    let mut push = |what: String, fake: String, reference: String| {
        out.push(Difference {
            exchange: label.clone(),
            what,
            fake,
            reference,
            accepted: None,
        })
    };
    if exchange_label(r) != label {
        push("request".into(), label.clone(), exchange_label(r));
        return;
    }
    if f.status != r.status {
        push(
            "status".into(),
            format!("{:?}", f.status),
            format!("{:?}", r.status),
        );
    }
    let (fh, rh) = (header_map(f), header_map(r));
    let names: std::collections::BTreeSet<&String> = fh.keys().chain(rh.keys()).collect();
    for name in names {
        let (fv, rv) = (fh.get(name), rh.get(name));
        let differs = match (fv, rv) {
            (Some(_), Some(_)) if RANDOM_VALUED.contains(&name.as_str()) => false,
            (Some(a), Some(b)) if name == "session" => session_form(a) != session_form(b),
            (Some(a), Some(b)) if PORT_VALUED.contains(&name.as_str()) => {
                transport_shape(a) != transport_shape(b)
            }
            (Some(a), Some(b)) => a != b,
            _ => true,
        };
        if differs {
            push(
                format!("header {name}"),
                fv.cloned().unwrap_or_else(|| "absent".into()),
                rv.cloned().unwrap_or_else(|| "absent".into()),
            );
        }
    }
    let (fs, rs) = (
        body_shape(fh.get("content-type").map(String::as_str), &f.body),
        body_shape(rh.get("content-type").map(String::as_str), &r.body),
    );
    if fs == rs {
        return;
    }
    // Two dictionaries differ key by key (`body key NAME`), so that one accepted key hides no
    // other.
    if let (Some(fd), Some(rd)) = (plist_dict(&f.body), plist_dict(&r.body)) {
        let mut keys = Vec::new();
        plist_differences(
            "",
            Some(&plist::Value::Dictionary(fd)),
            Some(&plist::Value::Dictionary(rd)),
            &mut keys,
        );
        for (path, fake, reference) in keys {
            push(format!("body key {path}"), fake, reference);
        }
        return;
    }
    push("body".into(), fs, rs);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(method: &str, status: u16, headers: &[(&str, &str)], body: &[u8]) -> Exchange {
        Exchange {
            connection: 0,
            method: method.into(),
            uri: "rtsp://127.0.0.1/1".into(),
            status: Some(status),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        }
    }

    #[test]
    fn random_values_are_compared_for_presence_only() {
        let f = [ex(
            "SETUP",
            200,
            &[
                ("session", "1"),
                ("date", "a"),
                ("cseq", "3"),
                ("server", "x"),
            ],
            b"",
        )];
        let r = [ex(
            "SETUP",
            200,
            &[
                ("session", "99"),
                ("date", "b"),
                ("cseq", "4"),
                ("server", "x"),
            ],
            b"",
        )];
        assert_eq!(compare(&f, &r, &[]), vec![]);
        let r = [ex(
            "SETUP",
            200,
            &[("date", "b"), ("cseq", "3"), ("server", "y")],
            b"",
        )];
        let d = compare(&f, &r, &[]);
        let whats: Vec<&str> = d.iter().map(|d| d.what.as_str()).collect();
        assert_eq!(whats, ["header server", "header session"]);
        assert_eq!(d[1].reference, "absent");
    }

    #[test]
    fn transport_ports_are_normalised_but_keys_are_not() {
        let f = [ex(
            "SETUP",
            200,
            &[(
                "transport",
                "RTP/AVP/UDP;server_port=6000;control_port=6001",
            )],
            b"",
        )];
        let r = [ex(
            "SETUP",
            200,
            &[(
                "transport",
                "RTP/AVP/UDP;server_port=51234;control_port=51235",
            )],
            b"",
        )];
        assert!(compare(&f, &r, &[]).is_empty());
        let r = [ex(
            "SETUP",
            200,
            &[("transport", "RTP/AVP/UDP;control_port=2;server_port=1")],
            b"",
        )];
        assert!(
            compare(&f, &r, &[]).is_empty(),
            "parameter order carries no meaning"
        );
        let r = [ex(
            "SETUP",
            200,
            &[("transport", "RTP/AVP/UDP;server_port=51234")],
            b"",
        )];
        assert_eq!(compare(&f, &r, &[])[0].what, "header transport");
    }

    #[test]
    fn status_missing_exchanges_and_accepted_entries() {
        let f = [ex("OPTIONS", 200, &[], b""), ex("RECORD", 200, &[], b"")];
        let r = [ex("OPTIONS", 501, &[], b"")];
        let accepted = [Accepted {
            exchange: "OPTIONS",
            what: "status",
            why: "because",
        }];
        let d = compare(&f, &r, &accepted);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].accepted.as_deref(), Some("because"));
        assert_eq!(d[1].what, "missing exchange");
        assert_eq!(d[1].accepted, None);
    }

    #[test]
    fn an_extra_request_on_one_side_is_one_missing_exchange() {
        let f = [
            ex("SETUP", 200, &[], b""),
            ex("RECORD", 200, &[], b""),
            ex("TEARDOWN", 200, &[], b""),
        ];
        let r = [
            ex("SETUP", 200, &[], b""),
            ex("SET_PARAMETER", 200, &[], b""),
            ex("RECORD", 200, &[], b""),
            ex("TEARDOWN", 200, &[], b""),
        ];
        let d = compare(&f, &r, &[]);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(
            (d[0].exchange.as_str(), d[0].what.as_str()),
            ("SET_PARAMETER", "missing exchange")
        );
        assert_eq!(d[0].fake, "no such request");
    }

    #[test]
    fn pushed_event_states_are_compared_in_order() {
        let event = |state: &str| {
            let body = format!(
                "<?xml version=\"1.0\"?><plist version=\"1.0\"><dict><key>category</key>\
                 <string>video</string><key>state</key><string>{state}</string></dict></plist>"
            );
            let mut e = ex("POST", 200, &[], body.as_bytes());
            e.uri = "/event".into();
            e
        };
        let f = [event("loading"), event("playing"), event("stopped")];
        assert!(compare(&f, &f, &[]).is_empty());
        let r = [event("loading"), event("stopped"), event("playing")];
        assert_eq!(event_states(&r), ["loading", "stopped", "playing"]);
        let d = compare(&f, &r, &[]);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].what, "event states");
        assert_eq!(d[0].fake, "loading, playing, stopped");
        assert_eq!(d[0].reference, "loading, stopped, playing");
    }

    #[test]
    fn a_session_that_is_not_decimal_differs() {
        let f = [ex("SETUP", 200, &[("session", "62220040")], b"")];
        let r = [ex("SETUP", 200, &[("session", "DEADBEEF")], b"")];
        let d = compare(&f, &r, &[]);
        assert_eq!(d[0].what, "header session");
        assert_eq!(d[0].reference, "DEADBEEF");
    }

    #[test]
    fn plist_bodies_compare_by_keys_and_types() {
        let mut a = Vec::new();
        plist::Value::Dictionary(
            [("name".to_string(), plist::Value::String("x".into()))]
                .into_iter()
                .collect(),
        )
        .to_writer_binary(&mut a)
        .unwrap();
        let mut b = Vec::new();
        plist::Value::Dictionary(
            [("name".to_string(), plist::Value::Integer(1.into()))]
                .into_iter()
                .collect(),
        )
        .to_writer_binary(&mut b)
        .unwrap();
        let ct = [("content-type", "application/x-apple-binary-plist")];
        let mut f = ex("GET", 200, &ct, &a);
        f.uri = "/info".into();
        let mut r = ex("GET", 200, &ct, &b);
        r.uri = "/info".into();
        let d = compare(&[f.clone()], &[r], &[]);
        assert_eq!(d[0].exchange, "GET /info");
        assert_eq!(d[0].what, "body key name");
        assert_eq!(d[0].fake, "string");
        assert_eq!(d[0].reference, "integer");
        assert!(compare(&[f.clone()], &[f], &[]).is_empty());
    }

    fn bplist(v: plist::Value) -> Vec<u8> {
        let mut out = Vec::new();
        v.to_writer_binary(&mut out).unwrap();
        out
    }

    fn dict(entries: &[(&str, plist::Value)]) -> plist::Value {
        plist::Value::Dictionary(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn fp_setup_replies_compare_to_the_last_byte() {
        let ct = [("content-type", "application/octet-stream")];
        let reply: Vec<u8> = (0..142u8).collect();
        let mut other = reply.clone();
        other[141] ^= 1;
        let mut f = ex("POST", 200, &ct, &reply);
        f.uri = "/fp-setup".into();
        let mut r = ex("POST", 200, &ct, &other);
        r.uri = "/fp-setup".into();
        assert!(compare(&[f.clone()], &[f.clone()], &[]).is_empty());
        let d = compare(&[f], &[r], &[]);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(
            (d[0].exchange.as_str(), d[0].what.as_str()),
            ("POST /fp-setup", "body")
        );
    }

    #[test]
    fn plist_keys_compare_one_by_one_in_any_order_and_nested() {
        use plist::Value::{Array, Boolean, Integer, Real, String as Text};
        let display = |physical: plist::Value| {
            dict(&[("width", Integer(1920.into())), ("widthPhysical", physical)])
        };
        let fake = dict(&[
            ("name", Text("a".into())),
            ("initialVolume", Real(-20.0)),
            ("displays", Array(vec![display(Integer(0.into()))])),
        ]);
        let reference = dict(&[
            ("displays", Array(vec![display(Boolean(false))])),
            ("name", Text("b".into())),
            ("pi", Text("x".into())),
        ]);
        let ct = [("content-type", "application/x-apple-binary-plist")];
        let mut f = ex("GET", 200, &ct, &bplist(fake));
        f.uri = "/info".into();
        let mut r = ex("GET", 200, &ct, &bplist(reference));
        r.uri = "/info".into();
        let d = compare(&[f], &[r], &[]);
        let got: Vec<(&str, &str, &str)> = d
            .iter()
            .map(|d| (d.what.as_str(), d.fake.as_str(), d.reference.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("body key displays[0].widthPhysical", "integer", "bool"),
                ("body key initialVolume", "real", "absent"),
                ("body key pi", "absent", "string"),
            ]
        );
    }

    #[test]
    fn plist_key_order_carries_no_meaning() {
        let dict = |keys: &[&str]| {
            let mut d = plist::Dictionary::new();
            for k in keys {
                d.insert(k.to_string(), plist::Value::Real(1.0));
            }
            plist::Value::Dictionary(d)
        };
        assert_eq!(
            plist_shape(&dict(&["position", "duration"])),
            plist_shape(&dict(&["duration", "position"]))
        );
        assert_ne!(
            plist_shape(&dict(&["position"])),
            plist_shape(&dict(&["duration", "position"]))
        );
    }
}

#[cfg(test)]
mod documented {
    use super::*;

    /// The section of docs/differences.md whose heading starts with `heading`.
    fn section<'a>(doc: &'a str, heading: &str) -> &'a str {
        let start = doc
            .find(&format!("\n## {heading}"))
            .unwrap_or_else(|| panic!("docs/differences.md has no section {heading}"));
        let rest = &doc[start + 1..];
        let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3);
        &rest[..end]
    }

    /// The word of `what` a table row names: a header's name, a body key's last part, or the
    /// kind of difference itself.
    fn word(what: &str) -> String {
        let w = what
            .strip_prefix("header ")
            .or_else(|| what.strip_prefix("body key "))
            .unwrap_or(what);
        w.rsplit('.').next().unwrap_or(w).to_ascii_lowercase()
    }

    #[test]
    fn every_accepted_difference_is_in_docs_differences() {
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/differences.md"),
        )
        .unwrap();
        let mut missing = Vec::new();
        for (kind, heading) in [
            (ReferenceKind::Openairplay1, "openairplay1"),
            (ReferenceKind::Shairplay, "shairplay"),
            (ReferenceKind::ShairportSync, "shairport-sync"),
            (ReferenceKind::Uxplay, "UxPlay"),
            (ReferenceKind::Kodi, "Kodi"),
        ] {
            let text = section(&doc, heading).to_ascii_lowercase();
            for a in kind.accepted() {
                let exchange = match a.exchange {
                    "*" => "every".to_string(),
                    e => e.to_ascii_lowercase(),
                };
                let word = word(a.what);
                let named = text
                    .lines()
                    .any(|l| l.starts_with('|') && l.contains(&exchange) && l.contains(&word));
                if !named {
                    missing.push(format!("{}: {} {}", kind.name(), a.exchange, a.what));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "not in docs/differences.md:\n{}",
            missing.join("\n")
        );
    }
}
