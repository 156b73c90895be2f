//! `GET /info`: who the Apple TV says it is, as a binary plist (docs/protocols/airplay.md).
//!
//! A real answer holds deviceID, features, keepAliveLowPower, keepAliveSendStatsAsBody,
//! macAddress, model, name, sourceVersion, statusFlags, pi, pk (data), vv, audioFormats,
//! audioLatencies and displays, plus initialVolume; the last four come only when the request
//! carries a `CSeq` (docs/protocols/airplay.md). A request body whose `qualifier` is `["txtAirPlay"]` asks for the
//! `_airplay._tcp` TXT record alone.

use std::io::Cursor;

use plist::{Dictionary, Value};

/// `/info` keys whose value is a string (docs/protocols/airplay.md).
pub const STRING_KEYS: [&str; 6] = [
    "deviceID",
    "macAddress",
    "model",
    "name",
    "pi",
    "sourceVersion",
];

/// `/info` keys whose value is an integer (docs/protocols/airplay.md).
pub const INTEGER_KEYS: [&str; 5] = [
    "features",
    "statusFlags",
    "vv",
    "keepAliveLowPower",
    "keepAliveSendStatsAsBody",
];

/// A display of the device (the `displays` entries of the seed).
#[derive(Debug, Clone, PartialEq)]
pub struct DisplayInfo {
    pub width: u64,
    pub height: u64,
    pub refresh_rate: f64,
    pub uuid: String,
}

/// The values `/info` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct InfoIdentity {
    /// `AA:BB:CC:DD:EE:FF`; also `macAddress`.
    pub device_id: String,
    pub mac_address: String,
    pub model: String,
    pub name: String,
    /// Pairing identity, a UUID string.
    pub pi: String,
    /// Ed25519 public key (32 bytes).
    pub pk: [u8; 32],
    pub features: u64,
    pub status_flags: u64,
    pub vv: u64,
    pub source_version: String,
    /// dB; pyatv reads it, and a real number skips its volume SET_PARAMETER (docs/peers.md).
    pub initial_volume: f64,
    pub display: DisplayInfo,
    /// TXT `osvers`: the tvOS version an Apple TV 4K announces; pyatv reads its major part (≥ 13
    /// lets it tunnel MRP over AirPlay) and shows it as the device's version
    /// (docs/protocols/hap.md, "What an Apple TV 4K announces"). Absent on an Apple TV 3.
    pub os_version: Option<String>,
    /// TXT `psi`: the identifier the device pairs with (pair-setup M6, pair-verify M2). Absent on
    /// an Apple TV 3.
    pub psi: Option<String>,
    /// Keys the scenario sets (`Some`) or removes (`None`), applied last, in order.
    pub overrides: Vec<(String, Option<Value>)>,
}

/// What a `GET /info` request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfoQuery {
    /// Everything (no body, or a body without a known qualifier).
    Full,
    /// `qualifier: ["txtAirPlay"]`: the TXT record alone.
    TxtAirPlay,
}

/// Reads a `GET /info` body. An empty body asks for everything; a body that is no plist
/// dictionary is an error the caller reports (and answers as `Full`).
pub fn parse_query(body: &[u8]) -> Result<InfoQuery, String> {
    if body.is_empty() {
        return Ok(InfoQuery::Full);
    }
    let value = Value::from_reader(Cursor::new(body)).map_err(|e| format!("body: {e}"))?;
    let Value::Dictionary(dict) = value else {
        return Err("body is a plist but not a dictionary".into());
    };
    match dict.get("qualifier") {
        None => Ok(InfoQuery::Full),
        Some(Value::Array(items)) => {
            if items.iter().any(|v| v.as_string() == Some("txtAirPlay")) {
                Ok(InfoQuery::TxtAirPlay)
            } else {
                Err(format!("unknown qualifier {items:?}"))
            }
        }
        Some(other) => Err(format!("qualifier is not an array: {other:?}")),
    }
}

/// `0x5A7FFFF7,0x1E`: the low then the high 32 bits, as `_airplay._tcp` TXT records write
/// `features` (just `0x5A7FFFF7` when the high half is zero). With a high half the low word is
/// always 8 hex digits: pyatv's `parse_features` joins the two hex strings without padding, so
/// `0x0,0x10000` would read as bit 20 (docs/protocols/dns-sd.md, "features").
pub fn features_text(features: u64) -> String {
    let (lo, hi) = (features & 0xFFFF_FFFF, features >> 32);
    if hi == 0 {
        format!("0x{lo:X}")
    } else {
        format!("0x{lo:08X},0x{hi:X}")
    }
}

pub use crate::wire::hex::encode as hex;

fn int(v: u64) -> Value {
    Value::Integer(v.into())
}

/// The `/info` dictionary. `with_cseq`: the request carried a `CSeq` (RTSP), which adds
/// initialVolume, audioFormats, audioLatencies and displays.
pub fn info_dict(id: &InfoIdentity, with_cseq: bool) -> Dictionary {
    let mut d = Dictionary::new();
    d.insert("deviceID".into(), id.device_id.clone().into());
    d.insert("features".into(), int(id.features));
    d.insert("keepAliveLowPower".into(), int(1));
    d.insert("keepAliveSendStatsAsBody".into(), int(1));
    d.insert("macAddress".into(), id.mac_address.clone().into());
    d.insert("model".into(), id.model.clone().into());
    d.insert("name".into(), id.name.clone().into());
    d.insert("sourceVersion".into(), id.source_version.clone().into());
    d.insert("statusFlags".into(), int(id.status_flags));
    d.insert("pi".into(), id.pi.clone().into());
    d.insert("pk".into(), Value::Data(id.pk.to_vec()));
    d.insert("vv".into(), int(id.vv));
    if with_cseq {
        d.insert("initialVolume".into(), Value::Real(id.initial_volume));
        // Type 96 with formats 0x01000000 and zero latencies, as in the seed.
        let mut format = Dictionary::new();
        format.insert("type".into(), int(96));
        format.insert("audioInputFormats".into(), int(0x0100_0000));
        format.insert("audioOutputFormats".into(), int(0x0100_0000));
        d.insert(
            "audioFormats".into(),
            Value::Array(vec![Value::Dictionary(format)]),
        );
        let mut latency = Dictionary::new();
        latency.insert("type".into(), int(96));
        latency.insert("audioType".into(), "default".into());
        latency.insert("inputLatencyMicros".into(), int(0));
        latency.insert("outputLatencyMicros".into(), int(0));
        d.insert(
            "audioLatencies".into(),
            Value::Array(vec![Value::Dictionary(latency)]),
        );
        let disp = &id.display;
        let mut display = Dictionary::new();
        display.insert("features".into(), int(14));
        display.insert("height".into(), int(disp.height));
        display.insert("heightPixels".into(), int(disp.height));
        display.insert("heightPhysical".into(), int(0));
        display.insert("width".into(), int(disp.width));
        display.insert("widthPixels".into(), int(disp.width));
        display.insert("widthPhysical".into(), int(0));
        display.insert("refreshRate".into(), Value::Real(disp.refresh_rate));
        display.insert("overscanned".into(), Value::Boolean(true));
        display.insert("rotation".into(), Value::Boolean(true));
        display.insert("uuid".into(), disp.uuid.clone().into());
        d.insert(
            "displays".into(),
            Value::Array(vec![Value::Dictionary(display)]),
        );
    }
    for (key, value) in &id.overrides {
        match value {
            Some(v) => {
                d.insert(key.clone(), v.clone());
            }
            None => {
                d.remove(key);
            }
        }
    }
    d
}

/// The `_airplay._tcp` TXT record of the device, built from the same values as `/info`.
pub fn txt_entries(id: &InfoIdentity) -> Vec<(String, String)> {
    [
        ("deviceid".into(), id.device_id.clone()),
        ("features".into(), features_text(id.features)),
        ("flags".into(), format!("0x{:X}", id.status_flags)),
        ("model".into(), id.model.clone()),
        ("pi".into(), id.pi.clone()),
        ("pk".into(), hex(&id.pk)),
        ("srcvers".into(), id.source_version.clone()),
        ("vv".into(), id.vv.to_string()),
    ]
    .into_iter()
    .chain(id.os_version.clone().map(|v| ("osvers".to_string(), v)))
    .chain(id.psi.clone().map(|v| ("psi".to_string(), v)))
    .collect()
}

/// DNS TXT wire format (RFC 6763 §6): each `key=value` prefixed by its length byte; entries
/// longer than 255 bytes are cut.
pub fn encode_txt(entries: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in entries {
        let mut entry = format!("{k}={v}").into_bytes();
        entry.truncate(255);
        out.push(entry.len() as u8);
        out.extend(entry);
    }
    out
}

/// Reads DNS TXT wire format back into `key=value` pairs; `None` when a length runs past the end.
pub fn decode_txt(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Some((&len, tail)) = rest.split_first() {
        let entry = tail.get(..usize::from(len))?;
        let text = String::from_utf8_lossy(entry);
        let (k, v) = text.split_once('=').unwrap_or((&text, ""));
        out.push((k.to_string(), v.to_string()));
        rest = &tail[usize::from(len)..];
    }
    Some(out)
}

/// The answer to a `txtAirPlay` qualifier: `{txtAirPlay: <TXT record bytes>}`.
pub fn txt_dict(id: &InfoIdentity) -> Dictionary {
    let mut d = Dictionary::new();
    d.insert(
        "txtAirPlay".into(),
        Value::Data(encode_txt(&txt_entries(id))),
    );
    d
}

/// A dictionary as a binary plist.
pub fn encode(dict: Dictionary) -> Result<Vec<u8>, plist::Error> {
    let mut out = Vec::new();
    Value::Dictionary(dict).to_writer_binary(&mut out)?;
    Ok(out)
}

/// The body of a `GET /info` request with a qualifier, as senders send it.
pub fn qualifier_body(qualifier: &str) -> Vec<u8> {
    let mut d = Dictionary::new();
    d.insert(
        "qualifier".into(),
        Value::Array(vec![qualifier.to_string().into()]),
    );
    encode(d).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The default Apple TV's identity (AirplayConfig::apple_tv), with a recognisable key.
    pub(crate) fn identity() -> InfoIdentity {
        let mut id =
            super::super::server::AirplayConfig::apple_tv("APS[AA:BB:CC:DD:EE:FF]", 0).info;
        id.pk = [7; 32];
        id
    }

    #[test]
    fn info_has_every_key_of_the_seed_with_its_type() {
        let d = info_dict(&identity(), true);
        for k in STRING_KEYS {
            assert!(d.get(k).and_then(Value::as_string).is_some(), "{k}");
        }
        for k in INTEGER_KEYS {
            assert!(d.get(k).and_then(Value::as_signed_integer).is_some(), "{k}");
        }
        assert_eq!(
            d.get("pk").and_then(Value::as_data).map(<[u8]>::len),
            Some(32)
        );
        assert_eq!(d.get("initialVolume").and_then(Value::as_real), Some(-20.0));
        for k in ["audioFormats", "audioLatencies", "displays"] {
            assert_eq!(
                d.get(k).and_then(Value::as_array).map(Vec::len),
                Some(1),
                "{k}"
            );
        }
        let display = d["displays"].as_array().unwrap()[0]
            .as_dictionary()
            .unwrap();
        assert_eq!(display.len(), 11);
        assert_eq!(display["refreshRate"].as_real(), Some(60.0));
    }

    #[test]
    fn without_cseq_the_audio_and_display_keys_are_left_out() {
        let d = info_dict(&identity(), false);
        assert_eq!(d.len(), 12);
        assert!(d.get("displays").is_none() && d.get("initialVolume").is_none());
    }

    #[test]
    fn overrides_set_change_type_and_remove() {
        let mut id = identity();
        id.overrides = vec![
            ("pk".into(), None),
            ("features".into(), Some("0x1".to_string().into())),
            ("extra".into(), Some(Value::Boolean(true))),
        ];
        let d = info_dict(&id, true);
        assert!(d.get("pk").is_none());
        assert_eq!(d["features"].as_string(), Some("0x1"));
        assert_eq!(d["extra"].as_boolean(), Some(true));
    }

    #[test]
    fn qualifier_txt_airplay_is_recognised() {
        assert_eq!(
            parse_query(&qualifier_body("txtAirPlay")),
            Ok(InfoQuery::TxtAirPlay)
        );
        assert_eq!(parse_query(b""), Ok(InfoQuery::Full));
        assert!(parse_query(&qualifier_body("txtRAOP")).is_err());
        assert!(parse_query(b"not a plist").is_err());
    }

    #[test]
    fn txt_record_round_trips_and_carries_the_info_values() {
        let id = identity();
        let d = txt_dict(&id);
        let entries = decode_txt(d["txtAirPlay"].as_data().unwrap()).unwrap();
        assert_eq!(entries, txt_entries(&id));
        assert!(entries.contains(&("pk".into(), "07".repeat(32))));
        assert!(entries.contains(&("features".into(), "0x5A7FFFF7".into())));
        assert_eq!(features_text(0x4_0000_0001), "0x00000001,0x4");
        assert_eq!(features_text(1 << 48), "0x00000000,0x10000");
        assert_eq!(features_text(0x1E_5A7F_FFF7), "0x5A7FFFF7,0x1E");
    }

    #[test]
    fn info_plist_round_trips() {
        let d = info_dict(&identity(), true);
        let bytes = encode(d.clone()).unwrap();
        assert!(bytes.starts_with(b"bplist00"));
        let back = Value::from_reader(Cursor::new(&bytes)).unwrap();
        assert_eq!(back, Value::Dictionary(d));
    }

    proptest! {
        #[test]
        fn arbitrary_info_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_query(&body);
            let mut with_magic = b"bplist00".to_vec();
            with_magic.extend(&body);
            let _ = parse_query(&with_magic);
        }

        #[test]
        fn info_round_trips_for_any_identity(
            name in "[ -~]{0,40}",
            model in "[A-Za-z0-9,]{1,16}",
            features in any::<u64>(),
            flags in any::<u32>(),
            pk in proptest::array::uniform32(any::<u8>()),
            volume in -144.0f64..0.0,
        ) {
            let mut id = identity();
            id.name = name;
            id.model = model;
            id.features = features >> 1;
            id.status_flags = u64::from(flags);
            id.pk = pk;
            id.initial_volume = volume;
            let d = info_dict(&id, true);
            let bytes = encode(d.clone()).unwrap();
            let back = Value::from_reader(Cursor::new(&bytes)).unwrap();
            prop_assert_eq!(back, Value::Dictionary(d));
            let txt = decode_txt(&encode_txt(&txt_entries(&id))).unwrap();
            prop_assert_eq!(txt.len(), 8);
        }
    }
}
