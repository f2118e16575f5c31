//! Why the write-back of one entry does not move: the typed value of the store's
//! `problem` column.
//!
//! The column keeps text, as earlier versions wrote it (`conflict`, `no-space`,
//! `locked by OWNER`, `retrying: REASON`, `refused: DETAIL`, `held`, `error: DETAIL`), so a store written by any
//! version reads back as the same [`Problem`]; nothing outside this file encodes or
//! decodes it.

use std::fmt;

use rusqlite::types::{FromSql, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

/// Why an entry's change does not reach the server (or waits for another try).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// Changed here and on the server (policy `ask`): waits for `edrive resolve`.
    Conflict,
    /// The server had no room (507): tried again now and then.
    NoSpace,
    /// Locked on the server by someone else (423), by `owner` where the server names it:
    /// tried again with backoff.
    Locked {
        /// The lock's owner, as the server names it.
        owner: Option<String>,
    },
    /// A refusal of this one change that may pass (409: its folder is not there; a 5xx
    /// for this path; the local copy could not be read): tried again with backoff while
    /// the rest of the queue goes on.
    Retrying(String),
    /// The server forbids this change for good (403: a read-only space): kept locally,
    /// not retried by itself; `edrive resolve PATH --discard | --save-as | --use-local`
    /// settles it. Shown as state `refused`.
    Forbidden(String),
    /// A local deletion held back because it came in a mass deletion (see
    /// `crate::sync::held`): waits for `edrive deletions`.
    Held,
    /// Any other refusal; the local copy is kept until someone decides.
    Refused(String),
}

/// The kind of a [`Problem`], without its detail: what [`crate::Meta::clear_problems`]
/// clears.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// [`Problem::Conflict`].
    Conflict,
    /// [`Problem::NoSpace`].
    NoSpace,
    /// [`Problem::Locked`].
    Locked,
    /// [`Problem::Retrying`].
    Retrying,
    /// [`Problem::Forbidden`].
    Forbidden,
    /// [`Problem::Held`].
    Held,
    /// [`Problem::Refused`].
    Refused,
}

impl ProblemKind {
    /// How a stored problem of this kind starts.
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            ProblemKind::Conflict => "conflict",
            ProblemKind::NoSpace => "no-space",
            ProblemKind::Locked => "locked",
            ProblemKind::Retrying => "retrying",
            ProblemKind::Forbidden => "refused",
            ProblemKind::Held => "held",
            ProblemKind::Refused => "error",
        }
    }
}

impl Problem {
    /// The kind, without the detail.
    pub fn kind(&self) -> ProblemKind {
        match self {
            Problem::Conflict => ProblemKind::Conflict,
            Problem::NoSpace => ProblemKind::NoSpace,
            Problem::Locked { .. } => ProblemKind::Locked,
            Problem::Retrying(_) => ProblemKind::Retrying,
            Problem::Forbidden(_) => ProblemKind::Forbidden,
            Problem::Held => ProblemKind::Held,
            Problem::Refused(_) => ProblemKind::Refused,
        }
    }

    /// Decodes the stored text; text of no known kind is a refusal with that detail.
    pub fn decode(s: &str) -> Problem {
        let rest = |kind: ProblemKind| s.strip_prefix(kind.prefix());
        if s == ProblemKind::Conflict.prefix() {
            Problem::Conflict
        } else if s == ProblemKind::NoSpace.prefix() {
            Problem::NoSpace
        } else if s == ProblemKind::Held.prefix() {
            Problem::Held
        } else if let Some(r) = rest(ProblemKind::Locked) {
            Problem::Locked {
                owner: r.strip_prefix(" by ").map(str::to_string),
            }
        } else if let Some(r) = rest(ProblemKind::Retrying) {
            Problem::Retrying(r.strip_prefix(": ").unwrap_or(r).to_string())
        } else if let Some(r) = rest(ProblemKind::Forbidden) {
            Problem::Forbidden(r.strip_prefix(": ").unwrap_or(r).to_string())
        } else if let Some(r) = rest(ProblemKind::Refused) {
            Problem::Refused(r.strip_prefix(": ").unwrap_or(r).to_string())
        } else {
            Problem::Refused(s.to_string())
        }
    }
}

/// The stored text, which is also what `edrive status` and `edrive conflicts` show.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind().prefix();
        match self {
            Problem::Conflict | Problem::NoSpace | Problem::Held => f.write_str(kind),
            Problem::Locked { owner: None } => f.write_str(kind),
            Problem::Locked { owner: Some(o) } => write!(f, "{kind} by {o}"),
            Problem::Retrying(d) | Problem::Forbidden(d) | Problem::Refused(d) => {
                write!(f, "{kind}: {d}")
            }
        }
    }
}

impl ToSql for Problem {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.to_string()))
    }
}

impl FromSql for Problem {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value.as_str().map(Problem::decode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_reads_back_as_itself() {
        for p in [
            Problem::Conflict,
            Problem::NoSpace,
            Problem::Locked { owner: None },
            Problem::Locked {
                owner: Some("mailto:ann@example.org".into()),
            },
            Problem::Retrying("server error (502)".into()),
            Problem::Refused("forbidden (403)".into()),
            Problem::Forbidden("the server forbids this change (403): read-only for you".into()),
            Problem::Held,
            Problem::Refused("local copy unreadable: gone".into()),
        ] {
            assert_eq!(Problem::decode(&p.to_string()), p, "{p}");
            assert!(p.to_string().starts_with(p.kind().prefix()));
        }
    }

    #[test]
    fn text_earlier_versions_wrote_decodes() {
        assert_eq!(Problem::decode("conflict"), Problem::Conflict);
        assert_eq!(
            Problem::decode("locked by bob"),
            Problem::Locked {
                owner: Some("bob".into())
            }
        );
        assert_eq!(
            Problem::decode("retrying: 409"),
            Problem::Retrying("409".into())
        );
        assert_eq!(
            Problem::decode("error: forbidden (403)"),
            Problem::Refused("forbidden (403)".into())
        );
        assert_eq!(Problem::decode("held"), Problem::Held);
        assert_eq!(
            Problem::decode("refused: read-only"),
            Problem::Forbidden("read-only".into())
        );
        assert_eq!(
            Problem::decode("something new"),
            Problem::Refused("something new".into())
        );
    }
}
