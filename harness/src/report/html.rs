//! `airtwin run --html FILE`: one self-contained page (inline CSS, no script, nothing fetched)
//! with a summary table and, per scenario, a ladder diagram built from the same recorded events
//! as the transcript: a lane per client address and per device, an arrow per request and per
//! response (method, path, status), faults marked on the exchange they struck, warnings and
//! notes on the device's lane, the scenario's expectations with the failed ones highlighted, and
//! each message's headers and decoded body (binary plist, DMAP, SDP, text or hex) on click.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

use airtwin_simulators::event::{Event, EventKind};

use crate::engine::ScenarioResult;

/// Events drawn per scenario; the transcript (`--out`) has every one.
const MAX_ROWS: usize = 3000;

/// What the page shows of one scenario besides its result: its expectations, one line each.
#[derive(Debug, Clone, Default)]
pub struct Expectations(pub Vec<String>);

impl Expectations {
    /// Each expectation of the scenario as compact JSON, in the order of its `expect` list.
    pub fn of(scenario: &crate::scenario::Scenario) -> Self {
        Expectations(
            scenario
                .expect
                .iter()
                .map(|e| serde_json::to_string(e).unwrap_or_else(|e| format!("({e})")))
                .collect(),
        )
    }
}

/// What one run gives the page besides its results.
#[derive(Debug, Default)]
pub struct Context {
    /// Each scenario's expectations, by scenario name.
    pub expectations: HashMap<String, Expectations>,
    /// Files that did not load, each with its `file:line:column: …` error.
    pub invalid: Vec<String>,
}

/// Writes the page for `results`.
pub fn write(path: &Path, results: &[ScenarioResult], cx: &Context) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, render(results, cx))
}

fn esc(text: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(text)
}

/// The whole page.
pub fn render(results: &[ScenarioResult], cx: &Context) -> String {
    let passed = results.iter().filter(|r| r.passed).count();
    let invalid = if cx.invalid.is_empty() {
        String::new()
    } else {
        format!(", {} invalid", cx.invalid.len())
    };
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>airtwin: {passed} passed, {} failed{invalid}</title><style>{STYLE}</style></head><body>\n\
         <h1>airtwin report: <span class=\"{}\">{passed} passed, {} failed{invalid}</span></h1>\n",
        results.len() - passed,
        if passed == results.len() && cx.invalid.is_empty() {
            "pass"
        } else {
            "fail"
        },
        results.len() - passed,
    );
    summary(&mut page, results);
    for e in &cx.invalid {
        let _ = writeln!(page, "<p class=\"error invalid\">invalid: {}</p>", esc(e));
    }
    for (i, r) in results.iter().enumerate() {
        scenario(&mut page, i, r, cx.expectations.get(&r.name));
    }
    page.push_str("</body></html>\n");
    page
}

fn anchor(i: usize) -> String {
    format!("s{i}")
}

fn summary(page: &mut String, results: &[ScenarioResult]) {
    page.push_str(
        "<table id=\"summary\"><thead><tr><th>result</th><th>scenario</th><th>file</th>\
         <th>time</th><th>seed</th><th>first problem</th></tr></thead><tbody>\n",
    );
    for (i, r) in results.iter().enumerate() {
        let status = if r.passed { "PASS" } else { "FAIL" };
        let _ = writeln!(
            page,
            "<tr class=\"{}\" data-scenario=\"{}\"><td>{status}</td><td><a href=\"#{}\">{}</a></td>\
             <td>{}</td><td>{:.3}s</td><td>{}</td><td>{}</td></tr>",
            status.to_ascii_lowercase(),
            esc(&r.name),
            anchor(i),
            esc(&r.name),
            esc(&r.file.display().to_string()),
            r.duration.as_secs_f64(),
            r.seed,
            esc(&r.first_problem().unwrap_or_default()),
        );
    }
    page.push_str("</tbody></table>\n");
}

fn scenario(page: &mut String, i: usize, r: &ScenarioResult, expect: Option<&Expectations>) {
    let status = if r.passed { "PASS" } else { "FAIL" };
    let _ = writeln!(
        page,
        "<details class=\"scenario {}\" id=\"{}\" data-scenario=\"{}\"{}><summary>{status} \
         <b>{}</b> {:.3}s <span class=\"dim\">{} · seed {} · replay: airtwin run {} --seed {}</span>\
         </summary>",
        status.to_ascii_lowercase(),
        anchor(i),
        esc(&r.name),
        if r.passed { "" } else { " open" },
        esc(&r.name),
        r.duration.as_secs_f64(),
        esc(&r.file.display().to_string()),
        r.seed,
        esc(&r.file.display().to_string()),
        r.seed,
    );
    if let Some(e) = &r.error {
        let _ = writeln!(page, "<p class=\"error\">error: {}</p>", esc(e));
    }
    expectations(page, r, expect);
    clients(page, r);
    ladder(page, &r.events);
    page.push_str("</details>\n");
}

/// `expect[3] state tv` → 3.
fn expectation_index(what: &str) -> Option<usize> {
    what.strip_prefix("expect[")?
        .split(']')
        .next()?
        .parse()
        .ok()
}

fn expectations(page: &mut String, r: &ScenarioResult, expect: Option<&Expectations>) {
    let mut failed: BTreeMap<usize, Vec<&crate::engine::Failure>> = BTreeMap::new();
    let mut other = Vec::new();
    for f in &r.failures {
        match expectation_index(&f.what) {
            Some(i) if expect.is_some_and(|e| i < e.0.len()) => {
                failed.entry(i).or_default().push(f)
            }
            _ => other.push(f),
        }
    }
    page.push_str("<ol class=\"expectations\" start=\"0\">\n");
    for (i, text) in expect
        .map(|e| e.0.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        match failed.get(&i) {
            Some(fs) => {
                let _ = write!(
                    page,
                    "<li class=\"failed-expectation\" data-expect=\"{i}\"><code>{}</code>",
                    esc(text)
                );
                for f in fs {
                    failure(page, f);
                }
                page.push_str("</li>\n");
            }
            None => {
                let _ = writeln!(
                    page,
                    "<li class=\"held\" data-expect=\"{i}\"><code>{}</code></li>",
                    esc(text)
                );
            }
        }
    }
    page.push_str("</ol>\n");
    for f in other {
        page.push_str("<div class=\"failed-expectation\">");
        failure(page, f);
        page.push_str("</div>\n");
    }
}

fn failure(page: &mut String, f: &crate::engine::Failure) {
    let _ = write!(
        page,
        "<div class=\"failure\"><b>{}</b><br>expected: <code>{}</code><br>actual: <code>{}</code></div>",
        esc(&f.what),
        esc(&f.expected),
        esc(&f.actual)
    );
}

fn clients(page: &mut String, r: &ScenarioResult) {
    for (name, o) in &r.clients {
        let mut how = match o.exit {
            Some(code) => format!("exit {code}"),
            None => "no exit status".into(),
        };
        if o.timed_out {
            how.push_str(", killed at timeout");
        }
        if o.interrupted {
            how.push_str(", interrupted");
        }
        if let Some(e) = &o.error {
            let _ = write!(how, ", {e}");
        }
        let _ = writeln!(
            page,
            "<details class=\"client{}\"><summary>client <b>{}</b>: {} in {:.3}s</summary>\
             <pre>-- stdout\n{}\n-- stderr\n{}</pre></details>",
            if o.timed_out { " timed-out" } else { "" },
            esc(name),
            esc(&how),
            o.duration.as_secs_f64(),
            esc(o.stdout.trim_end()),
            esc(o.stderr.trim_end()),
        );
    }
}

/// Lanes: one per client address that sent requests, then one per device, in order of
/// appearance.
fn lanes(events: &[Event]) -> (Vec<IpAddr>, Vec<String>) {
    let mut clients = Vec::new();
    let mut devices = Vec::new();
    for e in events {
        if !devices.contains(&e.device) {
            devices.push(e.device.clone());
        }
        if let Some(p) = e.peer {
            if !clients.contains(&p.ip()) {
                clients.push(p.ip());
            }
        }
    }
    (clients, devices)
}

/// `(device, connection, request index)` of the exchanges a fault acted on.
fn struck(events: &[Event]) -> HashMap<(&str, Option<u64>, u64), Vec<usize>> {
    let mut m: HashMap<_, Vec<usize>> = HashMap::new();
    for e in events {
        if let EventKind::Fault {
            request: Some(r),
            fault,
            ..
        } = &e.kind
        {
            m.entry((e.device.as_str(), e.connection, *r))
                .or_default()
                .push(*fault);
        }
    }
    m
}

fn ladder(page: &mut String, events: &[Event]) {
    let (clients, devices) = lanes(events);
    let n = clients.len() + devices.len();
    if events.is_empty() || n == 0 {
        page.push_str("<p class=\"dim\">no events recorded</p>\n");
        return;
    }
    let struck = struck(events);
    let lane_of_client = |ip: IpAddr| clients.iter().position(|c| *c == ip).unwrap_or(0);
    let lane_of_device = |d: &str| clients.len() + devices.iter().position(|x| x == d).unwrap_or(0);
    let columns = format!("grid-template-columns: 6em repeat({n}, minmax(10em, 1fr))");
    let _ = write!(
        page,
        "<div class=\"ladder\" style=\"{columns}\"><div class=\"t head\">ms</div>"
    );
    for c in &clients {
        let _ = write!(
            page,
            "<div class=\"lane head client-lane\" data-lane=\"client {c}\">client {c}</div>"
        );
    }
    for d in &devices {
        let _ = write!(
            page,
            "<div class=\"lane head device-lane\" data-lane=\"{}\">device {}</div>",
            esc(d),
            esc(d)
        );
    }
    page.push('\n');
    for (row, e) in events.iter().enumerate() {
        if row == MAX_ROWS {
            let _ = writeln!(
                page,
                "<div class=\"more\" style=\"grid-column: 1 / {}\">… {} more events: see the transcript (--out)</div>",
                n + 2,
                events.len() - MAX_ROWS
            );
            break;
        }
        let grid_row = row + 2;
        let _ = write!(
            page,
            "<div class=\"t\" style=\"grid-row:{grid_row}\">{:.1}</div>",
            e.at.as_secs_f64() * 1000.0
        );
        for lane in 0..n {
            let _ = write!(
                page,
                "<div class=\"line\" style=\"grid-row:{grid_row};grid-column:{}\"></div>",
                lane + 2
            );
        }
        let device = lane_of_device(&e.device);
        let conn = e.connection.map(|c| format!("#{c} ")).unwrap_or_default();
        let client = e.peer.map(|p| lane_of_client(p.ip())).unwrap_or(0);
        match &e.kind {
            EventKind::Request {
                index,
                method,
                uri,
                protocol,
                headers,
                body,
                content_type,
            } => {
                let label = format!("{conn}{method} {uri}");
                let detail = message(
                    &format!("{method} {uri} {protocol}"),
                    headers,
                    body,
                    content_type,
                );
                arrow(
                    page,
                    grid_row,
                    client,
                    device,
                    Arrow {
                        class: "exchange request",
                        data: &format!(
                            "data-method=\"{}\" data-path=\"{}\" data-request=\"{index}\" data-device=\"{}\"",
                            esc(method),
                            esc(uri),
                            esc(&e.device)
                        ),
                        label: &label,
                        detail: &detail,
                        rightwards: true,
                    },
                );
            }
            EventKind::Response {
                index,
                status,
                reason,
                headers,
                body,
                content_type,
            } => {
                let faults = struck.get(&(e.device.as_str(), e.connection, *index));
                let mut label = format!("{conn}{status} {reason}");
                if let Some(f) = faults {
                    let list: Vec<String> = f.iter().map(|i| format!("faults[{i}]")).collect();
                    let _ = write!(label, " ⚡ {}", list.join(", "));
                }
                let detail = message(&format!("{status} {reason}"), headers, body, content_type);
                arrow(
                    page,
                    grid_row,
                    client,
                    device,
                    Arrow {
                        class: if faults.is_some() {
                            "exchange response struck"
                        } else {
                            "exchange response"
                        },
                        data: &format!(
                            "data-status=\"{status}\" data-request=\"{index}\" data-device=\"{}\"",
                            esc(&e.device)
                        ),
                        label: &label,
                        detail: &detail,
                        rightwards: false,
                    },
                );
            }
            EventKind::Pushed {
                index,
                method,
                uri,
                headers,
                body,
                content_type,
            } => {
                let label = format!("{conn}{method} {uri} (device → client)");
                let detail = message(&format!("{method} {uri}"), headers, body, content_type);
                arrow(
                    page,
                    grid_row,
                    client,
                    device,
                    Arrow {
                        class: "exchange pushed",
                        data: &format!(
                            "data-method=\"{}\" data-path=\"{}\" data-pushed=\"{index}\" data-device=\"{}\"",
                            esc(method),
                            esc(uri),
                            esc(&e.device)
                        ),
                        label: &label,
                        detail: &detail,
                        rightwards: false,
                    },
                );
            }
            EventKind::PushAnswered {
                index,
                status,
                reason,
            } => {
                let label = format!("{conn}{status} {reason} (client's answer)");
                arrow(
                    page,
                    grid_row,
                    client,
                    device,
                    Arrow {
                        class: "exchange push-answer",
                        data: &format!(
                            "data-status=\"{status}\" data-pushed=\"{index}\" data-device=\"{}\"",
                            esc(&e.device)
                        ),
                        label: &label,
                        detail: "",
                        rightwards: true,
                    },
                );
            }
            EventKind::Fault {
                request,
                fault,
                action,
            } => {
                let on = request
                    .map(|r| format!(" on request {r}"))
                    .unwrap_or_default();
                marker(
                    page,
                    grid_row,
                    device,
                    "fault",
                    &format!("data-fault=\"{fault}\""),
                    &format!("⚡ {conn}faults[{fault}] {action}{on}"),
                );
            }
            EventKind::Warning { message } => marker(
                page,
                grid_row,
                device,
                "warning",
                "",
                &format!("⚠ {conn}{message}"),
            ),
            EventKind::Note { message } => marker(
                page,
                grid_row,
                device,
                "note",
                "",
                &format!("{conn}{message}"),
            ),
            EventKind::Listening { service, port } => marker(
                page,
                grid_row,
                device,
                "note",
                "",
                &format!("listening: {service} on port {port}"),
            ),
            EventKind::Connected => {
                let from = e.peer.map(|p| format!(" from {p}")).unwrap_or_default();
                marker(
                    page,
                    grid_row,
                    device,
                    "conn",
                    "",
                    &format!("{conn}connected{from}"),
                )
            }
            EventKind::Closed { reason } => marker(
                page,
                grid_row,
                device,
                "conn",
                "",
                &format!("{conn}closed: {reason}"),
            ),
        }
        page.push('\n');
    }
    page.push_str("</div>\n");
}

/// The start line, headers and decoded body of one message, as the transcript shows them.
fn message(
    start: &str,
    headers: &[(String, String)],
    body: &[u8],
    content_type: &Option<String>,
) -> String {
    let mut text = format!("{start}\n");
    for (n, v) in headers {
        let _ = writeln!(text, "{n}: {v}");
    }
    if !body.is_empty() {
        text.push('\n');
        let mut decoded = String::new();
        super::transcript::render_body(&mut decoded, body, content_type.as_deref());
        for line in decoded.lines() {
            text.push_str(line.strip_prefix("        | ").unwrap_or(line));
            text.push('\n');
        }
    }
    text
}

struct Arrow<'a> {
    class: &'a str,
    data: &'a str,
    label: &'a str,
    detail: &'a str,
    rightwards: bool,
}

/// An arrow between the centres of lanes `a` and `b`, its label opening the message below it.
fn arrow(page: &mut String, grid_row: usize, a: usize, b: usize, arrow: Arrow<'_>) {
    let (lo, hi) = (a.min(b), a.max(b));
    let span = hi - lo + 1;
    // Margins in % of the spanned lanes put both ends at the centre of the outer lanes.
    let inset = 100.0 / (2.0 * span as f64);
    let _ = write!(
        page,
        "<details class=\"{} {}\" {} style=\"grid-row:{grid_row};grid-column:{} / {};\
         margin-left:{inset:.3}%;margin-right:{inset:.3}%\"><summary>{}</summary><pre>{}</pre></details>",
        arrow.class,
        if arrow.rightwards { "right" } else { "left" },
        arrow.data,
        lo + 2,
        hi + 3,
        esc(arrow.label),
        esc(arrow.detail),
    );
}

fn marker(page: &mut String, grid_row: usize, lane: usize, class: &str, data: &str, text: &str) {
    let _ = write!(
        page,
        "<div class=\"marker {class}\" {data} style=\"grid-row:{grid_row};grid-column:{}\">{}</div>",
        lane + 2,
        esc(text)
    );
}

/// Which lanes a set of events gives, for tests and callers that want the names.
pub fn lane_names(events: &[Event]) -> BTreeSet<String> {
    let (clients, devices) = lanes(events);
    clients
        .iter()
        .map(|c| format!("client {c}"))
        .chain(devices)
        .collect()
}

const STYLE: &str = r#"
body { font: 14px/1.4 system-ui, sans-serif; margin: 1em 2em; color: #222; }
h1 { font-size: 1.4em; }
h1 .pass, details.scenario.pass > summary { color: #176f2c; }
h1 .fail, details.scenario.fail > summary { color: #b3261e; }
tr.pass td:first-child { color: #176f2c; font-weight: bold; }
tr.fail td:first-child { color: #b3261e; font-weight: bold; }
table#summary { border-collapse: collapse; margin-bottom: 1.5em; }
table#summary td, table#summary th { border: 1px solid #ccc; padding: 2px 8px; text-align: left; }
details.scenario { border: 1px solid #ccc; border-radius: 4px; margin: 0.8em 0; padding: 0.3em 0.8em; }
details.scenario.fail { border-color: #b3261e; }
details.scenario > summary { cursor: pointer; font-size: 1.1em; }
.dim { color: #777; font-size: 0.9em; }
.error { color: #b3261e; font-weight: bold; }
ol.expectations { font-size: 0.9em; }
ol.expectations li.held { color: #555; }
.failed-expectation { background: #fde2e0; border-left: 4px solid #b3261e; padding: 2px 6px; margin: 2px 0; }
.failure { color: #b3261e; }
details.client { margin: 0.3em 0; } details.client.timed-out > summary { color: #b3261e; }
pre { white-space: pre-wrap; word-break: break-all; background: #f6f6f6; padding: 4px; margin: 2px 0; font-size: 12px; }
.ladder { display: grid; align-items: center; margin-top: 0.8em; font-size: 12px; }
.ladder .head { font-weight: bold; text-align: center; border-bottom: 2px solid #444; padding: 2px; position: sticky; top: 0; background: #fff; z-index: 2; }
.ladder .t { color: #777; text-align: right; padding-right: 6px; grid-column: 1; }
.ladder .line { align-self: stretch; background: linear-gradient(#999, #999) no-repeat center / 1px 100%; min-height: 1.6em; }
.ladder .exchange { z-index: 1; }
.ladder .exchange > summary { list-style: none; cursor: pointer; text-align: center; border-bottom: 2px solid #1f5fa8; position: relative; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; padding: 0 8px; }
.ladder .exchange > summary::-webkit-details-marker { display: none; }
.ladder .exchange.right > summary::after { content: "▶"; position: absolute; right: -4px; bottom: -9px; color: #1f5fa8; }
.ladder .exchange.left > summary::after { content: "◀"; position: absolute; left: -4px; bottom: -9px; color: #1f5fa8; }
.ladder .exchange.response > summary { border-bottom-style: dashed; color: #1f5fa8; }
.ladder .exchange.struck > summary { border-bottom-color: #d97706; color: #b45309; font-weight: bold; }
.ladder .exchange[open] > pre { position: relative; z-index: 3; box-shadow: 0 1px 4px #0004; }
.ladder .marker { z-index: 1; background: #fff; border-radius: 3px; padding: 0 4px; justify-self: center; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; max-width: 100%; }
.ladder .marker.fault { background: #fff3cd; border: 1px solid #d97706; color: #92400e; font-weight: bold; }
.ladder .marker.warning { background: #fde2e0; border: 1px solid #b3261e; color: #b3261e; }
.ladder .marker.note, .ladder .marker.conn { color: #666; }
.ladder .more { color: #777; padding: 4px; }
"#;

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::engine::Failure;

    fn event(ms: u64, device: &str, kind: EventKind) -> Event {
        let peer: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        Event {
            at: Duration::from_millis(ms),
            device: device.into(),
            connection: Some(0),
            peer: Some(peer),
            kind,
        }
    }

    fn failing_result() -> ScenarioResult {
        ScenarioResult {
            name: "tv-<probe>".into(),
            file: PathBuf::from("x.yaml"),
            seed: 9,
            passed: false,
            duration: Duration::from_millis(120),
            failures: vec![Failure {
                what: "expect[1] state tv".into(),
                expected: "info_requests = 2".into(),
                actual: "1".into(),
            }],
            error: None,
            interrupted: false,
            clients: Vec::new(),
            out_dir: None,
            differences: Vec::new(),
            packets: Default::default(),
            pcap_written: false,
            events: vec![
                event(
                    1,
                    "tv",
                    EventKind::Request {
                        index: 0,
                        method: "GET".into(),
                        uri: "/info".into(),
                        protocol: "RTSP/1.0".into(),
                        headers: vec![("CSeq".into(), "1".into())],
                        body: Vec::new(),
                        content_type: None,
                    },
                ),
                event(
                    2,
                    "tv",
                    EventKind::Fault {
                        request: Some(0),
                        fault: 0,
                        action: "edit_plist".into(),
                    },
                ),
                event(
                    3,
                    "tv",
                    EventKind::Response {
                        index: 0,
                        status: 200,
                        reason: "OK".into(),
                        headers: vec![("Content-Type".into(), "text/plain".into())],
                        body: b"hello <world>".to_vec(),
                        content_type: Some("text/plain".into()),
                    },
                ),
                event(
                    4,
                    "tv",
                    EventKind::Warning {
                        message: "odd header".into(),
                    },
                ),
            ],
        }
    }

    #[test]
    fn page_marks_the_failed_expectation_the_struck_exchange_and_escapes() {
        let r = failing_result();
        let mut cx = Context::default();
        cx.expectations.insert(
            r.name.clone(),
            Expectations(vec!["{\"client\":{}}".into(), "{\"state\":{}}".into()]),
        );
        let page = render(std::slice::from_ref(&r), &cx);
        assert!(page.contains("<li class=\"failed-expectation\" data-expect=\"1\">"));
        assert!(page.contains("<li class=\"held\" data-expect=\"0\">"));
        assert!(page.contains("data-method=\"GET\" data-path=\"/info\""));
        assert!(page.contains("class=\"exchange response struck left\" data-status=\"200\""));
        assert!(page.contains("200 OK ⚡ faults[0]"));
        assert!(page.contains("class=\"marker warning\""));
        // The decoded body is in the page, escaped.
        assert!(page.contains("hello &lt;world&gt;"));
        assert!(page.contains("tv-&lt;probe&gt;"));
        assert!(!page.contains("<probe>"));
        // Nothing is fetched from elsewhere.
        for remote in ["<link", " src=", "url(", "@import", "<iframe"] {
            assert!(!page.contains(remote), "{remote}");
        }
        assert_eq!(
            lane_names(&r.events),
            BTreeSet::from(["client 127.0.0.1".to_string(), "tv".to_string()])
        );
    }

    #[test]
    fn a_failure_without_a_known_expectation_is_still_highlighted() {
        let r = failing_result();
        let cx = Context {
            invalid: vec!["bad.yaml:3:1: devices: <missing>".into()],
            ..Context::default()
        };
        let page = render(std::slice::from_ref(&r), &cx);
        assert!(page.contains("0 passed, 1 failed, 1 invalid"));
        assert!(page.contains("invalid: bad.yaml:3:1: devices: &lt;missing&gt;"));
        assert!(page.contains(
            "<div class=\"failed-expectation\"><div class=\"failure\"><b>expect[1] state tv</b>"
        ));
        assert!(page.contains("<tr class=\"fail\""));
    }
}
