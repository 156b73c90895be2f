//! DAAP query filters: `query='daap.songartist:Foo'+'daap.songalbum:Bar'`, as clients put them
//! in the `query=`, `filter=` and `*-spec=` parameters (docs/protocols/daap.md, "Queries").
//!
//! A criterion is `'field:value'` (equal) or `'field!:value'` (not equal), quotes inside a value
//! escaped as `\'`; `*` at either end of a value matches any text there. Criteria combine with
//! `+` or a space (and) and `,` (or); and binds tighter than or; parentheses group. Text compares
//! without regard to case; integer fields compare as numbers, written decimal or `0x` hex.

use thiserror::Error;

use super::library::CatalogTrack;
use crate::wire::dmap::Value;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum QueryError {
    #[error("query {0:?}: unbalanced quote or parenthesis")]
    Unbalanced(String),
    #[error("query {0:?}: a criterion is not 'field:value' or 'field!:value'")]
    BadCriterion(String),
    #[error("query {0:?}: nothing to match")]
    Empty(String),
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    Crit {
        field: String,
        negated: bool,
        value: String,
    },
    And(Vec<Query>),
    Or(Vec<Query>),
}

struct Parser<'a> {
    text: &'a str,
    chars: Vec<char>,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn or(&mut self) -> Result<Query, QueryError> {
        let mut parts = vec![self.and()?];
        while self.peek() == Some(',') {
            self.pos += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Query::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Query, QueryError> {
        let mut parts = vec![self.term()?];
        while matches!(self.peek(), Some('+' | ' ')) {
            while matches!(self.peek(), Some('+' | ' ')) {
                self.pos += 1;
            }
            parts.push(self.term()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Query::And(parts)
        })
    }

    fn term(&mut self) -> Result<Query, QueryError> {
        match self.peek() {
            Some('(') => {
                self.pos += 1;
                let q = self.or()?;
                if self.peek() != Some(')') {
                    return Err(QueryError::Unbalanced(self.text.into()));
                }
                self.pos += 1;
                Ok(q)
            }
            Some('\'') => {
                self.pos += 1;
                let mut body = String::new();
                loop {
                    match self.peek() {
                        None => return Err(QueryError::Unbalanced(self.text.into())),
                        Some('\\') if self.chars.get(self.pos + 1) == Some(&'\'') => {
                            body.push('\'');
                            self.pos += 2;
                        }
                        Some('\'') => {
                            self.pos += 1;
                            break;
                        }
                        Some(c) => {
                            body.push(c);
                            self.pos += 1;
                        }
                    }
                }
                let (field, negated, value) = match body.split_once(':') {
                    Some((f, v)) => match f.strip_suffix('!') {
                        Some(f) => (f, true, v),
                        None => (f, false, v),
                    },
                    None => return Err(QueryError::BadCriterion(self.text.into())),
                };
                if field.is_empty() {
                    return Err(QueryError::BadCriterion(self.text.into()));
                }
                Ok(Query::Crit {
                    field: field.to_string(),
                    negated,
                    value: value.to_string(),
                })
            }
            _ => Err(QueryError::BadCriterion(self.text.into())),
        }
    }
}

impl Query {
    /// Parses a filter (already percent-decoded).
    pub fn parse(text: &str) -> Result<Query, QueryError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(QueryError::Empty(text.into()));
        }
        let mut p = Parser {
            text,
            chars: trimmed.chars().collect(),
            pos: 0,
        };
        let q = p.or()?;
        if p.pos != p.chars.len() {
            return Err(QueryError::Unbalanced(text.into()));
        }
        Ok(q)
    }

    /// Every field name the filter reads.
    pub fn fields(&self) -> Vec<&str> {
        match self {
            Query::Crit { field, .. } => vec![field.as_str()],
            Query::And(v) | Query::Or(v) => v.iter().flat_map(Query::fields).collect(),
        }
    }

    /// Whether a track passes. A field the track does not have equals nothing (so `!:` passes).
    pub fn matches(&self, track: &CatalogTrack) -> bool {
        match self {
            Query::And(v) => v.iter().all(|q| q.matches(track)),
            Query::Or(v) => v.iter().any(|q| q.matches(track)),
            Query::Crit {
                field,
                negated,
                value,
            } => {
                let fields = track.fields();
                let found = fields
                    .iter()
                    .find(|(n, _)| n == field)
                    .map(|(_, i)| &i.value);
                let equal = match found {
                    None => false,
                    Some(Value::Int(n)) => parse_int(value) == Some(*n),
                    Some(Value::Str(s)) => text_matches(s, value),
                    Some(_) => false,
                };
                equal != *negated
            }
        }
    }
}

fn parse_int(v: &str) -> Option<i128> {
    let v = v.trim();
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(h) => i128::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

fn text_matches(have: &str, want: &str) -> bool {
    let have = have.to_lowercase();
    let want = want.to_lowercase();
    let (starts, rest) = match want.strip_prefix('*') {
        Some(r) => (false, r),
        None => (true, want.as_str()),
    };
    let (ends, core) = match rest.strip_suffix('*') {
        Some(c) => (false, c),
        None => (true, rest),
    };
    match (starts, ends) {
        (true, true) => have == core,
        (true, false) => have.starts_with(core),
        (false, true) => have.ends_with(core),
        (false, false) => have.contains(core),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daap::library::{Catalog, Library, LibraryTrack};

    fn catalog() -> Catalog {
        let t = |title: &str, artist: &str| -> LibraryTrack {
            serde_json::from_value(serde_json::json!({"title": title, "artist": artist})).unwrap()
        };
        Catalog::new(
            &Library {
                tracks: vec![t("One", "Ann"), t("Two", "Bob"), t("Three", "")],
                playlists: vec![],
            },
            vec![],
        )
        .unwrap()
    }

    fn ids(q: &str) -> Vec<u32> {
        let q = Query::parse(&crate::wire::message::percent_decode(q)).unwrap();
        catalog()
            .tracks
            .iter()
            .filter(|t| q.matches(t))
            .map(|t| t.id)
            .collect()
    }

    #[test]
    fn criteria_and_or_not_and_wildcards() {
        assert_eq!(ids("'daap.songartist:ann'"), [1]);
        assert_eq!(ids("'dmap.itemid:0x2'"), [2]);
        assert_eq!(ids("'dmap.itemid:2','dmap.itemid:3'"), [2, 3]);
        assert_eq!(ids("'daap.songartist!:'"), [1, 2]);
        assert_eq!(ids("'dmap.itemname:T*'"), [2, 3]);
        assert_eq!(ids("'dmap.itemname:*o'"), [2]);
        assert_eq!(ids("'dmap.itemname:*h*'"), [3]);
        // node-daap's groups filter, as it sends it.
        assert_eq!(
            ids("('daap.songartist!:'+('com.apple.itunes.extended-media-kind:1','com.apple.itunes.extended-media-kind:32'))"),
            [1, 2]
        );
        assert_eq!(ids("%27daap.songartist:Bob%27"), [2]);
        assert_eq!(
            ids("'daap.songartist:Bob' 'dmap.itemid:1'"),
            Vec::<u32>::new()
        );
        assert_eq!(ids("'no.such.field:x'"), Vec::<u32>::new());
    }

    #[test]
    fn escaped_quotes_stay_in_the_value() {
        let q = Query::parse(r"'daap.songartist:O\'Brien'").unwrap();
        assert_eq!(
            q,
            Query::Crit {
                field: "daap.songartist".into(),
                negated: false,
                value: "O'Brien".into()
            }
        );
    }

    #[test]
    fn malformed_filters_are_errors() {
        for bad in ["", "'a:b", "('a:b'", "'nocolon'", "a:b", "'a:b')", "':x'"] {
            assert!(Query::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn percent_decoding_leaves_bad_escapes_and_plus_alone() {}
}
