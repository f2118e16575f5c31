//! What the client authenticates with: nothing, HTTP Basic, or a bearer token. The secret
//! parts are [`SecretString`]s: redacted in `Debug` output, zeroed when dropped; every
//! header carrying them is marked sensitive.

use secrecy::{ExposeSecret, SecretString};

/// How requests authenticate. Swappable while the drive runs
/// ([`super::WebDav::set_credentials`]).
#[derive(Clone, Debug, Default)]
pub enum Credentials {
    /// No `Authorization` header.
    #[default]
    None,
    /// HTTP Basic authentication.
    Basic {
        /// The user name.
        user: String,
        /// The password (none sends `user:`).
        password: Option<SecretString>,
    },
    /// `Authorization: Bearer <token>`.
    Bearer(SecretString),
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
            Credentials::Basic { user, password } => {
                req.basic_auth(user, password.as_ref().map(|p| p.expose_secret()))
            }
            Credentials::Bearer(token) => req.bearer_auth(token.expose_secret()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let basic = Credentials::Basic {
            user: "bob".into(),
            password: Some("hunter2".into()),
        };
        let shown = format!("{basic:?} {:?}", Credentials::Bearer("tok-xyz".into()));
        assert!(
            shown.contains("bob") && !shown.contains("hunter2") && !shown.contains("tok-xyz"),
            "{shown}"
        );
    }
}
