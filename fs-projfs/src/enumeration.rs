//! Directory enumeration sessions: the state machine behind ProjFS' start / get / end
//! directory-enumeration callbacks.
//!
//! ProjFS opens a session per enumeration (keyed by a GUID), then asks for entries one
//! buffer at a time until the provider returns none. The rules implemented here:
//!
//! * **Start** takes a snapshot of the folder ([`Sessions::start`], rows in ProjFS order,
//!   see [`crate::name_order`]); the snapshot is fetched before Start completes, so every
//!   later Get is answered from memory without touching the network.
//! * **Get** captures the search expression on the session's first Get and on every Get with
//!   the restart-scan flag; at any other time the expression passed is ignored. Restart
//!   also rewinds to the first entry.
//! * Entries are added in order, skipping those the expression does not match, until the
//!   buffer is full. The entry that did not fit is the first one offered by the next Get.
//!   If not even the first matching entry fits, the Get fails with
//!   `ERROR_INSUFFICIENT_BUFFER` and the position is unchanged.
//! * **End** forgets the session; a Get on an unknown session is an invalid parameter.

use std::collections::HashMap;
use std::sync::Arc;

use crate::placeholder::BasicInfo;
use crate::wildcard::Pattern;

/// The enumeration GUID ProjFS passes, as its 16 bytes.
pub type EnumerationId = [u8; 16];

/// One entry of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirRow {
    /// Name as it appears in the folder.
    pub name: String,
    /// What the placeholder will say about it.
    pub info: BasicInfo,
}

/// What the directory-entry buffer said to one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Push {
    /// The entry was added.
    Added,
    /// The buffer is full; the entry was not added.
    Full,
}

/// The result of one Get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filled {
    /// Entries added to the buffer by this call.
    pub added: usize,
    /// Whether the session has nothing more to return.
    pub done: bool,
}

/// Why a Get failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnumError {
    /// No session with this id (never started, or already ended).
    UnknownSession,
    /// The first matching entry did not fit into an empty buffer.
    BufferTooSmall,
}

#[derive(Debug)]
struct Session {
    rows: Arc<Vec<DirRow>>,
    next: usize,
    pattern: Option<Pattern>,
}

/// All open enumeration sessions of one virtualization instance.
#[derive(Debug, Default)]
pub struct Sessions {
    open: HashMap<EnumerationId, Session>,
}

impl Sessions {
    /// No sessions.
    pub fn new() -> Sessions {
        Sessions::default()
    }

    /// Opens session `id` over `rows`, which must already be in ProjFS order. A second Start
    /// with the same id replaces the first.
    pub fn start(&mut self, id: EnumerationId, rows: Arc<Vec<DirRow>>) {
        self.open.insert(
            id,
            Session {
                rows,
                next: 0,
                pattern: None,
            },
        );
    }

    /// Answers one Get: offers entries to `push` from the session's position on.
    /// `search` is the expression ProjFS passed, `restart` its restart-scan flag, and
    /// `single` its return-single-entry flag (stop after one entry).
    pub fn fill(
        &mut self,
        id: &EnumerationId,
        search: Option<&str>,
        restart: bool,
        single: bool,
        mut push: impl FnMut(&DirRow) -> Push,
    ) -> Result<Filled, EnumError> {
        let s = self.open.get_mut(id).ok_or(EnumError::UnknownSession)?;
        if restart || s.pattern.is_none() {
            s.pattern = Some(Pattern::parse(search));
            s.next = 0;
        }
        let pattern = s.pattern.as_ref().cloned().unwrap_or_else(Pattern::all);
        let mut added = 0;
        while let Some(row) = s.rows.get(s.next) {
            if !pattern.is_match(&row.name) {
                s.next += 1;
                continue;
            }
            if single && added == 1 {
                break;
            }
            match push(row) {
                Push::Added => {
                    added += 1;
                    s.next += 1;
                }
                Push::Full if added == 0 => return Err(EnumError::BufferTooSmall),
                Push::Full => break,
            }
        }
        // The loop stops at a matching entry or at the end, so this is exact.
        Ok(Filled {
            added,
            done: s.next >= s.rows.len(),
        })
    }

    /// Ends session `id`; whether it was open.
    pub fn end(&mut self, id: &EnumerationId) -> bool {
        self.open.remove(id).is_some()
    }

    /// Sessions open now.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name_order::sort_unique;

    fn rows(names: &[&str]) -> Arc<Vec<DirRow>> {
        let info = BasicInfo {
            is_dir: false,
            size: 1,
            creation: 0,
            last_access: 0,
            last_write: 0,
            change: 0,
            attributes: 0x20,
        };
        let mut v: Vec<DirRow> = names
            .iter()
            .map(|n| DirRow {
                name: n.to_string(),
                info,
            })
            .collect();
        sort_unique(&mut v, |r| r.name.as_str());
        Arc::new(v)
    }

    /// A buffer that holds `cap` entries, recording what was added.
    fn buffer(cap: usize, out: &mut Vec<String>) -> impl FnMut(&DirRow) -> Push + '_ {
        let mut left = cap;
        move |r: &DirRow| {
            if left == 0 {
                return Push::Full;
            }
            left -= 1;
            out.push(r.name.clone());
            Push::Added
        }
    }

    const ID: EnumerationId = [7; 16];
    const NAMES: &[&str] = &[
        "b.txt",
        "A.doc",
        "c.txt",
        "Über.txt",
        "d",
        "e.TXT",
        "_f.txt",
    ];

    #[test]
    fn small_buffer_spreads_the_listing_over_several_calls() {
        let mut s = Sessions::new();
        s.start(ID, rows(NAMES));
        let mut calls = Vec::new();
        loop {
            let mut got = Vec::new();
            let f = s
                .fill(&ID, Some("*"), false, false, buffer(2, &mut got))
                .unwrap();
            assert_eq!(f.added, got.len());
            calls.push(got);
            if f.done {
                break;
            }
        }
        assert_eq!(
            calls,
            vec![
                vec!["A.doc", "b.txt"],
                vec!["c.txt", "d"],
                vec!["e.TXT", "_f.txt"],
                vec!["Über.txt"],
            ]
        );
        // After the end, further calls return nothing.
        let mut got = Vec::new();
        assert_eq!(
            s.fill(&ID, None, false, false, buffer(5, &mut got)),
            Ok(Filled {
                added: 0,
                done: true
            })
        );
        assert!(got.is_empty());
    }

    #[test]
    fn entry_that_did_not_fit_comes_first_next_time() {
        let mut s = Sessions::new();
        s.start(ID, rows(&["a", "b", "c"]));
        let mut first = Vec::new();
        let f = s
            .fill(&ID, None, false, false, buffer(1, &mut first))
            .unwrap();
        assert_eq!((first, f.done), (vec!["a".to_string()], false));
        let mut second = Vec::new();
        s.fill(&ID, None, false, false, buffer(10, &mut second))
            .unwrap();
        assert_eq!(second, ["b", "c"]);
    }

    #[test]
    fn buffer_too_small_for_one_entry_keeps_the_position() {
        let mut s = Sessions::new();
        s.start(ID, rows(&["a", "b"]));
        let mut none = Vec::new();
        assert_eq!(
            s.fill(&ID, None, false, false, buffer(0, &mut none)),
            Err(EnumError::BufferTooSmall)
        );
        let mut got = Vec::new();
        s.fill(&ID, None, false, false, buffer(10, &mut got))
            .unwrap();
        assert_eq!(got, ["a", "b"]);
    }

    #[test]
    fn restart_rewinds_and_recaptures_the_expression() {
        let mut s = Sessions::new();
        s.start(ID, rows(NAMES));
        let mut got = Vec::new();
        s.fill(&ID, Some("*.txt"), false, false, buffer(2, &mut got))
            .unwrap();
        assert_eq!(got, ["b.txt", "c.txt"]);
        // Without restart a different expression is ignored.
        let mut got = Vec::new();
        s.fill(&ID, Some("*.doc"), false, false, buffer(1, &mut got))
            .unwrap();
        assert_eq!(got, ["e.TXT"]);
        // Restart: back to the first entry, with the new expression.
        let mut got = Vec::new();
        let f = s
            .fill(&ID, Some("*.doc"), true, false, buffer(10, &mut got))
            .unwrap();
        assert_eq!((got, f.done), (vec!["A.doc".to_string()], true));
        // Restart with no expression: everything again.
        let mut got = Vec::new();
        s.fill(&ID, None, true, false, buffer(100, &mut got))
            .unwrap();
        assert_eq!(got.len(), NAMES.len());
    }

    #[test]
    fn search_expressions_with_dos_wildcards() {
        let names = [
            "Makefile", "main.rs", "doc.txt", "doc.md", "doc.text", "a.b.txt",
        ];
        let run = |expr: &str| {
            let mut s = Sessions::new();
            s.start(ID, rows(&names));
            let mut got = Vec::new();
            s.fill(&ID, Some(expr), false, false, buffer(100, &mut got))
                .unwrap();
            got
        };
        assert_eq!(run("<\""), ["Makefile"]);
        assert_eq!(run("doc\">>>"), ["doc.md", "doc.txt"]);
        assert_eq!(run("<.txt"), ["a.b.txt", "doc.txt"]);
        assert_eq!(run("?ain.??"), ["main.rs"]);
        assert_eq!(run("D*"), ["doc.md", "doc.text", "doc.txt"]);
        assert!(run("nothing*").is_empty());
    }

    #[test]
    fn single_entry_flag_returns_one() {
        let mut s = Sessions::new();
        s.start(ID, rows(&["a", "b"]));
        let mut got = Vec::new();
        let f = s
            .fill(&ID, None, false, true, buffer(10, &mut got))
            .unwrap();
        assert_eq!((got, f.done), (vec!["a".to_string()], false));
    }

    #[test]
    fn sessions_are_independent_and_end() {
        let mut s = Sessions::new();
        let other: EnumerationId = [9; 16];
        s.start(ID, rows(&["a", "b"]));
        s.start(other, rows(&["x"]));
        let mut got = Vec::new();
        s.fill(&ID, None, false, false, buffer(1, &mut got))
            .unwrap();
        let mut got2 = Vec::new();
        s.fill(&other, None, false, false, buffer(10, &mut got2))
            .unwrap();
        assert_eq!((got, got2), (vec!["a".to_string()], vec!["x".to_string()]));
        assert_eq!(s.len(), 2);
        assert!(s.end(&ID));
        assert!(!s.end(&ID));
        let mut got = Vec::new();
        assert_eq!(
            s.fill(&ID, None, false, false, buffer(1, &mut got)),
            Err(EnumError::UnknownSession)
        );
        assert_eq!(s.len(), 1);
    }
}
