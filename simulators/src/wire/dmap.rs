//! DMAP (Digital Media Access Protocol) tagged data: 4-byte ASCII tag, 4-byte big-endian length,
//! value; containers nest the same encoding (../shared/protocol-notes.md, DACP section).
//!
//! The wire carries no type information: whether a value is a container, an integer or a string is
//! known only from the tag. [`tag_type`] holds the tags airtwin knows; unknown tags decode as raw
//! bytes, never an error.

use std::fmt::Write as _;

use thiserror::Error;

/// Value types of DMAP (protocol-notes.md): 1 ubyte, 2 byte, 3 ushort, 4 short, 5 uint, 6 int,
/// 7 ulong, 8 long, 9 UTF-8 string, 10 date (u32 seconds), 11 version, 12 container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    UByte,
    Byte,
    UShort,
    Short,
    UInt,
    Int,
    ULong,
    Long,
    Str,
    Date,
    Version,
    Container,
}

/// The type of a known tag.
pub fn tag_type(tag: &[u8; 4]) -> Option<Kind> {
    use Kind::*;
    Some(match tag {
        b"mlit" | b"mlog" | b"msrv" | b"cmst" | b"cmpa" | b"mlcl" | b"mdcl" | b"avdb" | b"adbs"
        | b"apso" | b"aply" | b"mupd" | b"casp" | b"cmgt" | b"caci" | b"cmcp" => Container,
        b"minm" | b"asar" | b"asal" | b"asgn" | b"ascp" | b"cann" | b"cana" | b"canl" | b"cang"
        | b"cmnm" | b"cmty" | b"asaa" | b"ascm" | b"asfm" | b"mcnm" | b"mcna" | b"ceNR" => Str,
        b"mstt" | b"mlid" | b"miid" | b"mper" | b"mimc" | b"mctc" | b"msdc" | b"mstm" | b"cmsr"
        | b"cant" | b"cast" | b"astm" | b"caar" | b"caas" | b"cmvo" | b"musr" | b"mtco"
        | b"mrco" => UInt,
        b"cmpg" | b"canp" => ULong,
        b"caps" | b"cash" | b"carp" | b"cafs" | b"cavs" | b"cavc" | b"cmmk" | b"mikd" | b"msau"
        | b"muty" | b"caia" | b"cafe" | b"cave" | b"ceQR" => UByte,
        b"asyr" | b"astn" | b"asdc" | b"asdn" => UShort,
        b"apro" | b"mpro" | b"aeSV" => Version,
        b"asdm" | b"asda" => Date,
        _ => return None,
    })
}

/// A typed DMAP value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Container(Vec<Item>),
    /// Integers of any width, sign-extended or zero-extended by their kind.
    Int(i128),
    Str(String),
    /// Unknown tags, and known ones whose length does not fit their kind.
    Raw(Vec<u8>),
}

/// One tagged item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub tag: [u8; 4],
    pub value: Value,
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum DmapError {
    #[error("DMAP item at offset {offset} is cut short: {needed} bytes needed, {available} left")]
    Truncated {
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("DMAP nesting deeper than {0}")]
    TooDeep(usize),
}

const MAX_DEPTH: usize = 32;

/// Decodes a sequence of items.
pub fn decode(bytes: &[u8]) -> Result<Vec<Item>, DmapError> {
    decode_at(bytes, 0, 0)
}

fn decode_at(bytes: &[u8], base: usize, depth: usize) -> Result<Vec<Item>, DmapError> {
    if depth > MAX_DEPTH {
        return Err(DmapError::TooDeep(MAX_DEPTH));
    }
    let mut items = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if rest.len() < 8 {
            return Err(DmapError::Truncated {
                offset: base + pos,
                needed: 8,
                available: rest.len(),
            });
        }
        let tag: [u8; 4] = rest[..4].try_into().expect("4 bytes");
        let len = u32::from_be_bytes(rest[4..8].try_into().expect("4 bytes")) as usize;
        if rest.len() - 8 < len {
            return Err(DmapError::Truncated {
                offset: base + pos,
                needed: len + 8,
                available: rest.len(),
            });
        }
        let raw = &rest[8..8 + len];
        let value = match tag_type(&tag) {
            Some(Kind::Container) => Value::Container(decode_at(raw, base + pos + 8, depth + 1)?),
            Some(Kind::Str) => match std::str::from_utf8(raw) {
                Ok(s) => Value::Str(s.to_string()),
                Err(_) => Value::Raw(raw.to_vec()),
            },
            Some(kind) => int_value(kind, raw).unwrap_or_else(|| Value::Raw(raw.to_vec())),
            None => Value::Raw(raw.to_vec()),
        };
        items.push(Item { tag, value });
        pos += 8 + len;
    }
    Ok(items)
}

fn int_value(kind: Kind, raw: &[u8]) -> Option<Value> {
    let signed = matches!(kind, Kind::Byte | Kind::Short | Kind::Int | Kind::Long);
    if raw.is_empty() || raw.len() > 8 || !raw.len().is_power_of_two() {
        return None;
    }
    let mut v: i128 = 0;
    for b in raw {
        v = (v << 8) | *b as i128;
    }
    if signed && raw[0] & 0x80 != 0 {
        v -= 1i128 << (8 * raw.len());
    }
    Some(Value::Int(v))
}

/// Encodes items. Integers take the width of their tag's kind (4 bytes when unknown).
pub fn encode(items: &[Item]) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        let body = match &item.value {
            Value::Container(children) => encode(children),
            Value::Str(s) => s.as_bytes().to_vec(),
            Value::Raw(r) => r.clone(),
            Value::Int(v) => {
                let width = match tag_type(&item.tag) {
                    Some(Kind::UByte | Kind::Byte) => 1,
                    Some(Kind::UShort | Kind::Short) => 2,
                    Some(Kind::ULong | Kind::Long) => 8,
                    _ => 4,
                };
                v.to_be_bytes()[16 - width..].to_vec()
            }
        };
        out.extend_from_slice(&item.tag);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
    }
    out
}

/// A readable tree for transcripts: one item a line, indented by depth.
pub fn render(items: &[Item]) -> String {
    let mut out = String::new();
    render_into(items, 0, &mut out);
    out
}

fn render_into(items: &[Item], depth: usize, out: &mut String) {
    for item in items {
        let tag = String::from_utf8_lossy(&item.tag);
        let pad = "  ".repeat(depth);
        match &item.value {
            Value::Container(children) => {
                let _ = writeln!(out, "{pad}{tag}:");
                render_into(children, depth + 1, out);
            }
            Value::Int(v) => {
                let _ = writeln!(out, "{pad}{tag}: {v}");
            }
            Value::Str(s) => {
                let _ = writeln!(out, "{pad}{tag}: {s:?}");
            }
            Value::Raw(r) => {
                let hex: String = r.iter().take(32).map(|b| format!("{b:02x}")).collect();
                let more = if r.len() > 32 { "…" } else { "" };
                let _ = writeln!(out, "{pad}{tag}: 0x{hex}{more} ({} bytes)", r.len());
            }
        }
    }
}

/// Every string-valued item in the tree, depth first, as (tag, text).
pub fn strings(items: &[Item]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for item in items {
        match &item.value {
            Value::Container(c) => out.extend(strings(c)),
            Value::Str(s) => out.push((String::from_utf8_lossy(&item.tag).into_owned(), s.clone())),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn item(tag: &[u8; 4], value: Value) -> Item {
        Item { tag: *tag, value }
    }

    #[test]
    fn pairing_answer_round_trips() {
        // cmpa{cmpg 1, cmnm "pyatv remote", cmty "ipod"}: seeds/pyatv-device-pairing.txt
        let tree = vec![item(
            b"cmpa",
            Value::Container(vec![
                item(b"cmpg", Value::Int(1)),
                item(b"cmnm", Value::Str("pyatv remote".into())),
                item(b"cmty", Value::Str("ipod".into())),
            ]),
        )];
        let bytes = encode(&tree);
        assert_eq!(&bytes[..4], b"cmpa");
        assert_eq!(&bytes[8..16], b"cmpg\0\0\0\x08");
        assert_eq!(decode(&bytes).unwrap(), tree);
        assert!(render(&tree).contains("cmnm: \"pyatv remote\""));
    }

    #[test]
    fn length_past_the_end_is_an_error() {
        let err = decode(b"minm\0\0\0\x10abc").unwrap_err();
        assert!(matches!(err, DmapError::Truncated { offset: 0, .. }));
    }

    #[test]
    fn unknown_tags_are_raw() {
        let d = decode(b"zzzz\0\0\0\x02hi").unwrap();
        assert_eq!(d[0].value, Value::Raw(b"hi".to_vec()));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }
    }
}
