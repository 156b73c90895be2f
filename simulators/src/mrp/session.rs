//! The device's side of one MRP conversation (docs/protocols/mrp.md, "The conversation"): the
//! controller's `DEVICE_INFO` is answered with the device's own; `CLIENT_UPDATES_CONFIG`
//! subscribes to now-playing and volume updates, and is answered after the device pushed its
//! state (`SET_STATE`, `SET_NOW_PLAYING_CLIENT`, `VOLUME_CONTROL_AVAILABILITY`,
//! `VOLUME_DID_CHANGE`); `SEND_COMMAND`s change the shared now-playing model and are answered
//! with `SEND_COMMAND_RESULT`; keys arrive as HID events; a reply carries the `identifier` of
//! the message it answers. Whenever the model changes (by any protocol), a subscribed session
//! pushes a new `SET_STATE`.
//!
//! Sans-IO: messages and the time in, messages out.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::message::{
    self, command, kind, playback_state, repeat_mode, shuffle_mode, ClientUpdatesConfig,
    CommandInfo, ContentItem, ContentItemMetadata, DeviceInfo, Keyboard, NowPlayingClient,
    NowPlayingPlayer, PlaybackQueue, PlayerPath, ProtocolMessage, SendCommandResult, SetState,
    SupportedCommands, VolumeControlAvailability, VolumeDidChange,
};
use super::MrpCore;
use crate::now_playing::{PlayState, Player};
use crate::protocol_core::remember;

/// The identifier of the player every `SET_STATE` names: the default player of the app.
pub const DEFAULT_PLAYER: &str = "MediaRemote-DefaultPlayer";

/// Seconds between the Unix epoch and 2001-01-01, the reference date of MRP timestamps.
const COCOA_EPOCH: f64 = 978_307_200.0;

/// `time` as seconds since 2001-01-01.
pub fn cocoa_time(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
        - COCOA_EPOCH
}

/// What the session reports beside the messages it sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// Input a real device would not expect, or a message it does not handle.
    Warning(String),
    /// A state change worth a line in the transcript.
    Note(String),
}

/// One MRP conversation.
pub struct Session {
    core: Arc<MrpCore>,
    /// Which connection of the device this is, for message identifiers.
    connection: u64,
    sent: u64,
    /// `nowPlayingUpdates` was asked for.
    now_playing_updates: bool,
    /// `volumeUpdates` was asked for.
    volume_updates: bool,
    /// The model's revision the last push showed.
    shown_revision: Option<u64>,
    shown_volume: Option<f64>,
    out: VecDeque<ProtocolMessage>,
    reports: VecDeque<Report>,
}

impl Session {
    pub fn new(core: Arc<MrpCore>, connection: u64) -> Self {
        Session {
            core,
            connection,
            sent: 0,
            now_playing_updates: false,
            volume_updates: false,
            shown_revision: None,
            shown_volume: None,
            out: VecDeque::new(),
            reports: VecDeque::new(),
        }
    }

    /// The next message to send.
    pub fn poll_message(&mut self) -> Option<ProtocolMessage> {
        self.out.pop_front()
    }

    pub fn poll_report(&mut self) -> Option<Report> {
        self.reports.pop_front()
    }

    /// A message of type `t` answering `identifier`, with a fresh `uniqueIdentifier` (from the
    /// connection and a counter: deterministic).
    fn message(&mut self, t: i32, identifier: Option<String>) -> ProtocolMessage {
        self.sent += 1;
        let unique = format!(
            "{:08X}-A1B2-4C3D-8E4F-{:012X}",
            self.connection & 0xFFFF_FFFF,
            self.sent
        );
        ProtocolMessage::new(t, identifier, unique)
    }

    fn player_path(&self) -> PlayerPath {
        PlayerPath {
            client: Some(NowPlayingClient {
                process_identifier: None,
                bundle_identifier: Some(self.core.config.player_bundle.clone()),
                display_name: Some(self.core.config.player_name.clone()),
            }),
            player: Some(NowPlayingPlayer {
                identifier: Some(DEFAULT_PLAYER.into()),
                display_name: Some("Default Player".into()),
                is_default_player: Some(true),
            }),
        }
    }

    /// The `SET_STATE` that shows `player` at `now`; with `artwork`, the current item carries its
    /// artwork bytes (the answer to `PLAYBACK_QUEUE_REQUEST`).
    fn set_state(&self, player: &Player, now: SystemTime, artwork: bool) -> SetState {
        let state = match player.state {
            PlayState::Playing => playback_state::PLAYING,
            PlayState::Paused => playback_state::PAUSED,
            PlayState::Stopped => playback_state::STOPPED,
        };
        let playing = player.state == PlayState::Playing;
        let items: Vec<ContentItem> = player
            .current()
            .map(|t| {
                let art = player.artwork().map(<[u8]>::to_vec);
                ContentItem {
                    identifier: Some(format!("airtwin-item-{}", player.item_id().unwrap_or(0))),
                    metadata: Some(ContentItemMetadata {
                        title: Some(t.title.clone()),
                        album_name: Some(t.album.clone()).filter(|s| !s.is_empty()),
                        track_artist_name: Some(t.artist.clone()).filter(|s| !s.is_empty()),
                        duration: Some(t.duration),
                        artwork_available: Some(art.is_some()),
                        artwork_mime_type: art.as_ref().map(|_| "image/png".to_string()),
                        elapsed_time: Some(player.position_ms(now) as f64 / 1000.0),
                        genre: Some(t.genre.clone()).filter(|s| !s.is_empty()),
                        playback_rate: Some(if playing { 1.0 } else { 0.0 }),
                        media_type: Some(1),
                        elapsed_time_timestamp: Some(cocoa_time(now)),
                    }),
                    artwork_data: art.filter(|_| artwork),
                }
            })
            .into_iter()
            .collect();
        let on = |c: i32| CommandInfo {
            command: Some(c),
            enabled: Some(true),
            repeat_mode: None,
            shuffle_mode: None,
        };
        let mut commands: Vec<CommandInfo> = [
            command::PLAY,
            command::PAUSE,
            command::TOGGLE_PLAY_PAUSE,
            command::STOP,
            command::NEXT_TRACK,
            command::PREVIOUS_TRACK,
            command::SKIP_FORWARD,
            command::SKIP_BACKWARD,
            command::SEEK_TO_PLAYBACK_POSITION,
        ]
        .into_iter()
        .map(on)
        .collect();
        commands.push(CommandInfo {
            repeat_mode: Some(match player.repeat {
                1 => repeat_mode::ONE,
                2 => repeat_mode::ALL,
                _ => repeat_mode::OFF,
            }),
            ..on(command::CHANGE_REPEAT_MODE)
        });
        commands.push(CommandInfo {
            shuffle_mode: Some(if player.shuffle {
                shuffle_mode::SONGS
            } else {
                shuffle_mode::OFF
            }),
            ..on(command::CHANGE_SHUFFLE_MODE)
        });
        SetState {
            supported_commands: Some(SupportedCommands {
                supported_commands: commands,
            }),
            playback_queue: Some(PlaybackQueue {
                location: Some(0),
                content_items: items,
            }),
            display_id: Some(self.core.config.player_bundle.clone()),
            display_name: Some(self.core.config.player_name.clone()),
            playback_state: Some(state),
            player_path: Some(self.player_path()),
            playback_state_timestamp: Some(cocoa_time(now)),
        }
    }

    fn push_set_state(&mut self, identifier: Option<String>, now: SystemTime, artwork: bool) {
        let model = self.core.now_playing.clone();
        let set_state = model.with(now, |p| self.set_state(p, now, artwork));
        let revision = model.changes.revision();
        let mut m = self.message(kind::SET_STATE, identifier);
        m.set_state = Some(set_state);
        self.out.push_back(m);
        self.shown_revision = Some(revision);
        self.core.record().set_states += 1;
    }

    fn push_volume(&mut self, now: SystemTime) {
        let volume = self.core.now_playing.with(now, |p| p.volume);
        let mut m = self.message(kind::VOLUME_DID_CHANGE, None);
        m.volume_did_change = Some(VolumeDidChange {
            volume: Some((volume / 100.0) as f32),
            output_device_uid: Some(self.core.config.unique_identifier.clone()),
        });
        self.out.push_back(m);
        self.shown_volume = Some(volume);
    }

    /// Whether the controller asked for pushes ([`Session::refresh`] has work to do).
    pub fn subscribed(&self) -> bool {
        self.now_playing_updates || self.volume_updates
    }

    /// The model may have changed (a command from any protocol, the control API, the timeline):
    /// a subscribed session pushes what changed.
    pub fn refresh(&mut self, now: SystemTime) {
        if self.now_playing_updates {
            let model = self.core.now_playing.clone();
            model.with(now, |_| ());
            if self.shown_revision != Some(model.changes.revision()) {
                self.push_set_state(None, now, false);
            }
        }
        if self.volume_updates {
            let volume = self.core.now_playing.with(now, |p| p.volume);
            if self.shown_volume != Some(volume) {
                self.push_volume(now);
            }
        }
    }

    /// Handles one message from the controller.
    pub fn handle(&mut self, msg: ProtocolMessage, now: SystemTime) {
        let name = message::type_name(msg.kind());
        remember(&mut self.core.record().received, name.clone());
        let id = msg.identifier.clone();
        match msg.kind() {
            kind::DEVICE_INFO | kind::DEVICE_INFO_UPDATE => {
                if msg.kind() == kind::DEVICE_INFO_UPDATE {
                    return;
                }
                let awake = self.core.awake();
                self.core.record().power_reported = Some(if awake { "on" } else { "off" }.into());
                let c = &self.core.config;
                let info = DeviceInfo {
                    unique_identifier: Some(c.unique_identifier.clone()),
                    name: Some(c.name.clone()),
                    localized_model_name: Some("Apple TV".into()),
                    system_build_version: Some(c.system_build_version.clone()),
                    application_bundle_identifier: Some("com.apple.mediaremoted".into()),
                    protocol_version: Some(1),
                    last_supported_message_type: Some(108),
                    supports_system_pairing: Some(true),
                    allows_pairing: Some(true),
                    system_media_application: Some("com.apple.TVMusic".into()),
                    supports_acl: Some(true),
                    supports_shared_queue: Some(true),
                    shared_queue_version: Some(2),
                    device_uid: Some(c.unique_identifier.clone()),
                    // DeviceClass 4: AppleTV.
                    device_class: Some(4),
                    // 0 while asleep: pyatv reads it as the power state (docs/protocols/mrp.md).
                    logical_device_count: Some(u32::from(awake)),
                    model_id: Some(c.model_id.clone()),
                };
                let mut m = self.message(kind::DEVICE_INFO, id);
                m.device_info = Some(info);
                self.out.push_back(m);
            }
            kind::SET_CONNECTION_STATE => {
                let state = msg.set_connection_state.and_then(|s| s.state).unwrap_or(0);
                self.reports
                    .push_back(Report::Note(format!("connection state {state}")));
            }
            kind::CLIENT_UPDATES_CONFIG => {
                let c = msg.client_updates_config.unwrap_or_default();
                // `nowPlayingUpdates` asks for the older NowPlayingInfo; `SET_STATE` pushes follow
                // any CLIENT_UPDATES_CONFIG (pyatv sends it false and reads what is playing from
                // those pushes; docs/protocols/mrp.md, "The conversation").
                self.now_playing_updates = true;
                self.volume_updates = c.volume_updates.unwrap_or(false);
                self.core.record().subscribed |= self.now_playing_updates;
                if self.now_playing_updates {
                    self.push_set_state(None, now, false);
                    let mut m = self.message(kind::SET_NOW_PLAYING_CLIENT, None);
                    m.set_now_playing_client = Some(message::SetNowPlayingClient {
                        client: self.player_path().client,
                    });
                    self.out.push_back(m);
                }
                if self.volume_updates {
                    let mut m = self.message(kind::VOLUME_CONTROL_AVAILABILITY, None);
                    // Both: relative (volume keys) and absolute (SET_VOLUME).
                    m.volume_control_availability = Some(VolumeControlAvailability {
                        volume_control_available: Some(true),
                        volume_capabilities: Some(3),
                    });
                    self.out.push_back(m);
                    self.push_volume(now);
                }
                let mut reply = self.message(kind::CLIENT_UPDATES_CONFIG, id);
                reply.client_updates_config = Some(ClientUpdatesConfig::default());
                self.out.push_back(reply);
            }
            kind::GET_KEYBOARD_SESSION => {
                let mut m = self.message(kind::KEYBOARD, id);
                // KeyboardState 1: not editing (no text field is focused).
                m.keyboard = Some(Keyboard { state: Some(1) });
                self.out.push_back(m);
            }
            kind::GENERIC => {
                let m = self.message(kind::GENERIC, id);
                self.out.push_back(m);
            }
            kind::SEND_COMMAND => {
                let c = msg.send_command.unwrap_or_default();
                let result =
                    self.command(c.command.unwrap_or(0), c.options.unwrap_or_default(), now);
                // The new state goes out before the result: a controller that reads the state as
                // soon as its command returns (pyatv's `set_position` then `playing`) sees it.
                self.refresh(now);
                let mut m = self.message(kind::SEND_COMMAND_RESULT, id);
                m.send_command_result = Some(match result {
                    Ok(()) => SendCommandResult {
                        send_error: Some(0),
                        handler_return_status: Some(0),
                    },
                    Err(why) => {
                        self.reports.push_back(Report::Warning(why));
                        // SendError 10: not supported.
                        SendCommandResult {
                            send_error: Some(10),
                            handler_return_status: Some(2),
                        }
                    }
                });
                self.out.push_back(m);
            }
            kind::SEND_HID_EVENT => {
                let data = msg
                    .send_hid_event
                    .and_then(|e| e.hid_event_data)
                    .unwrap_or_default();
                match message::hid_usage(&data) {
                    Some((page, usage, down)) => self.key(page, usage, down, now),
                    None => self.reports.push_back(Report::Warning(format!(
                        "SEND_HID_EVENT: {} bytes of hidEventData, fewer than 49",
                        data.len()
                    ))),
                }
            }
            kind::SEND_BUTTON_EVENT => {
                let b = msg.send_button_event.unwrap_or_default();
                let (page, usage) = (b.usage_page.unwrap_or(0), b.usage.unwrap_or(0));
                self.key(
                    u16::try_from(page).unwrap_or(0),
                    u16::try_from(usage).unwrap_or(0),
                    b.button_down.unwrap_or(false),
                    now,
                );
            }
            kind::SET_VOLUME => {
                let v = msg.set_volume.and_then(|s| s.volume).unwrap_or(-1.0);
                if (0.0..=1.0).contains(&v) {
                    self.core
                        .now_playing
                        .with(now, |p| {
                            // Percent to 0.1: the f32 on the wire has no more precision than that.
                            let percent = (f64::from(v) * 1000.0).round() / 10.0;
                            p.set_property("dmcp.volume", &format!("{percent}"), now)
                        })
                        .ok();
                    // The device announces the new volume whether or not it moved.
                    self.push_volume(now);
                } else {
                    self.reports.push_back(Report::Warning(format!(
                        "SET_VOLUME {v} is outside 0..1; ignored"
                    )));
                }
            }
            kind::PLAYBACK_QUEUE_REQUEST => self.push_set_state(id, now, true),
            kind::WAKE_DEVICE => self.reports.push_back(Report::Note("wake device".into())),
            other => {
                remember(&mut self.core.record().unhandled, message::type_name(other));
                self.reports.push_back(Report::Warning(format!(
                    "{name} is not handled by this device; no answer"
                )));
            }
        }
    }

    /// A key went down or up: the device acts on its release (docs/protocols/mrp.md, "Remote keys").
    fn key(&mut self, page: u16, usage: u16, down: bool, now: SystemTime) {
        let Some(name) = message::key_name(page, usage) else {
            self.reports.push_back(Report::Warning(format!(
                "HID usage page {page} usage 0x{usage:02X} is no remote key"
            )));
            return;
        };
        if down {
            return;
        }
        remember(&mut self.core.record().keys, name.to_string());
        let dacp = match name {
            "volume_up" => Some("volumeup"),
            "volume_down" => Some("volumedown"),
            "next" => Some("nextitem"),
            "previous" => Some("previtem"),
            "play_pause" => Some("playpause"),
            "stop" => Some("stop"),
            _ => None,
        };
        if let Some(cmd) = dacp {
            self.core
                .now_playing
                .with(now, |p| p.command(cmd, now))
                .ok();
        }
        self.refresh(now);
    }

    /// Carries out a `SEND_COMMAND` on the shared model.
    fn command(
        &mut self,
        c: i32,
        options: message::CommandOptions,
        now: SystemTime,
    ) -> Result<(), String> {
        let model = self.core.now_playing.clone();
        let (label, result) = model.with(now, |p| {
            let pos = p.position_ms(now) as f64 / 1000.0;
            let seek = |p: &mut Player, to: f64| {
                p.set_property(
                    "dacp.playingtime",
                    &format!("{}", (to.max(0.0) * 1000.0) as u64),
                    now,
                )
            };
            match c {
                command::PLAY => ("play".to_string(), p.command("play", now)),
                command::PAUSE => ("pause".into(), p.command("pause", now)),
                command::TOGGLE_PLAY_PAUSE => {
                    ("toggle_play_pause".into(), p.command("playpause", now))
                }
                command::STOP => ("stop".into(), p.command("stop", now)),
                command::NEXT_TRACK => ("next_track".into(), p.command("nextitem", now)),
                command::PREVIOUS_TRACK => ("previous_track".into(), p.command("previtem", now)),
                command::SKIP_FORWARD | command::SKIP_BACKWARD => {
                    let by = options.skip_interval.unwrap_or(15.0);
                    let forward = c == command::SKIP_FORWARD;
                    let to = if forward { pos + by } else { pos - by };
                    (
                        format!("skip_{} {by}", if forward { "forward" } else { "backward" }),
                        seek(p, to),
                    )
                }
                command::SEEK_TO_PLAYBACK_POSITION => match options.playback_position {
                    Some(to) => (format!("seek {to}"), seek(p, to)),
                    None => (
                        "seek".into(),
                        Err("SeekToPlaybackPosition without playbackPosition".into()),
                    ),
                },
                command::CHANGE_SHUFFLE_MODE => {
                    let mode = options.shuffle_mode.unwrap_or(shuffle_mode::OFF);
                    let on = mode != shuffle_mode::OFF;
                    (
                        format!("shuffle {}", if on { "on" } else { "off" }),
                        p.set_property("dacp.shufflestate", if on { "1" } else { "0" }, now),
                    )
                }
                command::CHANGE_REPEAT_MODE => {
                    // DACP's repeat: 0 off, 1 one, 2 all.
                    let (text, dacp) = match options.repeat_mode.unwrap_or(repeat_mode::OFF) {
                        repeat_mode::ONE => ("one", "1"),
                        repeat_mode::ALL => ("all", "2"),
                        _ => ("off", "0"),
                    };
                    (
                        format!("repeat {text}"),
                        p.set_property("dacp.repeatstate", dacp, now),
                    )
                }
                other => (
                    format!("command {other}"),
                    Err(format!("command {other} is not supported")),
                ),
            }
        });
        if result.is_ok() {
            remember(&mut self.core.record().commands, label);
        }
        result
    }
}

/// A one-line summary of a message's fields for the transcript.
pub fn describe(msg: &ProtocolMessage) -> String {
    let mut parts = Vec::new();
    if let Some(id) = &msg.identifier {
        parts.push(format!("identifier={id}"));
    }
    if let Some(c) = &msg.send_command {
        parts.push(format!("command={}", c.command.unwrap_or(0)));
        if let Some(o) = &c.options {
            if let Some(p) = o.playback_position {
                parts.push(format!("position={p}"));
            }
        }
    }
    if let Some(r) = &msg.send_command_result {
        parts.push(format!("sendError={}", r.send_error.unwrap_or(0)));
    }
    if let Some(s) = &msg.set_state {
        if let Some(st) = s.playback_state {
            parts.push(format!("playbackState={st}"));
        }
        if let Some(t) = s
            .playback_queue
            .as_ref()
            .and_then(|q| q.content_items.first())
            .and_then(|i| i.metadata.as_ref())
            .and_then(|m| m.title.as_ref())
        {
            parts.push(format!("title={t:?}"));
        }
    }
    if let Some(d) = &msg.device_info {
        parts.push(format!(
            "name={:?} logicalDeviceCount={}",
            d.name.as_deref().unwrap_or(""),
            d.logical_device_count.unwrap_or(0)
        ));
    }
    if let Some(c) = &msg.client_updates_config {
        parts.push(format!(
            "nowPlaying={} volume={}",
            c.now_playing_updates.unwrap_or(false),
            c.volume_updates.unwrap_or(false)
        ));
    }
    if let Some(e) = &msg.send_hid_event {
        if let Some((page, usage, down)) = e.hid_event_data.as_deref().and_then(message::hid_usage)
        {
            parts.push(format!(
                "key={} down={down}",
                message::key_name(page, usage).unwrap_or("?")
            ));
        }
    }
    if let Some(v) = &msg.set_volume {
        parts.push(format!("volume={}", v.volume.unwrap_or(-1.0)));
    }
    if let Some(v) = &msg.volume_did_change {
        parts.push(format!("volume={}", v.volume.unwrap_or(-1.0)));
    }
    parts.join(" ")
}

/// The field numbers present in a serialized message, for a message this device does not know:
/// the transcript shows what it carried.
pub fn field_numbers(mut bytes: &[u8]) -> Vec<u64> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let Ok(key) = prost::encoding::decode_varint(&mut bytes) else {
            break;
        };
        out.push(key >> 3);
        let skip = match key & 7 {
            0 => match prost::encoding::decode_varint(&mut bytes) {
                Ok(_) => 0,
                Err(_) => break,
            },
            1 => 8,
            2 => match prost::encoding::decode_varint(&mut bytes) {
                Ok(n) => n as usize,
                Err(_) => break,
            },
            5 => 4,
            _ => break,
        };
        if skip > bytes.len() {
            break;
        }
        bytes = &bytes[skip..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mrp::MrpConfig;
    use crate::now_playing::{Model, NowPlaying, Track};
    use std::time::Duration;

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    fn core() -> Arc<MrpCore> {
        let cfg = NowPlaying {
            tracks: vec![
                Track {
                    title: "First".into(),
                    artist: "A".into(),
                    duration: 100.0,
                    ..Track::default()
                },
                Track {
                    title: "Second".into(),
                    duration: 100.0,
                    ..Track::default()
                },
            ],
            ..NowPlaying::default()
        };
        let model = Arc::new(Model::new(Player::new(&cfg, vec![None, None], t(0))));
        Arc::new(MrpCore::new(
            MrpConfig::apple_tv_4k("Den", "UID-1", "AppleTV11,1"),
            model,
        ))
    }

    fn msg(t: i32, id: &str) -> ProtocolMessage {
        ProtocolMessage::new(t, Some(id.into()), "X".into())
    }

    fn drain(s: &mut Session) -> Vec<ProtocolMessage> {
        std::iter::from_fn(|| s.poll_message()).collect()
    }

    #[test]
    fn device_info_is_answered_with_the_same_identifier_and_the_device_identity() {
        let mut s = Session::new(core(), 0);
        s.handle(msg(kind::DEVICE_INFO, "ID1"), t(1));
        let out = drain(&mut s);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind(), kind::DEVICE_INFO);
        assert_eq!(out[0].identifier.as_deref(), Some("ID1"));
        let d = out[0].device_info.as_ref().unwrap();
        assert_eq!(d.name.as_deref(), Some("Den"));
        assert_eq!(d.device_uid.as_deref(), Some("UID-1"));
        assert_eq!(d.logical_device_count, Some(1));
    }

    #[test]
    fn an_asleep_device_reports_no_logical_device() {
        let c = core();
        let asleep = Arc::new(
            MrpCore::new(c.config.clone(), c.now_playing.clone()).with_power(Arc::new(|| false)),
        );
        let mut s = Session::new(asleep.clone(), 0);
        s.handle(msg(kind::DEVICE_INFO, "ID1"), t(1));
        let out = drain(&mut s);
        assert_eq!(
            out[0].device_info.as_ref().unwrap().logical_device_count,
            Some(0)
        );
        assert_eq!(asleep.record().power_reported.as_deref(), Some("off"));
    }

    #[test]
    fn client_updates_config_pushes_state_then_replies_and_a_command_pushes_again() {
        let core = core();
        let mut s = Session::new(core.clone(), 0);
        let mut m = msg(kind::CLIENT_UPDATES_CONFIG, "C1");
        m.client_updates_config = Some(ClientUpdatesConfig {
            now_playing_updates: Some(false),
            volume_updates: Some(true),
            ..Default::default()
        });
        s.handle(m, t(5));
        let out = drain(&mut s);
        let kinds: Vec<i32> = out.iter().map(ProtocolMessage::kind).collect();
        assert_eq!(
            kinds,
            [
                kind::SET_STATE,
                kind::SET_NOW_PLAYING_CLIENT,
                kind::VOLUME_CONTROL_AVAILABILITY,
                kind::VOLUME_DID_CHANGE,
                kind::CLIENT_UPDATES_CONFIG
            ]
        );
        assert_eq!(out[4].identifier.as_deref(), Some("C1"));
        let st = out[0].set_state.as_ref().unwrap();
        assert_eq!(st.playback_state, Some(playback_state::PLAYING));
        let md = st.playback_queue.as_ref().unwrap().content_items[0]
            .metadata
            .clone()
            .unwrap();
        assert_eq!(md.title.as_deref(), Some("First"));
        assert_eq!(md.elapsed_time, Some(5.0));

        let mut pause = msg(kind::SEND_COMMAND, "P1");
        pause.send_command = Some(message::SendCommand {
            command: Some(command::PAUSE),
            options: None,
        });
        s.handle(pause, t(6));
        let out = drain(&mut s);
        assert_eq!(out[1].kind(), kind::SEND_COMMAND_RESULT);
        assert_eq!(out[1].identifier.as_deref(), Some("P1"));
        assert_eq!(
            out[1].send_command_result.as_ref().unwrap().send_error,
            Some(0)
        );
        assert_eq!(
            out[0].kind(),
            kind::SET_STATE,
            "the new state before the result"
        );
        assert_eq!(
            out[0].set_state.as_ref().unwrap().playback_state,
            Some(playback_state::PAUSED)
        );
        assert_eq!(core.now_playing.lock().state, PlayState::Paused);
        assert_eq!(core.record().commands, ["pause"]);

        // A change made elsewhere (DACP, the control API) shows on the next refresh.
        core.now_playing
            .with(t(7), |p| p.command("nextitem", t(7)))
            .unwrap();
        s.refresh(t(7));
        let out = drain(&mut s);
        assert_eq!(out.len(), 1);
        let title = out[0]
            .set_state
            .as_ref()
            .unwrap()
            .playback_queue
            .as_ref()
            .unwrap()
            .content_items[0]
            .metadata
            .as_ref()
            .unwrap()
            .title
            .clone();
        assert_eq!(title.as_deref(), Some("Second"));
        s.refresh(t(7));
        assert!(drain(&mut s).is_empty(), "nothing new, nothing pushed");
    }

    #[test]
    fn volume_key_release_changes_the_volume_and_announces_it() {
        let core = core();
        let mut s = Session::new(core.clone(), 0);
        let mut m = msg(kind::CLIENT_UPDATES_CONFIG, "C1");
        m.client_updates_config = Some(ClientUpdatesConfig {
            volume_updates: Some(true),
            ..Default::default()
        });
        s.handle(m, t(1));
        drain(&mut s);
        let before = core.now_playing.lock().volume;
        for down in [true, false] {
            let data = message::hid_event_data(12, 0xE9, down);
            let mut k = msg(kind::SEND_HID_EVENT, "");
            k.identifier = None;
            k.send_hid_event = Some(message::SendHidEvent {
                hid_event_data: Some(data),
            });
            s.handle(k, t(2));
        }
        let out = drain(&mut s);
        let kinds: Vec<i32> = out.iter().map(ProtocolMessage::kind).collect();
        assert_eq!(kinds, [kind::SET_STATE, kind::VOLUME_DID_CHANGE]);
        let after = core.now_playing.lock().volume;
        assert_eq!(after, (before + 5.0).min(100.0));
        assert_eq!(core.record().keys, ["volume_up"]);
    }

    #[test]
    fn an_unknown_message_gets_no_answer_and_a_warning() {
        let mut s = Session::new(core(), 0);
        s.handle(msg(99, "U"), t(1));
        assert!(drain(&mut s).is_empty());
        assert!(matches!(s.poll_report(), Some(Report::Warning(w)) if w.contains("TYPE_99")));
        assert_eq!(
            field_numbers(&message::encode(&msg(99, "U"))),
            [1, 2, 4, 85]
        );
    }
}
