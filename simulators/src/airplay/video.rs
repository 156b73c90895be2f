//! The classic AirPlay video API, HTTP/1.1 on the AirPlay port (7000 on a real Apple TV), on a
//! simulated clock: the device never fetches the URL; it plays `duration` seconds of nothing,
//! with the time passed in by the caller.
//!
//! - `POST /play`: binary plist (`Content-Location`, `Start-Position` in seconds,
//!   `X-Apple-Session-ID`), as pyatv sends it (docs/peers.md), or `text/parameters`
//!   (`Content-Location: URL`, `Start-Position: FRACTION` of the duration);
//! - `GET /playback-info`: an XML plist (`text/x-apple-plist+xml`) with `duration`, `position`,
//!   `rate`, `readyToPlay` … while something plays or is paused; without `duration` otherwise
//!   (pyatv polls it every second and stops when `duration` goes away);
//! - `GET /scrub` (`duration: D\nposition: P`), `POST /scrub?position=SECONDS`;
//! - `POST /rate?value=R` (0 pauses, 1 plays);
//! - `POST /stop`;
//! - `GET /server-info`: an XML plist with the device's identity (docs/protocols/airplay.md);
//! - `POST /getProperty?NAME`, `PUT /setProperty?NAME` (binary plist `{value: …}`): binary plist
//!   `{errorCode: 0, value: …}`; `playbackAccessLog` and `playbackErrorLog` are arrays of
//!   dictionaries (docs/protocols/airplay.md, "Properties").
//!
//! Every change of the play state is reported on the event channel (`events.rs`).

use std::io::Cursor;
use std::time::SystemTime;

use plist::{Dictionary, Value};
use serde::Serialize;

/// Where playback stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PlayState {
    /// Nothing was ever played.
    #[default]
    Idle,
    Playing,
    Paused,
    /// `POST /stop`.
    Stopped,
    /// The clock reached the duration.
    Ended,
}

/// The device's one video session.
#[derive(Debug, Clone, Default)]
pub struct Video {
    /// Values set with `PUT /setProperty`, by name.
    pub properties: std::collections::BTreeMap<String, Value>,
    pub url: Option<String>,
    pub session_id: Option<String>,
    pub state: PlayState,
    pub duration: f64,
    pub rate: f64,
    /// Position at `anchor`.
    anchor_position: f64,
    anchor: Option<SystemTime>,
    pub plays: u64,
}

/// What the device state shows of the video session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VideoView {
    pub url: Option<String>,
    pub session_id: Option<String>,
    pub state: PlayState,
    pub duration: f64,
    pub position: f64,
    pub rate: f64,
    pub plays: u64,
}

/// An answer of the video API.
#[derive(Debug, Clone, PartialEq)]
pub enum VideoReply {
    /// 200 with a binary plist.
    Plist(Dictionary),
    /// 200 with `text/parameters`.
    Text(String),
    /// 200 without a body.
    Ok,
    /// A refusal with its reason.
    Refuse(u16, String),
}

impl Video {
    /// The position at `now`, whole milliseconds, never past the duration.
    pub fn position(&self, now: SystemTime) -> f64 {
        let moved = match (self.state, self.anchor) {
            (PlayState::Playing, Some(at)) => {
                now.duration_since(at).unwrap_or_default().as_secs_f64() * self.rate
            }
            _ => 0.0,
        };
        let p = (self.anchor_position + moved).clamp(0.0, self.duration.max(0.0));
        (p * 1000.0).round() / 1000.0
    }

    /// Moves a playing session to `Ended` once the clock reaches the duration.
    pub fn settle(&mut self, now: SystemTime) {
        if self.state == PlayState::Playing && self.position(now) >= self.duration {
            self.anchor_position = self.duration;
            self.anchor = Some(now);
            self.state = PlayState::Ended;
            self.rate = 0.0;
        }
    }

    fn rebase(&mut self, now: SystemTime, position: f64) {
        self.anchor_position = position.clamp(0.0, self.duration.max(0.0));
        self.anchor = Some(now);
    }

    pub fn view(&self, now: SystemTime) -> VideoView {
        let mut v = self.clone();
        v.settle(now);
        VideoView {
            url: v.url.clone(),
            session_id: v.session_id.clone(),
            state: v.state,
            duration: v.duration,
            position: v.position(now),
            rate: v.rate,
            plays: v.plays,
        }
    }

    /// `POST /play`.
    pub fn play(
        &mut self,
        body: &[u8],
        content_type: &str,
        duration: f64,
        now: SystemTime,
    ) -> VideoReply {
        let (url, start, fraction) = if body.starts_with(b"bplist") {
            let Ok(Value::Dictionary(d)) = Value::from_reader(Cursor::new(body)) else {
                return VideoReply::Refuse(400, "/play body is not a plist dictionary".into());
            };
            let url = d
                .get("Content-Location")
                .and_then(Value::as_string)
                .map(str::to_string);
            let start = d.get("Start-Position").and_then(number).unwrap_or(0.0);
            self.session_id = d
                .get("X-Apple-Session-ID")
                .and_then(Value::as_string)
                .map(str::to_string);
            (url, start, false)
        } else if content_type.starts_with("text/parameters") || !body.is_empty() {
            let text = String::from_utf8_lossy(body);
            let mut url = None;
            let mut start = 0.0;
            for line in text.lines() {
                match line.split_once(':') {
                    Some(("Content-Location", v)) => url = Some(v.trim().to_string()),
                    Some(("Start-Position", v)) => start = v.trim().parse().unwrap_or(0.0),
                    _ => {}
                }
            }
            (url, start, true)
        } else {
            (None, 0.0, false)
        };
        let Some(url) = url.filter(|u| !u.is_empty()) else {
            return VideoReply::Refuse(400, "/play without Content-Location".into());
        };
        if !start.is_finite() || start < 0.0 {
            return VideoReply::Refuse(400, format!("Start-Position {start} is not a position"));
        }
        self.url = Some(url);
        self.duration = duration;
        self.state = PlayState::Playing;
        self.rate = 1.0;
        self.plays += 1;
        let start = if fraction { start * duration } else { start };
        self.rebase(now, start);
        VideoReply::Ok
    }

    /// `GET /playback-info`.
    pub fn playback_info(&mut self, now: SystemTime) -> VideoReply {
        self.settle(now);
        let mut d = Dictionary::new();
        if !matches!(self.state, PlayState::Playing | PlayState::Paused) {
            d.insert("readyToPlay".into(), Value::Boolean(false));
            return VideoReply::Plist(d);
        }
        let range = |start: f64, duration: f64| {
            let mut r = Dictionary::new();
            r.insert("start".into(), Value::Real(start));
            r.insert("duration".into(), Value::Real(duration));
            Value::Array(vec![Value::Dictionary(r)])
        };
        d.insert("duration".into(), Value::Real(self.duration));
        d.insert("position".into(), Value::Real(self.position(now)));
        d.insert("rate".into(), Value::Real(self.rate));
        d.insert("readyToPlay".into(), Value::Boolean(true));
        d.insert("playbackBufferEmpty".into(), Value::Boolean(false));
        d.insert("playbackBufferFull".into(), Value::Boolean(true));
        d.insert("playbackLikelyToKeepUp".into(), Value::Boolean(true));
        d.insert("loadedTimeRanges".into(), range(0.0, self.duration));
        d.insert("seekableTimeRanges".into(), range(0.0, self.duration));
        VideoReply::Plist(d)
    }

    /// `GET /scrub`.
    pub fn scrub_get(&mut self, now: SystemTime) -> VideoReply {
        self.settle(now);
        let playing = matches!(self.state, PlayState::Playing | PlayState::Paused);
        let (d, p) = if playing {
            (self.duration, self.position(now))
        } else {
            (0.0, 0.0)
        };
        VideoReply::Text(format!("duration: {d:.6}\nposition: {p:.6}\n"))
    }

    /// `POST /scrub?position=SECONDS`.
    pub fn scrub_set(&mut self, position: Option<&str>, now: SystemTime) -> VideoReply {
        let Some(p) = position.and_then(|p| p.parse::<f64>().ok()) else {
            return VideoReply::Refuse(400, "POST /scrub needs ?position=SECONDS".into());
        };
        if !p.is_finite() || p < 0.0 {
            return VideoReply::Refuse(400, format!("position {p} is not a position"));
        }
        self.settle(now);
        if !matches!(self.state, PlayState::Playing | PlayState::Paused) {
            return VideoReply::Refuse(400, "nothing is playing".into());
        }
        self.rebase(now, p);
        VideoReply::Ok
    }

    /// `POST /rate?value=R`.
    pub fn set_rate(&mut self, value: Option<&str>, now: SystemTime) -> VideoReply {
        let Some(r) = value.and_then(|v| v.parse::<f64>().ok()) else {
            return VideoReply::Refuse(400, "POST /rate needs ?value=RATE".into());
        };
        if !r.is_finite() || r < 0.0 {
            return VideoReply::Refuse(400, format!("rate {r} is not a rate"));
        }
        self.settle(now);
        if !matches!(self.state, PlayState::Playing | PlayState::Paused) {
            return VideoReply::Refuse(400, "nothing is playing".into());
        }
        let here = self.position(now);
        self.rate = r;
        self.state = if r == 0.0 {
            PlayState::Paused
        } else {
            PlayState::Playing
        };
        self.rebase(now, here);
        VideoReply::Ok
    }

    /// `POST /stop`.
    pub fn stop(&mut self, now: SystemTime) -> VideoReply {
        self.settle(now);
        let here = self.position(now);
        if matches!(self.state, PlayState::Playing | PlayState::Paused) {
            self.state = PlayState::Stopped;
        }
        self.rate = 0.0;
        self.rebase(now, here);
        VideoReply::Ok
    }
}

impl Video {
    /// `POST /getProperty?NAME`: `playbackAccessLog` (one entry per URL played, with the
    /// `uri`, the start time and the seconds watched), `playbackErrorLog` (no errors: the device
    /// never fetches the URL), or a value set before; another name is refused.
    pub fn get_property(&mut self, name: &str, now: SystemTime) -> VideoReply {
        self.settle(now);
        let value = match name {
            "playbackAccessLog" => {
                let mut entries = Vec::new();
                if let Some(url) = &self.url {
                    let mut e = Dictionary::new();
                    e.insert("uri".into(), url.clone().into());
                    e.insert("c-duration-watched".into(), Value::Real(self.position(now)));
                    e.insert("c-start-time".into(), Value::Real(0.0));
                    e.insert("bytes".into(), Value::Integer(0.into()));
                    e.insert("c-frames-dropped".into(), Value::Integer(0.into()));
                    e.insert("c-stalls".into(), Value::Integer(0.into()));
                    entries.push(Value::Dictionary(e));
                }
                Value::Array(entries)
            }
            "playbackErrorLog" => Value::Array(Vec::new()),
            other => match self.properties.get(other) {
                Some(v) => v.clone(),
                None => return VideoReply::Refuse(404, format!("no property {other:?}")),
            },
        };
        let mut d = Dictionary::new();
        d.insert("errorCode".into(), Value::Integer(0.into()));
        d.insert("value".into(), value);
        VideoReply::Plist(d)
    }

    /// `PUT /setProperty?NAME` with a binary plist `{value: …}` (or an empty body).
    pub fn set_property(&mut self, name: &str, body: &[u8]) -> VideoReply {
        if name.is_empty() {
            return VideoReply::Refuse(400, "PUT /setProperty needs ?NAME".into());
        }
        let value = if body.is_empty() {
            Value::Boolean(true)
        } else {
            match Value::from_reader(Cursor::new(body)) {
                Ok(Value::Dictionary(mut d)) => d.remove("value").unwrap_or(Value::Dictionary(d)),
                Ok(other) => other,
                Err(e) => {
                    return VideoReply::Refuse(400, format!("setProperty body is no plist: {e}"))
                }
            }
        };
        self.properties.insert(name.to_string(), value);
        let mut d = Dictionary::new();
        d.insert("errorCode".into(), Value::Integer(0.into()));
        VideoReply::Plist(d)
    }
}

fn number(v: &Value) -> Option<f64> {
    v.as_real()
        .or_else(|| v.as_signed_integer().map(|i| i as f64))
        .or_else(|| v.as_unsigned_integer().map(|i| i as f64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(secs: f64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_secs_f64(secs)
    }

    fn play_body(url: &str, start: f64) -> Vec<u8> {
        let mut d = Dictionary::new();
        d.insert("Content-Location".into(), url.into());
        d.insert("Start-Position".into(), Value::Real(start));
        d.insert("X-Apple-Session-ID".into(), "S-1".into());
        let mut out = Vec::new();
        Value::Dictionary(d).to_writer_binary(&mut out).unwrap();
        out
    }

    fn info(v: &mut Video, at: f64) -> Dictionary {
        match v.playback_info(t(at)) {
            VideoReply::Plist(d) => d,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn playback_follows_the_clock_until_the_duration() {
        let mut v = Video::default();
        let ctype = "application/x-apple-binary-plist";
        assert_eq!(
            v.play(&play_body("http://x/a.mp4", 1.0), ctype, 5.0, t(0.0)),
            VideoReply::Ok
        );
        assert_eq!(v.session_id.as_deref(), Some("S-1"));
        let d = info(&mut v, 2.5);
        assert_eq!(d["position"].as_real(), Some(3.5));
        assert_eq!(d["duration"].as_real(), Some(5.0));
        assert_eq!(d["rate"].as_real(), Some(1.0));
        let d = info(&mut v, 10.0);
        assert!(d.get("duration").is_none(), "{d:?}");
        assert_eq!(v.state, PlayState::Ended);
        assert_eq!(v.view(t(11.0)).position, 5.0);
    }

    #[test]
    fn rate_pauses_scrub_seeks_and_stop_stops() {
        let mut v = Video::default();
        v.play(
            b"Content-Location: http://x/b.mov\nStart-Position: 0.5\n",
            "text/parameters",
            10.0,
            t(0.0),
        );
        assert_eq!(v.position(t(1.0)), 6.0);
        assert_eq!(v.set_rate(Some("0.000000"), t(1.0)), VideoReply::Ok);
        assert_eq!(v.state, PlayState::Paused);
        assert_eq!(v.position(t(4.0)), 6.0);
        assert_eq!(v.scrub_set(Some("2.25"), t(4.0)), VideoReply::Ok);
        assert_eq!(
            v.scrub_get(t(9.0)),
            VideoReply::Text("duration: 10.000000\nposition: 2.250000\n".into())
        );
        v.set_rate(Some("1"), t(9.0));
        assert_eq!(v.position(t(10.0)), 3.25);
        v.stop(t(10.0));
        assert_eq!(v.state, PlayState::Stopped);
        assert!(info(&mut v, 11.0).get("duration").is_none());
        assert_eq!(v.view(t(20.0)).position, 3.25);
    }

    #[test]
    fn bad_requests_are_refused_with_a_reason() {
        let mut v = Video::default();
        assert!(matches!(
            v.play(b"", "", 5.0, t(0.0)),
            VideoReply::Refuse(400, _)
        ));
        assert!(matches!(
            v.play(b"bplist00garbage", "", 5.0, t(0.0)),
            VideoReply::Refuse(400, _)
        ));
        assert!(matches!(
            v.scrub_set(None, t(0.0)),
            VideoReply::Refuse(400, _)
        ));
        assert!(matches!(
            v.set_rate(Some("x"), t(0.0)),
            VideoReply::Refuse(400, _)
        ));
        assert!(matches!(
            v.scrub_set(Some("1"), t(0.0)),
            VideoReply::Refuse(400, _)
        ));
    }

    #[test]
    fn properties_answer_the_logs_and_what_was_set() {
        let mut v = Video::default();
        let VideoReply::Plist(d) = v.get_property("playbackAccessLog", t(0.0)) else {
            panic!()
        };
        assert_eq!(d["value"].as_array().map(Vec::len), Some(0));
        v.play(&play_body("http://x/a.mp4", 0.0), "", 5.0, t(0.0));
        let VideoReply::Plist(d) = v.get_property("playbackAccessLog", t(1.5)) else {
            panic!()
        };
        let entry = d["value"].as_array().unwrap()[0].as_dictionary().unwrap();
        assert_eq!(entry["uri"].as_string(), Some("http://x/a.mp4"));
        assert_eq!(entry["c-duration-watched"].as_real(), Some(1.5));
        assert_eq!(d["errorCode"].as_signed_integer(), Some(0));
        assert!(matches!(
            v.get_property("forwardEndTime", t(2.0)),
            VideoReply::Refuse(404, _)
        ));
        let mut body = Vec::new();
        let mut set = Dictionary::new();
        set.insert("value".into(), Value::Real(4.0));
        Value::Dictionary(set).to_writer_binary(&mut body).unwrap();
        assert!(matches!(
            v.set_property("forwardEndTime", &body),
            VideoReply::Plist(_)
        ));
        let VideoReply::Plist(d) = v.get_property("forwardEndTime", t(2.0)) else {
            panic!()
        };
        assert_eq!(d["value"].as_real(), Some(4.0));
        assert!(matches!(
            v.set_property("x", b"not a plist"),
            VideoReply::Refuse(400, _)
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_play_bodies_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let mut v = Video::default();
            let _ = v.play(&body, "text/parameters", 3.0, t(0.0));
            let _ = v.playback_info(t(1.0));
        }
    }
}
