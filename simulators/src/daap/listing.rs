//! The library's DAAP answers under `/databases/1/…`: items, containers (playlists), a container's
//! items, groups (albums, artists) and artwork, with `meta=` field selection, `type=music` and
//! query filters (docs/protocols/daap.md, "Listings").

use super::library::{persistent_id, Catalog, CatalogTrack};
use super::query::Query;
use crate::wire::dmap::Item;
use crate::wire::message::percent_decode;
use crate::wire::Request;

/// What the server answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Dmap(Vec<Item>),
    /// A PNG.
    Image(Vec<u8>),
}

/// A refused request: the status and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub why: String,
}

fn refuse(status: u16, why: impl Into<String>) -> Refusal {
    Refusal {
        status,
        why: why.into(),
    }
}

/// Which fields a listing carries: `meta=` names, comma separated, or `all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meta {
    All,
    Names(Vec<String>),
}

impl Meta {
    /// The `meta=` parameter; absent, the item's kind, id and name.
    pub fn of(req: &Request) -> Meta {
        match req.query_param("meta").map(percent_decode) {
            Some(m) if m == "all" => Meta::All,
            Some(m) => Meta::Names(m.split(',').map(|s| s.trim().to_string()).collect()),
            None => Meta::Names(vec!["dmap.itemname".into()]),
        }
    }

    /// Whether a field goes in. `dmap.itemkind` and `dmap.itemid` always do: clients key on the
    /// id (libdmapsharing and node-daap read `miid` from every entry; docs/protocols/daap.md,
    /// "Listings").
    fn wants(&self, name: &str) -> bool {
        match self {
            Meta::All => true,
            Meta::Names(n) => {
                name == "dmap.itemkind" || name == "dmap.itemid" || n.iter().any(|m| m == name)
            }
        }
    }
}

/// The request's filter: `query=` (or `filter=`), and `type=music`. Every library track is music,
/// so `type=music` passes them all; any other type matches nothing.
struct Filter {
    query: Option<Query>,
    music: bool,
}

impl Filter {
    fn of(req: &Request) -> Result<Filter, Refusal> {
        let query = match req
            .query_param("query")
            .or_else(|| req.query_param("filter"))
        {
            Some(q) => {
                Some(Query::parse(&percent_decode(q)).map_err(|e| refuse(400, e.to_string()))?)
            }
            None => None,
        };
        let music = req.query_param("type").is_none_or(|t| t == "music");
        Ok(Filter { query, music })
    }

    fn keep(&self, t: &CatalogTrack) -> bool {
        self.music && self.query.as_ref().is_none_or(|q| q.matches(t))
    }
}

/// `tag{mstt 200, muty, mtco, mrco, mlcl{…}}`: the shape of every DAAP listing. `muty` 0 is a
/// full listing, 1 an update since the client's `delta` revision.
fn listing(tag: &[u8; 4], update: bool, total: usize, items: Vec<Item>) -> Item {
    Item::container(
        tag,
        vec![
            Item::int(b"mstt", 200),
            Item::int(b"muty", update as u8),
            Item::int(b"mtco", total as u32),
            Item::int(b"mrco", items.len() as u32),
            Item::container(b"mlcl", items),
        ],
    )
}

/// `delta=N` with N > 0 asks for what changed since revision N. A scenario's library does not
/// change during a run, so such an answer lists nothing (`muty` 1).
fn delta(req: &Request) -> Result<bool, Refusal> {
    match req.query_param("delta") {
        None => Ok(false),
        Some(d) => d
            .parse::<u32>()
            .map(|d| d > 0)
            .map_err(|_| refuse(400, format!("delta {d:?} is not a number"))),
    }
}

fn track_items(tracks: &[&CatalogTrack], meta: &Meta, container: bool) -> Vec<Item> {
    tracks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut fields: Vec<Item> = t
                .fields()
                .into_iter()
                .filter(|(n, _)| meta.wants(n))
                .map(|(_, item)| item)
                .collect();
            if container {
                // `dmap.containeritemid`: the entry's id within the playlist.
                fields.push(Item::int(b"mcti", i as u32 + 1));
            }
            Item::container(b"mlit", fields)
        })
        .collect()
}

/// The database list's one entry (`avdb`), as `/databases` answers.
pub fn databases(catalog: &Catalog, name: &str, library_id: u64) -> Vec<Item> {
    vec![listing(
        b"avdb",
        false,
        1,
        vec![Item::container(
            b"mlit",
            vec![
                Item::int(b"miid", 1),
                Item::int(b"mper", library_id),
                Item::str(b"minm", name.to_string()),
                Item::int(b"mimc", catalog.tracks.len() as u32),
                Item::int(b"mctc", catalog.playlists.len() as u32 + 1),
            ],
        )],
    )]
}

/// Answers `/databases/<rest>` for a logged-in client. `missing` is an item the `library_item_
/// missing` fault removed: still listed, but its own requests get 404.
pub fn answer(
    catalog: &Catalog,
    name: &str,
    rest: &str,
    req: &Request,
    missing: Option<u32>,
) -> Result<Answer, Refusal> {
    let parts: Vec<&str> = rest.split('/').collect();
    let (db, parts) = parts
        .split_first()
        .ok_or_else(|| refuse(404, "no database"))?;
    if *db != "1" {
        return Err(refuse(
            404,
            format!("no database {db:?} (the library is 1)"),
        ));
    }
    let number = |s: &str, what: &str| {
        s.parse::<u32>()
            .map_err(|_| refuse(404, format!("{what} {s:?} is not a number")))
    };
    match parts {
        ["items"] => {
            let filter = Filter::of(req)?;
            let update = delta(req)?;
            let tracks: Vec<&CatalogTrack> =
                catalog.tracks.iter().filter(|t| filter.keep(t)).collect();
            let total = tracks.len();
            let items = if update {
                Vec::new()
            } else {
                track_items(&tracks, &Meta::of(req), false)
            };
            Ok(Answer::Dmap(vec![listing(b"adbs", update, total, items)]))
        }
        ["items", id, "extra_data", "artwork"] => {
            let id = number(id, "item")?;
            if missing == Some(id) {
                return Err(refuse(404, format!("item {id} is missing (fault)")));
            }
            let t = catalog
                .track(id)
                .ok_or_else(|| refuse(404, format!("no item {id}")))?;
            match &t.artwork {
                Some(png) => Ok(Answer::Image(png.clone())),
                None => Err(refuse(404, format!("item {id} has no artwork"))),
            }
        }
        [item] if item.contains('.') => {
            let (id, _ext) = item.split_once('.').unwrap_or((item, ""));
            let id = number(id, "item")?;
            let why = if missing == Some(id) || catalog.track(id).is_none() {
                format!("no item {id}")
            } else {
                "airtwin's library has no audio to stream".to_string()
            };
            Err(refuse(404, why))
        }
        ["containers"] => {
            let update = delta(req)?;
            let mut items = vec![Item::container(
                b"mlit",
                vec![
                    Item::int(b"miid", 1),
                    Item::int(b"mper", persistent_id(1)),
                    Item::str(b"minm", name.to_string()),
                    Item::int(b"mimc", catalog.tracks.len() as u32),
                    Item::int(b"abpl", 1),
                ],
            )];
            for p in &catalog.playlists {
                items.push(Item::container(
                    b"mlit",
                    vec![
                        Item::int(b"miid", p.id),
                        Item::int(b"mper", persistent_id(p.id)),
                        Item::str(b"minm", p.name.clone()),
                        Item::int(b"mimc", p.tracks.len() as u32),
                        Item::int(b"mpco", 0),
                        Item::int(b"aeSP", 0),
                    ],
                ));
            }
            let total = items.len();
            if update {
                items.clear();
            }
            Ok(Answer::Dmap(vec![listing(b"aply", update, total, items)]))
        }
        ["containers", id, "items"] => {
            let id = number(id, "container")?;
            let filter = Filter::of(req)?;
            let update = delta(req)?;
            let tracks: Vec<&CatalogTrack> = catalog
                .container(id)
                .ok_or_else(|| refuse(404, format!("no container {id}")))?
                .into_iter()
                .filter(|t| filter.keep(t))
                .collect();
            let total = tracks.len();
            let items = if update {
                Vec::new()
            } else {
                track_items(&tracks, &Meta::of(req), true)
            };
            Ok(Answer::Dmap(vec![listing(b"apso", update, total, items)]))
        }
        ["groups"] => {
            let filter = Filter::of(req)?;
            let tracks: Vec<&CatalogTrack> =
                catalog.tracks.iter().filter(|t| filter.keep(t)).collect();
            let artists = match req.query_param("group-type") {
                None | Some("albums") => false,
                Some("artists") => true,
                Some(other) => {
                    return Err(refuse(
                        400,
                        format!("group-type {other:?} is not albums or artists"),
                    ))
                }
            };
            Ok(Answer::Dmap(vec![groups(&tracks, artists)]))
        }
        _ => Err(refuse(404, format!("no such path /databases/{rest}"))),
    }
}

/// Albums (`agal`) or artists (`agar`) of the tracks, in order of first appearance: id, persistent
/// id (the album or artist id), name, item count; albums carry their artist, artists their album
/// count (`agac`).
fn groups(tracks: &[&CatalogTrack], artists: bool) -> Item {
    struct Group {
        id: u64,
        name: String,
        artist: String,
        items: u32,
        albums: Vec<u64>,
    }
    let mut out: Vec<Group> = Vec::new();
    for t in tracks {
        let (id, name) = if artists {
            (t.artist_id(), t.track.artist.clone())
        } else {
            (t.album_id(), t.track.album.clone())
        };
        if name.is_empty() {
            continue;
        }
        match out.iter_mut().find(|g| g.id == id) {
            Some(g) => {
                g.items += 1;
                if !g.albums.contains(&t.album_id()) {
                    g.albums.push(t.album_id());
                }
            }
            None => out.push(Group {
                id,
                name,
                artist: t.album_artist().to_string(),
                items: 1,
                albums: vec![t.album_id()],
            }),
        }
    }
    let total = out.len();
    let items = out
        .into_iter()
        .enumerate()
        .map(|(i, g)| {
            let mut f = vec![
                Item::int(b"miid", i as u32 + 1),
                Item::int(b"mper", g.id),
                Item::str(b"minm", g.name),
                Item::int(b"mimc", g.items),
            ];
            if artists {
                f.push(Item::int(b"agac", g.albums.len() as u32));
            } else {
                f.push(Item::str(b"asaa", g.artist));
            }
            Item::container(b"mlit", f)
        })
        .collect();
    listing(if artists { b"agar" } else { b"agal" }, false, total, items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daap::library::{Library, LibraryTrack, Playlist};
    use crate::wire::dmap::{self, Value};
    use crate::wire::Protocol;

    fn catalog() -> Catalog {
        let t = |title: &str, artist: &str, album: &str| -> LibraryTrack {
            serde_json::from_value(
                serde_json::json!({"title": title, "artist": artist, "album": album}),
            )
            .unwrap()
        };
        Catalog::new(
            &Library {
                tracks: vec![
                    t("One", "Ann", "A1"),
                    t("Two", "Ann", "A2"),
                    t("Six", "Bob", "B"),
                ],
                playlists: vec![Playlist {
                    name: "Mix".into(),
                    tracks: vec![3, 1],
                }],
            },
            vec![Some(b"\x89PNG".to_vec()), None, None],
        )
        .unwrap()
    }

    fn get(uri: &str, missing: Option<u32>) -> Result<Answer, Refusal> {
        let req = Request::new("GET", uri, Protocol::Http11);
        let (path, _) = uri.split_once('?').unwrap_or((uri, ""));
        let rest = path.strip_prefix("/databases/").unwrap();
        answer(&catalog(), "Lib", rest, &req, missing)
    }

    fn tree(uri: &str) -> Vec<Item> {
        match get(uri, None).unwrap() {
            Answer::Dmap(items) => dmap::decode(&dmap::encode(&items)).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    fn entries(items: &[Item]) -> Vec<Vec<Item>> {
        let top = items[0].value.children().unwrap();
        let mlcl = top.iter().find(|i| &i.tag == b"mlcl").unwrap();
        mlcl.value
            .children()
            .unwrap()
            .iter()
            .map(|m| m.value.children().unwrap().to_vec())
            .collect()
    }

    fn tags(entry: &[Item]) -> Vec<String> {
        entry.iter().map(Item::tag_str).collect()
    }

    #[test]
    fn items_carry_exactly_the_selected_meta_fields() {
        let t =
            tree("/databases/1/items?type=music&meta=dmap.itemname,daap.songartist,daap.songtime");
        assert_eq!(dmap::first(&t, &[b"adbs", b"mrco"]), Some(&Value::Int(3)));
        assert_eq!(dmap::first(&t, &[b"adbs", b"muty"]), Some(&Value::Int(0)));
        let e = entries(&t);
        assert_eq!(tags(&e[0]), ["mikd", "miid", "minm", "asar", "astm"]);
        assert_eq!(e[2][2], Item::str(b"minm", "Six"));
        let all = entries(&tree("/databases/1/items?meta=all"));
        assert!(all[0].len() > 15, "{:?}", tags(&all[0]));
    }

    #[test]
    fn queries_filter_items_and_type_other_than_music_lists_nothing() {
        let t = tree("/databases/1/items?meta=dmap.itemname&query=%27daap.songartist:Ann%27");
        assert_eq!(entries(&t).len(), 2);
        assert_eq!(dmap::first(&t, &[b"adbs", b"mtco"]), Some(&Value::Int(2)));
        assert!(entries(&tree("/databases/1/items?type=video")).is_empty());
        assert_eq!(
            get("/databases/1/items?query='broken", None)
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn delta_answers_an_empty_update() {
        let t = tree("/databases/1/items?delta=5&revision-number=6");
        assert_eq!(dmap::first(&t, &[b"adbs", b"muty"]), Some(&Value::Int(1)));
        assert_eq!(dmap::first(&t, &[b"adbs", b"mtco"]), Some(&Value::Int(3)));
        assert!(entries(&t).is_empty());
        assert_eq!(
            get("/databases/1/items?delta=x", None).unwrap_err().status,
            400
        );
    }

    #[test]
    fn containers_and_their_items() {
        let t = tree("/databases/1/containers");
        let e = entries(&t);
        assert_eq!(e.len(), 2);
        assert!(e[0].contains(&Item::int(b"abpl", 1)));
        assert!(e[1].contains(&Item::str(b"minm", "Mix")));
        assert!(e[1].contains(&Item::int(b"miid", 2)));
        let items = entries(&tree("/databases/1/containers/2/items?meta=dmap.itemid"));
        assert_eq!(items.len(), 2);
        assert_eq!(items[0][1], Item::int(b"miid", 3));
        assert_eq!(items[1].last(), Some(&Item::int(b"mcti", 2)));
        assert_eq!(
            get("/databases/1/containers/9/items", None)
                .unwrap_err()
                .status,
            404
        );
    }

    #[test]
    fn groups_by_album_and_artist() {
        let albums = entries(&tree("/databases/1/groups?group-type=albums"));
        assert_eq!(albums.len(), 3);
        let artists = tree("/databases/1/groups?group-type=artists");
        assert_eq!(artists[0].tag_str(), "agar");
        let a = entries(&artists);
        assert_eq!(a.len(), 2);
        assert!(a[0].contains(&Item::int(b"mimc", 2)));
        assert!(a[0].contains(&Item::int(b"agac", 2)));
    }

    #[test]
    fn artwork_is_served_and_a_missing_item_is_404() {
        assert_eq!(
            get(
                "/databases/1/items/1/extra_data/artwork?mw=200&mh=200",
                None
            ),
            Ok(Answer::Image(b"\x89PNG".to_vec()))
        );
        assert_eq!(
            get("/databases/1/items/2/extra_data/artwork", None)
                .unwrap_err()
                .status,
            404
        );
        let r = get("/databases/1/items/1/extra_data/artwork", Some(1)).unwrap_err();
        assert_eq!(r.status, 404);
        assert!(r.why.contains("missing"), "{}", r.why);
        // Still listed.
        assert_eq!(entries(&tree("/databases/1/items")).len(), 3);
        assert_eq!(get("/databases/2/items", None).unwrap_err().status, 404);
        assert_eq!(
            get("/databases/1/items/1.mp3", None).unwrap_err().status,
            404
        );
    }
}
