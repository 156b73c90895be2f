//! The shell's side of a core's [`Changes`]: a tokio watch that follows its revision, so that
//! deferred answers ([`crate::service::Outcome::Wait`]) and callers of the control API can await a
//! change the core made from any path (another connection, the control API, a timer).

use std::sync::Arc;

use tokio::sync::watch;

use crate::service::Changes;

/// A receiver that holds `changes`' revision and sees every later bump.
pub fn watch(changes: &Changes) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(changes.revision());
    let tx = Arc::new(tx);
    let sender = tx.clone();
    changes.on_change(Arc::new(move |revision| raise(&sender, revision)));
    // A bump between the channel's creation and the registration called no one.
    raise(&tx, changes.revision());
    rx
}

/// Bumps on two threads may call back out of order: the watch keeps the highest revision.
fn raise(tx: &watch::Sender<u64>, revision: u64) {
    tx.send_if_modified(|seen| {
        let newer = revision > *seen;
        if newer {
            *seen = revision;
        }
        newer
    });
}
