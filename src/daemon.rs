//! `edrive mount`: checks the server, opens the stores, mounts, and serves the control
//! socket until unmounted. Without `--foreground` the command re-executes itself as a
//! detached daemon and returns once the mount is usable (or with the reason it is not).

mod cache_dir;
mod detach;

use cache_dir::{create_private_dir, lock_dir};
use detach::{spawn_daemon, Ready};

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use edrive_cache::Cache;
use edrive_fs_core::remote::{Remote, RemoteError, RemotePath};
use edrive_fs_core::{Drive, DriveOptions, Meta};
use edrive_webdav::{Credentials, WebDav, WebDavConfig};
use secrecy::zeroize::Zeroizing;
#[cfg(unix)]
use tracing::warn;
use tracing::{error, info};

use crate::cli::MountArgs;
use crate::credentials::{self, Handoff, Secret};
use crate::login::Keeper;
use crate::paths;

/// How long checking the server may take before `mount` gives up.
const PROBE_TIMEOUT: Duration = Duration::from_secs(12);

/// Runs `edrive mount`.
pub fn run(mut args: MountArgs) -> anyhow::Result<()> {
    // Credentials written into the URL never travel further in it: not on the daemon's
    // command line, not in /proc/mounts, logs, status or the cache directory's name.
    let (url, url_user, url_password) = split_userinfo(&args.url);
    args.url = url;
    if args.user.is_none() {
        args.user = url_user;
    }
    if let Some(f) = &args.credentials_file {
        args.credentials_file = Some(std::path::absolute(f)?);
    }
    if args.daemon_child {
        let mut line = Zeroizing::new(String::new());
        std::io::stdin().read_line(&mut line)?;
        // Not the parser's message: it would quote the secrets.
        let handoff: Handoff = serde_json::from_str(line.trim_end())
            .map_err(|_| anyhow!("the mount daemon got unreadable credentials"))?;
        return serve_mount(args, handoff);
    }
    let handoff = read_secrets(&args, url_password)?;
    if handoff.bearer_token.is_some() && args.user.is_some() {
        bail!("a bearer token and a user name exclude each other");
    }
    // The daemon keeps no copy in its environment (children such as fusermount3 inherit it).
    std::env::remove_var("EDRIVE_PASSWORD");
    if args.foreground {
        return serve_mount(args, handoff);
    }
    spawn_daemon(&args, &handoff)
}

/// Splits `scheme://user:password@host/...` into the URL without credentials and the
/// (percent-decoded) user and password.
pub(crate) fn split_userinfo(url: &str) -> (String, Option<String>, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None, None);
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return (url.to_string(), None, None);
    };
    let (user, password) = match userinfo.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (userinfo, None),
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    (
        format!("{scheme}://{host}{path}"),
        Some(decode(user)).filter(|u| !u.is_empty()),
        password.map(decode),
    )
}

/// The password or token the command line points to: `--bearer-token-file`, else
/// `--password-file`, else `$EDRIVE_PASSWORD`, else the one in the URL.
fn read_secrets(args: &MountArgs, url_password: Option<String>) -> anyhow::Result<Handoff> {
    if let Some(f) = &args.bearer_token_file {
        return Ok(Handoff {
            password: None,
            bearer_token: Some(credentials::first_line(f)?),
        });
    }
    let password = match &args.password_file {
        Some(f) => Some(credentials::first_line(f)?),
        None => std::env::var("EDRIVE_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty())
            .or(url_password)
            .map(Secret::new),
    };
    Ok(Handoff {
        password,
        bearer_token: None,
    })
}

/// What a failed server check means for a user, in one line. `stored` names the
/// credentials file when its credentials were used.
fn probe_message(url: &str, user: Option<&str>, stored: Option<&Path>, e: &RemoteError) -> String {
    match e {
        RemoteError::Auth(code) => match stored {
            Some(file) => format!(
                "authentication failed at {url} (HTTP {code}) with the credentials stored in {}: \
                 give the password (--password-file or $EDRIVE_PASSWORD) or token \
                 (--bearer-token-file)",
                file.display()
            ),
            None => format!(
                "authentication failed at {url} (HTTP {code}){}: check --user and the password",
                user.map(|u| format!(" for user '{u}'")).unwrap_or_default()
            ),
        },
        RemoteError::Unreachable(why) => format!("cannot reach server {url}: {why}"),
        RemoteError::NotFound => format!("{url} does not exist on the server"),
        other => format!("server {url} cannot be used: {other}"),
    }
}

/// How long the kernel may trust names and attributes. With the poller on, every change it
/// or a listing finds is invalidated in the kernel at once, so the kernel can keep them as
/// long as a listing is trusted (fewer round trips: a warm `ls -l` is served by the
/// kernel); without it, the kernel would only learn of remote changes by asking, so 1 s.
#[cfg(unix)]
fn kernel_ttl(args: &MountArgs) -> Duration {
    if args.poll_interval.is_zero() {
        Duration::from_secs(1)
    } else {
        args.poll_interval
            .min(args.dir_cache_ttl)
            .max(Duration::from_secs(1))
    }
}

fn serve_mount(args: MountArgs, handoff: Handoff) -> anyhow::Result<()> {
    // Before any thread exists (see the module): memory stays flat however large the
    // folders listed.
    crate::memory::one_arena();
    let ready = Ready {
        daemon_child: args.daemon_child,
    };
    let mountpoint = paths::absolute_mountpoint(&args.mountpoint).map_err(|e| {
        ready.fail(&format!(
            "bad mountpoint {}: {e}",
            args.mountpoint.display()
        ))
    })?;
    match std::fs::metadata(&mountpoint) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(ready.fail(&format!("{} is not a folder", mountpoint.display()))),
        Err(e) => {
            return Err(ready.fail(&format!("cannot use {}: {e}", mountpoint.display())));
        }
    }
    if paths::is_mounted(&mountpoint) {
        return Err(ready.fail(&format!("{} is already a mountpoint", mountpoint.display())));
    }
    #[cfg(unix)]
    if let Some(why) = crate::fuse_access::preflight(args.allow_other) {
        return Err(ready.fail(&format!("cannot mount at {}: {why}", mountpoint.display())));
    }
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(|| paths::default_cache_dir(&args.url, &mountpoint));
    create_private_dir(&cache_dir)
        .map_err(|e| ready.fail(&format!("cannot create {}: {e}", cache_dir.display())))?;
    let _lock = lock_dir(&cache_dir).map_err(|e| ready.fail(&e.to_string()))?;
    let log_file = cache_dir.join("edrive.log");
    crate::logging::to_file(&log_file, args.foreground)
        .map_err(|e| ready.fail(&format!("cannot open log {}: {e}", log_file.display())))?;
    info!(url = %args.url, mountpoint = %mountpoint.display(), cache_dir = %cache_dir.display(), "starting");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .map_err(|e| ready.fail(&format!("cannot start runtime: {e}")))?;

    let credentials_file = args
        .credentials_file
        .clone()
        .unwrap_or_else(|| cache_dir.join("credentials"));
    let (remote, root, keeper) = if edrive_s3::is_s3_url(&args.url) {
        crate::s3_mount::connect(&args.url, &args.s3, &cache_dir, &rt, PROBE_TIMEOUT)
            .map_err(|m| ready.fail(&m))?
    } else {
        let mut config = WebDavConfig::new(args.url.clone());
        config.user = args.user.clone();
        let mut from_store = None;
        match handoff {
            Handoff {
                bearer_token: Some(token),
                ..
            } => config.bearer_token = Some(token.into()),
            Handoff {
                password: Some(password),
                ..
            } => config.password = Some(password.into()),
            _ => match crate::secrets::load(&credentials_file, &args.url) {
                Ok(Some(Credentials::Bearer(token))) if args.user.is_none() => {
                    config.bearer_token = Some(token);
                    from_store = Some(credentials_file.as_path());
                }
                Ok(Some(Credentials::Basic { user, password }))
                    if args.user.as_ref().is_none_or(|u| *u == user) =>
                {
                    config.user = Some(user);
                    config.password = password;
                    from_store = Some(credentials_file.as_path());
                }
                Ok(_) => {}
                Err(e) => return Err(ready.fail(&e.to_string())),
            },
        }
        if from_store.is_some() {
            info!(file = %credentials_file.display(), "using the stored credentials");
        }
        let webdav = Arc::new(
            WebDav::new(config).map_err(|e| ready.fail(&format!("bad URL {}: {e}", args.url)))?,
        );
        let probe = rt.block_on(async {
            tokio::time::timeout(PROBE_TIMEOUT, webdav.stat(&RemotePath::root())).await
        });
        let root = match probe {
            Ok(Ok(root)) => root,
            Ok(Err(e)) => {
                return Err(ready.fail(&probe_message(
                    &args.url,
                    webdav.credentials().user(),
                    from_store,
                    &e,
                )))
            }
            Err(_) => {
                return Err(ready.fail(&format!(
                    "server {} did not answer within {} s",
                    args.url,
                    PROBE_TIMEOUT.as_secs()
                )));
            }
        };
        if !root.is_dir {
            return Err(ready.fail(&format!("{} is a file, not a folder", args.url)));
        }
        let remote: Arc<dyn Remote> = webdav.clone();
        let keeper = Arc::new(Keeper::new(
            webdav,
            args.url.clone(),
            credentials_file.clone(),
        ));
        (remote, root, keeper)
    };

    let meta = Meta::open(&cache_dir.join("meta.db"), &args.url)
        .map_err(|e| ready.fail(&e.to_string()))?;
    meta.update_root(&root)
        .map_err(|e| ready.fail(&e.to_string()))?;
    let cache = Cache::open(&cache_dir.join("content"), args.cache_size)
        .map_err(|e| ready.fail(&format!("cannot open cache: {e}")))?;
    let (uid, gid) = owner();
    let (uid, gid) = (args.uid.unwrap_or(uid), args.gid.unwrap_or(gid));
    let drive = Arc::new(Drive::new(
        remote,
        Arc::new(meta),
        Arc::new(cache),
        DriveOptions {
            dir_cache_ttl: args.dir_cache_ttl,
            uid,
            gid,
            upload_debounce: args.upload_delay,
            ignore: ignore_list(&args),
            on_conflict: args.on_conflict,
            recovery_dir: Some(cache_dir.join("recovered")),
            download_streams: args.download_streams.into(),
            write_checks: args.conditional_writes,
            umask: args.umask.unwrap_or(0o022),
            hold_limits: edrive_fs_core::sync::HoldLimits {
                entries: args.hold_deletions_over,
                bytes: args.hold_deletions_bytes,
            },
            give_back_memory: Some(crate::memory::give_back),
        },
    ));
    rt.block_on(async { drive.start_writeback() })
        .map_err(|e| ready.fail(&format!("cannot resume pending uploads: {e}")))?;
    // Pinned content a previous run did not finish fetching (or that changed since).
    {
        let _rt = rt.enter();
        crate::pin_hydration::spawn_pin_hydration(&drive);
        if !args.poll_interval.is_zero() {
            tokio::spawn(drive.clone().run_poller(args.poll_interval));
        }
    }
    let info = crate::status_reply::MountInfo {
        url: args.url.clone(),
        mountpoint: mountpoint.clone(),
        cache_dir: cache_dir.clone(),
        log_file: log_file.clone(),
        keeper,
    };

    #[cfg(unix)]
    {
        // Signals are caught from before the mount exists, so none can end the daemon
        // while leaving a dead mount behind.
        let signals = rt
            .block_on(async { crate::serve_control::Signals::new() })
            .map_err(|e| ready.fail(&format!("cannot install signal handlers: {e}")))?;
        let session = edrive_fs_fuse::mount(
            drive.clone(),
            rt.handle().clone(),
            &mountpoint,
            &edrive_fs_fuse::MountConfig {
                threads: 8,
                attr_ttl: kernel_ttl(&args),
                fs_name: args.url.clone(),
                allow_other: args.allow_other,
                passthrough: !args.no_passthrough,
                readers: std::sync::Arc::new(edrive_fs_core::readers::ReaderPolicy::new(
                    &args.background_reader,
                    &args.allow_reader,
                )),
                read_only: args.read_only,
            },
        )
        .map_err(|e| {
            let why = crate::fuse_access::explain(&e, args.allow_other);
            ready.fail(&format!("cannot mount at {}: {why}", mountpoint.display()))
        })?;
        let listener = crate::serve_control::bind(&mountpoint)
            .map_err(|e| ready.fail(&format!("cannot open control socket: {e}")))?;
        info!("mounted");
        ready.ok();
        #[cfg(target_os = "linux")]
        crate::systemd::notify_ready(&mountpoint);
        if args.foreground {
            eprintln!(
                "edrive: {} mounted at {} (Ctrl-C to unmount)",
                args.url,
                mountpoint.display()
            );
        }
        rt.spawn(crate::thumbnails::retry_failed(
            drive.clone(),
            mountpoint.clone(),
        ));
        let outcome = rt.block_on(crate::serve_control::run_until_unmounted(
            listener, drive, info, &session, signals,
        ));
        let _ = std::fs::remove_file(paths::socket_path(&mountpoint));
        match session.join() {
            Ok(()) => {}
            Err(e) => warn!(error = %e, "FUSE session ended with an error"),
        }
        info!("unmounted");
        rt.shutdown_timeout(Duration::from_secs(5));
        outcome
    }
    #[cfg(windows)]
    {
        // The pipe exists before the projection starts, so a second daemon for the same
        // mountpoint stops here without touching the folder.
        let listener = rt
            .block_on(async { crate::serve_control_windows::bind(&mountpoint) })
            .map_err(|e| ready.fail(&format!("cannot open control pipe: {e}")))?;
        let session = edrive_fs_projfs::start(
            drive.clone(),
            rt.handle().clone(),
            &mountpoint,
            &edrive_fs_projfs::MountConfig::new(instance_id(&cache_dir)),
        )
        .map_err(|e| ready.fail(&format!("cannot mount at {}: {e}", mountpoint.display())))?;
        info!("mounted");
        ready.ok();
        if args.foreground {
            eprintln!(
                "edrive: {} mounted at {} (Ctrl-C to unmount)",
                args.url,
                mountpoint.display()
            );
        }
        let outcome = rt.block_on(crate::serve_control_windows::run_until_unmounted(
            listener, drive, info, session,
        ));
        info!("unmounted");
        rt.shutdown_timeout(Duration::from_secs(5));
        outcome
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = (drive, info);
        Err(ready.fail("mounting on this platform is not available yet"))
    }
}

/// The ProjFS instance id of the mount whose cache is `cache_dir`: the first 16 bytes of
/// sha256 of the path, the same on every run so that a remount finds its root again.
#[cfg(windows)]
fn instance_id(cache_dir: &Path) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(cache_dir.to_string_lossy().as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

fn owner() -> (u32, u32) {
    #[cfg(unix)]
    {
        // SAFETY: getuid/getgid have no preconditions and cannot fail.
        unsafe { (libc::getuid(), libc::getgid()) }
    }
    #[cfg(not(unix))]
    {
        (0, 0)
    }
}

/// The ignore list a mount's arguments ask for.
fn ignore_list(args: &MountArgs) -> edrive_fs_core::sync::IgnoreList {
    let mut patterns: Vec<String> = if args.no_default_ignore {
        Vec::new()
    } else {
        edrive_fs_core::sync::DEFAULT_IGNORE
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    patterns.extend(args.ignore.iter().cloned());
    edrive_fs_core::sync::IgnoreList::new(&patterns)
}

#[cfg(test)]
mod tests;
