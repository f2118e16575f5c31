//! What can go wrong talking to a server.

use thiserror::Error;

/// Failure of one remote operation. Never means "the entry is gone" unless it is
/// [`RemoteError::NotFound`] from a request that reached the server.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RemoteError {
    /// No connection, DNS failure, or timeout: the server was not reached.
    #[error("cannot reach server: {0}")]
    Unreachable(String),
    /// The server refused the credentials (401) or the access (403).
    #[error("authentication failed (HTTP {0})")]
    Auth(u16),
    /// The server positively answered that the entry does not exist (404/410).
    #[error("not found on server")]
    NotFound,
    /// A conditional write found another version on the server (412).
    #[error("the server has a different version (precondition failed)")]
    PreconditionFailed,
    /// The resource is locked by someone else (423); the owner if the server said.
    #[error("locked on server{}", .0.as_deref().map(|o| format!(" by {o}")).unwrap_or_default())]
    Locked(Option<String>),
    /// The server has no room (507).
    #[error("server has insufficient storage (HTTP 507)")]
    InsufficientStorage,
    /// Any other unexpected HTTP status.
    #[error("server answered HTTP {0}")]
    Status(u16),
    /// The reply could not be understood (bad XML, missing fields).
    #[error("malformed server reply: {0}")]
    Malformed(String),
    /// A body ended before the promised length.
    #[error("short body: expected {expected} bytes, got {got}")]
    ShortBody {
        /// Bytes promised.
        expected: u64,
        /// Bytes received.
        got: u64,
    },
    /// The connection broke during a transfer.
    #[error("transfer failed: {0}")]
    Transfer(String),
    /// A local problem preparing the request (bad URL, unreadable upload source).
    #[error("request could not be made: {0}")]
    Local(String),
}

impl RemoteError {
    /// Whether retrying later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            RemoteError::Unreachable(_)
            | RemoteError::Transfer(_)
            | RemoteError::ShortBody { .. }
            | RemoteError::Locked(_) => true,
            RemoteError::Status(code) => *code >= 500 || *code == 408 || *code == 429,
            _ => false,
        }
    }
}

/// Runs `request` again, up to twice, after a 5xx reply other than 501 and 505 (a server
/// failing one request now and then): for requests that can be repeated without harm
/// (PROPFIND, GET, a PUT of the same bytes, a DELETE of a work file).
pub async fn again<T, F, Fut>(mut request: F) -> Result<T, RemoteError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RemoteError>>,
{
    let mut wait = std::time::Duration::from_millis(50);
    for _ in 0..2 {
        match request().await {
            Err(RemoteError::Status(code)) if code >= 500 && code != 501 && code != 505 => {
                tokio::time::sleep(wait).await;
                wait *= 4;
            }
            other => return other,
        }
    }
    request().await
}
