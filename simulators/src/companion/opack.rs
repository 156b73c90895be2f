//! OPACK, the binary object format of every Companion message (docs/protocols/companion.md,
//! "OPACK"). One tag byte says what follows:
//!
//! | tag | value |
//! |---|---|
//! | 0x01 / 0x02 | true / false |
//! | 0x04 | null |
//! | 0x05 | UUID, 16 bytes |
//! | 0x06 | absolute time, 8 bytes |
//! | 0x08..=0x2F | integer 0..=39 |
//! | 0x30..=0x33 | integer, 1/2/4/8 bytes little-endian |
//! | 0x35 / 0x36 | float32 / float64, little-endian |
//! | 0x40..=0x60 | UTF-8 string of 0..=32 bytes |
//! | 0x61..=0x64 | UTF-8 string, length in 1/2/3/4 bytes little-endian |
//! | 0x70..=0x90 | data of 0..=32 bytes |
//! | 0x91..=0x94 | data, length in 1/2/4/8 bytes little-endian |
//! | 0xA0..=0xC0 | back-reference to item 0..=32 of the table |
//! | 0xC1..=0xC4 | back-reference, index in 1/2/3/4 bytes little-endian |
//! | 0xD0..=0xDE / 0xDF | array of 0..=14 items / of any count, ended by 0x03 |
//! | 0xE0..=0xEE / 0xEF | dictionary of 0..=14 pairs / of any count, ended by 0x03 |
//!
//! Back-references: the table holds, in the order their encodings end, every item whose encoding
//! is longer than one byte (a container after its items), except references themselves; a
//! later item with the same encoding is written as a reference to it. pyatv's packer does this
//! for every repeated string, number or container (`_hidC` is both the request name and a key of
//! its content), so a device must resolve them.

use thiserror::Error;

/// One OPACK value. Dictionaries keep their order and may have keys of any type.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Null,
    Uuid([u8; 16]),
    /// Absolute time: seconds since 2001-01-01 as a float64.
    Date(f64),
    /// 0x08..=0x33; negative values are written as 8 bytes (two's complement).
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Array(Vec<Value>),
    Dict(Vec<(Value, Value)>),
}

impl Value {
    /// A dictionary with string keys.
    pub fn dict<'a>(pairs: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
        Value::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| (Value::Str(k.to_string()), v))
                .collect(),
        )
    }

    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    /// The value under string key `key` of a dictionary.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(pairs) => pairs
                .iter()
                .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(n) => Some(*n as f64),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// Compact text of a value for transcripts: `{_i: "_hidC", _c: {_hBtS: 2}}`, data as its length.
impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Null => f.write_str("null"),
            Value::Uuid(u) => write!(f, "uuid:{}", hex::encode(u)),
            Value::Date(d) => write!(f, "date:{d}"),
            Value::Int(n) => write!(f, "{n}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Bytes(b) => write!(f, "<{} bytes>", b.len()),
            Value::Array(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Dict(pairs) => {
                f.write_str("{")?;
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    match k {
                        Value::Str(s) => write!(f, "{s}: {v}")?,
                        k => write!(f, "{k}: {v}")?,
                    }
                }
                f.write_str("}")
            }
        }
    }
}

/// Why bytes are not one OPACK value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OpackError {
    #[error("OPACK ends inside an item at byte {0}")]
    Truncated(usize),
    #[error("OPACK tag 0x{tag:02X} at byte {at} is not a known type")]
    UnknownTag { tag: u8, at: usize },
    #[error("OPACK string at byte {0} is not UTF-8")]
    Utf8(usize),
    #[error("OPACK back-reference {index} at byte {at}: the table has {len} items")]
    Reference { index: u64, at: usize, len: usize },
    #[error("OPACK nests deeper than {0} containers")]
    Depth(usize),
    #[error("{0} bytes after the OPACK value")]
    Trailing(usize),
    #[error("OPACK back-references expand to more than {0} items and bytes")]
    Expansion(usize),
}

/// Deepest nesting accepted: deeper input is refused rather than recursed into.
const MAX_DEPTH: usize = 64;

/// Most that back-references may add to a value, counted by [`weight`]. A reference copies an
/// earlier item, containers included, so a few bytes of `[ref, ref]` arrays, each referring to
/// the one before, would otherwise double the value per three bytes of input.
const MAX_EXPANSION: usize = 1 << 20;

/// How deep a value nests: 0 for a scalar, one more than its deepest item for a container.
fn nesting(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(nesting).max().unwrap_or(0),
        Value::Dict(pairs) => {
            1 + pairs
                .iter()
                .map(|(k, v)| nesting(k).max(nesting(v)))
                .max()
                .unwrap_or(0)
        }
        _ => 0,
    }
}

/// What a value costs in memory, roughly: one per item, plus the length of strings and bytes.
fn weight(value: &Value) -> usize {
    match value {
        Value::Str(s) => 1 + s.len(),
        Value::Bytes(b) => 1 + b.len(),
        Value::Array(items) => items.iter().map(weight).fold(1, usize::saturating_add),
        Value::Dict(pairs) => pairs
            .iter()
            .map(|(k, v)| weight(k).saturating_add(weight(v)))
            .fold(1, usize::saturating_add),
        _ => 1,
    }
}

/// Decodes one value that fills `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Value, OpackError> {
    let mut d = Decoder {
        bytes,
        at: 0,
        table: Vec::new(),
        expanded: 0,
    };
    let v = d.value(0)?;
    match bytes.len() - d.at {
        0 => Ok(v),
        n => Err(OpackError::Trailing(n)),
    }
}

struct Decoder<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Items a back-reference may name, with their [`weight`] and [`nesting`].
    table: Vec<(Value, usize, usize)>,
    /// The weight back-references added so far, at most [`MAX_EXPANSION`].
    expanded: usize,
}

impl Decoder<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], OpackError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or(OpackError::Truncated(self.at))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn uint(&mut self, n: usize) -> Result<u64, OpackError> {
        let b = self.take(n)?;
        let mut v = [0u8; 8];
        v[..n].copy_from_slice(b);
        Ok(u64::from_le_bytes(v))
    }

    fn len(&mut self, n: usize) -> Result<usize, OpackError> {
        let at = self.at;
        let v = self.uint(n)?;
        usize::try_from(v).map_err(|_| OpackError::Truncated(at))
    }

    fn string(&mut self, n: usize) -> Result<Value, OpackError> {
        let at = self.at;
        let b = self.take(n)?;
        std::str::from_utf8(b)
            .map(|s| Value::Str(s.to_string()))
            .map_err(|_| OpackError::Utf8(at))
    }

    fn value(&mut self, depth: usize) -> Result<Value, OpackError> {
        if depth > MAX_DEPTH {
            return Err(OpackError::Depth(MAX_DEPTH));
        }
        let start = self.at;
        let tag = *self.take(1)?.first().ok_or(OpackError::Truncated(start))?;
        let value = match tag {
            0x01 => Value::Bool(true),
            0x02 => Value::Bool(false),
            0x04 => Value::Null,
            0x05 => {
                let mut u = [0u8; 16];
                u.copy_from_slice(self.take(16)?);
                Value::Uuid(u)
            }
            0x06 => Value::Date(f64::from_bits(self.uint(8)?)),
            0x08..=0x2F => Value::Int(i64::from(tag - 8)),
            0x30..=0x32 => Value::Int(self.uint(1 << (tag - 0x30))? as i64),
            0x33 => Value::Int(self.uint(8)? as i64),
            0x35 => Value::Float(f64::from(f32::from_bits(self.uint(4)? as u32))),
            0x36 => Value::Float(f64::from_bits(self.uint(8)?)),
            0x40..=0x60 => self.string(usize::from(tag - 0x40))?,
            0x61..=0x64 => {
                let n = self.len(usize::from(tag - 0x60))?;
                self.string(n)?
            }
            0x70..=0x90 => Value::Bytes(self.take(usize::from(tag - 0x70))?.to_vec()),
            0x91..=0x94 => {
                let n = self.len(1 << (tag - 0x91))?;
                Value::Bytes(self.take(n)?.to_vec())
            }
            0xA0..=0xC0 => return self.reference(u64::from(tag - 0xA0), start, depth),
            0xC1..=0xC4 => {
                let index = self.uint(usize::from(tag - 0xC0))?;
                return self.reference(index, start, depth);
            }
            0xD0..=0xDF => {
                let mut items = Vec::new();
                if tag == 0xDF {
                    while !self.end_marker()? {
                        items.push(self.value(depth + 1)?);
                    }
                } else {
                    for _ in 0..tag - 0xD0 {
                        items.push(self.value(depth + 1)?);
                    }
                }
                Value::Array(items)
            }
            0xE0..=0xEF => {
                let mut pairs = Vec::new();
                if tag == 0xEF {
                    while !self.end_marker()? {
                        let k = self.value(depth + 1)?;
                        pairs.push((k, self.value(depth + 1)?));
                    }
                } else {
                    for _ in 0..tag - 0xE0 {
                        let k = self.value(depth + 1)?;
                        pairs.push((k, self.value(depth + 1)?));
                    }
                }
                Value::Dict(pairs)
            }
            tag => return Err(OpackError::UnknownTag { tag, at: start }),
        };
        if self.at - start > 1 {
            self.table
                .push((value.clone(), weight(&value), nesting(&value)));
        }
        Ok(value)
    }

    /// Consumes the 0x03 that ends an open-ended container, if it is next.
    fn end_marker(&mut self) -> Result<bool, OpackError> {
        match self.bytes.get(self.at) {
            None => Err(OpackError::Truncated(self.at)),
            Some(0x03) => {
                self.at += 1;
                Ok(true)
            }
            Some(_) => Ok(false),
        }
    }

    /// The table's item `index`, copied to `depth`: refused when the copy would nest deeper
    /// than [`MAX_DEPTH`] or expand the value past [`MAX_EXPANSION`].
    fn reference(&mut self, index: u64, at: usize, depth: usize) -> Result<Value, OpackError> {
        let (value, weight, nesting) = usize::try_from(index)
            .ok()
            .and_then(|i| self.table.get(i))
            .ok_or(OpackError::Reference {
                index,
                at,
                len: self.table.len(),
            })?;
        if depth + nesting > MAX_DEPTH {
            return Err(OpackError::Depth(MAX_DEPTH));
        }
        self.expanded = self.expanded.saturating_add(*weight);
        if self.expanded > MAX_EXPANSION {
            return Err(OpackError::Expansion(MAX_EXPANSION));
        }
        Ok(value.clone())
    }
}

/// Encodes `value` without back-references: every OPACK reader reads it.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write(value, &mut out, None);
    out
}

/// Encodes `value` with back-references for repeated items, as pyatv's packer writes them.
pub fn encode_with_references(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let mut table = Vec::new();
    write(value, &mut out, Some(&mut table));
    out
}

fn sized(tag: u8, n: u64, widths: &[usize]) -> Vec<u8> {
    for (i, w) in widths.iter().enumerate() {
        if *w == 8 || n < 1u64 << (8 * *w as u32) {
            let mut b = vec![tag + i as u8];
            b.extend_from_slice(&n.to_le_bytes()[..*w]);
            return b;
        }
    }
    unreachable!("the last width is 8 bytes")
}

fn write(value: &Value, out: &mut Vec<u8>, mut table: Option<&mut Vec<Vec<u8>>>) {
    let mut own = Vec::new();
    match value {
        Value::Bool(true) => own.push(0x01),
        Value::Bool(false) => own.push(0x02),
        Value::Null => own.push(0x04),
        Value::Uuid(u) => {
            own.push(0x05);
            own.extend_from_slice(u);
        }
        Value::Date(d) => {
            own.push(0x06);
            own.extend_from_slice(&d.to_le_bytes());
        }
        Value::Int(n) if (0..0x28).contains(n) => own.push(0x08 + *n as u8),
        Value::Int(n) if *n < 0 => {
            own.push(0x33);
            own.extend_from_slice(&n.to_le_bytes());
        }
        Value::Int(n) => own = sized(0x30, *n as u64, &[1, 2, 4, 8]),
        Value::Float(x) => {
            own.push(0x36);
            own.extend_from_slice(&x.to_le_bytes());
        }
        Value::Str(s) => {
            let b = s.as_bytes();
            if b.len() <= 0x20 {
                own.push(0x40 + b.len() as u8);
            } else {
                own = sized(0x61, b.len() as u64, &[1, 2, 3, 4]);
            }
            own.extend_from_slice(b);
        }
        Value::Bytes(b) => {
            if b.len() <= 0x20 {
                own.push(0x70 + b.len() as u8);
            } else {
                own = sized(0x91, b.len() as u64, &[1, 2, 4, 8]);
            }
            own.extend_from_slice(b);
        }
        Value::Array(items) => {
            own.push(0xD0 + items.len().min(0xF) as u8);
            for v in items {
                write(v, &mut own, table.as_deref_mut());
            }
            if items.len() >= 0xF {
                own.push(0x03);
            }
        }
        Value::Dict(pairs) => {
            own.push(0xE0 + pairs.len().min(0xF) as u8);
            for (k, v) in pairs {
                write(k, &mut own, table.as_deref_mut());
                write(v, &mut own, table.as_deref_mut());
            }
            if pairs.len() >= 0xF {
                own.push(0x03);
            }
        }
    }
    if let Some(table) = table {
        if let Some(i) = table.iter().position(|t| *t == own) {
            own = if i <= 0x20 {
                vec![0xA0 + i as u8]
            } else {
                sized(0xC1, i as u64, &[1, 2, 3, 4])
            };
        } else if own.len() > 1 {
            table.push(own.clone());
        }
    }
    out.extend_from_slice(&own);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hid(state: i64, command: i64, xid: i64) -> Value {
        Value::dict([
            ("_i", Value::str("_hidC")),
            ("_t", Value::Int(2)),
            (
                "_c",
                Value::dict([("_hBtS", Value::Int(state)), ("_hidC", Value::Int(command))]),
            ),
            ("_x", Value::Int(xid)),
        ])
    }

    #[test]
    fn a_reference_may_not_nest_a_container_deeper_than_the_limit() {
        // An array nested 40 deep, then, 40 deep again, a reference to it: 80 levels in all,
        // which the value could never be written as without references (found by the fuzzer).
        let mut bytes = vec![0xD2];
        bytes.extend([0xD1; 39]);
        bytes.push(0x44);
        bytes.extend(b"abcd");
        bytes.extend([0xD1; 39]);
        bytes.push(0xC1);
        bytes.push(39);
        assert_eq!(decode(&bytes), Err(OpackError::Depth(MAX_DEPTH)));
    }

    #[test]
    fn references_that_double_a_value_stop_at_the_expansion_limit() {
        // [[4-byte string], ref 0] then, forty times, [ref n, ref n]: each array refers twice to
        // the one before, so the value would double forty times.
        let mut bytes = vec![0xDF, 0x44, b'a', b'b', b'c', b'd'];
        for n in 0..40u8 {
            bytes.extend([0xD2, 0xA0 + n.min(31), 0xA0 + n.min(31)]);
        }
        bytes.push(0x03);
        let started = std::time::Instant::now();
        assert_eq!(decode(&bytes), Err(OpackError::Expansion(MAX_EXPANSION)));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // A few references, as pyatv writes them, are well within the limit.
        let small = [0xD3, 0x44, b'a', b'b', b'c', b'd', 0xA0, 0xA0];
        assert_eq!(
            decode(&small).unwrap(),
            Value::Array(vec![
                Value::str("abcd"),
                Value::str("abcd"),
                Value::str("abcd")
            ])
        );
    }

    // The bytes pyatv 0.18's packer writes for its `_hidC` request (Up released, xid 1000):
    // `_hidC` appears as the name and again as a key of the content, the second time as
    // reference 0xA1 (the table is "_i", "_hidC", "_t", "_c", "_hBtS", …).
    const HID_FROM_PYATV: &str =
        "e4425f69455f68696443425f740a425f63e2455f6842745309a10c425f7831e803";
    // pyatv's `_touchStart`: the float 1000.0 is `_height` and again `_width` (0xA5).
    const TOUCH_FROM_PYATV: &str = "e4425f694b5f746f7563685374617274425f740a425f63e3475f686569676874360000000000408f40445f74466c08465f7769647468a5425f780f";

    #[test]
    fn decodes_the_back_reference_pyatv_writes_for_a_repeated_key() {
        let bytes = hex::decode(HID_FROM_PYATV).unwrap();
        assert!(bytes.contains(&0xA1));
        assert_eq!(decode(&bytes).unwrap(), hid(1, 4, 1000));
        assert_eq!(encode_with_references(&hid(1, 4, 1000)), bytes);
        // Without references the key is spelled out again.
        let plain = encode(&hid(1, 4, 1000));
        assert!(!plain.contains(&0xA1));
        assert_eq!(decode(&plain).unwrap(), hid(1, 4, 1000));
        let touch = decode(&hex::decode(TOUCH_FROM_PYATV).unwrap()).unwrap();
        let content = touch.get("_c").unwrap();
        assert_eq!(content.get("_width"), Some(&Value::Float(1000.0)));
        assert_eq!(content.get("_height"), Some(&Value::Float(1000.0)));
    }

    #[test]
    fn known_encodings_of_each_size_class() {
        assert_eq!(encode(&Value::Int(39)), [0x2F]);
        assert_eq!(encode(&Value::Int(40)), [0x30, 40]);
        assert_eq!(encode(&Value::Int(0x1234)), [0x31, 0x34, 0x12]);
        assert_eq!(encode(&Value::Int(1 << 32)), [0x33, 0, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(encode(&Value::str("")), [0x40]);
        let long = "x".repeat(0x21);
        assert_eq!(encode(&Value::str(long.clone()))[..2], [0x61, 0x21]);
        assert_eq!(encode(&Value::Bytes(vec![0; 300]))[..3], [0x92, 0x2C, 0x01]);
        let fifteen = Value::Array((0..15).map(Value::Int).collect());
        let b = encode(&fifteen);
        assert_eq!((b[0], b[b.len() - 1]), (0xDF, 0x03));
        assert_eq!(decode(&b).unwrap(), fifteen);
        assert_eq!(
            decode(&[0x35, 0, 0, 0x80, 0x3F]).unwrap(),
            Value::Float(1.0)
        );
    }

    #[test]
    fn refuses_bad_input_without_panicking() {
        assert_eq!(decode(&[0x44, b'a']), Err(OpackError::Truncated(1)));
        assert!(matches!(
            decode(&[0x07]),
            Err(OpackError::UnknownTag { tag: 0x07, .. })
        ));
        assert!(matches!(
            decode(&[0xD1, 0xA3]),
            Err(OpackError::Reference { index: 3, .. })
        ));
        assert_eq!(decode(&[0xDF, 0x08]), Err(OpackError::Truncated(2)));
        assert_eq!(decode(&[0x08, 0x08]), Err(OpackError::Trailing(1)));
        assert_eq!(decode(&[0x42, 0xFF, 0xFE]), Err(OpackError::Utf8(1)));
        assert_eq!(decode(&[0xD1; 100]), Err(OpackError::Depth(MAX_DEPTH)));
        assert!(decode(&[0x94, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]).is_err());
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<bool>().prop_map(Value::Bool),
            Just(Value::Null),
            any::<[u8; 16]>().prop_map(Value::Uuid),
            any::<i64>().prop_map(Value::Int),
            (0i64..50).prop_map(Value::Int),
            any::<f64>()
                .prop_filter("NaN is not equal to itself", |f| !f.is_nan())
                .prop_map(Value::Float),
            "[a-z_]{0,40}".prop_map(Value::Str),
            prop::sample::select(vec!["_i", "_hidC", "_c", "_x"]).prop_map(Value::str),
            prop::collection::vec(any::<u8>(), 0..300).prop_map(Value::Bytes),
        ];
        leaf.prop_recursive(4, 64, 20, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..20).prop_map(Value::Array),
                prop::collection::vec((inner.clone(), inner), 0..20).prop_map(Value::Dict),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trips_with_and_without_references(v in value()) {
            prop_assert_eq!(decode(&encode(&v)).unwrap(), v.clone());
            let with = encode_with_references(&v);
            prop_assert!(with.len() <= encode(&v).len());
            prop_assert_eq!(decode(&with).unwrap(), v);
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }
    }
}
