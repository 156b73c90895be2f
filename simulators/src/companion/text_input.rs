//! Text input over Companion (docs/protocols/companion.md, "Text input"): the device describes
//! the focused text field in `_tiStart`'s answer as `_tiD`, an NSKeyedArchiver binary plist whose
//! `$top` names the session UUID and the document state (`documentState` → `docSt` →
//! `contextBeforeInput`, the text so far), each a UID into `$objects`. The client edits the
//! field with `_tiC` events whose `_tiD` archive holds `textOperations`: `keyboardOutput` →
//! `insertionText` appends, `textToAssert` replaces the whole text, `targetSessionUUID` →
//! `NS.uuidbytes` names the session.

use plist::{Dictionary, Uid, Value};

/// The `_tiD` of `_tiStart` for a field holding `text`, in session `session`.
pub fn session_archive(session: [u8; 16], text: &str) -> Vec<u8> {
    let uid = |n| Value::Uid(Uid::new(n));
    let mut top = Dictionary::new();
    top.insert("sessionUUID".into(), uid(1));
    top.insert("documentState".into(), uid(2));
    let mut doc = Dictionary::new();
    doc.insert("docSt".into(), uid(3));
    let mut st = Dictionary::new();
    st.insert("contextBeforeInput".into(), uid(4));
    let mut root = Dictionary::new();
    root.insert("$version".into(), Value::Integer(100_000.into()));
    root.insert("$archiver".into(), Value::String("RTIKeyedArchiver".into()));
    root.insert("$top".into(), Value::Dictionary(top));
    root.insert(
        "$objects".into(),
        Value::Array(vec![
            Value::String("$null".into()),
            Value::Data(session.to_vec()),
            Value::Dictionary(doc),
            Value::Dictionary(st),
            Value::String(text.into()),
        ]),
    );
    let mut out = Vec::new();
    Value::Dictionary(root)
        .to_writer_binary(&mut out)
        .expect("a plist of strings, data and dictionaries always serialises");
    out
}

/// One `_tiC` edit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Operation {
    pub session: Option<Vec<u8>>,
    /// Text to append.
    pub insert: Option<String>,
    /// Text the whole field becomes.
    pub assert: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextInputError {
    #[error("_tiD is not a property list: {0}")]
    Plist(String),
    #[error("_tiD archive has no {0}")]
    Missing(&'static str),
}

/// Reads the edit of a `_tiC` archive.
pub fn parse_operation(archive: &[u8]) -> Result<Operation, TextInputError> {
    let root = Value::from_reader(std::io::Cursor::new(archive))
        .map_err(|e| TextInputError::Plist(e.to_string()))?;
    let objects = root
        .as_dictionary()
        .and_then(|d| d.get("$objects"))
        .and_then(Value::as_array)
        .ok_or(TextInputError::Missing("$objects"))?;
    let resolve = |v: &Value| -> Option<Value> {
        match v {
            Value::Uid(u) => objects.get(usize::try_from(u.get()).ok()?).cloned(),
            other => Some(other.clone()),
        }
    };
    let get = |d: &Value, key: &str| -> Option<Value> { resolve(d.as_dictionary()?.get(key)?) };
    let top = root
        .as_dictionary()
        .and_then(|d| d.get("$top"))
        .ok_or(TextInputError::Missing("$top"))?;
    let ops = get(top, "textOperations").ok_or(TextInputError::Missing("textOperations"))?;
    Ok(Operation {
        session: get(&ops, "targetSessionUUID")
            .and_then(|u| get(&u, "NS.uuidbytes"))
            .and_then(|d| d.as_data().map(<[u8]>::to_vec)),
        insert: get(&ops, "keyboardOutput")
            .and_then(|k| get(&k, "insertionText"))
            .and_then(|t| t.as_string().map(str::to_string)),
        assert: get(&ops, "textToAssert").and_then(|t| t.as_string().map(str::to_string)),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An edit archive laid out as pyatv's pre-encoded `_tiC` payloads are.
    pub(crate) fn edit(session: &[u8], insert: Option<&str>, assert: Option<&str>) -> Vec<u8> {
        let uid = |n| Value::Uid(Uid::new(n));
        let mut ops = Dictionary::new();
        ops.insert("targetSessionUUID".into(), uid(2));
        let mut objects = vec![Value::String("$null".into()), Value::Boolean(false)];
        let mut uuid = Dictionary::new();
        uuid.insert("NS.uuidbytes".into(), Value::Data(session.to_vec()));
        objects.push(Value::Dictionary(uuid));
        if let Some(t) = insert {
            let mut k = Dictionary::new();
            k.insert("insertionText".into(), uid(4));
            objects.push(Value::Dictionary(k));
            objects.push(Value::String(t.into()));
            ops.insert("keyboardOutput".into(), uid(3));
        }
        if let Some(t) = assert {
            ops.insert("textToAssert".into(), uid(objects.len() as u64));
            objects.push(Value::String(t.into()));
        }
        objects[1] = Value::Dictionary(ops);
        let mut top = Dictionary::new();
        top.insert("textOperations".into(), uid(1));
        let mut root = Dictionary::new();
        root.insert("$top".into(), Value::Dictionary(top));
        root.insert("$objects".into(), Value::Array(objects));
        let mut out = Vec::new();
        Value::Dictionary(root).to_writer_binary(&mut out).unwrap();
        out
    }

    #[test]
    fn reads_insertions_and_assertions_and_writes_the_session() {
        let op = parse_operation(&edit(&[7; 16], Some("abc"), None)).unwrap();
        assert_eq!(op.insert.as_deref(), Some("abc"));
        assert_eq!(op.session, Some(vec![7; 16]));
        assert_eq!(op.assert, None);
        let op = parse_operation(&edit(&[7; 16], None, Some(""))).unwrap();
        assert_eq!(op.assert.as_deref(), Some(""));
        assert!(parse_operation(b"nope").is_err());
        let archive = session_archive([1; 16], "hello");
        let root = Value::from_reader(std::io::Cursor::new(&archive)).unwrap();
        let objects = root.as_dictionary().unwrap()["$objects"]
            .as_array()
            .unwrap();
        assert_eq!(objects[1].as_data(), Some(&[1u8; 16][..]));
        assert_eq!(objects[4].as_string(), Some("hello"));
    }
}
