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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_watch_sees_bumps_after_it_was_made_and_not_before() {
        let changes = Changes::default();
        changes.bump();
        let mut rx = watch(&changes);
        assert_eq!(*rx.borrow_and_update(), 1);
        assert!(!rx.has_changed().unwrap());
        changes.bump();
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow(), 2);
    }

    #[test]
    fn revisions_called_back_out_of_order_keep_the_highest() {
        let (tx, rx) = watch::channel(0);
        raise(&tx, 5);
        raise(&tx, 4);
        assert_eq!(*rx.borrow(), 5);
    }
}
