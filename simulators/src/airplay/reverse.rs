//! The video API's reverse event channel (docs/protocols/airplay.md, "The reverse event channel"): a client
//! sends `POST /reverse` with `Upgrade: PTTH/1.0`, the device answers `101 Switching Protocols`,
//! and from then on the device is the one sending requests on that connection: a `POST /event`
//! whenever playback changes state, with an XML plist body (`category` `video`, `sessionID`,
//! `state` `loading` | `playing` | `paused` | `stopped`) and the `X-Apple-Session-ID` header.
//!
//! The decision is sans-IO: [`EventChannel::next`] compares the video session now with what the
//! channel last reported, and says which event to send, or when to look again.

use std::time::{Duration, SystemTime};

use plist::{Dictionary, Value};
use serde::Serialize;

use super::video::{PlayState, VideoView};
use crate::wire::{Protocol, Request};

/// How long a fresh channel waits before its first event. python `airplay` 0.0.5 reads the `101`
/// with one `recv` and drops whatever else came in the same read (docs/peers.md), so the first
/// event must not follow the `101` at once.
pub const FIRST_EVENT_AFTER: Duration = Duration::from_millis(250);

/// Content type of an event body, the one python `airplay` accepts (docs/peers.md).
pub const EVENT_CONTENT_TYPE: &str = "text/x-apple-plist+xml";

/// One reversed connection's view of what it reported.
#[derive(Debug, Clone)]
pub struct EventChannel {
    /// `X-Apple-Session-ID` of the `/reverse` request, echoed on every event.
    pub session_header: String,
    /// `sessionID` of the events: this channel's number at the device, from 1.
    pub session_number: u64,
    pub opened_at: SystemTime,
    /// `plays` of the video session already reported with `loading`.
    seen_plays: u64,
    /// The last state reported.
    last: Option<&'static str>,
    /// Events sent on this channel.
    pub pushed: u64,
}

/// What the channel does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Send this state.
    Send(&'static str),
    /// Nothing to say until the state changes, or until this time (the video's end, or the
    /// first event's delay).
    Wait(Option<SystemTime>),
}

/// What the device state shows of the event channels.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EventLog {
    /// Channels opened (`POST /reverse` answered 101).
    pub opened: u64,
    /// States pushed, over all channels, in order (the latest
    /// [`crate::protocol_core::HISTORY_KEPT`]).
    pub pushed: Vec<String>,
    /// Events the client answered 200.
    pub answered: u64,
    /// Channels closed by a `drop_event_channel` fault.
    pub dropped: u64,
}

/// The state name an event carries for a play state (none before anything played). A video that
/// reached its end reports `stopped`, as a receiver does when playback ends.
fn state_name(state: PlayState) -> Option<&'static str> {
    match state {
        PlayState::Idle => None,
        PlayState::Playing => Some("playing"),
        PlayState::Paused => Some("paused"),
        PlayState::Stopped | PlayState::Ended => Some("stopped"),
    }
}

impl EventChannel {
    /// A channel opened at `now` while the video session is `video`: a session that is over or
    /// never began is not reported; one playing or paused is, from `loading`.
    pub fn open(
        session_header: String,
        session_number: u64,
        video: &VideoView,
        now: SystemTime,
    ) -> Self {
        let current = matches!(video.state, PlayState::Playing | PlayState::Paused);
        EventChannel {
            session_header,
            session_number,
            opened_at: now,
            seen_plays: if current {
                video.plays.saturating_sub(1)
            } else {
                video.plays
            },
            last: if current {
                None
            } else {
                state_name(video.state)
            },
            pushed: 0,
        }
    }

    /// The next event for the video session `video` at `now`, marking it reported.
    pub fn next(&mut self, video: &VideoView, now: SystemTime) -> Next {
        let first_at = self.opened_at + FIRST_EVENT_AFTER;
        if now < first_at {
            return Next::Wait(Some(first_at));
        }
        if video.plays > self.seen_plays {
            self.seen_plays = video.plays;
            self.last = Some("loading");
            return Next::Send("loading");
        }
        let state = state_name(video.state);
        if state.is_some() && state != self.last {
            self.last = state;
            return Next::Send(state.unwrap_or("stopped"));
        }
        let end = (video.state == PlayState::Playing && video.rate > 0.0).then(|| {
            let left = ((video.duration - video.position) / video.rate).max(0.0);
            now + Duration::from_secs_f64(left) + Duration::from_millis(1)
        });
        Next::Wait(end)
    }

    /// The `POST /event` request reporting `state`, to the client at `host` (`Host` is required
    /// in every HTTP/1.1 request, RFC 9112 §3.2; Node's HTTP server answers 400 without it).
    pub fn event(&self, state: &str, host: &str) -> Request {
        let mut d = Dictionary::new();
        d.insert("category".into(), "video".into());
        d.insert(
            "sessionID".into(),
            Value::Integer(self.session_number.into()),
        );
        d.insert("state".into(), state.into());
        let mut body = Vec::new();
        if Value::Dictionary(d).to_writer_xml(&mut body).is_err() {
            body.clear();
        }
        let mut r = Request::new("POST", "/event", Protocol::Http11);
        r.headers.set("Host", host);
        r.headers.set("Content-Type", EVENT_CONTENT_TYPE);
        r.headers.set("X-Apple-Session-ID", &self.session_header);
        r.body = body;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::airplay::video::Video;
    use std::io::Cursor;

    fn t(secs: f64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_secs_f64(secs)
    }

    fn play(v: &mut Video, at: f64) {
        let body = b"Content-Location: http://x/a.mp4\nStart-Position: 0\n";
        v.play(body, "text/parameters", 2.0, t(at));
    }

    #[test]
    fn a_channel_reports_loading_playing_paused_and_stopped_in_turn() {
        let mut v = Video::default();
        let mut ch = EventChannel::open("S".into(), 1, &v.view(t(0.0)), t(0.0));
        assert_eq!(ch.next(&v.view(t(0.1)), t(0.1)), Next::Wait(Some(t(0.25))));
        assert_eq!(ch.next(&v.view(t(0.3)), t(0.3)), Next::Wait(None));
        play(&mut v, 1.0);
        assert_eq!(ch.next(&v.view(t(1.0)), t(1.0)), Next::Send("loading"));
        assert_eq!(ch.next(&v.view(t(1.0)), t(1.0)), Next::Send("playing"));
        assert_eq!(
            ch.next(&v.view(t(1.5)), t(1.5)),
            Next::Wait(Some(t(3.0) + Duration::from_millis(1)))
        );
        v.set_rate(Some("0"), t(1.5));
        assert_eq!(ch.next(&v.view(t(1.5)), t(1.5)), Next::Send("paused"));
        v.set_rate(Some("1"), t(1.6));
        assert_eq!(ch.next(&v.view(t(1.6)), t(1.6)), Next::Send("playing"));
        assert_eq!(ch.next(&v.view(t(5.0)), t(5.0)), Next::Send("stopped"));
        assert_eq!(ch.next(&v.view(t(6.0)), t(6.0)), Next::Wait(None));
    }

    #[test]
    fn a_channel_opened_during_playback_reports_it_and_one_opened_after_does_not() {
        let mut v = Video::default();
        play(&mut v, 0.0);
        let mut during = EventChannel::open("S".into(), 1, &v.view(t(0.5)), t(0.5));
        assert_eq!(during.next(&v.view(t(1.0)), t(1.0)), Next::Send("loading"));
        assert_eq!(during.next(&v.view(t(1.0)), t(1.0)), Next::Send("playing"));
        v.stop(t(1.0));
        let mut after = EventChannel::open("S".into(), 2, &v.view(t(1.0)), t(1.0));
        assert_eq!(after.next(&v.view(t(2.0)), t(2.0)), Next::Wait(None));
    }

    #[test]
    fn an_event_is_an_xml_plist_post_with_the_session() {
        let v = Video::default();
        let ch = EventChannel::open("ABC".into(), 3, &v.view(t(0.0)), t(0.0));
        let r = ch.event("playing", "127.0.0.1:50000");
        assert_eq!(r.headers.get("Host"), Some("127.0.0.1:50000"));
        assert_eq!((r.method.as_str(), r.uri.as_str()), ("POST", "/event"));
        assert_eq!(r.headers.get("Content-Type"), Some(EVENT_CONTENT_TYPE));
        assert_eq!(r.headers.get("X-Apple-Session-ID"), Some("ABC"));
        assert!(
            r.body.starts_with(b"<?xml"),
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        let d = Value::from_reader(Cursor::new(&r.body)).unwrap();
        let d = d.as_dictionary().unwrap();
        assert_eq!(d["category"].as_string(), Some("video"));
        assert_eq!(d["state"].as_string(), Some("playing"));
        assert_eq!(d["sessionID"].as_unsigned_integer(), Some(3));
    }
}
