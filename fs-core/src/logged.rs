//! One way to let a step fail without failing the operation around it: the failure is
//! logged once, in the current span (the operation's), instead of dropped with `let _ =`.

use std::fmt::Display;

/// Logs the error of a step whose failure the operation survives.
pub(crate) trait OrLog {
    /// Logs the error, if any, at warn, as "`what` failed".
    fn or_log(self, what: &'static str);
}

impl<T, E: Display> OrLog for Result<T, E> {
    fn or_log(self, what: &'static str) {
        if let Err(e) = self {
            tracing::warn!(error = %e, "{what} failed");
        }
    }
}
