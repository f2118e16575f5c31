//! The daemon's side of `edrive login`: the [`Keeper`] of a mount's credentials, which
//! tells `status` what kind they are and checks, swaps and stores new ones.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use edrive_fs_core::remote::RemoteError;
use edrive_fs_core::Drive;
use edrive_webdav::{Credentials, WebDav};
use thiserror::Error;
use tracing::{info, warn};

use crate::credentials::{CredentialsError, Secret};
use crate::secrets;

/// How long checking new credentials against the server may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(12);

/// Why `edrive login` changed nothing.
#[derive(Debug, Error)]
pub enum LoginError {
    /// Neither a password nor a token came with the request.
    #[error("no password or token given")]
    Nothing,
    /// A password without a user name, on a mount that has none.
    #[error("this mount has no user name: give --user")]
    NoUser,
    /// The server answered 401/403 to the new credentials.
    #[error("the server refused these credentials (HTTP {0}); nothing changed")]
    Refused(u16),
    /// The server could not tell whether they work.
    #[error("the credentials could not be checked ({0}); nothing changed")]
    Unchecked(String),
}

/// The daemon's keeper of its mount's credentials: shows what kind they are, and checks,
/// swaps and stores new ones for `edrive login`.
pub struct Keeper {
    /// `None` for an S3 mount, whose credentials come from the AWS environment.
    webdav: Option<Arc<WebDav>>,
    url: String,
    file: PathBuf,
    /// Where an S3 mount's credentials came from.
    s3_source: Option<String>,
}

impl fmt::Debug for Keeper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keeper")
            .field("url", &self.url)
            .field("file", &self.file)
            .finish()
    }
}

/// What a successful login did.
pub struct LoginOutcome {
    /// Where the credentials were stored, or why they could not be.
    pub stored: Result<PathBuf, CredentialsError>,
}

impl Keeper {
    /// The keeper of `webdav`'s credentials for `url`, storing them in `file`.
    pub fn new(webdav: Arc<WebDav>, url: String, file: PathBuf) -> Keeper {
        Keeper {
            webdav: Some(webdav),
            url,
            file,
            s3_source: None,
        }
    }

    /// The keeper of an S3 mount: it only tells where the credentials came from.
    pub fn for_s3(url: String, source: String) -> Keeper {
        Keeper {
            webdav: None,
            url,
            file: PathBuf::new(),
            s3_source: Some(source),
        }
    }

    /// The kind of credentials, the user name and the stored file, for `status`.
    pub fn summary(&self) -> serde_json::Value {
        let Some(webdav) = &self.webdav else {
            return serde_json::json!({ "kind": "s3", "source": self.s3_source });
        };
        let c = webdav.credentials();
        serde_json::json!({
            "kind": c.kind(),
            "user": c.user(),
            "credentials_file": self.file,
            "stored": self.file.exists() || secrets::in_keyring(),
            "in_keyring": secrets::in_keyring(),
        })
    }

    /// Checks new credentials against the server (a PROPFIND Depth 0 of the root sent
    /// with them); only if they work, stores them, swaps them in and brings the drive
    /// online again. A password without `user` keeps the mount's user name.
    pub async fn login(
        &self,
        drive: &Drive,
        user: Option<String>,
        password: Option<Secret>,
        bearer_token: Option<Secret>,
    ) -> Result<LoginOutcome, LoginError> {
        let Some(webdav) = &self.webdav else {
            return Err(LoginError::Unchecked(
                "an S3 mount takes its credentials from the AWS environment or profile: remount"
                    .into(),
            ));
        };
        let new = match (bearer_token, password) {
            (Some(token), _) => Credentials::Bearer(token.into()),
            (None, Some(password)) => {
                let current = webdav.credentials();
                let user = user
                    .or_else(|| current.user().map(str::to_string))
                    .ok_or(LoginError::NoUser)?;
                Credentials::Basic {
                    user,
                    password: Some(password.into()),
                }
            }
            (None, None) => return Err(LoginError::Nothing),
        };
        let checked = tokio::time::timeout(CHECK_TIMEOUT, webdav.check_credentials(&new)).await;
        match checked {
            Ok(Ok(root)) if root.is_dir => {}
            Ok(Ok(_)) => return Err(LoginError::Unchecked("the share's root is a file".into())),
            Ok(Err(RemoteError::Auth(status))) => {
                warn!(
                    status,
                    "login: the server refused the new credentials; nothing changed"
                );
                return Err(LoginError::Refused(status));
            }
            Ok(Err(e)) => return Err(LoginError::Unchecked(e.to_string())),
            Err(_) => {
                return Err(LoginError::Unchecked(format!(
                    "no answer within {} s",
                    CHECK_TIMEOUT.as_secs()
                )))
            }
        }
        let stored = tokio::task::block_in_place(|| {
            secrets::store(&self.url, &new, &self.file).map(|place| match place {
                secrets::Place::File(f) => f,
                secrets::Place::Keyring => PathBuf::from("the keyring"),
            })
        });
        if let Err(e) = &stored {
            warn!(error = %e, "login: the new credentials work but could not be stored");
        }
        webdav.set_credentials(new);
        drive.credentials_accepted();
        info!("login: new credentials accepted; online again");
        Ok(LoginOutcome { stored })
    }
}
