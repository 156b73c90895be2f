//! The MRP protobuf messages this device reads and writes, declared with `prost` derive and only
//! the fields it uses (docs/protocols/mrp.md, "Messages"). Every message is a `ProtocolMessage`
//! whose `type` (field 1) names the inner message; the inner message is a proto2 extension of
//! `ProtocolMessage`, which on the wire is simply a field of the outer message with the
//! extension's number (`deviceInfoMessage` is field 20, `setStateMessage` field 9, …). Fields a
//! peer sends that are not declared here are skipped by the decoder.

use prost::Message;

/// `ProtocolMessage.type` values (docs/protocols/mrp.md, "Message types").
pub mod kind {
    pub const SEND_COMMAND: i32 = 1;
    pub const SEND_COMMAND_RESULT: i32 = 2;
    pub const SET_STATE: i32 = 4;
    pub const SEND_HID_EVENT: i32 = 8;
    pub const DEVICE_INFO: i32 = 15;
    pub const CLIENT_UPDATES_CONFIG: i32 = 16;
    pub const VOLUME_CONTROL_AVAILABILITY: i32 = 17;
    pub const KEYBOARD: i32 = 23;
    pub const GET_KEYBOARD_SESSION: i32 = 24;
    pub const PLAYBACK_QUEUE_REQUEST: i32 = 32;
    pub const DEVICE_INFO_UPDATE: i32 = 37;
    pub const SET_CONNECTION_STATE: i32 = 38;
    pub const SEND_BUTTON_EVENT: i32 = 39;
    pub const WAKE_DEVICE: i32 = 41;
    pub const GENERIC: i32 = 42;
    pub const SET_NOW_PLAYING_CLIENT: i32 = 46;
    pub const SET_NOW_PLAYING_PLAYER: i32 = 47;
    pub const GET_VOLUME: i32 = 49;
    pub const GET_VOLUME_RESULT: i32 = 50;
    pub const SET_VOLUME: i32 = 51;
    pub const VOLUME_DID_CHANGE: i32 = 52;
}

/// The name of a message type as transcripts and fault matches use it (`DEVICE_INFO`,
/// `SET_STATE`); `TYPE_<n>` for one this device does not know.
pub fn type_name(t: i32) -> String {
    use kind::*;
    let name = match t {
        SEND_COMMAND => "SEND_COMMAND",
        SEND_COMMAND_RESULT => "SEND_COMMAND_RESULT",
        3 => "GET_STATE",
        SET_STATE => "SET_STATE",
        5 => "SET_ARTWORK",
        SEND_HID_EVENT => "SEND_HID_EVENT",
        DEVICE_INFO => "DEVICE_INFO",
        CLIENT_UPDATES_CONFIG => "CLIENT_UPDATES_CONFIG",
        VOLUME_CONTROL_AVAILABILITY => "VOLUME_CONTROL_AVAILABILITY",
        KEYBOARD => "KEYBOARD",
        GET_KEYBOARD_SESSION => "GET_KEYBOARD_SESSION",
        PLAYBACK_QUEUE_REQUEST => "PLAYBACK_QUEUE_REQUEST",
        34 => "CRYPTO_PAIRING",
        DEVICE_INFO_UPDATE => "DEVICE_INFO_UPDATE",
        SET_CONNECTION_STATE => "SET_CONNECTION_STATE",
        SEND_BUTTON_EVENT => "SEND_BUTTON_EVENT",
        WAKE_DEVICE => "WAKE_DEVICE",
        GENERIC => "GENERIC",
        SET_NOW_PLAYING_CLIENT => "SET_NOW_PLAYING_CLIENT",
        SET_NOW_PLAYING_PLAYER => "SET_NOW_PLAYING_PLAYER",
        GET_VOLUME => "GET_VOLUME",
        GET_VOLUME_RESULT => "GET_VOLUME_RESULT",
        SET_VOLUME => "SET_VOLUME",
        VOLUME_DID_CHANGE => "VOLUME_DID_CHANGE",
        other => return format!("TYPE_{other}"),
    };
    name.to_string()
}

/// `SendCommandMessage.command` values used here (`CommandInfo.proto`'s `Command` enum).
pub mod command {
    pub const PLAY: i32 = 1;
    pub const PAUSE: i32 = 2;
    pub const TOGGLE_PLAY_PAUSE: i32 = 3;
    pub const STOP: i32 = 4;
    pub const NEXT_TRACK: i32 = 5;
    pub const PREVIOUS_TRACK: i32 = 6;
    pub const SKIP_FORWARD: i32 = 18;
    pub const SKIP_BACKWARD: i32 = 19;
    pub const SEEK_TO_PLAYBACK_POSITION: i32 = 45;
    pub const CHANGE_REPEAT_MODE: i32 = 46;
    pub const CHANGE_SHUFFLE_MODE: i32 = 47;
}

/// `RepeatMode`: 1 off, 2 one, 3 all.
pub mod repeat_mode {
    pub const OFF: i32 = 1;
    pub const ONE: i32 = 2;
    pub const ALL: i32 = 3;
}

/// `ShuffleMode`: 1 off, 2 albums, 3 songs.
pub mod shuffle_mode {
    pub const OFF: i32 = 1;
    pub const SONGS: i32 = 3;
}

/// `PlaybackState`: 1 playing, 2 paused, 3 stopped.
pub mod playback_state {
    pub const PLAYING: i32 = 1;
    pub const PAUSED: i32 = 2;
    pub const STOPPED: i32 = 3;
}

#[derive(Clone, PartialEq, Message)]
pub struct ProtocolMessage {
    #[prost(int32, optional, tag = "1")]
    pub r#type: Option<i32>,
    #[prost(string, optional, tag = "2")]
    pub identifier: Option<String>,
    #[prost(int32, optional, tag = "4")]
    pub error_code: Option<i32>,
    #[prost(string, optional, tag = "85")]
    pub unique_identifier: Option<String>,
    #[prost(message, optional, tag = "6")]
    pub send_command: Option<SendCommand>,
    #[prost(message, optional, tag = "7")]
    pub send_command_result: Option<SendCommandResult>,
    #[prost(message, optional, tag = "9")]
    pub set_state: Option<SetState>,
    #[prost(message, optional, tag = "13")]
    pub send_hid_event: Option<SendHidEvent>,
    #[prost(message, optional, tag = "20")]
    pub device_info: Option<DeviceInfo>,
    #[prost(message, optional, tag = "21")]
    pub client_updates_config: Option<ClientUpdatesConfig>,
    #[prost(message, optional, tag = "22")]
    pub volume_control_availability: Option<VolumeControlAvailability>,
    #[prost(message, optional, tag = "28")]
    pub keyboard: Option<Keyboard>,
    #[prost(message, optional, tag = "42")]
    pub set_connection_state: Option<SetConnectionState>,
    #[prost(message, optional, tag = "43")]
    pub send_button_event: Option<SendButtonEvent>,
    #[prost(message, optional, tag = "50")]
    pub set_now_playing_client: Option<SetNowPlayingClient>,
    #[prost(message, optional, tag = "55")]
    pub set_volume: Option<SetVolume>,
    #[prost(message, optional, tag = "56")]
    pub volume_did_change: Option<VolumeDidChange>,
}

impl ProtocolMessage {
    /// A message of type `t` answering `identifier` (or none), with a fresh `uniqueIdentifier`.
    pub fn new(t: i32, identifier: Option<String>, unique: String) -> Self {
        ProtocolMessage {
            r#type: Some(t),
            identifier,
            error_code: Some(0),
            unique_identifier: Some(unique),
            ..Default::default()
        }
    }

    pub fn kind(&self) -> i32 {
        self.r#type.unwrap_or(0)
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct DeviceInfo {
    #[prost(string, optional, tag = "1")]
    pub unique_identifier: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub localized_model_name: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub system_build_version: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub application_bundle_identifier: Option<String>,
    #[prost(int32, optional, tag = "7")]
    pub protocol_version: Option<i32>,
    #[prost(uint32, optional, tag = "8")]
    pub last_supported_message_type: Option<u32>,
    #[prost(bool, optional, tag = "9")]
    pub supports_system_pairing: Option<bool>,
    #[prost(bool, optional, tag = "10")]
    pub allows_pairing: Option<bool>,
    #[prost(string, optional, tag = "12")]
    pub system_media_application: Option<String>,
    #[prost(bool, optional, tag = "13")]
    pub supports_acl: Option<bool>,
    #[prost(bool, optional, tag = "14")]
    pub supports_shared_queue: Option<bool>,
    #[prost(uint32, optional, tag = "17")]
    pub shared_queue_version: Option<u32>,
    #[prost(string, optional, tag = "19")]
    pub device_uid: Option<String>,
    #[prost(int32, optional, tag = "21")]
    pub device_class: Option<i32>,
    #[prost(uint32, optional, tag = "22")]
    pub logical_device_count: Option<u32>,
    #[prost(string, optional, tag = "39")]
    pub model_id: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ClientUpdatesConfig {
    #[prost(bool, optional, tag = "1")]
    pub artwork_updates: Option<bool>,
    #[prost(bool, optional, tag = "2")]
    pub now_playing_updates: Option<bool>,
    #[prost(bool, optional, tag = "3")]
    pub volume_updates: Option<bool>,
    #[prost(bool, optional, tag = "4")]
    pub keyboard_updates: Option<bool>,
    #[prost(bool, optional, tag = "5")]
    pub output_device_updates: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SetConnectionState {
    /// 2: connected.
    #[prost(int32, optional, tag = "1")]
    pub state: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NowPlayingClient {
    #[prost(int32, optional, tag = "1")]
    pub process_identifier: Option<i32>,
    #[prost(string, optional, tag = "2")]
    pub bundle_identifier: Option<String>,
    #[prost(string, optional, tag = "7")]
    pub display_name: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NowPlayingPlayer {
    #[prost(string, optional, tag = "1")]
    pub identifier: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub display_name: Option<String>,
    #[prost(bool, optional, tag = "3")]
    pub is_default_player: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PlayerPath {
    #[prost(message, optional, tag = "2")]
    pub client: Option<NowPlayingClient>,
    #[prost(message, optional, tag = "3")]
    pub player: Option<NowPlayingPlayer>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SetNowPlayingClient {
    #[prost(message, optional, tag = "1")]
    pub client: Option<NowPlayingClient>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ContentItemMetadata {
    #[prost(string, optional, tag = "1")]
    pub title: Option<String>,
    #[prost(string, optional, tag = "6")]
    pub album_name: Option<String>,
    #[prost(string, optional, tag = "7")]
    pub track_artist_name: Option<String>,
    #[prost(double, optional, tag = "14")]
    pub duration: Option<f64>,
    #[prost(bool, optional, tag = "19")]
    pub artwork_available: Option<bool>,
    #[prost(string, optional, tag = "31")]
    pub artwork_mime_type: Option<String>,
    #[prost(double, optional, tag = "35")]
    pub elapsed_time: Option<f64>,
    #[prost(string, optional, tag = "36")]
    pub genre: Option<String>,
    #[prost(float, optional, tag = "39")]
    pub playback_rate: Option<f32>,
    /// 1 audio, 2 video.
    #[prost(int32, optional, tag = "64")]
    pub media_type: Option<i32>,
    /// Seconds since 2001-01-01 (Cocoa's reference date) at which `elapsed_time` held.
    #[prost(double, optional, tag = "74")]
    pub elapsed_time_timestamp: Option<f64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ContentItem {
    #[prost(string, optional, tag = "1")]
    pub identifier: Option<String>,
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<ContentItemMetadata>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub artwork_data: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PlaybackQueue {
    #[prost(int32, optional, tag = "1")]
    pub location: Option<i32>,
    #[prost(message, repeated, tag = "2")]
    pub content_items: Vec<ContentItem>,
}

#[derive(Clone, PartialEq, Message)]
pub struct CommandInfo {
    #[prost(int32, optional, tag = "1")]
    pub command: Option<i32>,
    #[prost(bool, optional, tag = "2")]
    pub enabled: Option<bool>,
    #[prost(int32, optional, tag = "10")]
    pub repeat_mode: Option<i32>,
    #[prost(int32, optional, tag = "11")]
    pub shuffle_mode: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SupportedCommands {
    #[prost(message, repeated, tag = "1")]
    pub supported_commands: Vec<CommandInfo>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SetState {
    #[prost(message, optional, tag = "2")]
    pub supported_commands: Option<SupportedCommands>,
    #[prost(message, optional, tag = "3")]
    pub playback_queue: Option<PlaybackQueue>,
    #[prost(string, optional, tag = "4")]
    pub display_id: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub display_name: Option<String>,
    #[prost(int32, optional, tag = "6")]
    pub playback_state: Option<i32>,
    #[prost(message, optional, tag = "9")]
    pub player_path: Option<PlayerPath>,
    #[prost(double, optional, tag = "11")]
    pub playback_state_timestamp: Option<f64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct CommandOptions {
    #[prost(double, optional, tag = "9")]
    pub playback_position: Option<f64>,
    #[prost(int32, optional, tag = "10")]
    pub repeat_mode: Option<i32>,
    #[prost(int32, optional, tag = "11")]
    pub shuffle_mode: Option<i32>,
    #[prost(double, optional, tag = "14")]
    pub skip_interval: Option<f64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SendCommand {
    #[prost(int32, optional, tag = "1")]
    pub command: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub options: Option<CommandOptions>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SendCommandResult {
    /// `SendError`: 0 none, 3 ignored, 10 not supported.
    #[prost(int32, optional, tag = "1")]
    pub send_error: Option<i32>,
    /// `HandlerReturnStatus`: 0 success, 2 command failed.
    #[prost(int32, optional, tag = "2")]
    pub handler_return_status: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SendHidEvent {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub hid_event_data: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SendButtonEvent {
    #[prost(uint32, optional, tag = "1")]
    pub usage_page: Option<u32>,
    #[prost(uint32, optional, tag = "2")]
    pub usage: Option<u32>,
    #[prost(bool, optional, tag = "3")]
    pub button_down: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
pub struct VolumeControlAvailability {
    #[prost(bool, optional, tag = "1")]
    pub volume_control_available: Option<bool>,
    /// `VolumeCapabilities`: 1 relative, 2 absolute, 3 both.
    #[prost(int32, optional, tag = "2")]
    pub volume_capabilities: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SetVolume {
    #[prost(float, optional, tag = "1")]
    pub volume: Option<f32>,
    #[prost(string, optional, tag = "2")]
    pub output_device_uid: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct VolumeDidChange {
    #[prost(float, optional, tag = "1")]
    pub volume: Option<f32>,
    #[prost(string, optional, tag = "3")]
    pub output_device_uid: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Keyboard {
    /// `KeyboardState`: 1 not editing.
    #[prost(int32, optional, tag = "1")]
    pub state: Option<i32>,
}

/// The HID usage in a `SEND_HID_EVENT`'s `hidEventData`: usage page, usage and whether the
/// button went down, big-endian 16-bit each at bytes 43..49 of the event (docs/protocols/mrp.md,
/// "Remote keys").
pub fn hid_usage(data: &[u8]) -> Option<(u16, u16, bool)> {
    let b = data.get(43..49)?;
    Some((
        u16::from_be_bytes([b[0], b[1]]),
        u16::from_be_bytes([b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]) != 0,
    ))
}

/// The remote keys by HID usage page and usage (docs/protocols/mrp.md, "Remote keys").
pub const KEYS: &[(u16, u16, &str)] = &[
    (1, 0x8C, "up"),
    (1, 0x8D, "down"),
    (1, 0x8B, "left"),
    (1, 0x8A, "right"),
    (1, 0x89, "select"),
    (1, 0x86, "menu"),
    (1, 0x82, "suspend"),
    (1, 0x83, "wakeup"),
    (12, 0x40, "home"),
    (12, 0x60, "top_menu"),
    (12, 0xB5, "next"),
    (12, 0xB6, "previous"),
    (12, 0xB7, "stop"),
    (12, 0xCD, "play_pause"),
    (12, 0xE9, "volume_up"),
    (12, 0xEA, "volume_down"),
];

/// The remote key a HID usage page and usage stand for ([`KEYS`]).
pub fn key_name(page: u16, usage: u16) -> Option<&'static str> {
    KEYS.iter()
        .find(|k| (k.0, k.1) == (page, usage))
        .map(|k| k.2)
}

/// The HID usage page and usage of a remote key ([`KEYS`]).
pub fn key_usage(name: &str) -> Option<(u16, u16)> {
    KEYS.iter().find(|k| k.2 == name).map(|k| (k.0, k.1))
}

/// A `hidEventData` for a key going down or up: what [`hid_usage`] reads, at bytes 43..49 of 60
/// (docs/protocols/mrp.md, "Remote keys").
pub fn hid_event_data(page: u16, usage: u16, down: bool) -> Vec<u8> {
    let mut data = vec![0u8; 43];
    data.extend(page.to_be_bytes());
    data.extend(usage.to_be_bytes());
    data.extend(u16::from(down).to_be_bytes());
    data.extend([0u8; 11]);
    data
}

/// Decodes one `ProtocolMessage`.
pub fn decode(bytes: &[u8]) -> Result<ProtocolMessage, prost::DecodeError> {
    ProtocolMessage::decode(bytes)
}

/// Encodes one `ProtocolMessage`.
pub fn encode(msg: &ProtocolMessage) -> Vec<u8> {
    msg.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_messages_are_fields_of_the_outer_one() {
        let mut m = ProtocolMessage::new(kind::SET_VOLUME, None, "U".into());
        m.set_volume = Some(SetVolume {
            volume: Some(0.5),
            output_device_uid: Some("D".into()),
        });
        let bytes = encode(&m);
        // type (field 1, varint): 0x08 0x33.
        assert_eq!(&bytes[..2], &[0x08, 51]);
        // setVolumeMessage is field 55, length-delimited: tag (55 << 3 | 2) = 442 = 0xBA 0x03.
        let at = bytes.windows(2).position(|w| w == [0xBA, 0x03]);
        assert!(at.is_some(), "{bytes:02x?}");
        assert_eq!(decode(&bytes).unwrap(), m);
    }

    #[test]
    fn hid_usage_reads_page_usage_and_state_at_byte_43() {
        let mut data = vec![0u8; 43];
        data.extend([0, 1, 0, 0x8C, 0, 1]);
        data.extend([0u8; 8]);
        assert_eq!(hid_usage(&data), Some((1, 0x8C, true)));
        assert_eq!(key_name(1, 0x8C), Some("up"));
        assert_eq!(hid_usage(&data[..40]), None);
        assert_eq!(
            hid_usage(&hid_event_data(12, 0xE9, false)),
            Some((12, 0xE9, false))
        );
        assert_eq!(key_usage("volume_up"), Some((12, 0xE9)));
    }
}
