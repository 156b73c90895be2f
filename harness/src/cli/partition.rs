//! `airtwin run --partition K/N`: which scenarios one of N CI shards runs.
//!
//! A scenario belongs to shard `(u64 from the first 8 bytes of SHA-1(name), big-endian) mod N + 1`.
//! The assignment depends only on the scenario's name and N, never on the order or number of
//! the other files, so adding a scenario moves no other one between shards, and the N shards
//! together run every scenario exactly once.

use std::fmt;
use std::str::FromStr;

use sha1::{Digest as _, Sha1};

/// Shard `index` (1-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub index: u64,
    pub count: u64,
}

impl Partition {
    /// The shard (1..=count) a scenario of this name belongs to.
    pub fn shard_of(name: &str, count: u64) -> u64 {
        let digest = Sha1::digest(name.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first) % count.max(1) + 1
    }

    /// Whether this shard runs the scenario called `name`.
    pub fn includes(&self, name: &str) -> bool {
        Self::shard_of(name, self.count) == self.index
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Partition {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (k, n) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}`: expected K/N, e.g. 2/4"))?;
        let index: u64 = k
            .trim()
            .parse()
            .map_err(|_| format!("`{k}`: K is a whole number"))?;
        let count: u64 = n
            .trim()
            .parse()
            .map_err(|_| format!("`{n}`: N is a whole number"))?;
        if count == 0 || index == 0 || index > count {
            return Err(format!("`{text}`: need 1 ≤ K ≤ N"));
        }
        Ok(Partition { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_k_of_n_and_refuses_the_rest() {
        assert_eq!(
            "2/4".parse::<Partition>(),
            Ok(Partition { index: 2, count: 4 })
        );
        for bad in ["0/4", "5/4", "1/0", "4", "a/b", "1/-2", ""] {
            assert!(bad.parse::<Partition>().is_err(), "{bad}");
        }
    }

    #[test]
    fn every_name_lands_in_exactly_one_shard() {
        let names: Vec<String> = (0..200).map(|i| format!("scenario-{i}")).collect();
        for n in 1..=5 {
            let mut seen = vec![0usize; n as usize];
            for name in &names {
                let owners: Vec<u64> = (1..=n)
                    .filter(|&k| Partition { index: k, count: n }.includes(name))
                    .collect();
                assert_eq!(owners.len(), 1, "{name} in shards {owners:?} of {n}");
                seen[(owners[0] - 1) as usize] += 1;
            }
            // 200 names spread over n shards: none is empty.
            assert!(seen.iter().all(|&c| c > 0), "{n}: {seen:?}");
        }
    }

    #[test]
    fn shards_match_an_independent_sha1() {
        // Known answers from Python's hashlib:
        // int.from_bytes(hashlib.sha1(name).digest()[:8], "big") % n + 1.
        // A change of hash (which would reshuffle every CI matrix) fails here.
        assert_eq!(Partition::shard_of("raop-happy-path", 7), 6);
        assert_eq!(Partition::shard_of("raop-happy-path", 3), 3);
        assert_eq!(Partition::shard_of("a", 3), 2);
        assert_eq!(Partition::shard_of("b", 7), 2);
    }
}
