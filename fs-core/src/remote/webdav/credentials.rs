//! What the client authenticates with: nothing, HTTP Basic, or a bearer token. The secret
//! parts never show in `Debug` output, and every header carrying them is marked sensitive.

use std::fmt;

/// How requests authenticate. Swappable while the drive runs
/// ([`super::WebDav::set_credentials`]).
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    /// No `Authorization` header.
    #[default]
    None,
    /// HTTP Basic authentication.
    Basic {
        /// The user name.
        user: String,
        /// The password (none sends `user:`).
        password: Option<String>,
    },
    /// `Authorization: Bearer <token>`.
    Bearer(String),
}

impl Credentials {
    /// `none`, `basic` or `bearer`, for status output.
    pub fn kind(&self) -> &'static str {
        match self {
            Credentials::None => "none",
            Credentials::Basic { .. } => "basic",
            Credentials::Bearer(_) => "bearer",
        }
    }

    /// The user name of Basic credentials.
    pub fn user(&self) -> Option<&str> {
        match self {
            Credentials::Basic { user, .. } => Some(user),
            _ => None,
        }
    }

    /// Adds the `Authorization` header (marked sensitive by reqwest) to a request.
    pub(crate) fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Credentials::None => req,
            Credentials::Basic { user, password } => req.basic_auth(user, password.as_ref()),
            Credentials::Bearer(token) => req.bearer_auth(token),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Basic { user, password } => f
                .debug_struct("Basic")
                .field("user", user)
                .field("password", &password.as_ref().map(|_| "<redacted>"))
                .finish(),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}
