//! The `/ctrl-int/1/…` commands of a DACP library (docs/protocols/dacp.md): the long-polled
//! `playstatusupdate`, `nowplayingartwork`, `getproperty` / `setproperty`, the speakers, and the
//! transport commands the player carries out.

use super::pairing::parse_guid;
use super::server::{DacpService, Inner};
use crate::service::{Context, Outcome};
use crate::wire::dmap::Item;
use crate::wire::{Request, Response};

impl DacpService {
    /// Answers `/ctrl-int/1/<cmd>` for a logged-in remote.
    pub(super) fn ctrl(
        &self,
        inner: &mut Inner,
        cmd: &str,
        req: &Request,
        cx: &mut Context<'_>,
    ) -> Outcome {
        let now = cx.now;
        match cmd {
            "playstatusupdate" => {
                let asked = match req.query_param("revision-number") {
                    None => 0,
                    Some(v) => match v.parse::<u32>() {
                        Ok(n) => n,
                        Err(_) => {
                            return self.refuse(
                                req,
                                400,
                                &format!("revision-number {v:?} is not a number"),
                                cx,
                            )
                        }
                    },
                };
                if asked == inner.player.revision {
                    // Nothing new: hold the answer until the state changes.
                    return Outcome::Wait {
                        after_revision: Some(self.changes.revision()),
                        until: inner.player.next_due(),
                    };
                }
                let cmst = inner.player.cmst(now);
                Outcome::Respond(self.dmap(req, vec![cmst]))
            }
            "nowplayingartwork" => match inner.player.artwork() {
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
                    match inner.player.property(name, now) {
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
                    if let Err(e) = inner.player.set_property(k, v, now) {
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
                inner.player.revision = inner.player.revision.wrapping_add(1).max(1);
                self.changes.bump();
                Outcome::Respond(self.no_content(req))
            }
            other => match inner.player.command(other, now) {
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
