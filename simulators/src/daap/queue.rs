//! Playing from the library: the remote's `playqueue-edit` and `cue` commands turn a query over
//! the library into the play queue (docs/protocols/daap.md, "Playing from the library").
//!
//! - `cue?command=play&query=…&index=N` plays the matching tracks from the N-th (0 first);
//!   `cue?command=clear` empties the queue.
//! - `playqueue-edit?command=add&query=…&mode=M`: mode 1 (and 2, shuffled on iTunes; airtwin
//!   does not shuffle) plays the matches now, replacing the queue; modes 0 and 3 add them to the
//!   queue's end without starting. `command=clear` empties
//!   the queue, `command=playnow&index=N` plays the queue's N-th track.
//!
//! `sort=name` orders the matches by title, `sort=album` by album then track number, `sort=artist`
//! by artist; otherwise they keep the library's order.

use super::library::{Catalog, CatalogTrack};
use super::listing::Refusal;
use super::query::Query;
use crate::wire::message::percent_decode;
use crate::wire::Request;

/// How the play queue changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueChange {
    /// The queue becomes these item ids; play the one at `start`.
    Replace { ids: Vec<u32>, start: usize },
    /// These item ids go to the queue's end.
    Append(Vec<u32>),
    /// Empty queue, stopped.
    Clear,
    /// Play the queue's entry at this index.
    PlayIndex(usize),
}

fn refuse(status: u16, why: impl Into<String>) -> Refusal {
    Refusal {
        status,
        why: why.into(),
    }
}

fn index(req: &Request) -> Result<usize, Refusal> {
    match req.query_param("index") {
        None => Ok(0),
        Some(i) => i
            .parse()
            .map_err(|_| refuse(400, format!("index {i:?} is not a number"))),
    }
}

/// The tracks a command's `query=` selects, in its `sort=` order, without the `missing` item.
fn select(catalog: &Catalog, req: &Request, missing: Option<u32>) -> Result<Vec<u32>, Refusal> {
    let text = req
        .query_param("query")
        .map(percent_decode)
        .ok_or_else(|| refuse(400, "needs query="))?;
    let q = Query::parse(&text).map_err(|e| refuse(400, e.to_string()))?;
    let mut hits: Vec<&CatalogTrack> = catalog.tracks.iter().filter(|t| q.matches(t)).collect();
    match req.query_param("sort") {
        Some("name") => hits.sort_by_key(|t| t.track.title.to_lowercase()),
        Some("album") => hits.sort_by_key(|t| (t.track.album.to_lowercase(), t.track.track_number)),
        Some("artist") => hits.sort_by_key(|t| t.track.artist.to_lowercase()),
        _ => {}
    }
    let found = !hits.is_empty();
    let ids: Vec<u32> = hits
        .into_iter()
        .map(|t| t.id)
        .filter(|id| Some(*id) != missing)
        .collect();
    if ids.is_empty() {
        let why = if found {
            format!("{text}: the only matching item is missing (fault)")
        } else {
            format!("no library item matches {text}")
        };
        return Err(refuse(404, why));
    }
    Ok(ids)
}

/// Reads `cue` or `playqueue-edit` (`cmd`).
pub fn change(
    catalog: &Catalog,
    cmd: &str,
    req: &Request,
    missing: Option<u32>,
) -> Result<QueueChange, Refusal> {
    let command = req.query_param("command").unwrap_or("");
    match (cmd, command) {
        ("cue", "clear") | ("playqueue-edit", "clear") => Ok(QueueChange::Clear),
        ("cue", "play") => {
            let ids = select(catalog, req, missing)?;
            let start = index(req)?;
            if start >= ids.len() {
                return Err(refuse(
                    400,
                    format!("index {start} is past the {} matching tracks", ids.len()),
                ));
            }
            Ok(QueueChange::Replace { ids, start })
        }
        ("playqueue-edit", "add") => {
            let ids = select(catalog, req, missing)?;
            match req.query_param("mode").unwrap_or("1") {
                "1" | "2" => Ok(QueueChange::Replace { ids, start: 0 }),
                "0" | "3" => Ok(QueueChange::Append(ids)),
                m => Err(refuse(400, format!("mode {m:?} is not 0, 1, 2 or 3"))),
            }
        }
        ("playqueue-edit", "playnow") => Ok(QueueChange::PlayIndex(index(req)?)),
        // pyatv reads a 500 as "not supported" (docs/peers.md).
        (_, other) => Err(refuse(
            500,
            format!("{cmd} command {other:?} is not supported"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daap::library::{Library, LibraryTrack};
    use crate::wire::Protocol;

    fn catalog() -> Catalog {
        let t = |title: &str, artist: &str| -> LibraryTrack {
            serde_json::from_value(serde_json::json!({"title": title, "artist": artist})).unwrap()
        };
        Catalog::new(
            &Library {
                tracks: vec![t("b", "X"), t("a", "X"), t("c", "Y")],
                playlists: vec![],
            },
            vec![],
        )
        .unwrap()
    }

    fn ch(cmd: &str, q: &str, missing: Option<u32>) -> Result<QueueChange, Refusal> {
        let req = Request::new("GET", &format!("/ctrl-int/1/{cmd}?{q}"), Protocol::Http11);
        change(&catalog(), cmd, &req, missing)
    }

    #[test]
    fn cue_and_playqueue_edit_select_sort_and_start() {
        assert_eq!(
            ch(
                "cue",
                "command=play&query='daap.songartist:X'&sort=name&index=1",
                None
            ),
            Ok(QueueChange::Replace {
                ids: vec![2, 1],
                start: 1
            })
        );
        // node-daap's play: add with mode 1, the item id in a query.
        assert_eq!(
            ch(
                "playqueue-edit",
                "command=add&query='dmap.itemid:3'&sort=name&mode=1",
                None
            ),
            Ok(QueueChange::Replace {
                ids: vec![3],
                start: 0
            })
        );
        assert_eq!(
            ch(
                "playqueue-edit",
                "command=add&query='dmap.itemid:3'&mode=0",
                None
            ),
            Ok(QueueChange::Append(vec![3]))
        );
        assert_eq!(ch("cue", "command=clear", None), Ok(QueueChange::Clear));
        assert_eq!(
            ch("playqueue-edit", "command=playnow&index=2", None),
            Ok(QueueChange::PlayIndex(2))
        );
    }

    #[test]
    fn misses_and_bad_input_are_refused() {
        assert_eq!(
            ch("cue", "command=play&query='dmap.itemid:9'", None)
                .unwrap_err()
                .status,
            404
        );
        let r = ch("cue", "command=play&query='dmap.itemid:3'", Some(3)).unwrap_err();
        assert_eq!(r.status, 404);
        assert!(r.why.contains("missing"), "{}", r.why);
        assert_eq!(
            ch("cue", "command=play&query='daap.songartist:X'", Some(1)),
            Ok(QueueChange::Replace {
                ids: vec![2],
                start: 0
            })
        );
        assert_eq!(ch("cue", "command=play", None).unwrap_err().status, 400);
        assert_eq!(
            ch("cue", "command=play&query='dmap.itemid:1'&index=4", None)
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            ch(
                "playqueue-edit",
                "command=add&query='dmap.itemid:1'&mode=7",
                None
            )
            .unwrap_err()
            .status,
            400
        );
        assert_eq!(
            ch("playqueue-edit", "command=move", None)
                .unwrap_err()
                .status,
            500
        );
    }
}
