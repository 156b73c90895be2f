//! The transcript of a scenario: every exchange with its time, direction, peer, headers and a
//! summary of its body (binary plists and DMAP decoded, SDP and text shown, other bytes as hex),
//! every fault applied, every warning, and each client's output. Written to
//! `<out>/<scenario>/transcript.txt`, next to `events.jsonl`, `result.json`, the clients' logs and
//! one WAV per audio session.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use airtwin_simulators::event::{Event, EventKind};
use airtwin_simulators::raop::audio::{AudioFormat, AudioSink};
use airtwin_simulators::raop::state::SinkFactory;
use airtwin_simulators::wire::dmap;

use crate::devices::Device;
use crate::engine::ScenarioResult;
use crate::expect::audio_match;
use crate::scenario::Loaded;

/// Writes every report file of one scenario into `dir`.
pub fn write_all(
    dir: &Path,
    loaded: &Loaded,
    devices: &[Device],
    result: &ScenarioResult,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut text = String::new();
    let _ = writeln!(text, "scenario {} ({})", result.name, loaded.file.display());
    write_seed(&mut text, loaded, result);
    write_result(&mut text, result);
    write_differences(&mut text, result);
    write_devices(&mut text, devices);
    text.push('\n');
    for e in &result.events {
        render_event(&mut text, e);
    }
    write_trailer(&mut text, dir, devices, result)?;
    std::fs::write(dir.join("transcript.txt"), text)?;

    let mut jsonl = std::fs::File::create(dir.join("events.jsonl"))?;
    for e in &result.events {
        serde_json::to_writer(&mut jsonl, e)?;
        jsonl.write_all(b"\n")?;
    }
    std::fs::write(dir.join("result.json"), serde_json::to_vec_pretty(result)?)?;

    Ok(())
}

/// Differential mode: each difference from the reference with both sides (docs/differences.md).
fn write_differences(text: &mut String, result: &ScenarioResult) {
    for d in &result.differences {
        let verdict = match &d.accepted {
            Some(why) => format!("accepted: {why}"),
            None => "NOT ACCEPTED".to_string(),
        };
        let _ = writeln!(
            text,
            "difference {} {}: fake {:?}, reference {:?} ({verdict})",
            d.exchange, d.what, d.fake, d.reference
        );
    }
}

/// The report of a long-running `serve`, written as it goes: every event is appended to
/// `transcript.txt` and `events.jsonl` when it is recorded ([`Streamed::sink`]), so memory holds
/// none of them; [`Streamed::finish`] appends the summary `write_all` puts around the events.
pub struct Streamed {
    dir: std::path::PathBuf,
}

impl Streamed {
    /// Creates `dir`, `transcript.txt` (with the scenario and seed) and an empty `events.jsonl`.
    pub fn start(dir: &Path, loaded: &Loaded, seed: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut text = String::new();
        let _ = writeln!(
            text,
            "scenario {} ({})",
            loaded.scenario.name,
            loaded.file.display()
        );
        let _ = writeln!(
            text,
            "seed {seed}  replay: airtwin run {} --seed {seed}",
            loaded.file.display()
        );
        text.push('\n');
        std::fs::write(dir.join("transcript.txt"), text)?;
        std::fs::write(dir.join("events.jsonl"), b"")?;
        Ok(Streamed {
            dir: dir.to_path_buf(),
        })
    }

    /// Appends each event to `transcript.txt` and `events.jsonl`; a write that fails is logged
    /// once and the stream stops (serve goes on).
    pub fn sink(&self) -> std::io::Result<airtwin_simulators::shell::recorder::Sink> {
        let append = |name: &str| {
            std::fs::OpenOptions::new()
                .append(true)
                .open(self.dir.join(name))
        };
        let mut files = Some((append("transcript.txt")?, append("events.jsonl")?));
        let mut line = String::new();
        let mut json = Vec::new();
        Ok(Box::new(move |e: &Event| {
            let Some((text, jsonl)) = files.as_mut() else {
                return;
            };
            line.clear();
            render_event(&mut line, e);
            json.clear();
            let written = serde_json::to_writer(&mut json, e)
                .map_err(std::io::Error::from)
                .and_then(|()| {
                    json.push(b'\n');
                    text.write_all(line.as_bytes())?;
                    jsonl.write_all(&json)
                });
            if let Err(err) = written {
                tracing::warn!(error = %err, "cannot append to the transcript; it stops here");
                files = None;
            }
        }))
    }

    /// The sinks of bounded captures: session N of device D is written as it arrives to
    /// `D-sessionN.wav` in the transcript's folder (the name `write_all` gives it).
    pub fn audio_sinks(&self) -> std::sync::Arc<SinkFactory> {
        let dir = self.dir.clone();
        std::sync::Arc::new(move |device: &str, number: usize, format: &AudioFormat| {
            let path = dir.join(format!("{device}-session{number}.wav"));
            let spec = hound::WavSpec {
                channels: format.channels.max(1),
                sample_rate: format.sample_rate.max(1),
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            };
            match hound::WavWriter::create(&path, spec) {
                Ok(writer) => Some(Box::new(WavStream {
                    writer: Some(writer),
                    path,
                    unflushed: 0,
                }) as Box<dyn AudioSink>),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot write {}; that session's audio is not kept", path.display());
                    None
                }
            }
        })
    }

    /// Appends the devices, their audio sessions and the result to `transcript.txt`, and writes
    /// `result.json` (whose `events` are the ones still in memory).
    pub fn finish(&self, devices: &[Device], result: &ScenarioResult) -> std::io::Result<()> {
        let mut text = String::from("\n");
        write_devices(&mut text, devices);
        write_trailer(&mut text, &self.dir, devices, result)?;
        text.push('\n');
        write_result(&mut text, result);
        std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("transcript.txt"))?
            .write_all(text.as_bytes())?;
        std::fs::write(
            self.dir.join("result.json"),
            serde_json::to_vec_pretty(result)?,
        )
    }
}

/// One audio session's WAV file, written as the capture hands its samples on. The header's
/// sizes are brought up to date every [`WavStream::FLUSH_EVERY`] packets and when the session
/// ends, so the file is readable while serve runs.
struct WavStream {
    writer: Option<hound::WavWriter<std::io::BufWriter<std::fs::File>>>,
    path: std::path::PathBuf,
    unflushed: u32,
}

impl WavStream {
    /// About 2 s of audio at 352 frames per packet and 44.1 kHz.
    const FLUSH_EVERY: u32 = 256;

    fn failed(&mut self, e: hound::Error) {
        tracing::warn!(error = %e, "cannot write {}; it stops here", self.path.display());
        self.writer = None;
    }
}

impl AudioSink for WavStream {
    fn write(&mut self, samples: &[i16]) {
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        let written = samples.iter().try_for_each(|&s| w.write_sample(s));
        let written = written.and_then(|()| {
            self.unflushed += 1;
            if self.unflushed >= Self::FLUSH_EVERY {
                self.unflushed = 0;
                w.flush()?;
            }
            Ok(())
        });
        if let Err(e) = written {
            self.failed(e);
        }
    }

    fn finish(&mut self) {
        if let Some(w) = self.writer.take() {
            if let Err(e) = w.finalize() {
                self.failed(e);
            }
        }
    }
}

fn write_seed(text: &mut String, loaded: &Loaded, result: &ScenarioResult) {
    let _ = writeln!(
        text,
        "seed {}  replay: airtwin run {} --seed {}",
        result.seed,
        loaded.file.display(),
        result.seed
    );
}

fn write_result(text: &mut String, result: &ScenarioResult) {
    let _ = writeln!(
        text,
        "result {}  {:.3}s{}",
        if result.passed { "PASS" } else { "FAIL" },
        result.duration.as_secs_f64(),
        result
            .first_problem()
            .map(|p| format!("  {p}"))
            .unwrap_or_default()
    );
}

fn write_devices(text: &mut String, devices: &[Device]) {
    for d in devices {
        let _ = writeln!(
            text,
            "device {} ({}) {} {:?}",
            d.name,
            d.kind.as_str(),
            d.address,
            d.ports
        );
    }
}

/// What follows the events: each client's output, each audio session (and its WAV), failures.
fn write_trailer(
    text: &mut String,
    dir: &Path,
    devices: &[Device],
    result: &ScenarioResult,
) -> std::io::Result<()> {
    for (name, o) in &result.clients {
        let _ = writeln!(
            *text,
            "\n== client {name}: exit {:?}{}{} in {:.3}s",
            o.exit,
            if o.timed_out {
                ", killed at timeout"
            } else {
                ""
            },
            if o.interrupted { ", interrupted" } else { "" },
            o.duration.as_secs_f64()
        );
        let _ = writeln!(*text, "-- stdout\n{}", o.stdout.trim_end());
        let _ = writeln!(*text, "-- stderr\n{}", o.stderr.trim_end());
        std::fs::write(
            dir.join(format!("client-{name}.log")),
            format!("{}{}", o.stdout, o.stderr),
        )?;
    }
    for d in devices {
        let Some(service) = &d.parts.raop else {
            continue;
        };
        let state = service
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for s in &state.sessions {
            let i = s.number;
            // A bounded capture wrote its WAV as the audio came: it hands on the rest.
            let streamed = s.receiver.capture().is_bounded();
            if streamed {
                s.receiver.finish_stream();
            }
            let st = s.receiver.stats();
            let _ = writeln!(
                *text,
                "\n== audio {} session {i} (connection {}, {}, {}): {} packets, {} frames, {} missing, {} duplicates, {} decode errors, {} sync, {} timing requests",
                d.name,
                s.connection,
                st.codec,
                if s.encrypted { "AES" } else { "clear" },
                st.packets,
                st.frames,
                st.missing,
                st.duplicates,
                st.decode_errors,
                st.sync_packets,
                st.timing_requests
            );
            if let Some(e) = &st.last_error {
                let _ = writeln!(*text, "   last error: {e}");
            }
            let pcm = s.receiver.pcm();
            if !streamed && st.channels > 0 && !pcm.is_empty() {
                let path = dir.join(format!("{}-session{i}.wav", d.name));
                if let Err(e) = audio_match::write_wav(&path, st.channels, st.sample_rate, &pcm) {
                    tracing::warn!(error = %e, "cannot write {}", path.display());
                }
            }
        }
    }
    for f in &result.failures {
        let _ = writeln!(
            *text,
            "\nFAILED {}\n  expected: {}\n  actual:   {}",
            f.what, f.expected, f.actual
        );
    }
    Ok(())
}

fn render_event(out: &mut String, e: &Event) {
    let t = format!("{:>10.3}ms", e.at.as_secs_f64() * 1000.0);
    let who = match (e.connection, e.peer) {
        (Some(c), Some(p)) => format!("{}#{c} {p}", e.device),
        (None, Some(p)) => format!("{} {p}", e.device),
        _ => e.device.clone(),
    };
    match &e.kind {
        EventKind::Listening { service, port } => {
            let _ = writeln!(out, "{t} {who} listening: {service} on port {port}");
        }
        EventKind::Connected => {
            let _ = writeln!(out, "{t} {who} connected");
        }
        EventKind::Closed { reason } => {
            let _ = writeln!(out, "{t} {who} closed: {reason}");
        }
        EventKind::Request {
            method,
            uri,
            protocol,
            headers,
            body,
            content_type,
            ..
        } => {
            let _ = writeln!(out, "{t} {who} → {method} {uri} {protocol}");
            render_headers(out, headers);
            render_body(out, body, content_type.as_deref());
        }
        EventKind::Response {
            status,
            reason,
            headers,
            body,
            content_type,
            ..
        } => {
            let _ = writeln!(out, "{t} {who} ← {status} {reason}");
            render_headers(out, headers);
            render_body(out, body, content_type.as_deref());
        }
        EventKind::Pushed {
            method,
            uri,
            headers,
            body,
            content_type,
            ..
        } => {
            let _ = writeln!(out, "{t} {who} ⇐ pushed {method} {uri}");
            render_headers(out, headers);
            render_body(out, body, content_type.as_deref());
        }
        EventKind::PushAnswered { status, reason, .. } => {
            let _ = writeln!(out, "{t} {who} ⇒ answered {status} {reason}");
        }
        EventKind::Fault {
            request,
            fault,
            action,
        } => {
            let on = request
                .map(|r| format!(" on request {r}"))
                .unwrap_or_default();
            let _ = writeln!(out, "{t} {who} !! FAULT faults[{fault}] {action}{on}");
        }
        EventKind::Warning { message } => {
            let _ = writeln!(out, "{t} {who} !! WARNING {message}");
        }
        EventKind::Note { message } => {
            let _ = writeln!(out, "{t} {who} -- {message}");
        }
    }
}

fn render_headers(out: &mut String, headers: &[(String, String)]) {
    for (n, v) in headers {
        let _ = writeln!(out, "        {n}: {v}");
    }
}

/// A body summary by content type: binary plist → XML-like tree, DMAP → tag tree, text → text,
/// else hex.
pub fn render_body(out: &mut String, body: &[u8], content_type: Option<&str>) {
    if body.is_empty() {
        return;
    }
    // Gzip bodies (DACP answers to `Accept-Encoding: gzip`; the Content-Encoding header is shown
    // above them) are rendered inflated.
    if body.starts_with(&[0x1f, 0x8b]) {
        let mut inflated = Vec::new();
        let mut gz = flate2::read::GzDecoder::new(body);
        if std::io::Read::read_to_end(&mut gz, &mut inflated).is_ok() && !inflated.is_empty() {
            return render_body(out, &inflated, content_type);
        }
    }
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    let text = if body.starts_with(b"bplist00") || ct.contains("apple-binary-plist") {
        match plist::Value::from_reader(std::io::Cursor::new(body)) {
            Ok(v) => {
                let mut xml = Vec::new();
                match v.to_writer_xml(&mut xml) {
                    Ok(()) => format!(
                        "(binary plist, {} bytes)\n{}",
                        body.len(),
                        String::from_utf8_lossy(&xml)
                    ),
                    Err(_) => format!("(binary plist) {v:?}"),
                }
            }
            Err(e) => format!("(undecodable plist: {e})\n{}", hex(body)),
        }
    } else if ct.contains("dmap") {
        match dmap::decode(body) {
            Ok(items) => format!("(DMAP, {} bytes)\n{}", body.len(), dmap::render(&items)),
            Err(e) => format!("(undecodable DMAP: {e})\n{}", hex(body)),
        }
    } else if (ct.starts_with("text/")
        || ct.contains("sdp")
        || ct.contains("json")
        || ct.is_empty())
        && std::str::from_utf8(body).is_ok_and(|s| {
            !s.chars()
                .any(|c| c.is_control() && c != '\r' && c != '\n' && c != '\t')
        })
    {
        String::from_utf8_lossy(body).into_owned()
    } else {
        format!(
            "({} bytes, {})\n{}",
            body.len(),
            if ct.is_empty() {
                "no content type"
            } else {
                &ct
            },
            hex(body)
        )
    };
    for line in text.lines() {
        let _ = writeln!(out, "        | {line}");
    }
}

/// Hex of the first 256 bytes, 32 a line.
fn hex(bytes: &[u8]) -> String {
    let mut s = String::new();
    for chunk in bytes[..bytes.len().min(256)].chunks(32) {
        s.push_str(&airtwin_simulators::wire::hex::encode(chunk));
        s.push('\n');
    }
    if bytes.len() > 256 {
        let _ = write!(s, "… {} more bytes", bytes.len() - 256);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plist_dmap_and_binary_bodies_are_summarised() {
        let mut dict = plist::Dictionary::new();
        dict.insert("initialVolume".into(), plist::Value::Real(-20.0));
        let mut bplist = Vec::new();
        plist::Value::Dictionary(dict)
            .to_writer_binary(&mut bplist)
            .unwrap();
        let mut out = String::new();
        render_body(&mut out, &bplist, Some("application/x-apple-binary-plist"));
        assert!(out.contains("<key>initialVolume</key>"), "{out}");

        let mut out = String::new();
        render_body(
            &mut out,
            b"mlit\0\0\0\x0dminm\0\0\0\x05hello",
            Some("application/x-dmap-tagged"),
        );
        assert!(out.contains("minm: \"hello\""), "{out}");

        let mut out = String::new();
        render_body(
            &mut out,
            &[0x46, 0x50, 0x4c, 0x59, 0, 1],
            Some("application/octet-stream"),
        );
        assert!(out.contains("46504c590001"), "{out}");
    }
}
