//! The bytes all connections of a device hold in their buffers at once: received and not yet
//! answered, answered and not yet written. Each connection is capped by the framing limits
//! ([`crate::wire::Limits`]: a head, a body, and what a deferred answer lets pile up); the budget
//! caps their sum, so many connections that each stay under their own cap cannot together
//! exhaust memory. A connection whose growth takes the total over the limit is answered
//! `503 Service Unavailable` and closed ([`crate::connection::Connection::overloaded`]); the others
//! go on.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Bytes held across a device's connections, against a limit.
#[derive(Debug)]
pub struct BufferBudget {
    limit: usize,
    held: AtomicUsize,
    /// Whether the total is over the limit since it last went under (one log line per episode).
    over: AtomicBool,
}

impl Default for BufferBudget {
    fn default() -> Self {
        BufferBudget::new(BufferBudget::DEFAULT_LIMIT)
    }
}

impl BufferBudget {
    /// 64 MiB: sixteen connections each holding the largest body a device accepts (4 MiB).
    pub const DEFAULT_LIMIT: usize = 64 * 1024 * 1024;

    pub fn new(limit: usize) -> Self {
        BufferBudget {
            limit,
            held: AtomicUsize::new(0),
            over: AtomicBool::new(false),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held now, across connections.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// One connection's share moved from `from` to `to` bytes. Answers [`Verdict::Over`] when it
    /// grew and the total is now beyond the limit: that connection must give its bytes up.
    pub fn account(&self, from: usize, to: usize) -> Verdict {
        let total = if to >= from {
            self.held.fetch_add(to - from, Ordering::Relaxed) + (to - from)
        } else {
            self.held.fetch_sub(from - to, Ordering::Relaxed) - (from - to)
        };
        if total <= self.limit {
            self.over.store(false, Ordering::Relaxed);
            return Verdict::Within;
        }
        if to <= from {
            return Verdict::Within;
        }
        if self.over.swap(true, Ordering::Relaxed) {
            Verdict::Over { first: false }
        } else {
            Verdict::Over { first: true }
        }
    }
}

/// What [`BufferBudget::account`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Within,
    /// Over the limit; `first` when this is the first connection refused since the total was last
    /// within it (the one to log).
    Over {
        first: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_that_grows_past_the_total_is_refused_and_logged_once() {
        let b = BufferBudget::new(100);
        assert_eq!(b.account(0, 60), Verdict::Within);
        assert_eq!(b.account(0, 30), Verdict::Within);
        assert_eq!(b.account(0, 20), Verdict::Over { first: true });
        assert_eq!(b.account(0, 5), Verdict::Over { first: false });
        // Shrinking is never refused, even while over.
        assert_eq!(b.account(5, 0), Verdict::Within);
        assert_eq!(b.held(), 110);
        // The refused connection gives its bytes up: within again, and the next episode logs.
        assert_eq!(b.account(20, 0), Verdict::Within);
        assert_eq!(b.held(), 90);
        assert_eq!(b.account(0, 20), Verdict::Over { first: true });
    }
}
