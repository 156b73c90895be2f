//! DMAP (Digital Media Access Protocol) tagged data: 4-byte ASCII tag, 4-byte big-endian length,
//! value; containers nest the same encoding (docs/protocols/dacp.md, DACP section).
//!
//! The wire carries no type information: whether a value is a container, an integer or a string is
//! known only from the tag. [`TAGS`] holds the tags airtwin knows (code, readable name, type):
//! every tag the DACP server, the DAAP library listings and the pairing answer use, and every tag
//! pyatv 0.18's DMAP client knows (its `tag_definitions.py` list). Integer widths of the library
//! fields follow libdmapsharing's content-code table (docs/protocols/daap.md). Unknown tags decode as raw bytes, never an error.

use std::fmt::Write as _;

use thiserror::Error;

/// Value types of DMAP (docs/protocols/dacp.md): 1 ubyte, 2 byte, 3 ushort, 4 short, 5 uint, 6 int,
/// 7 ulong, 8 long, 9 UTF-8 string, 10 date (u32 seconds), 11 version (u32 major<<16|minor),
/// 12 container; `Data` is an opaque byte string (e.g. `canp`, four u32 ids; `ceSD`, a plist).
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
    Data,
}

impl Kind {
    /// Bytes an integer of this kind takes on the wire; `None` for the others.
    pub fn width(self) -> Option<usize> {
        use Kind::*;
        match self {
            UByte | Byte => Some(1),
            UShort | Short => Some(2),
            UInt | Int | Date | Version => Some(4),
            ULong | Long => Some(8),
            Str | Container | Data => None,
        }
    }

    pub fn signed(self) -> bool {
        matches!(self, Kind::Byte | Kind::Short | Kind::Int | Kind::Long)
    }

    /// The smallest and largest integer this kind holds.
    pub fn range(self) -> Option<(i128, i128)> {
        let bits = 8 * self.width()? as u32;
        Some(if self.signed() {
            (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
        } else {
            (0, (1i128 << bits) - 1)
        })
    }

    pub fn name(self) -> &'static str {
        use Kind::*;
        match self {
            UByte => "ubyte",
            Byte => "byte",
            UShort => "ushort",
            Short => "short",
            UInt => "uint",
            Int => "int",
            ULong => "ulong",
            Long => "long",
            Str => "string",
            Date => "date",
            Version => "version",
            Container => "container",
            Data => "data",
        }
    }
}

/// One known tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagDef {
    pub code: [u8; 4],
    /// Readable name as DAAP/DACP content-codes call it (`dmcp.playstatus`).
    pub name: &'static str,
    pub kind: Kind,
}

const fn t(code: &[u8; 4], name: &'static str, kind: Kind) -> TagDef {
    TagDef {
        code: *code,
        name,
        kind,
    }
}

use Kind::{Container as C, Data as D, Date as Dt, Int as I, Str as S, UByte as U8};
use Kind::{UInt as U32, ULong as U64, UShort as U16, Version as V};

/// The tag table, sorted by code.
pub static TAGS: &[TagDef] = &[
    t(b"abpl", "daap.baseplaylist", U8),
    t(b"adbs", "daap.databasesongs", C),
    t(b"aeFP", "com.apple.itunes.req-fplay", U8),
    t(b"aeFR", "com.apple.itunes.unknown-fr", U8),
    t(b"aeGs", "com.apple.itunes.can-be-genius-seed", U8),
    t(b"aeHV", "com.apple.itunes.has-video", U8),
    t(b"aeMK", "com.apple.itunes.mediakind", U8),
    t(b"aeMk", "com.apple.itunes.extended-media-kind", U32),
    t(b"aePS", "com.apple.itunes.special-playlist", U8),
    t(b"aeSP", "com.apple.itunes.smart-playlist", U8),
    t(b"aeSV", "com.apple.itunes.music-sharing-version", V),
    t(b"aeSX", "com.apple.itunes.unknown-sx", U64),
    t(b"aead", "com.apple.itunes.unknown-ad", D),
    t(b"aelb", "com.apple.itunes.like-button", U8),
    t(b"aels", "com.apple.itunes.liked-state", U8),
    t(b"agac", "daap.groupalbumcount", U32),
    t(b"agal", "daap.albumgrouping", C),
    t(b"agar", "daap.artistgrouping", C),
    t(b"aply", "daap.databaseplaylists", C),
    t(b"apro", "daap.protocolversion", V),
    t(b"apso", "daap.playlistsongs", C),
    t(b"asaa", "daap.songalbumartist", S),
    t(b"asai", "daap.songalbumid", U64),
    t(b"asal", "daap.songalbum", S),
    t(b"asar", "daap.songartist", S),
    t(b"asbr", "daap.songbitrate", U16),
    t(b"ascm", "daap.songcomment", S),
    t(b"ascp", "daap.songcomposer", S),
    t(b"asda", "daap.songdateadded", Dt),
    t(b"asdc", "daap.songdisccount", U16),
    t(b"asdk", "daap.songdatakind", U8),
    t(b"asdm", "daap.songdatemodified", Dt),
    t(b"asdn", "daap.songdiscnumber", U16),
    t(b"asfm", "daap.songformat", S),
    t(b"asgn", "daap.songgenre", S),
    t(b"asgr", "com.apple.itunes.gapless-resy", U8),
    t(b"asri", "daap.songartistid", U64),
    t(b"assa", "daap.sortartist", S),
    t(b"asse", "com.apple.itunes.unknown-se", U64),
    t(b"assu", "daap.sortalbum", S),
    t(b"assz", "daap.songsize", U32),
    t(b"astc", "daap.songtrackcount", U16),
    t(b"astm", "daap.songtime", U32),
    t(b"astn", "daap.songtracknumber", U16),
    t(b"asul", "daap.songdataurl", S),
    t(b"asyr", "daap.songyear", U16),
    t(b"atCV", "com.apple.itunes.unknown-cv", U32),
    t(b"atSV", "com.apple.itunes.unknown-sv", V),
    t(b"ated", "daap.supportsextradata", U16),
    t(b"avdb", "daap.serverdatabases", C),
    t(b"caar", "dacp.albumrepeat", U8),
    t(b"caas", "dacp.albumshuffle", U8),
    t(b"caci", "dacp.controlint", C),
    // The answer to `cue` (owntone writes it; no content-codes list names it: the name is ours).
    t(b"cacr", "dacp.cueresponse", C),
    t(b"cafe", "dacp.fullscreenenabled", U8),
    t(b"cafs", "dacp.fullscreen", U8),
    t(b"caia", "dacp.isactive", U8),
    t(b"caks", "dacp.unknown-ks", U8),
    t(b"cana", "daap.nowplayingartist", S),
    t(b"cang", "dacp.nowplayinggenre", S),
    t(b"canl", "daap.nowplayingalbum", S),
    t(b"cann", "daap.nowplayingtrack", S),
    t(b"canp", "daap.nowplayingid", D),
    t(b"cant", "dacp.remainingtime", U32),
    t(b"caov", "dacp.unknown-ov", U32),
    t(b"capl", "dacp.unknown-pl", D),
    t(b"capr", "dacp.protocolversion", V),
    t(b"caps", "dacp.playstatus", U8),
    t(b"carp", "dacp.repeatstate", U8),
    t(b"casa", "dacp.unknown-sa", U32),
    t(b"casc", "dacp.unknown-sc", U8),
    t(b"cash", "dacp.shufflestate", U8),
    t(b"casp", "dacp.speakers", C),
    t(b"cass", "dacp.unknown-ss", U8),
    t(b"cast", "dacp.tracklength", U32),
    t(b"casu", "dacp.su", U8),
    t(b"cavc", "dacp.volumecontrollable", U8),
    t(b"cave", "dacp.dacpvisualizerenabled", U8),
    t(b"cavs", "dacp.visualizer", U8),
    t(b"ceGS", "com.apple.itunes.genius-selectable", S),
    t(b"ceMQ", "com.apple.itunes.unknown-mq", U8),
    t(b"ceNQ", "com.apple.itunes.unknown-nq", U32),
    t(b"ceNR", "com.apple.itunes.unknown-nr", D),
    t(b"ceQA", "com.apple.itunes.unknown-qa", U8),
    t(b"ceQR", "com.apple.itunes.playqueue-contents-response", C),
    t(b"ceQU", "com.apple.itunes.unknown-qu", U8),
    t(b"ceQu", "com.apple.itunes.unknown-qu2", U8),
    t(b"ceSD", "com.apple.itunes.playing-metadata", D),
    t(b"cmbe", "dmcp.unknown-be", S),
    t(b"cmcc", "dmcp.unknown-cc", S),
    t(b"cmce", "dmcp.unknown-ce", S),
    t(b"cmcp", "dmcp.controlprompt", C),
    t(b"cmcv", "dmcp.unknown-cv", D),
    t(b"cmgt", "dmcp.getpropertyresponse", C),
    t(b"cmik", "dmcp.unknown-ik", U8),
    t(b"cmmk", "dmcp.mediakind", U32),
    t(b"cmnm", "dacp.devicename", S),
    t(b"cmpa", "dacp.pairinganswer", C),
    t(b"cmpg", "dacp.pairingguid", U64),
    t(b"cmpr", "dmcp.protocolversion", V),
    t(b"cmsb", "dmcp.unknown-sb", U8),
    t(b"cmsc", "dmcp.unknown-sc", U8),
    t(b"cmsp", "dmcp.unknown-sp", U8),
    t(b"cmsr", "dmcp.serverrevision", U32),
    t(b"cmst", "dmcp.playstatus", C),
    t(b"cmsv", "dmcp.unknown-sv", U8),
    t(b"cmte", "dmcp.unknown-te", S),
    t(b"cmty", "dacp.devicetype", S),
    t(b"cmvo", "dmcp.volume", U32),
    t(b"mccr", "dmap.contentcodesresponse", C),
    t(b"mcna", "dmap.contentcodesname", S),
    t(b"mcnm", "dmap.contentcodesnumber", S),
    t(b"mctc", "dmap.containercount", U32),
    t(b"mcti", "dmap.containeritemid", U32),
    t(b"mdcl", "dmap.dictionary", C),
    t(b"miid", "dmap.itemid", U32),
    t(b"mikd", "dmap.itemkind", U8),
    t(b"mimc", "dmap.itemcount", U32),
    t(b"minm", "dmap.itemname", S),
    t(b"mlcl", "dmap.listing", C),
    t(b"mlid", "dmap.sessionid", U32),
    t(b"mlit", "dmap.listingitem", C),
    t(b"mlog", "dmap.loginresponse", C),
    t(b"mpco", "dmap.parentcontainerid", U32),
    t(b"mper", "dmap.persistentid", U64),
    t(b"mpro", "dmap.protocolversion", V),
    t(b"mrco", "dmap.returnedcount", U32),
    t(b"msal", "dmap.supportsautologout", U8),
    t(b"msau", "dmap.authenticationmethod", U8),
    t(b"msbr", "dmap.supportsbrowse", U8),
    t(b"mscu", "dmap.unknown-cu", U32),
    t(b"msdc", "dmap.databasescount", U32),
    t(b"msed", "dmap.supportsedit", U8),
    t(b"msex", "dmap.supportsextensions", U8),
    t(b"msix", "dmap.supportsindex", U8),
    t(b"mslr", "dmap.loginrequired", U8),
    t(b"msma", "dmap.speakermachineaddress", U64),
    t(b"mspi", "dmap.supportspersistentids", U8),
    t(b"msqy", "dmap.supportsquery", U8),
    t(b"msrv", "dmap.serverinforesponse", C),
    t(b"mstc", "dmap.utctime", Dt),
    t(b"mstm", "dmap.timeoutinterval", U32),
    t(b"msto", "dmap.utcoffset", I),
    t(b"mstt", "dmap.status", U32),
    t(b"msup", "dmap.supportsupdate", U8),
    t(b"mtco", "dmap.specifiedtotalcount", U32),
    t(b"mudl", "dmap.deletedidlisting", C),
    t(b"mupd", "dmap.updateresponse", C),
    t(b"musr", "dmap.serverrevision", U32),
    t(b"muty", "dmap.updatetype", U8),
];

/// The definition of a known tag.
pub fn lookup(tag: &[u8; 4]) -> Option<&'static TagDef> {
    TAGS.binary_search_by(|d| d.code.cmp(tag))
        .ok()
        .map(|i| &TAGS[i])
}

/// The definition of a known tag by its readable name (`daap.songartist`), as DAAP's `meta=`
/// parameter and query filters name them.
pub fn lookup_name(name: &str) -> Option<&'static TagDef> {
    TAGS.iter().find(|d| d.name == name)
}

/// The type of a known tag.
pub fn tag_type(tag: &[u8; 4]) -> Option<Kind> {
    lookup(tag).map(|d| d.kind)
}

/// A typed DMAP value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Container(Vec<Item>),
    /// Integers of any width, sign-extended or zero-extended by their kind.
    Int(i128),
    Str(String),
    /// Unknown tags, `Data` tags, and known ones whose bytes do not fit their kind.
    Raw(Vec<u8>),
}

impl Value {
    pub fn as_int(&self) -> Option<i128> {
        match self {
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn children(&self) -> Option<&[Item]> {
        match self {
            Value::Container(c) => Some(c),
            _ => None,
        }
    }
}

/// One tagged item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub tag: [u8; 4],
    pub value: Value,
}

impl Item {
    pub fn container(tag: &[u8; 4], children: Vec<Item>) -> Self {
        Item {
            tag: *tag,
            value: Value::Container(children),
        }
    }

    pub fn int(tag: &[u8; 4], v: impl Into<i128>) -> Self {
        Item {
            tag: *tag,
            value: Value::Int(v.into()),
        }
    }

    pub fn str(tag: &[u8; 4], s: impl Into<String>) -> Self {
        Item {
            tag: *tag,
            value: Value::Str(s.into()),
        }
    }

    pub fn raw(tag: &[u8; 4], bytes: impl Into<Vec<u8>>) -> Self {
        Item {
            tag: *tag,
            value: Value::Raw(bytes.into()),
        }
    }

    /// The tag as text (`cmst`).
    pub fn tag_str(&self) -> String {
        String::from_utf8_lossy(&self.tag).into_owned()
    }
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
                needed: len.saturating_add(8),
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
            Some(Kind::Data) | None => Value::Raw(raw.to_vec()),
            Some(kind) => int_value(kind, raw).unwrap_or_else(|| Value::Raw(raw.to_vec())),
        };
        items.push(Item { tag, value });
        pos += 8 + len;
    }
    Ok(items)
}

/// Integers are read at the width they arrive in (1, 2, 4 or 8 bytes): senders do not always use
/// the tag's usual width (pyatv writes `cmcc` as one byte although its table reads a string).
fn int_value(kind: Kind, raw: &[u8]) -> Option<Value> {
    if raw.is_empty() || raw.len() > 8 || !raw.len().is_power_of_two() {
        return None;
    }
    let mut v: i128 = 0;
    for b in raw {
        v = (v << 8) | *b as i128;
    }
    if kind.signed() && raw[0] & 0x80 != 0 {
        v -= 1i128 << (8 * raw.len());
    }
    Some(Value::Int(v))
}

/// Encodes items. Integers take the width of their tag's kind (4 bytes when the tag is unknown
/// or not an integer tag).
pub fn encode(items: &[Item]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(items, &mut out);
    out
}

fn encode_into(items: &[Item], out: &mut Vec<u8>) {
    for item in items {
        out.extend_from_slice(&item.tag);
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        match &item.value {
            Value::Container(children) => encode_into(children, out),
            Value::Str(s) => out.extend_from_slice(s.as_bytes()),
            Value::Raw(r) => out.extend_from_slice(r),
            Value::Int(v) => {
                let width = tag_type(&item.tag).and_then(Kind::width).unwrap_or(4);
                out.extend_from_slice(&v.to_be_bytes()[16 - width..]);
            }
        }
        let len = (out.len() - len_at - 4) as u32;
        out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
    }
}

/// The first item found along a path of tags (`[b"cmst", b"caps"]`), depth first at each level.
pub fn first<'a>(items: &'a [Item], path: &[&[u8; 4]]) -> Option<&'a Value> {
    let (head, rest) = path.split_first()?;
    let item = items.iter().find(|i| &i.tag == *head)?;
    if rest.is_empty() {
        return Some(&item.value);
    }
    first(item.value.children()?, rest)
}

/// A readable tree for transcripts: one item a line, indented by depth, with the tag's readable
/// name when it is known.
pub fn render(items: &[Item]) -> String {
    let mut out = String::new();
    render_into(items, 0, &mut out);
    out
}

fn render_into(items: &[Item], depth: usize, out: &mut String) {
    for item in items {
        let tag = item.tag_str();
        let pad = "  ".repeat(depth);
        let name = lookup(&item.tag)
            .map(|d| format!("  [{}]", d.name))
            .unwrap_or_default();
        match &item.value {
            Value::Container(children) => {
                let _ = writeln!(out, "{pad}{tag}:{name}");
                render_into(children, depth + 1, out);
            }
            Value::Int(v) => {
                let _ = writeln!(out, "{pad}{tag}: {v}{name}");
            }
            Value::Str(s) => {
                let _ = writeln!(out, "{pad}{tag}: {s:?}{name}");
            }
            Value::Raw(r) => {
                let hex: String = r.iter().take(32).map(|b| format!("{b:02x}")).collect();
                let more = if r.len() > 32 { "…" } else { "" };
                let _ = writeln!(out, "{pad}{tag}: 0x{hex}{more} ({} bytes){name}", r.len());
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
            Value::Str(s) => out.push((item.tag_str(), s.clone())),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pairing_answer_round_trips() {
        // cmpa{cmpg 1, cmnm "pyatv remote", cmty "ipod"}: docs/protocols/dacp.md
        let tree = vec![Item::container(
            b"cmpa",
            vec![
                Item::int(b"cmpg", 1),
                Item::str(b"cmnm", "pyatv remote"),
                Item::str(b"cmty", "ipod"),
            ],
        )];
        let bytes = encode(&tree);
        assert_eq!(&bytes[..4], b"cmpa");
        assert_eq!(&bytes[8..16], b"cmpg\0\0\0\x08");
        assert_eq!(decode(&bytes).unwrap(), tree);
        let text = render(&tree);
        assert!(text.contains("cmnm: \"pyatv remote\""), "{text}");
        assert!(text.contains("[dacp.pairinganswer]"), "{text}");
    }

    #[test]
    fn table_is_sorted_and_unique() {
        for w in TAGS.windows(2) {
            assert!(w[0].code < w[1].code, "{:?}", w[1]);
        }
        assert_eq!(lookup(b"cmst").map(|d| d.name), Some("dmcp.playstatus"));
        assert_eq!(tag_type(b"cmpg"), Some(Kind::ULong));
    }

    #[test]
    fn length_past_the_end_is_an_error() {
        let err = decode(b"minm\0\0\0\x10abc").unwrap_err();
        assert!(matches!(err, DmapError::Truncated { offset: 0, .. }));
        // Inside a container: the offset points at the inner item.
        let err = decode(b"cmst\0\0\0\x0ccaps\0\0\0\x09\x04abc").unwrap_err();
        assert!(
            matches!(err, DmapError::Truncated { offset: 8, .. }),
            "{err}"
        );
        let err = decode(b"cmst\xff\xff\xff\xff").unwrap_err();
        assert!(matches!(err, DmapError::Truncated { .. }), "{err}");
    }

    #[test]
    fn unknown_tags_are_raw() {
        let d = decode(b"zzzz\0\0\0\x02hi").unwrap();
        assert_eq!(d[0].value, Value::Raw(b"hi".to_vec()));
    }

    #[test]
    fn signed_and_narrow_integers_decode_by_kind() {
        let d = decode(b"msto\0\0\0\x04\xff\xff\xff\xf6caps\0\0\0\x01\x04").unwrap();
        assert_eq!(d[0].value, Value::Int(-10));
        assert_eq!(d[1].value, Value::Int(4));
        assert_eq!(first(&d, &[b"caps"]), Some(&Value::Int(4)));
    }

    fn leaf() -> impl Strategy<Value = Item> {
        let known: Vec<&'static TagDef> =
            TAGS.iter().filter(|d| d.kind != Kind::Container).collect();
        let known_leaf = proptest::sample::select(known).prop_flat_map(|def| {
            let code = def.code;
            match def.kind {
                Kind::Str => ".{0,12}".prop_map(move |s| Item::str(&code, s)).boxed(),
                Kind::Data => proptest::collection::vec(any::<u8>(), 0..20)
                    .prop_map(move |b| Item::raw(&code, b))
                    .boxed(),
                kind => {
                    let (lo, hi) = kind.range().expect("integer kind");
                    (lo..=hi).prop_map(move |v| Item::int(&code, v)).boxed()
                }
            }
        });
        // Unknown tags: four bytes outside the table, carrying raw bytes.
        let unknown = (
            any::<[u8; 4]>(),
            proptest::collection::vec(any::<u8>(), 0..20),
        )
            .prop_filter("not a known tag", |(tag, _)| lookup(tag).is_none())
            .prop_map(|(tag, b)| Item::raw(&tag, b));
        prop_oneof![3 => known_leaf, 1 => unknown]
    }

    fn tree() -> impl Strategy<Value = Vec<Item>> {
        let containers: Vec<[u8; 4]> = TAGS
            .iter()
            .filter(|d| d.kind == Kind::Container)
            .map(|d| d.code)
            .collect();
        let item = leaf().prop_recursive(4, 48, 6, move |inner| {
            (
                proptest::sample::select(containers.clone()),
                proptest::collection::vec(inner, 0..6),
            )
                .prop_map(|(tag, children)| Item::container(&tag, children))
        });
        proptest::collection::vec(item, 0..6)
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(items in tree()) {
            let bytes = encode(&items);
            prop_assert_eq!(decode(&bytes).unwrap(), items);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(items) = decode(&bytes) {
                let _ = render(&items);
                let _ = encode(&items);
            }
        }

        #[test]
        fn cutting_an_encoding_short_is_a_clean_error(items in tree(), cut in any::<prop::sample::Index>()) {
            let bytes = encode(&items);
            prop_assume!(!bytes.is_empty());
            let at = cut.index(bytes.len());
            // Cut inside the first top-level item: its length now runs past the buffer.
            let first_len = 8 + u32::from_be_bytes(bytes[4..8].try_into().unwrap()) as usize;
            prop_assume!(at > 0 && at < first_len);
            let res = decode(&bytes[..at]);
            let is_truncated = matches!(res, Err(DmapError::Truncated { .. }));
            prop_assert!(is_truncated, "{:?}", res);
        }
    }
}
