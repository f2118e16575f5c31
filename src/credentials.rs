//! Credentials of a mount: secrets read from files or a terminal prompt without echo, how
//! `edrive mount` hands them to its daemon, the file `edrive login` stores them in (mode
//! 0600) for later mounts (the daemon's side of `edrive login` is `login`).
//!
//! A secret never reaches a command line, a log line, status output or an error message:
//! [`Secret`] prints as `<redacted>` and is zeroed when dropped, and errors name files and
//! HTTP statuses only.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use edrive_webdav::Credentials;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use thiserror::Error;

/// A password or token: serialized as the plain string (only into pipes, the control
/// socket and the 0600 credentials file), printed as `<redacted>`, zeroed when dropped.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(SecretString);

impl Secret {
    /// Takes over a secret string (copied into a buffer of its own, the original zeroed).
    pub fn new(s: String) -> Secret {
        let s = Zeroizing::new(s);
        Secret(SecretString::from(s.as_str()))
    }

    /// The secret itself, to send it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl From<Secret> for SecretString {
    fn from(s: Secret) -> SecretString {
        s.0
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.expose())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Reading, prompting for or storing credentials failed.
#[derive(Debug, Error)]
pub enum CredentialsError {
    /// A password or token file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The first line of a password or token file is empty.
    #[error("{0}: the first line is empty")]
    Empty(PathBuf),
    /// No terminal to prompt on.
    #[error("cannot ask for the password: {0}; use --password-file or $EDRIVE_PASSWORD")]
    NoTerminal(String),
    /// The stored credentials cannot be used.
    #[error("the stored credentials in {path} cannot be used: {reason}")]
    Stored {
        /// The file.
        path: PathBuf,
        /// Why (never its content).
        reason: String,
    },
    /// The credentials could not be written.
    #[error("cannot store the credentials in {path}: {source}")]
    Store {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Reads the first line of `path` (a password or token file) without its line ending.
pub fn first_line(path: &Path) -> Result<Secret, CredentialsError> {
    let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = Zeroizing::new(text);
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(CredentialsError::Empty(path.to_path_buf()));
    }
    Ok(Secret(line.into()))
}

/// What `edrive mount` hands its daemon on standard input (one JSON line): never on the
/// command line, never in the environment.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Handoff {
    /// The Basic auth password, if one was given.
    pub password: Option<Secret>,
    /// The bearer token, if one was given.
    pub bearer_token: Option<Secret>,
}

/// The stored credentials file: for one server URL.
#[derive(Serialize, Deserialize)]
struct Stored {
    url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bearer_token: Option<Secret>,
}

/// The credentials stored in `path` for `url`; `None` if there are none, or they are for
/// another server. Fails if the file is readable by anyone else.
pub fn load(path: &Path, url: &str) -> Result<Option<Credentials>, CredentialsError> {
    let bad = |reason: String| CredentialsError::Stored {
        path: path.to_path_buf(),
        reason,
    };
    let md = match std::fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(e.to_string())),
    };
    if !md.is_file() {
        return Err(bad("not a regular file".into()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if md.uid() != me {
            return Err(bad("owned by another user".into()));
        }
        if md.mode() & 0o077 != 0 {
            return Err(bad(format!(
                "mode {:o} lets other users read it (chmod 600 it)",
                md.mode() & 0o777
            )));
        }
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?);
    // Not the parser's message: it may quote part of the file.
    let stored: Stored =
        serde_json::from_str(&text).map_err(|_| bad("not an edrive credentials file".into()))?;
    if stored.url != url {
        return Ok(None);
    }
    Ok(match (stored.bearer_token, stored.user) {
        (Some(token), _) => Some(Credentials::Bearer(token.0)),
        (None, Some(user)) => Some(Credentials::Basic {
            user,
            password: stored.password.map(|p| p.0),
        }),
        (None, None) => None,
    })
}

/// `credentials` for `url` as the text a credentials file holds (what the keyring keeps
/// too).
pub fn to_text(url: &str, credentials: &Credentials) -> Zeroizing<String> {
    let stored = stored_of(url, credentials);
    Zeroizing::new(serde_json::to_string(&stored).unwrap_or_default())
}

/// The credentials for `url` in `text` (as [`to_text`] writes it): `None` if they are for
/// another URL; an error (naming nothing of the text) if it is not such a text.
pub fn from_text(text: &str, url: &str) -> Result<Option<Credentials>, String> {
    let stored: Stored =
        serde_json::from_str(text).map_err(|_| "not edrive credentials".to_string())?;
    if stored.url != url {
        return Ok(None);
    }
    Ok(credentials_of(stored))
}

fn credentials_of(stored: Stored) -> Option<Credentials> {
    match (stored.bearer_token, stored.user) {
        (Some(token), _) => Some(Credentials::Bearer(token.0)),
        (None, Some(user)) => Some(Credentials::Basic {
            user,
            password: stored.password.map(|p| p.0),
        }),
        (None, None) => None,
    }
}

fn stored_of(url: &str, credentials: &Credentials) -> Stored {
    match credentials {
        Credentials::None => Stored {
            url: url.into(),
            user: None,
            password: None,
            bearer_token: None,
        },
        Credentials::Basic { user, password } => Stored {
            url: url.into(),
            user: Some(user.clone()),
            password: password.clone().map(Secret),
            bearer_token: None,
        },
        Credentials::Bearer(token) => Stored {
            url: url.into(),
            user: None,
            password: None,
            bearer_token: Some(Secret(token.clone())),
        },
    }
}

/// Stores `credentials` for `url` in `path` (mode 0600, written to a temporary file first
/// and renamed over the old one, so a crash leaves either the old or the new file).
pub fn store(path: &Path, url: &str, credentials: &Credentials) -> Result<(), CredentialsError> {
    let fail = |source: std::io::Error| CredentialsError::Store {
        path: path.to_path_buf(),
        source,
    };
    let stored = stored_of(url, credentials);
    let text = serde_json::to_string(&stored).map_err(|e| fail(std::io::Error::other(e)))?;
    let text = Zeroizing::new(text);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(fail)?;
            set_mode(dir, 0o700).map_err(fail)?;
        }
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "credentials".into());
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let _ = std::fs::remove_file(&tmp);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e)
    })
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

/// Asks for a secret on the terminal with echo off (`/dev/tty` on Unix, the console on
/// Windows); Ctrl-C restores the terminal before the process stops.
pub fn prompt_hidden(prompt: &str) -> Result<Secret, CredentialsError> {
    prompt_with(prompt, rpassword::ConfigBuilder::new().build())
}

/// [`prompt_hidden`] on the input and output `config` names.
fn prompt_with(prompt: &str, config: rpassword::Config) -> Result<Secret, CredentialsError> {
    let line = rpassword::prompt_password_with_config(prompt, config)
        .map_err(|e| CredentialsError::NoTerminal(format!("no terminal ({e})")))?;
    if line.is_empty() {
        return Err(CredentialsError::NoTerminal("nothing was typed".into()));
    }
    Ok(Secret::new(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Credentials spelt out, secrets included, to compare them.
    fn plain(c: &Credentials) -> String {
        match c {
            Credentials::None => "none".into(),
            Credentials::Basic { user, password } => format!(
                "basic {user} {:?}",
                password.as_ref().map(|p| p.expose_secret())
            ),
            Credentials::Bearer(token) => format!("bearer {}", token.expose_secret()),
        }
    }

    /// The credentials stored in `path` for `url`, spelt out.
    fn loaded(path: &Path, url: &str) -> Option<String> {
        load(path, url).ok().flatten().as_ref().map(plain)
    }

    #[test]
    fn secrets_never_print() {
        let h = Handoff {
            password: Some(Secret::new("hunter2".into())),
            bearer_token: Some(Secret::new("tok-xyz".into())),
        };
        let shown = format!("{h:?} {:?}", Secret::new("hunter2".into()));
        assert!(
            !shown.contains("hunter2") && !shown.contains("tok-xyz"),
            "{shown}"
        );
        let json = serde_json::to_string(&h).unwrap_or_default();
        let back: Handoff = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back.password.as_ref().map(Secret::expose), Some("hunter2"));
    }

    #[test]
    fn stored_credentials_round_trip_private_and_per_url() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub").join("credentials");
        let url = "http://h/dav/";
        let basic = Credentials::Basic {
            user: "bob".into(),
            password: Some("pw".into()),
        };
        store(&file, url, &basic).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).map(|m| m.permissions().mode() & 0o777);
            assert_eq!(mode.ok(), Some(0o600));
        }
        assert_eq!(loaded(&file, url), Some(plain(&basic)));
        assert_eq!(loaded(&file, "http://other/"), None);
        let bearer = Credentials::Bearer("t".into());
        store(&file, url, &bearer).unwrap();
        assert_eq!(loaded(&file, url), Some(plain(&bearer)));
        assert_eq!(loaded(&dir.path().join("none"), url), None);
        #[cfg(unix)]
        {
            set_mode(&file, 0o644).unwrap();
            let e = load(&file, url).err().map(|e| e.to_string());
            assert!(e.is_some_and(|e| e.contains("chmod 600")));
        }
        // A secret-looking word no temp dir name can contain by chance.
        std::fs::write(&file, "garbage with Zq9-secret-Xv inside").unwrap();
        set_mode(&file, 0o600).unwrap();
        let e = load(&file, url)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("not an edrive credentials file") && !e.contains("Zq9-secret-Xv"),
            "{e}"
        );
    }

    #[test]
    fn prompts_read_one_line() {
        let typed = |input: &str| {
            let config = rpassword::ConfigBuilder::new()
                .input_data(input)
                .output_discard()
                .build();
            prompt_with("Password: ", config)
        };
        assert_eq!(
            typed("s3cret\r\nmore\n").ok().as_ref().map(Secret::expose),
            Some("s3cret")
        );
        assert!(matches!(typed("\n"), Err(CredentialsError::NoTerminal(_))));
        let no_tty = rpassword::ConfigBuilder::new()
            .input_file_path("/nonexistent/tty")
            .output_discard()
            .build();
        let e = prompt_with("Password: ", no_tty)
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("--password-file")));
    }

    #[test]
    fn first_line_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p");
        std::fs::write(&f, "s3cret\r\nsecond\n").unwrap();
        assert_eq!(
            first_line(&f).ok().as_ref().map(Secret::expose),
            Some("s3cret")
        );
        std::fs::write(&f, "\n").unwrap();
        assert!(matches!(first_line(&f), Err(CredentialsError::Empty(_))));
    }
}
