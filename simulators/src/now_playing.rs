//! The one now-playing model of a device, whatever protocol reads or changes it: what is playing
//! (by the scenario's timeline, at t=2 s the track changes), play state, position, shuffle,
//! repeat and volume. DACP (`/ctrl-int`, docs/protocols/dacp.md) and MRP (`SEND_COMMAND`,
//! `SET_STATE`, docs/protocols/mrp.md) share one [`Model`]: a command from either changes the same
//! [`Player`], raises its revision (what `playstatusupdate` long polls wait on) and bumps the
//! model's [`Changes`], which wakes DACP long polls and MRP `SET_STATE` pushes alike.
//!
//! Sans-IO: the time is passed in. Position advances with the time while playing.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::protocol_core::{remember, Changes};
use crate::wire::dmap::Item;

/// Play state as `caps` carries it: 2 stopped, 3 paused, 4 playing (docs/protocols/dacp.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlayState {
    Stopped,
    Paused,
    #[default]
    Playing,
}

impl PlayState {
    pub fn caps(self) -> u8 {
        match self {
            PlayState::Stopped => 2,
            PlayState::Paused => 3,
            PlayState::Playing => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PlayState::Stopped => "stopped",
            PlayState::Paused => "paused",
            PlayState::Playing => "playing",
        }
    }
}

/// One track of the library's queue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Track {
    pub title: String,
    #[serde(default)]
    pub artist: String,
    #[serde(default)]
    pub album: String,
    #[serde(default)]
    pub genre: String,
    /// Length in seconds.
    #[serde(default = "default_duration")]
    pub duration: f64,
    /// PNG served by `nowplayingartwork` while this track plays (path relative to the scenario).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artwork: Option<String>,
}

fn default_duration() -> f64 {
    180.0
}

/// A scripted change at a time after the device started. Every field set applies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimelineStep {
    /// Seconds after the device started.
    pub at: f64,
    /// Switch to this track (index into `tracks`), position 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<usize>,
    /// Switch to the next track, position 0.
    #[serde(default)]
    pub next: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<PlayState>,
    /// Seconds into the track.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<f64>,
}

/// The now-playing state a scenario starts a library with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NowPlaying {
    /// The queue; empty means nothing to play (state stopped).
    #[serde(default = "default_tracks")]
    pub tracks: Vec<Track>,
    /// Index of the current track.
    #[serde(default)]
    pub track: usize,
    #[serde(default)]
    pub state: PlayState,
    /// Seconds into the current track.
    #[serde(default)]
    pub position: f64,
    #[serde(default)]
    pub shuffle: bool,
    /// `carp`: 0 off, 1 one track, 2 all.
    #[serde(default)]
    pub repeat: u8,
    /// 0..100.
    #[serde(default = "default_volume")]
    pub volume: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<TimelineStep>,
}

fn default_volume() -> f64 {
    50.0
}

fn default_tracks() -> Vec<Track> {
    vec![Track {
        title: "Test Tone".into(),
        artist: "airtwin".into(),
        album: "Loopback".into(),
        genre: "Test".into(),
        duration: 180.0,
        artwork: None,
    }]
}

impl Default for NowPlaying {
    fn default() -> Self {
        NowPlaying {
            tracks: default_tracks(),
            track: 0,
            state: PlayState::Playing,
            position: 0.0,
            shuffle: false,
            repeat: 0,
            volume: default_volume(),
            timeline: Vec::new(),
        }
    }
}

/// The now-playing state one device shares between its protocols.
#[derive(Debug)]
pub struct Model {
    player: Mutex<Player>,
    /// Bumped on every change, by whichever protocol made it.
    pub changes: Changes,
}

impl Model {
    pub fn new(player: Player) -> Self {
        Model {
            player: Mutex::new(player),
            changes: Changes::default(),
        }
    }

    /// The player, for a caller that reads or changes it and bumps [`Model::changes`] itself.
    pub fn lock(&self) -> MutexGuard<'_, Player> {
        self.player.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the player brought to `now` (timeline steps due are applied); bumps
    /// [`Model::changes`] when the player's revision moved, so every protocol's waiters wake.
    pub fn with<R>(&self, now: SystemTime, f: impl FnOnce(&mut Player) -> R) -> R {
        let mut p = self.lock();
        let before = p.revision;
        let stepped = p.advance(now);
        let r = f(&mut p);
        let moved = stepped || p.revision != before;
        drop(p);
        if moved {
            self.changes.bump();
        }
        r
    }
}

/// Volume step of `volumeup` / `volumedown`.
pub const VOLUME_STEP: f64 = 5.0;

/// The player: the scenario's now-playing state as it evolves.
#[derive(Debug, Clone)]
pub struct Player {
    tracks: Vec<Track>,
    /// PNG bytes per track, loaded by whoever built the player.
    artwork: Vec<Option<Vec<u8>>>,
    /// The library item id of each queued track (`canp`); 1.. for the scenario's queue, whose
    /// tracks are the default library (docs/protocols/daap.md).
    ids: Vec<u32>,
    pub track: usize,
    pub state: PlayState,
    /// Position at `anchor`, in milliseconds.
    pos_ms: u64,
    anchor: SystemTime,
    pub shuffle: bool,
    pub repeat: u8,
    pub volume: f64,
    /// `cmsr`: raised on every change; starts at 1 so that a poll with revision 0 answers at once.
    pub revision: u32,
    timeline: Vec<(SystemTime, TimelineStep)>,
    next_step: usize,
    /// Commands received, in order (`pause`, `setproperty dmcp.volume=20` …), the latest
    /// [`crate::protocol_core::HISTORY_KEPT`].
    pub commands: Vec<String>,
}

impl Player {
    pub fn new(cfg: &NowPlaying, artwork: Vec<Option<Vec<u8>>>, start: SystemTime) -> Self {
        let mut timeline: Vec<(SystemTime, TimelineStep)> = cfg
            .timeline
            .iter()
            .map(|s| (start + Duration::from_secs_f64(s.at.max(0.0)), s.clone()))
            .collect();
        timeline.sort_by_key(|(t, _)| *t);
        let mut p = Player {
            tracks: cfg.tracks.clone(),
            artwork,
            ids: (1..=cfg.tracks.len() as u32).collect(),
            track: cfg.track.min(cfg.tracks.len().saturating_sub(1)),
            state: if cfg.tracks.is_empty() {
                PlayState::Stopped
            } else {
                cfg.state
            },
            pos_ms: 0,
            anchor: start,
            shuffle: cfg.shuffle,
            repeat: cfg.repeat.min(2),
            volume: cfg.volume.clamp(0.0, 100.0),
            revision: 1,
            timeline,
            next_step: 0,
            commands: Vec::new(),
        };
        p.pos_ms = p.clamp_ms((cfg.position.max(0.0) * 1000.0) as u64);
        p
    }

    pub fn current(&self) -> Option<&Track> {
        match self.state {
            PlayState::Stopped => None,
            _ => self.tracks.get(self.track),
        }
    }

    pub fn artwork(&self) -> Option<&[u8]> {
        self.current()?;
        self.artwork.get(self.track)?.as_deref()
    }

    fn duration_ms(&self) -> u64 {
        self.tracks
            .get(self.track)
            .map(|t| (t.duration.max(0.0) * 1000.0) as u64)
            .unwrap_or(0)
    }

    fn clamp_ms(&self, ms: u64) -> u64 {
        ms.min(self.duration_ms())
    }

    /// Position now, in milliseconds: it runs while playing and stops at the track's end.
    pub fn position_ms(&self, now: SystemTime) -> u64 {
        let run = match self.state {
            PlayState::Playing => now
                .duration_since(self.anchor)
                .unwrap_or_default()
                .as_millis() as u64,
            _ => 0,
        };
        self.clamp_ms(self.pos_ms + run)
    }

    /// Fixes the running position at `now`, before a change.
    fn settle(&mut self, now: SystemTime) {
        self.pos_ms = self.position_ms(now);
        self.anchor = now;
    }

    fn changed(&mut self) {
        self.revision = self.revision.wrapping_add(1).max(1);
    }

    /// When the playing track reaches its end, if it is playing and has a length.
    fn track_end(&self) -> Option<SystemTime> {
        let len = self.duration_ms();
        (self.state == PlayState::Playing && len > 0)
            .then(|| self.anchor + Duration::from_millis(len.saturating_sub(self.pos_ms)))
    }

    /// When the state next changes by itself: a timeline step or the end of the playing track.
    pub fn next_due(&self) -> Option<SystemTime> {
        let step = self.timeline.get(self.next_step).map(|(t, _)| *t);
        match (step, self.track_end()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Applies what happened by `now`, in time order: timeline steps, and tracks that played to
    /// their end; true when something changed.
    pub fn advance(&mut self, now: SystemTime) -> bool {
        let mut any = false;
        // Bounded: a catch-up over many short tracks stops after this many changes.
        for _ in 0..10_000 {
            let step_at = self.timeline.get(self.next_step).map(|(t, _)| *t);
            let end_at = self.track_end();
            match (step_at, end_at) {
                (Some(s), e) if s <= now && e.is_none_or(|e| s <= e) => {
                    let step = self.timeline[self.next_step].1.clone();
                    self.next_step += 1;
                    // The step happens at its own time, so the position runs up to it.
                    self.apply(&step, s.max(self.anchor));
                }
                (_, Some(e)) if e <= now => self.track_ended(e),
                _ => break,
            }
            any = true;
        }
        any
    }

    /// The playing track reached its end at `at`: `carp` 1 plays it again, otherwise the next
    /// track plays; after the last, `carp` 2 starts over and 0 stops (DACP `carp`: 0 off, 1 one
    /// track, 2 all).
    fn track_ended(&mut self, at: SystemTime) {
        self.settle(at);
        let last = self.track + 1 >= self.tracks.len();
        match (self.repeat, last) {
            (1, _) => self.pos_ms = 0,
            (_, false) => self.switch_to(self.track + 1),
            (2, true) => self.switch_to(0),
            (_, true) => {
                self.pos_ms = 0;
                self.state = PlayState::Stopped;
            }
        }
        self.changed();
    }

    /// Applies one change (a timeline step, or a live change from the control API) at `at`.
    pub fn apply(&mut self, step: &TimelineStep, at: SystemTime) {
        self.settle(at);
        if let Some(t) = step.track {
            self.switch_to(t.min(self.tracks.len().saturating_sub(1)));
        }
        if step.next {
            self.skip(1);
        }
        if let Some(s) = step.state {
            self.state = s;
        }
        if let Some(p) = step.position {
            self.pos_ms = self.clamp_ms((p.max(0.0) * 1000.0) as u64);
        }
        if let Some(v) = step.volume {
            self.volume = v.clamp(0.0, 100.0);
        }
        self.changed();
    }

    /// Replaces what the current track says it is (title, artist, …), position 0; with an empty
    /// queue the track becomes the queue. A live change from the control API.
    pub fn set_current(&mut self, track: Track, at: SystemTime) {
        self.settle(at);
        if self.tracks.is_empty() {
            self.tracks.push(track);
            self.artwork.push(None);
            self.ids = vec![1];
            self.track = 0;
        } else {
            self.tracks[self.track] = track;
        }
        self.pos_ms = 0;
        self.changed();
    }

    /// The queue becomes `queue` (library item id, track, artwork) and its `start`-th entry
    /// plays from 0: the remote's `cue` / `playqueue-edit` with play now.
    pub fn load_queue(
        &mut self,
        queue: Vec<(u32, Track, Option<Vec<u8>>)>,
        start: usize,
        command: String,
        at: SystemTime,
    ) {
        self.settle(at);
        self.ids.clear();
        self.tracks.clear();
        self.artwork.clear();
        self.append(queue);
        self.track = start.min(self.tracks.len().saturating_sub(1));
        self.pos_ms = 0;
        self.state = if self.tracks.is_empty() {
            PlayState::Stopped
        } else {
            PlayState::Playing
        };
        remember(&mut self.commands, command);
        self.changed();
    }

    /// Adds to the queue's end without changing what plays.
    pub fn enqueue(
        &mut self,
        queue: Vec<(u32, Track, Option<Vec<u8>>)>,
        command: String,
        at: SystemTime,
    ) {
        self.settle(at);
        self.append(queue);
        remember(&mut self.commands, command);
        self.changed();
    }

    /// Plays the queue's `index`-th entry from 0; `Err` past the queue's end.
    pub fn play_index(
        &mut self,
        index: usize,
        command: String,
        at: SystemTime,
    ) -> Result<(), String> {
        if index >= self.tracks.len() {
            return Err(format!(
                "index {index} is past the queue's {} tracks",
                self.tracks.len()
            ));
        }
        self.settle(at);
        self.switch_to(index);
        self.state = PlayState::Playing;
        remember(&mut self.commands, command);
        self.changed();
        Ok(())
    }

    fn append(&mut self, queue: Vec<(u32, Track, Option<Vec<u8>>)>) {
        for (id, t, art) in queue {
            self.ids.push(id);
            self.tracks.push(t);
            self.artwork.push(art);
        }
    }

    /// The library item id of the current track.
    pub fn item_id(&self) -> Option<u32> {
        self.ids.get(self.track).copied()
    }

    fn switch_to(&mut self, track: usize) {
        self.track = track;
        self.pos_ms = 0;
    }

    fn skip(&mut self, by: isize) {
        let n = self.tracks.len();
        if n == 0 {
            return;
        }
        let next = (self.track as isize + by).rem_euclid(n as isize) as usize;
        self.switch_to(next);
    }

    /// A transport command (`/ctrl-int/1/<name>`). Unknown names are `Err`.
    pub fn command(&mut self, name: &str, now: SystemTime) -> Result<(), String> {
        self.settle(now);
        let has_track = !self.tracks.is_empty();
        match name {
            "playpause" => {
                self.state = match self.state {
                    PlayState::Playing => PlayState::Paused,
                    _ if has_track => PlayState::Playing,
                    s => s,
                }
            }
            "play" | "playresume" if has_track => self.state = PlayState::Playing,
            "play" | "playresume" => {}
            "pause" => {
                if self.state == PlayState::Playing {
                    self.state = PlayState::Paused
                }
            }
            "stop" => {
                self.state = PlayState::Stopped;
                self.pos_ms = 0;
            }
            "nextitem" => self.skip(1),
            // iTunes restarts the track when more than a few seconds in; airtwin always goes back.
            "previtem" => self.skip(-1),
            // Seeking is modelled as a jump of 10 s (no continuous fast-forward).
            "beginff" => self.pos_ms = self.clamp_ms(self.pos_ms + 10_000),
            "beginrew" => self.pos_ms = self.pos_ms.saturating_sub(10_000),
            "volumeup" => self.volume = (self.volume + VOLUME_STEP).min(100.0),
            "volumedown" => self.volume = (self.volume - VOLUME_STEP).max(0.0),
            other => return Err(format!("unknown command {other:?}")),
        }
        remember(&mut self.commands, name.to_string());
        self.changed();
        Ok(())
    }

    /// `setproperty?<name>=<value>`.
    pub fn set_property(&mut self, name: &str, value: &str, now: SystemTime) -> Result<(), String> {
        let num: f64 = value
            .parse()
            .map_err(|_| format!("{name}={value:?} is not a number"))?;
        if !num.is_finite() {
            return Err(format!("{name}={value:?} is not a finite number"));
        }
        self.settle(now);
        match name {
            "dmcp.volume" => self.volume = num.clamp(0.0, 100.0),
            "dacp.playingtime" => self.pos_ms = self.clamp_ms(num.max(0.0) as u64),
            "dacp.shufflestate" => self.shuffle = num != 0.0,
            "dacp.repeatstate" if (0.0..=2.0).contains(&num) => self.repeat = num as u8,
            "dacp.repeatstate" => return Err(format!("dacp.repeatstate={value} is not 0, 1 or 2")),
            other => return Err(format!("unknown property {other:?}")),
        }
        remember(&mut self.commands, format!("setproperty {name}={value}"));
        self.changed();
        Ok(())
    }

    /// `getproperty?properties=a,b` items for the known properties.
    pub fn property(&self, name: &str, now: SystemTime) -> Option<Vec<Item>> {
        Some(match name {
            "dmcp.volume" => vec![Item::int(b"cmvo", self.volume.round() as u32)],
            "dacp.playingtime" => {
                let total = self.duration_ms();
                vec![
                    Item::int(b"cant", total.saturating_sub(self.position_ms(now)) as u32),
                    Item::int(b"cast", total as u32),
                ]
            }
            "dacp.shufflestate" => vec![Item::int(b"cash", self.shuffle as u8)],
            "dacp.repeatstate" => vec![Item::int(b"carp", self.repeat)],
            _ => return None,
        })
    }

    /// The `cmst` container of `playstatusupdate` (docs/protocols/dacp.md: mstt, cmsr, caps, cash,
    /// carp, cafs, cavs, cavc, cann, cana, canl, cang, cant, cast; pyatv also needs `cmmk`).
    pub fn cmst(&self, now: SystemTime) -> Item {
        let mut c = vec![
            Item::int(b"mstt", 200),
            Item::int(b"cmsr", self.revision),
            Item::int(b"caps", self.state.caps()),
            Item::int(b"cash", self.shuffle as u8),
            Item::int(b"carp", self.repeat),
            Item::int(b"cafs", 0),
            Item::int(b"cavs", 0),
            Item::int(b"cavc", 1),
            Item::int(b"caas", 2),
            Item::int(b"caar", 6),
            // 2: music (pyatv's media_kind maps 2 to Music).
            Item::int(b"cmmk", 2),
        ];
        if let Some(t) = self.current() {
            let mut canp = Vec::with_capacity(16);
            let item = self.item_id().unwrap_or(self.track as u32 + 1);
            for id in [1u32, 1, item, item] {
                canp.extend_from_slice(&id.to_be_bytes());
            }
            let total = self.duration_ms();
            c.extend([
                Item::raw(b"canp", canp),
                Item::str(b"cann", t.title.clone()),
                Item::str(b"cana", t.artist.clone()),
                Item::str(b"canl", t.album.clone()),
                Item::str(b"cang", t.genre.clone()),
                Item::int(b"asai", self.track as u64 + 1),
                Item::int(b"cant", total.saturating_sub(self.position_ms(now)) as u32),
                Item::int(b"cast", total as u32),
            ]);
        }
        Item::container(b"cmst", c)
    }

    /// The player as JSON for `state` expectations: `state`, `title`, `artist`, `album`,
    /// `genre`, `track`, `item_id` (the library id of the track), `queue` (library ids),
    /// `position` (s), `duration` (s), `shuffle`, `repeat`, `volume`, `revision`, `commands`.
    pub fn to_json(&self, now: SystemTime) -> serde_json::Value {
        let t = self.tracks.get(self.track);
        serde_json::json!({
            "state": self.state.as_str(),
            "track": self.track,
            "item_id": self.item_id(),
            "queue": self.ids,
            "title": t.map(|t| t.title.clone()),
            "artist": t.map(|t| t.artist.clone()),
            "album": t.map(|t| t.album.clone()),
            "genre": t.map(|t| t.genre.clone()),
            "position": self.position_ms(now) as f64 / 1000.0,
            "duration": self.duration_ms() as f64 / 1000.0,
            "shuffle": self.shuffle,
            "repeat": self.repeat,
            "volume": self.volume,
            "revision": self.revision,
            "commands": self.commands,
        })
    }
}

#[cfg(test)]
mod tests {
    fn three_tracks(repeat: u8) -> (Player, SystemTime) {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let cfg = NowPlaying {
            tracks: (0..3)
                .map(|i| Track {
                    title: format!("T{i}"),
                    duration: 10.0,
                    ..Track::default()
                })
                .collect(),
            repeat,
            ..NowPlaying::default()
        };
        (Player::new(&cfg, vec![None, None, None], t0), t0)
    }

    #[test]
    fn tracks_play_to_their_end_and_the_queue_goes_on() {
        let (mut p, t0) = three_tracks(0);
        assert_eq!(p.next_due(), Some(t0 + Duration::from_secs(10)));
        let rev = p.revision;
        assert!(p.advance(t0 + Duration::from_secs(15)));
        assert_eq!((p.track, p.state), (1, PlayState::Playing));
        assert_eq!(p.position_ms(t0 + Duration::from_secs(15)), 5_000);
        assert!(p.revision > rev);
        // Past the last track with repeat off: stopped.
        assert!(p.advance(t0 + Duration::from_secs(45)));
        assert_eq!((p.track, p.state), (2, PlayState::Stopped));
        assert_eq!(p.next_due(), None);
        assert!(!p.advance(t0 + Duration::from_secs(100)));
    }

    #[test]
    fn repeat_one_replays_and_repeat_all_wraps() {
        let (mut one, t0) = three_tracks(1);
        one.advance(t0 + Duration::from_secs(25));
        assert_eq!(one.track, 0);
        assert_eq!(one.position_ms(t0 + Duration::from_secs(25)), 5_000);
        let (mut all, t0) = three_tracks(2);
        all.advance(t0 + Duration::from_secs(31));
        assert_eq!((all.track, all.state), (0, PlayState::Playing));
    }

    use super::*;

    fn at(s: f64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs_f64(1000.0 + s)
    }

    fn two_tracks() -> NowPlaying {
        let mut np = NowPlaying::default();
        np.tracks.push(Track {
            title: "Second".into(),
            duration: 60.0,
            ..Default::default()
        });
        np
    }

    #[test]
    fn position_runs_while_playing_and_stops_when_paused() {
        let mut p = Player::new(&NowPlaying::default(), vec![], at(0.0));
        assert_eq!(p.position_ms(at(2.5)), 2500);
        p.command("pause", at(3.0)).unwrap();
        assert_eq!(p.state, PlayState::Paused);
        assert_eq!(p.position_ms(at(10.0)), 3000);
        p.command("playpause", at(10.0)).unwrap();
        assert_eq!(p.position_ms(at(11.0)), 4000);
    }

    #[test]
    fn timeline_changes_track_and_raises_revision() {
        let mut np = two_tracks();
        np.timeline.push(TimelineStep {
            at: 2.0,
            next: true,
            ..Default::default()
        });
        let mut p = Player::new(&np, vec![], at(0.0));
        assert_eq!(p.next_due(), Some(at(2.0)));
        assert!(!p.advance(at(1.9)));
        let rev = p.revision;
        assert!(p.advance(at(2.1)));
        assert_eq!(p.revision, rev + 1);
        assert_eq!(p.current().unwrap().title, "Second");
        // No step left: what comes next is the end of the 60 s track that started at 2 s.
        assert_eq!(p.next_due(), Some(at(62.0)));
    }

    #[test]
    fn commands_and_properties_change_state() {
        let mut p = Player::new(&two_tracks(), vec![], at(0.0));
        p.command("volumedown", at(0.0)).unwrap();
        assert_eq!(p.volume, 45.0);
        p.set_property("dacp.playingtime", "30000", at(0.0))
            .unwrap();
        assert_eq!(p.position_ms(at(0.0)), 30000);
        p.set_property("dacp.repeatstate", "2", at(0.0)).unwrap();
        assert!(p.set_property("dacp.repeatstate", "7", at(0.0)).is_err());
        assert!(p.set_property("dmcp.volume", "loud", at(0.0)).is_err());
        p.command("nextitem", at(0.0)).unwrap();
        p.command("nextitem", at(0.0)).unwrap();
        assert_eq!(p.track, 0);
        assert!(p.command("explode", at(0.0)).is_err());
        p.command("stop", at(0.0)).unwrap();
        assert!(p.current().is_none());
    }
}
