//! airtwin's own DACP remote control: logs in to a library with a pairing GUID and runs a list
//! of steps, printing one line per step. It covers what pyatv's DMAP client does not: logout,
//! `/server-info`, `/databases`, `/ctrl-int`, `getproperty`, speakers, explicit revisions of the
//! long poll, and expected failures (`expect:403`, `expect:closed`, `expect:timeout`).

use std::fmt::Write as _;
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use airtwin_simulators::wire::dmap::{self, Value};
use airtwin_simulators::wire::{Protocol, Response};
use anyhow::{bail, Context as _, Result};

use super::rtsp::{RtspClient, RtspError};

/// One step of the remote.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Login,
    Logout,
    ServerInfo,
    Databases,
    CtrlInt,
    /// `playstatusupdate` with revision 0: answered at once.
    PlayStatus,
    /// `playstatusupdate` with the last revision seen: waits for a change.
    WaitUpdate,
    Command(String),
    Get(String),
    Set(String),
    Artwork(Option<String>),
    Speakers,
    SetSpeakers(String),
    Sleep(f64),
    Raw(String),
    Expect(Expected),
}

/// What the next request must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    Status(u16),
    /// The device closed the connection without answering.
    Closed,
    /// No answer within the response timeout.
    Timeout,
}

/// Parses `login`, `cmd:pause`, `sleep:1.5` … (the list is in `DacpClientSpec::steps`).
pub fn parse_steps(steps: &[String]) -> Result<Vec<Step>, String> {
    steps.iter().map(|s| parse_step(s)).collect()
}

fn parse_step(s: &str) -> Result<Step, String> {
    let (name, arg) = match s.split_once(':') {
        Some((n, a)) => (n.trim(), Some(a.trim())),
        None => (s.trim(), None),
    };
    let need = |what: &str| -> Result<String, String> {
        match arg {
            Some(a) if !a.is_empty() => Ok(a.to_string()),
            _ => Err(format!("step {s:?}: {name} needs {what} after ':'")),
        }
    };
    Ok(match name {
        "login" => Step::Login,
        "logout" => Step::Logout,
        "server-info" => Step::ServerInfo,
        "databases" => Step::Databases,
        "ctrl-int" => Step::CtrlInt,
        "playstatus" => Step::PlayStatus,
        "wait-update" => Step::WaitUpdate,
        "cmd" => Step::Command(need("a command (playpause, nextitem …)")?),
        "get" => Step::Get(need("property names")?),
        "set" => {
            let kv = need("PROPERTY=VALUE")?;
            if !kv.contains('=') {
                return Err(format!("step {s:?}: set needs PROPERTY=VALUE"));
            }
            Step::Set(kv)
        }
        "artwork" => Step::Artwork(arg.filter(|a| !a.is_empty()).map(str::to_string)),
        "speakers" => Step::Speakers,
        "setspeakers" => Step::SetSpeakers(need("speaker ids")?),
        "sleep" => {
            let secs: f64 = need("seconds")?
                .parse()
                .map_err(|_| format!("step {s:?}: sleep needs seconds"))?;
            if !(0.0..=600.0).contains(&secs) {
                return Err(format!("step {s:?}: sleep between 0 and 600 seconds"));
            }
            Step::Sleep(secs)
        }
        "raw" => {
            let p = need("a path")?;
            if !p.starts_with('/') {
                return Err(format!("step {s:?}: raw needs a path starting with /"));
            }
            Step::Raw(p)
        }
        "expect" => Step::Expect(match need("a status, closed or timeout")?.as_str() {
            "closed" => Expected::Closed,
            "timeout" => Expected::Timeout,
            n => Expected::Status(
                n.parse()
                    .map_err(|_| format!("step {s:?}: expect needs a status, closed or timeout"))?,
            ),
        }),
        other => {
            return Err(format!(
                "step {s:?}: unknown step {other:?} (login, logout, server-info, databases, \
                 ctrl-int, playstatus, wait-update, cmd:, get:, set:, artwork, speakers, \
                 setspeakers:, sleep:, raw:, expect:)"
            ))
        }
    })
}

/// Options of one run.
#[derive(Debug, Clone)]
pub struct Options {
    pub addr: SocketAddr,
    /// `0x` and 16 hex digits.
    pub guid: String,
    pub steps: Vec<Step>,
    pub gzip: bool,
    pub response_timeout: Duration,
    /// Folder relative artwork files are written to.
    pub out: PathBuf,
}

impl super::InProcess for Options {
    async fn run(&self, log: &mut String) -> Result<()> {
        run(self, log).await
    }
}

struct Remote<'a> {
    opts: &'a Options,
    conn: Option<RtspClient>,
    session: u32,
    revision: u32,
}

enum Got {
    Answer(Response),
    Closed,
    Timeout,
}

impl Remote<'_> {
    async fn send(&mut self, path: &str, session: bool) -> Result<Got> {
        let uri = if session {
            let sep = if path.contains('?') { '&' } else { '?' };
            format!("{path}{sep}session-id={}", self.session)
        } else {
            path.to_string()
        };
        if self.conn.is_none() {
            let mut c = RtspClient::connect(self.opts.addr, self.opts.response_timeout).await?;
            // The headers pyatv's DMAP client sends (its daap.py).
            c.common.set("Client-DAAP-Version", "3.13");
            c.common.set("Viewer-Only-Client", "1");
            c.common.set("User-Agent", "Remote/1021");
            if self.opts.gzip {
                c.common.set("Accept-Encoding", "gzip");
            }
            self.conn = Some(c);
        }
        let conn = self.conn.as_mut().expect("connected");
        let host = self.opts.addr.to_string();
        let r = conn
            .request_with("GET", &uri, Protocol::Http11, &[("Host", &host)], None)
            .await;
        match r {
            Ok(resp) => Ok(Got::Answer(resp)),
            Err(RtspError::Closed) | Err(RtspError::Io(_)) => {
                self.conn = None;
                Ok(Got::Closed)
            }
            Err(RtspError::Timeout(_)) => {
                self.conn = None;
                Ok(Got::Timeout)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The body, gunzipped when the device compressed it.
fn body(resp: &Response) -> Result<Vec<u8>> {
    if resp
        .headers
        .get("Content-Encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"))
    {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(resp.body.as_slice())
            .read_to_end(&mut out)
            .context("gzip body does not inflate")?;
        Ok(out)
    } else {
        Ok(resp.body.clone())
    }
}

fn dmap_body(resp: &Response) -> Result<Vec<dmap::Item>> {
    let bytes = body(resp)?;
    dmap::decode(&bytes).context("body is not DMAP")
}

fn int(items: &[dmap::Item], path: &[&[u8; 4]]) -> Option<i128> {
    dmap::first(items, path).and_then(Value::as_int)
}

fn text<'a>(items: &'a [dmap::Item], path: &[&[u8; 4]]) -> &'a str {
    dmap::first(items, path)
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// One line describing a `cmst` answer.
fn describe_cmst(items: &[dmap::Item]) -> Result<(u32, String)> {
    let rev = int(items, &[b"cmst", b"cmsr"]).context("cmst has no cmsr")? as u32;
    let caps = int(items, &[b"cmst", b"caps"]).context("cmst has no caps")?;
    let state = match caps {
        2 => "stopped",
        3 => "paused",
        4 => "playing",
        _ => "other",
    };
    let total = int(items, &[b"cmst", b"cast"]).unwrap_or(0);
    let remaining = int(items, &[b"cmst", b"cant"]).unwrap_or(0);
    let line = format!(
        "revision {rev} state {state} title {:?} artist {:?} album {:?} genre {:?} position {}/{}s shuffle {} repeat {}",
        text(items, &[b"cmst", b"cann"]),
        text(items, &[b"cmst", b"cana"]),
        text(items, &[b"cmst", b"canl"]),
        text(items, &[b"cmst", b"cang"]),
        (total - remaining) / 1000,
        total / 1000,
        int(items, &[b"cmst", b"cash"]).unwrap_or(0),
        int(items, &[b"cmst", b"carp"]).unwrap_or(0),
    );
    Ok((rev, line))
}

/// The remote's steps. Writes one line per step to `log`.
pub async fn run(opts: &Options, log: &mut String) -> Result<()> {
    let mut r = Remote {
        opts,
        conn: None,
        session: 0,
        revision: 0,
    };
    let mut expect: Option<Expected> = None;
    for step in &opts.steps {
        let (label, path, session): (String, String, bool) = match step {
            Step::Sleep(s) => {
                tokio::time::sleep(Duration::from_secs_f64(*s)).await;
                let _ = writeln!(log, "sleep {s}s");
                continue;
            }
            Step::Expect(e) => {
                expect = Some(*e);
                continue;
            }
            Step::Login => (
                "login".into(),
                format!("/login?pairing-guid={}&hasFP=1", opts.guid),
                false,
            ),
            Step::Logout => ("logout".into(), "/logout".into(), true),
            Step::ServerInfo => ("server-info".into(), "/server-info".into(), false),
            Step::Databases => ("databases".into(), "/databases".into(), true),
            Step::CtrlInt => ("ctrl-int".into(), "/ctrl-int".into(), true),
            Step::PlayStatus => (
                "playstatus".into(),
                "/ctrl-int/1/playstatusupdate?revision-number=0".into(),
                true,
            ),
            Step::WaitUpdate => (
                "wait-update".into(),
                format!(
                    "/ctrl-int/1/playstatusupdate?revision-number={}",
                    r.revision
                ),
                true,
            ),
            Step::Command(c) => (
                format!("cmd {c}"),
                format!("/ctrl-int/1/{c}?prompt-id=0"),
                true,
            ),
            Step::Get(p) => (
                format!("get {p}"),
                format!("/ctrl-int/1/getproperty?properties={p}"),
                true,
            ),
            Step::Set(kv) => (
                format!("set {kv}"),
                format!("/ctrl-int/1/setproperty?{kv}"),
                true,
            ),
            Step::Artwork(_) => (
                "artwork".into(),
                "/ctrl-int/1/nowplayingartwork?mw=320&mh=320".into(),
                true,
            ),
            Step::Speakers => ("speakers".into(), "/ctrl-int/1/getspeakers".into(), true),
            Step::SetSpeakers(ids) => (
                format!("setspeakers {ids}"),
                format!("/ctrl-int/1/setspeakers?speaker-id={ids}"),
                true,
            ),
            Step::Raw(p) => (format!("raw {p}"), p.clone(), true),
        };
        let got = r.send(&path, session).await?;
        let wanted = expect.take();
        let resp = match (got, wanted) {
            (Got::Closed, Some(Expected::Closed)) => {
                let _ = writeln!(log, "{label}: closed without an answer, as expected");
                continue;
            }
            (Got::Timeout, Some(Expected::Timeout)) => {
                let _ = writeln!(log, "{label}: no answer, as expected");
                continue;
            }
            (Got::Closed, _) => {
                bail!("{label}: the device closed the connection without an answer")
            }
            (Got::Timeout, _) => bail!(
                "{label}: no answer within {:.1}s",
                opts.response_timeout.as_secs_f64()
            ),
            (Got::Answer(resp), Some(Expected::Status(s))) if resp.status == s => {
                let _ = writeln!(log, "{label}: {} {}, as expected", resp.status, resp.reason);
                continue;
            }
            (Got::Answer(resp), Some(want)) => {
                bail!(
                    "{label}: expected {want:?}, got {} {}",
                    resp.status,
                    resp.reason
                )
            }
            (Got::Answer(resp), None) => resp,
        };
        let ok = (200..300).contains(&resp.status);
        if matches!(step, Step::Raw(_)) {
            let _ = writeln!(log, "{label}: {} {}", resp.status, resp.reason);
            continue;
        }
        if !ok {
            let why = String::from_utf8_lossy(&body(&resp).unwrap_or_default())
                .trim()
                .to_string();
            bail!("{label}: HTTP {} {} {why}", resp.status, resp.reason);
        }
        match step {
            Step::Login => {
                let items = dmap_body(&resp)?;
                r.session =
                    int(&items, &[b"mlog", b"mlid"]).context("login: mlog has no mlid")? as u32;
                let _ = writeln!(log, "login: session {}", r.session);
            }
            Step::PlayStatus | Step::WaitUpdate => {
                let (rev, line) = describe_cmst(&dmap_body(&resp)?)?;
                r.revision = rev;
                let _ = writeln!(log, "{label}: {line}");
            }
            Step::ServerInfo => {
                let items = dmap_body(&resp)?;
                let _ = writeln!(
                    log,
                    "server-info: name {:?} session timeout {}s",
                    text(&items, &[b"msrv", b"minm"]),
                    int(&items, &[b"msrv", b"mstm"]).unwrap_or(0)
                );
            }
            Step::Get(_) => {
                let items = dmap_body(&resp)?;
                let inner = dmap::first(&items, &[b"cmgt"])
                    .and_then(Value::children)
                    .context("getproperty: no cmgt")?;
                let parts: Vec<String> = inner
                    .iter()
                    .filter(|i| &i.tag != b"mstt")
                    .map(|i| match &i.value {
                        Value::Int(v) => format!("{}={v}", i.tag_str()),
                        Value::Str(s) => format!("{}={s:?}", i.tag_str()),
                        _ => i.tag_str(),
                    })
                    .collect();
                let _ = writeln!(log, "{label}: {}", parts.join(" "));
            }
            Step::Artwork(file) => {
                let bytes = body(&resp)?;
                let png = bytes.starts_with(b"\x89PNG\r\n\x1a\n");
                let _ = writeln!(
                    log,
                    "artwork: {} bytes {}{}",
                    bytes.len(),
                    resp.headers.get("Content-Type").unwrap_or("(no type)"),
                    if png { " (PNG)" } else { "" }
                );
                if let (Some(f), false) = (file, bytes.is_empty()) {
                    let path = opts.out.join(f);
                    std::fs::write(&path, &bytes)
                        .with_context(|| format!("writing {}", path.display()))?;
                }
            }
            Step::Speakers => {
                let items = dmap_body(&resp)?;
                let list = dmap::first(&items, &[b"casp"])
                    .and_then(Value::children)
                    .unwrap_or_default();
                let names: Vec<String> = list
                    .iter()
                    .filter(|i| &i.tag == b"mdcl")
                    .filter_map(|i| i.value.children())
                    .map(|d| {
                        format!(
                            "{:?}(id {}, {}, volume {})",
                            text(d, &[b"minm"]),
                            int(d, &[b"msma"]).unwrap_or(0),
                            if int(d, &[b"caia"]) == Some(1) {
                                "active"
                            } else {
                                "inactive"
                            },
                            int(d, &[b"cmvo"]).unwrap_or(0)
                        )
                    })
                    .collect();
                let _ = writeln!(log, "speakers: {}", names.join(", "));
            }
            Step::Databases | Step::CtrlInt => {
                let items = dmap_body(&resp)?;
                let _ = writeln!(log, "{label}: {} item(s)", items.len());
            }
            _ => {
                let _ = writeln!(log, "{label}: {} {}", resp.status, resp.reason);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_parse_and_mistakes_say_why() {
        let steps: Vec<String> = [
            "login",
            "cmd:pause",
            "sleep:0.5",
            "expect:403",
            "set:dmcp.volume=3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let parsed = parse_steps(&steps).unwrap();
        assert_eq!(parsed[1], Step::Command("pause".into()));
        assert_eq!(parsed[3], Step::Expect(Expected::Status(403)));
        for bad in [
            "fly",
            "cmd",
            "sleep:x",
            "set:novalue",
            "raw:nopath",
            "expect:soon",
        ] {
            assert!(parse_steps(&[bad.to_string()]).is_err(), "{bad}");
        }
    }
}
