//! Where a drive's password or token is kept: the user's keyring (the Secret Service over
//! D-Bus: GNOME Keyring, KWallet, KeePassXC) when one answers, else the 0600 credentials
//! file of `credentials`. The keyring item is found by `service=edrive username=URL`
//! and holds the same JSON as the file; nothing secret goes to the config, argv or logs.
//!
//! `EDRIVE_KEYRING=off` skips the keyring (servers without a desktop session, tests).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use edrive_webdav::Credentials;
use tracing::{debug, info, warn};

use crate::credentials::{self, CredentialsError};

/// Whether this process's credentials are in the keyring (loaded from or stored there),
/// for `edrive status`.
static IN_KEYRING: AtomicBool = AtomicBool::new(false);

/// Whether the credentials this process uses are kept in the keyring.
pub fn in_keyring() -> bool {
    IN_KEYRING.load(Ordering::Relaxed)
}

/// The keyring item's service attribute.
const SERVICE: &str = "edrive";

/// How long a keyring may take to answer before it counts as absent (a locked keyring
/// with no one to unlock it would otherwise wait forever).
const KEYRING_TIMEOUT: Duration = Duration::from_secs(10);

/// Where credentials were stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// In the user's keyring.
    Keyring,
    /// In this 0600 file (no keyring answered).
    File(PathBuf),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Keyring => f.write_str("the keyring (Secret Service)"),
            Place::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Stores `creds` for `url`: in the keyring if one answers, else in `file` (0600).
pub fn store(url: &str, creds: &Credentials, file: &Path) -> Result<Place, CredentialsError> {
    let text = credentials::to_text(url, creds);
    match keyring_call(url, KeyringOp::Set(text.to_string())) {
        Ok(_) => {
            info!("credentials stored in the keyring");
            IN_KEYRING.store(true, Ordering::Relaxed);
            // An older copy in the file would outlive a password change.
            let _ = std::fs::remove_file(file);
            return Ok(Place::Keyring);
        }
        Err(why) => info!(%why, "no keyring; the credentials go to a 0600 file"),
    }
    credentials::store(file, url, creds)?;
    IN_KEYRING.store(false, Ordering::Relaxed);
    Ok(Place::File(file.to_path_buf()))
}

/// The stored credentials for `url`: the keyring's, else those in `file`.
pub fn load(file: &Path, url: &str) -> Result<Option<Credentials>, CredentialsError> {
    match keyring_call(url, KeyringOp::Get) {
        Ok(Some(text)) => match credentials::from_text(&text, url) {
            Ok(Some(c)) => {
                info!("using the credentials in the keyring");
                IN_KEYRING.store(true, Ordering::Relaxed);
                return Ok(Some(c));
            }
            Ok(None) => {}
            Err(why) => warn!(%why, "the keyring's item for this URL is unusable"),
        },
        Ok(None) => debug!("no credentials in the keyring"),
        Err(why) => debug!(%why, "no keyring"),
    }
    credentials::load(file, url)
}

/// Deletes the credentials for `url` from the keyring and `file`.
pub fn forget(url: &str, file: &Path) {
    if let Err(why) = keyring_call(url, KeyringOp::Delete) {
        debug!(%why, "nothing deleted from a keyring");
    }
    let _ = std::fs::remove_file(file);
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
enum KeyringOp {
    Get,
    Set(String),
    Delete,
}

/// Runs one keyring operation on a thread of its own, given up after
/// [`KEYRING_TIMEOUT`]. `Err` means no usable keyring (the reason, never a secret).
fn keyring_call(url: &str, op: KeyringOp) -> Result<Option<String>, String> {
    if std::env::var("EDRIVE_KEYRING").is_ok_and(|v| v == "off" || v == "0") {
        return Err("EDRIVE_KEYRING=off".into());
    }
    let url = url.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("keyring".into())
        .spawn(move || {
            let _ = tx.send(keyring_op(&url, op));
        });
    if spawned.is_err() {
        return Err("cannot start a thread".into());
    }
    rx.recv_timeout(KEYRING_TIMEOUT)
        .unwrap_or_else(|_| Err("the keyring did not answer".into()))
}

#[cfg(target_os = "linux")]
fn keyring_op(url: &str, op: KeyringOp) -> Result<Option<String>, String> {
    let entry = ::keyring::Entry::new(SERVICE, url).map_err(|e| e.to_string())?;
    match op {
        KeyringOp::Get => match entry.get_password() {
            Ok(text) => Ok(Some(text)),
            Err(::keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(e.to_string()),
        },
        KeyringOp::Set(text) => entry
            .set_password(&text)
            .map(|()| None)
            .map_err(|e| e.to_string()),
        KeyringOp::Delete => match entry.delete_credential() {
            Ok(()) | Err(::keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(e.to_string()),
        },
    }
}

#[cfg(not(target_os = "linux"))]
fn keyring_op(_url: &str, _op: KeyringOp) -> Result<Option<String>, String> {
    let _ = SERVICE;
    Err("no keyring support on this platform yet".into())
}
