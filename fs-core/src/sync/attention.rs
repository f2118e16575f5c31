//! Changes that wait for the user rather than for the server: a conflict (policy `ask`),
//! a change the server refuses for good (403: a read-only space), a mass deletion held
//! back. The mount is in state `attention` when every remaining change is one of these;
//! while any other change can still move it is `transferring`.

use crate::meta::{Meta, MetaError, Problem, DENY_CHANGE, DENY_REMOVE, ROOT_INO};

/// How many pending changes wait for the user, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attention {
    /// Deletions held back (`edrive deletions`).
    pub held: u64,
    /// Changes the server refused (403, or an error not worth retrying).
    pub refused: u64,
    /// Files changed on both sides waiting for `edrive resolve`.
    pub conflicts: u64,
}

impl Attention {
    /// Counts `problem` if it waits for the user; returns whether it does.
    pub fn count(&mut self, problem: &Problem) -> bool {
        match problem {
            Problem::Held => self.held += 1,
            Problem::Conflict => self.conflicts += 1,
            Problem::Forbidden(_) | Problem::Refused(_) => self.refused += 1,
            Problem::NoSpace | Problem::Locked { .. } | Problem::Retrying(_) => return false,
        }
        true
    }

    /// All changes that wait for the user.
    pub fn total(&self) -> u64 {
        self.held + self.refused + self.conflicts
    }
}

/// Learns from the server's refusal (403) of a change of `ino` that the folder it was
/// made in is read-only for this user (see `crate::meta::permissions`), so that later
/// changes there fail at once. A refusal at the top of the share marks only the entry:
/// one refused name does not make the whole mount read-only. Returns the entries whose
/// attributes changed.
pub fn learn_refusal(meta: &Meta, ino: u64) -> Result<Vec<u64>, MetaError> {
    let Some(e) = meta.get_any(ino)? else {
        return Ok(Vec::new());
    };
    let folder = if e.deleted {
        e.remote.as_ref().map(|(p, _)| *p).unwrap_or(ROOT_INO)
    } else {
        e.parent
    };
    if folder == ROOT_INO {
        meta.deny(ino, DENY_CHANGE | DENY_REMOVE)?;
        return Ok(vec![ino]);
    }
    meta.deny_subtree(folder)
}

/// Whether a change stuck with `problem` waits for the user (not for a retry).
pub fn waits_for_user(problem: &Problem) -> bool {
    Attention::default().count(problem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_problems() {
        let mut a = Attention::default();
        for (text, waits) in [
            ("held", true),
            ("refused: forbidden (403)", true),
            ("error: bad request", true),
            ("conflict", true),
            ("locked by alice", false),
            ("no-space", false),
            ("retrying: 502", false),
        ] {
            assert_eq!(a.count(&Problem::decode(text)), waits, "{text}");
        }
        assert_eq!((a.held, a.refused, a.conflicts, a.total()), (1, 2, 1, 4));
    }
}
