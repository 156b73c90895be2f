//! The `/ctrl-int/1/…` commands of a DACP library (docs/protocols/dacp.md): the long-polled
//! `playstatusupdate`, `nowplayingartwork`, `getproperty` / `setproperty`, the speakers, and the
//! transport commands the player carries out, and `cue` / `playqueue-edit`, which play from the
//! shared library (docs/protocols/daap.md, "Playing from the library").

use super::pairing::parse_guid;
use super::server::{DacpCore, Inner};
use super::state::Player;
use crate::daap::queue::{self, QueueChange};
use crate::protocol_core::{Context, Outcome};
use crate::wire::dmap::Item;
use crate::wire::{Request, Response};

impl DacpCore {
    /// Answers `/ctrl-int/1/<cmd>` for a logged-in remote.
    pub(super) fn ctrl(
        &self,
        inner: &mut Inner,
        player: &mut Player,
        cmd: &str,
        req: &Request,
        cx: &mut Context<'_>,
    ) -> Outcome {
        let now = cx.now;
        match cmd {
            "playstatusupdate" => {
                let asked = match asked_revision(req) {
                    Ok(n) => n,
                    Err(why) => return self.refuse(req, 400, &why, cx),
                };
                if asked == player.revision {
                    // Nothing new: hold the answer until the state changes.
                    return Outcome::Wait {
                        after_revision: Some(self.changes.revision()),
                        until: player.next_due(),
                    };
                }
                let cmst = player.cmst(now);
                Outcome::Respond(self.dmap(req, vec![cmst]))
            }
            "nowplayingartwork" => match player.artwork() {
                Some(png) => Outcome::Respond(
                    Response::new(req.protocol, 200).with_body("image/png", png.to_vec()),
                ),
                // No artwork: an empty answer, which pyatv reads as "none".
                None => Outcome::Respond(self.no_content(req)),
            },
            "getproperty" => {
                let Some(list) = req.query_param("properties") else {
                    return self.refuse(req, 400, "getproperty needs properties=", cx);
                };
                let mut items = vec![Item::int(b"mstt", 200)];
                for name in list.split(',') {
                    match player.property(name, now) {
                        Some(v) => items.extend(v),
                        None => cx.warn(format!("getproperty: unknown property {name:?}")),
                    }
                }
                Outcome::Respond(self.dmap(req, vec![Item::container(b"cmgt", items)]))
            }
            "setproperty" => {
                let mut any = false;
                for kv in req.query().unwrap_or_default().split('&') {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    if k == "session-id" || k == "prompt-id" || k.is_empty() {
                        continue;
                    }
                    if let Err(e) = player.set_property(k, v, now) {
                        return self.refuse(req, 400, &e, cx);
                    }
                    any = true;
                }
                if !any {
                    return self.refuse(req, 400, "setproperty needs a property", cx);
                }
                self.changes.bump();
                Outcome::Respond(self.no_content(req))
            }
            "getspeakers" => {
                let mut items = vec![Item::int(b"mstt", 200)];
                for s in &inner.speakers {
                    let mut d = vec![
                        Item::str(b"minm", s.name.clone()),
                        Item::int(b"cmvo", s.volume),
                        Item::int(b"msma", s.id),
                    ];
                    if s.active {
                        d.insert(0, Item::int(b"caia", 1));
                    }
                    items.push(Item::container(b"mdcl", d));
                }
                Outcome::Respond(self.dmap(req, vec![Item::container(b"casp", items)]))
            }
            "setspeakers" => {
                let Some(list) = req.query_param("speaker-id") else {
                    return self.refuse(req, 400, "setspeakers needs speaker-id=", cx);
                };
                let mut ids = Vec::new();
                for part in list.split(',') {
                    match parse_guid(part) {
                        Some(id) => ids.push(id),
                        None => {
                            return self.refuse(
                                req,
                                400,
                                &format!("speaker-id {part:?} is not hex"),
                                cx,
                            )
                        }
                    }
                }
                for s in inner.speakers.iter_mut() {
                    s.active = ids.contains(&s.id);
                }
                player.revision = player.revision.wrapping_add(1).max(1);
                self.changes.bump();
                Outcome::Respond(self.no_content(req))
            }
            "cue" | "playqueue-edit" => {
                let missing = cx.params.library_item_missing;
                let change = match queue::change(&self.catalog, cmd, req, missing) {
                    Ok(c) => c,
                    Err(r) => return self.refuse(req, r.status, &r.why, cx),
                };
                let label = format!("{cmd} {}", req.query_param("command").unwrap_or(""));
                let entries = |ids: &[u32]| {
                    ids.iter()
                        .filter_map(|id| self.catalog.track(*id))
                        .map(|t| (t.id, t.now_playing(), t.artwork.clone()))
                        .collect::<Vec<_>>()
                };
                match change {
                    QueueChange::Replace { ids, start } => {
                        player.load_queue(entries(&ids), start, label, now)
                    }
                    QueueChange::Append(ids) => player.enqueue(entries(&ids), label, now),
                    QueueChange::Clear => player.load_queue(Vec::new(), 0, label, now),
                    QueueChange::PlayIndex(i) => {
                        if let Err(e) = player.play_index(i, label, now) {
                            return self.refuse(req, 400, &e, cx);
                        }
                    }
                }
                self.changes.bump();
                if cmd == "playqueue-edit" {
                    return Outcome::Respond(self.no_content(req));
                }
                // `cue` answers `cacr{mstt 200, miid <the playing item, 0 when none>}`
                // (docs/protocols/daap.md, "Playing from the library").
                let playing = match player.state {
                    super::state::PlayState::Stopped => 0,
                    _ => player.item_id().unwrap_or(0),
                };
                Outcome::Respond(self.dmap(
                    req,
                    vec![Item::container(
                        b"cacr",
                        vec![Item::int(b"mstt", 200), Item::int(b"miid", playing)],
                    )],
                ))
            }
            other => match player.command(other, now) {
                Ok(()) => {
                    self.changes.bump();
                    Outcome::Respond(self.no_content(req))
                }
                // pyatv reads a 500 as "not supported" (docs/peers.md).
                Err(e) => self.refuse(req, 500, &e, cx),
            },
        }
    }
}

/// The `revision-number` a long poll (`playstatusupdate`, DAAP `/update`) says the client has: 0
/// when absent, or why it is not a number (docs/protocols/dacp.md).
pub(super) fn asked_revision(req: &Request) -> Result<u32, String> {
    match req.query_param("revision-number") {
        None => Ok(0),
        Some(v) => v
            .parse()
            .map_err(|_| format!("revision-number {v:?} is not a number")),
    }
}
