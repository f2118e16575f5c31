//! The control channel of a running mount: a Unix socket (Windows: a named pipe) per mount,
//! one JSON request per line, one JSON reply. The socket is the owner's only (mode 0600
//! in a 0700 folder, and the daemon checks the peer's uid): `login` sends secrets over it.

#[cfg(unix)]
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
#[cfg(unix)]
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::credentials::Secret;

/// A request to the daemon.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    /// Report the mount's state.
    Status,
    /// Unmount and exit.
    Unmount,
    /// Upload everything pending now, skipping the debounce (progress shows in status).
    Sync,
    /// Stop background network work after the transfer in flight (`offline`: every
    /// request, on-demand reads included); kept across remounts.
    Suspend {
        /// Hold back on-demand reads too.
        offline: bool,
    },
    /// Undo `Suspend`.
    Resume,
    /// Pin an entry (path components below the mountpoint) and fetch what is under it.
    Pin {
        /// Path components below the mountpoint (empty: the whole drive).
        path: Vec<String>,
    },
    /// Remove a pin.
    Unpin {
        /// Path components below the mountpoint.
        path: Vec<String>,
    },
    /// Delete the clean cached content under an entry now.
    Free {
        /// Path components below the mountpoint.
        path: Vec<String>,
    },
    /// List conflicts waiting for a decision and recent sync events.
    Conflicts,
    /// Settle the conflict of a file.
    Resolve {
        /// Path components below the mountpoint.
        path: Vec<String>,
        /// `use-local`, `use-remote`, `keep-both`, `discard` or `save-as`.
        choice: String,
        /// For `save-as`: where the local version goes (absolute).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        save_as: Option<std::path::PathBuf>,
    },
    /// Report one entry's state, pin, size and local bytes.
    Entry {
        /// Path components below the mountpoint.
        path: Vec<String>,
    },
    /// Exclude a folder on this device (`exclude` true) or include it again.
    Exclude {
        /// Path components below the mountpoint.
        path: Vec<String>,
        /// Exclude (true) or include (false).
        exclude: bool,
    },
    /// Held deletions: list (`action` `list`), `confirm` or `restore` those at or below
    /// `path` (empty: all).
    Deletions {
        /// Path components below the mountpoint (server side: the entries are gone here).
        path: Vec<String>,
        /// `list`, `confirm` or `restore`.
        action: String,
    },
    /// Check new credentials against the server; if they work, use and store them.
    Login {
        /// The user name (default: the mount's).
        user: Option<String>,
        /// A new Basic auth password.
        password: Option<Secret>,
        /// A new bearer token.
        bearer_token: Option<Secret>,
    },
    /// Subscribe to the mount's state: the connection stays open and the daemon sends a
    /// snapshot line (the `status` reply plus `conflicts` and `events`) at once, then
    /// whenever it changes, and at least every `period_s` seconds (default 10) even when
    /// nothing changed. Closing the connection ends it.
    Watch {
        /// The longest quiet time between two snapshots, in seconds.
        #[serde(default)]
        period_s: Option<u64>,
    },
}

/// Sends `req` to the daemon of `mountpoint` (absolute) and returns its reply.
#[cfg(unix)]
pub fn request(mountpoint: &Path, req: &Request) -> anyhow::Result<serde_json::Value> {
    use std::os::unix::net::UnixStream;
    let sock = crate::paths::socket_path(mountpoint);
    // Only a socket in a folder of this user's is this user's daemon.
    crate::paths::check_runtime_dir(false).map_err(|e| {
        anyhow::anyhow!(
            "no edrive mount of yours is running at {} ({e})",
            mountpoint.display()
        )
    })?;
    let mut stream = UnixStream::connect(&sock).map_err(|e| {
        anyhow::anyhow!(
            "no edrive mount is running at {} ({e})",
            mountpoint.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    if reply.trim().is_empty() {
        anyhow::bail!("the daemon closed the connection without a reply");
    }
    Ok(serde_json::from_str(&reply)?)
}

/// Sends `req` to the daemon of `mountpoint` (absolute) over its named pipe and returns its
/// reply. A named pipe opens as a file; a busy pipe (every instance taken) is retried
/// for a few seconds.
#[cfg(windows)]
pub fn request(mountpoint: &Path, req: &Request) -> anyhow::Result<serde_json::Value> {
    use std::io::{BufRead, BufReader, Write};
    use std::time::{Duration, Instant};

    /// `ERROR_PIPE_BUSY`: all instances of the pipe are connected.
    const ERROR_PIPE_BUSY: i32 = 231;
    let name = crate::paths::pipe_name(mountpoint);
    let deadline = Instant::now() + Duration::from_secs(5);
    let pipe = loop {
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&name)
        {
            Ok(p) => break p,
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => anyhow::bail!(
                "no edrive mount is running at {} ({e})",
                mountpoint.display()
            ),
        }
    };
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    (&pipe).write_all(line.as_bytes())?;
    (&pipe).flush()?;
    let mut reply = String::new();
    BufReader::new(&pipe).read_line(&mut reply)?;
    if reply.trim().is_empty() {
        anyhow::bail!("the daemon closed the connection without a reply");
    }
    Ok(serde_json::from_str(&reply)?)
}

/// Sends `req` to the daemon of `mountpoint` (not available on this platform).
#[cfg(not(any(unix, windows)))]
pub fn request(_mountpoint: &Path, _req: &Request) -> anyhow::Result<serde_json::Value> {
    anyhow::bail!("the control channel is not available on this platform")
}
