//! The shared library: tracks with their DAAP meta fields, playlists and artwork, as a scenario
//! describes them (`dacp.library`) and as the server lists them (docs/protocols/daap.md).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::dacp::state::{NowPlaying, Track};
use crate::wire::dmap::Item;

/// One track of the library. Every field but the title has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LibraryTrack {
    /// `dmap.itemid` (default: its position in `tracks`, from 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// `dmap.itemname`.
    pub title: String,
    /// `daap.songartist`.
    #[serde(default)]
    pub artist: String,
    /// `daap.songalbumartist` (default: the artist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub album_artist: Option<String>,
    /// `daap.songalbum`.
    #[serde(default)]
    pub album: String,
    /// `daap.songgenre`.
    #[serde(default)]
    pub genre: String,
    /// `daap.songcomposer`.
    #[serde(default)]
    pub composer: String,
    /// Length in seconds (`daap.songtime` carries milliseconds).
    #[serde(default = "default_duration")]
    pub duration: f64,
    /// `daap.songtracknumber`.
    #[serde(default)]
    pub track_number: u16,
    /// `daap.songdiscnumber`.
    #[serde(default)]
    pub disc_number: u16,
    /// `daap.songyear`.
    #[serde(default)]
    pub year: u16,
    /// `daap.songformat`: the file extension (`mp3`, `m4a`).
    #[serde(default = "default_format")]
    pub format: String,
    /// `daap.songbitrate` in kbit/s.
    #[serde(default = "default_bitrate")]
    pub bitrate: u16,
    /// PNG served at `/databases/1/items/<id>/extra_data/artwork` (path relative to the scenario).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artwork: Option<String>,
}

fn default_duration() -> f64 {
    180.0
}

fn default_format() -> String {
    "mp3".into()
}

fn default_bitrate() -> u16 {
    256
}

/// A playlist: a name and the item ids it holds, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Playlist {
    /// `dmap.itemname`.
    pub name: String,
    /// `dmap.itemid`s of its tracks.
    #[serde(default)]
    pub tracks: Vec<u32>,
}

/// A scenario's library: its tracks and playlists. Absent, the library is the now-playing queue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Library {
    #[serde(default)]
    pub tracks: Vec<LibraryTrack>,
    /// Playlists besides the library's base playlist (container 1, which holds every track).
    #[serde(default)]
    pub playlists: Vec<Playlist>,
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum LibraryError {
    #[error("library: item id {0} is used twice")]
    DuplicateId(u32),
    #[error("library: item id 0 is not allowed (DAAP ids start at 1)")]
    ZeroId,
    #[error("library: playlist {playlist:?} lists item {id}, which is not in the library")]
    UnknownTrack { playlist: String, id: u32 },
}

/// A track as served: its id, fields and artwork bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogTrack {
    pub id: u32,
    pub track: LibraryTrack,
    pub artwork: Option<Vec<u8>>,
}

/// A playlist as served: container id 2 onwards (1 is the base playlist).
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogPlaylist {
    pub id: u32,
    pub name: String,
    pub tracks: Vec<u32>,
}

/// The library a device serves: checked, ids assigned, artwork loaded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    pub tracks: Vec<CatalogTrack>,
    pub playlists: Vec<CatalogPlaylist>,
}

/// `dmap.persistentid` of items and containers: a fixed high word and the id, so that a persistent
/// id never equals an item id.
pub fn persistent_id(id: u32) -> u64 {
    0xA17_0000_0000_0000 | id as u64
}

impl Catalog {
    /// Checks a scenario's library: ids are unique and non-zero, playlists list known ids.
    /// `artwork` holds the PNG bytes of each track, in the order of `library.tracks`.
    pub fn new(library: &Library, artwork: Vec<Option<Vec<u8>>>) -> Result<Self, LibraryError> {
        let mut tracks: Vec<CatalogTrack> = Vec::with_capacity(library.tracks.len());
        let mut art = artwork.into_iter();
        for (i, t) in library.tracks.iter().enumerate() {
            let id = t.id.unwrap_or(i as u32 + 1);
            if id == 0 {
                return Err(LibraryError::ZeroId);
            }
            if tracks.iter().any(|c| c.id == id) {
                return Err(LibraryError::DuplicateId(id));
            }
            tracks.push(CatalogTrack {
                id,
                track: t.clone(),
                artwork: art.next().flatten(),
            });
        }
        let mut playlists = Vec::with_capacity(library.playlists.len());
        for (i, p) in library.playlists.iter().enumerate() {
            if let Some(&id) = p
                .tracks
                .iter()
                .find(|id| !tracks.iter().any(|t| t.id == **id))
            {
                return Err(LibraryError::UnknownTrack {
                    playlist: p.name.clone(),
                    id,
                });
            }
            playlists.push(CatalogPlaylist {
                id: i as u32 + 2,
                name: p.name.clone(),
                tracks: p.tracks.clone(),
            });
        }
        Ok(Catalog { tracks, playlists })
    }

    /// The default library: the now-playing queue's tracks, ids 1.., no playlists, so that the
    /// ids `canp` reports for the queue are the library's item ids.
    pub fn from_now_playing(np: &NowPlaying, artwork: &[Option<Vec<u8>>]) -> Self {
        let tracks = np
            .tracks
            .iter()
            .enumerate()
            .map(|(i, t)| CatalogTrack {
                id: i as u32 + 1,
                track: LibraryTrack {
                    id: None,
                    title: t.title.clone(),
                    artist: t.artist.clone(),
                    album_artist: None,
                    album: t.album.clone(),
                    genre: t.genre.clone(),
                    composer: String::new(),
                    duration: t.duration,
                    track_number: i as u16 + 1,
                    disc_number: 1,
                    year: 0,
                    format: default_format(),
                    bitrate: default_bitrate(),
                    artwork: t.artwork.clone(),
                },
                artwork: artwork.get(i).cloned().flatten(),
            })
            .collect();
        Catalog {
            tracks,
            playlists: Vec::new(),
        }
    }

    pub fn track(&self, id: u32) -> Option<&CatalogTrack> {
        self.tracks.iter().find(|t| t.id == id)
    }

    /// The tracks of container `id` (1: every track), or `None` for an unknown container.
    pub fn container(&self, id: u32) -> Option<Vec<&CatalogTrack>> {
        if id == 1 {
            return Some(self.tracks.iter().collect());
        }
        let p = self.playlists.iter().find(|p| p.id == id)?;
        Some(p.tracks.iter().filter_map(|i| self.track(*i)).collect())
    }
}

impl CatalogTrack {
    /// The now-playing track this library track plays as.
    pub fn now_playing(&self) -> Track {
        let t = &self.track;
        Track {
            title: t.title.clone(),
            artist: t.artist.clone(),
            album: t.album.clone(),
            genre: t.genre.clone(),
            duration: t.duration,
            artwork: t.artwork.clone(),
        }
    }

    /// `daap.songalbumid`: the same for every track of one album (FNV-1a of album artist and
    /// album).
    pub fn album_id(&self) -> u64 {
        crate::seed::label_hash(&format!("{}\u{0}{}", self.album_artist(), self.track.album))
    }

    /// `daap.songartistid`.
    pub fn artist_id(&self) -> u64 {
        crate::seed::label_hash(&self.track.artist)
    }

    pub fn album_artist(&self) -> &str {
        self.track
            .album_artist
            .as_deref()
            .unwrap_or(&self.track.artist)
    }

    /// Every meta field of the track as (readable name, item): `dmap.itemkind` 2 (an audio item)
    /// and `dmap.itemid` first (docs/protocols/daap.md, "Listings").
    pub fn fields(&self) -> Vec<(&'static str, Item)> {
        let t = &self.track;
        let ms = (t.duration.max(0.0) * 1000.0) as u32;
        // Bytes of a constant-bitrate file this long: kbit/s × 125 bytes per second.
        let size = (t.duration.max(0.0) * t.bitrate as f64 * 125.0) as u32;
        let mut f = vec![
            ("dmap.itemkind", Item::int(b"mikd", 2)),
            ("dmap.itemid", Item::int(b"miid", self.id)),
            (
                "dmap.persistentid",
                Item::int(b"mper", persistent_id(self.id)),
            ),
            ("dmap.itemname", Item::str(b"minm", t.title.clone())),
            ("daap.songartist", Item::str(b"asar", t.artist.clone())),
            (
                "daap.songalbumartist",
                Item::str(b"asaa", self.album_artist().to_string()),
            ),
            ("daap.songalbum", Item::str(b"asal", t.album.clone())),
            ("daap.songgenre", Item::str(b"asgn", t.genre.clone())),
            ("daap.songcomposer", Item::str(b"ascp", t.composer.clone())),
            ("daap.songtime", Item::int(b"astm", ms)),
            ("daap.songtracknumber", Item::int(b"astn", t.track_number)),
            ("daap.songdiscnumber", Item::int(b"asdn", t.disc_number)),
            ("daap.songyear", Item::int(b"asyr", t.year)),
            ("daap.songformat", Item::str(b"asfm", t.format.clone())),
            ("daap.songbitrate", Item::int(b"asbr", t.bitrate)),
            ("daap.songsize", Item::int(b"assz", size)),
            // 0: a file the server holds (1 would be a URL).
            ("daap.songdatakind", Item::int(b"asdk", 0)),
            ("daap.songalbumid", Item::int(b"asai", self.album_id())),
            ("daap.songartistid", Item::int(b"asri", self.artist_id())),
            ("daap.sortartist", Item::str(b"assa", t.artist.clone())),
            ("daap.sortalbum", Item::str(b"assu", t.album.clone())),
            // 1: music.
            ("com.apple.itunes.mediakind", Item::int(b"aeMK", 1)),
            (
                "com.apple.itunes.extended-media-kind",
                Item::int(b"aeMk", 1),
            ),
            ("com.apple.itunes.has-video", Item::int(b"aeHV", 0)),
        ];
        if t.composer.is_empty() {
            f.retain(|(n, _)| *n != "daap.songcomposer");
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(title: &str, id: Option<u32>) -> LibraryTrack {
        serde_json::from_value(serde_json::json!({"title": title, "id": id})).unwrap()
    }

    #[test]
    fn ids_default_to_positions_and_must_be_unique() {
        let lib = Library {
            tracks: vec![track("a", None), track("b", Some(7))],
            playlists: vec![Playlist {
                name: "p".into(),
                tracks: vec![7, 1],
            }],
        };
        let c = Catalog::new(&lib, vec![]).unwrap();
        assert_eq!(c.tracks.iter().map(|t| t.id).collect::<Vec<_>>(), [1, 7]);
        assert_eq!(c.playlists[0].id, 2);
        let titles: Vec<_> = c.container(2).unwrap().iter().map(|t| t.id).collect();
        assert_eq!(titles, [7, 1]);
        assert_eq!(c.container(1).unwrap().len(), 2);
        assert!(c.container(3).is_none());

        let dup = Library {
            tracks: vec![track("a", None), track("b", Some(1))],
            playlists: vec![],
        };
        assert_eq!(
            Catalog::new(&dup, vec![]),
            Err(LibraryError::DuplicateId(1))
        );
        let zero = Library {
            tracks: vec![track("a", Some(0))],
            playlists: vec![],
        };
        assert_eq!(Catalog::new(&zero, vec![]), Err(LibraryError::ZeroId));
        let bad = Library {
            tracks: vec![track("a", None)],
            playlists: vec![Playlist {
                name: "p".into(),
                tracks: vec![9],
            }],
        };
        assert!(matches!(
            Catalog::new(&bad, vec![]),
            Err(LibraryError::UnknownTrack { id: 9, .. })
        ));
    }

    #[test]
    fn fields_carry_defaults_and_derived_values() {
        let c = Catalog::new(
            &Library {
                tracks: vec![track("a", None)],
                playlists: vec![],
            },
            vec![Some(vec![1, 2])],
        )
        .unwrap();
        let t = &c.tracks[0];
        assert_eq!(t.artwork.as_deref(), Some(&[1u8, 2][..]));
        let f = t.fields();
        let get = |n: &str| f.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone());
        assert_eq!(get("daap.songtime"), Some(Item::int(b"astm", 180_000)));
        assert_eq!(get("daap.songformat"), Some(Item::str(b"asfm", "mp3")));
        // 180 s at 256 kbit/s.
        assert_eq!(get("daap.songsize"), Some(Item::int(b"assz", 5_760_000)));
        assert!(get("daap.songcomposer").is_none());
        assert_eq!(f[0].0, "dmap.itemkind");
        // Every name is the tag table's name for its code.
        for (name, item) in &f {
            assert_eq!(
                crate::wire::dmap::lookup(&item.tag).map(|d| d.name),
                Some(*name)
            );
        }
    }

    #[test]
    fn the_default_library_is_the_now_playing_queue() {
        let c = Catalog::from_now_playing(&NowPlaying::default(), &[]);
        assert_eq!(c.tracks.len(), 1);
        assert_eq!(c.tracks[0].id, 1);
        assert_eq!(c.tracks[0].now_playing().title, "Test Tone");
    }
}
