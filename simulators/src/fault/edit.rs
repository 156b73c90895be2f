//! Edits of the core's response, as a verdict lists them.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::CorruptTarget;
use crate::wire::dmap::{self, Item, Value};
use crate::wire::plist::plist_from_json;
use crate::wire::{Request, Response};

/// An edit of the core's response.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    Omit(String),
    Set(String, String),
    Corrupt {
        target: CorruptTarget,
        bytes: usize,
        seed: u64,
    },
    /// Cut the body to this many bytes.
    Truncate(usize),
    /// Set and remove keys of a binary-plist body.
    Plist {
        set: BTreeMap<String, serde_json::Value>,
        remove: Vec<String>,
    },
    /// Remove items with these tags from a DMAP body.
    Dmap {
        remove: Vec<String>,
    },
}

/// Applies the response edits of a verdict. `request` gives the CSeq a `respond` echoes.
pub fn apply_edits(response: &mut Response, edits: &[Edit]) {
    for edit in edits {
        match edit {
            Edit::Omit(h) => {
                response.headers.remove(h);
            }
            Edit::Set(h, v) => response.headers.set(h, v.clone()),
            Edit::Corrupt {
                target,
                bytes,
                seed,
            } => {
                let mut rng = ChaCha8Rng::seed_from_u64(*seed);
                match target {
                    CorruptTarget::Body => flip(&mut response.body, *bytes, &mut rng),
                    CorruptTarget::Header(name) => {
                        let Some(value) = response.headers.get(name) else {
                            continue;
                        };
                        // Flip within printable ASCII so the header block stays parseable: the
                        // fault is a wrong value, not a framing error.
                        let mut raw = value.as_bytes().to_vec();
                        for _ in 0..*bytes {
                            if raw.is_empty() {
                                break;
                            }
                            let pos = rng.gen_range(0..raw.len());
                            let old = raw[pos];
                            let mut new = rng.gen_range(b'!'..=b'~');
                            if new == old {
                                new = if old == b'~' { b'!' } else { old + 1 };
                            }
                            raw[pos] = new;
                        }
                        let value = String::from_utf8_lossy(&raw).into_owned();
                        response.headers.set(name, value);
                    }
                }
            }
            Edit::Truncate(n) => response.body.truncate(*n),
            Edit::Plist { set, remove } => edit_plist(&mut response.body, set, remove),
            Edit::Dmap { remove } => edit_dmap(&mut response.body, remove),
        }
    }
}

/// Rewrites a binary-plist dictionary body with keys set and removed; other bodies stay as they
/// are.
fn edit_plist(body: &mut Vec<u8>, set: &BTreeMap<String, serde_json::Value>, remove: &[String]) {
    let Ok(plist::Value::Dictionary(mut dict)) =
        plist::Value::from_reader(std::io::Cursor::new(&body[..]))
    else {
        return;
    };
    for k in remove {
        dict.remove(k);
    }
    for (k, v) in set {
        dict.insert(k.clone(), plist_from_json(v));
    }
    let mut out = Vec::new();
    if plist::Value::Dictionary(dict)
        .to_writer_binary(&mut out)
        .is_ok()
    {
        *body = out;
    }
}

/// Removes every item whose tag is in `remove`, at any depth, from a DMAP body; the containers'
/// lengths follow (DMAP is tag, 4-byte big-endian length, value: docs/protocols/dacp.md). A body
/// that is no DMAP, or has none of the tags, stays as it is.
fn edit_dmap(body: &mut Vec<u8>, remove: &[String]) {
    fn strip(items: Vec<Item>, remove: &[String], removed: &mut bool) -> Vec<Item> {
        let mut kept = Vec::with_capacity(items.len());
        for mut item in items {
            if remove.iter().any(|t| t.as_bytes() == item.tag) {
                *removed = true;
                continue;
            }
            if let Value::Container(children) = item.value {
                item.value = Value::Container(strip(children, remove, removed));
            }
            kept.push(item);
        }
        kept
    }
    let Ok(items) = dmap::decode(body) else {
        return;
    };
    let mut removed = false;
    let items = strip(items, remove, &mut removed);
    if removed {
        *body = dmap::encode(&items);
    }
}

fn flip(buf: &mut [u8], count: usize, rng: &mut ChaCha8Rng) {
    if buf.is_empty() {
        return;
    }
    for _ in 0..count {
        let pos = rng.gen_range(0..buf.len());
        let mask: u8 = rng.gen_range(1..=255);
        buf[pos] ^= mask;
    }
}

/// The response a `respond` fault sends for `request`: CSeq echoed, protocol of the request.
pub fn preempt_response(mut response: Response, request: &Request) -> Response {
    response.protocol = request.protocol;
    if let Some(cseq) = request.cseq() {
        if !response.headers.contains("CSeq") {
            response.headers.set("CSeq", cseq);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Protocol;

    #[test]
    fn corrupt_changes_header_but_keeps_it_printable() {
        let mut r = Response::new(Protocol::Rtsp10, 200);
        r.headers.set("Apple-Response", "abcdef");
        let edits = [Edit::Corrupt {
            target: CorruptTarget::Header("Apple-Response".into()),
            bytes: 2,
            seed: 5,
        }];
        apply_edits(&mut r, &edits);
        let v = r.headers.get("Apple-Response").unwrap();
        assert_ne!(v, "abcdef");
        assert!(v.bytes().all(|b| b.is_ascii_graphic()));
    }
}
