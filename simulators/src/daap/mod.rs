//! DAAP (Digital Audio Access Protocol): the library a DACP server shares, as iTunes' library
//! sharing serves it on the same port (docs/protocols/daap.md).
//!
//! - [`library`]: the scenario's tracks, playlists and artwork, and their DAAP meta fields;
//! - [`query`]: the filters clients send (`query='daap.songartist:…'`);
//! - [`listing`]: the answers under `/databases/1/…` (items, containers, groups, artwork);
//! - [`queue`]: the remote's `cue` / `playqueue-edit`, which play from the library.
//!
//! The DACP server ([`crate::dacp::DacpCore`]) routes these requests here; the DMAP codec is
//! [`crate::wire::dmap`].

pub mod library;
pub mod listing;
pub mod query;
pub mod queue;

pub use library::{Catalog, Library, LibraryError, LibraryTrack, Playlist};
