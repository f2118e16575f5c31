//! The named-drive commands: `edrive add`, `remove`, `list`, `mount NAME`, `mount --all`
//! and `unmount NAME` (see `config` for the file, `secrets` for where passwords go).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use edrive_fs_core::remote::{Remote, RemoteError, RemotePath};
use edrive_webdav::{Credentials, WebDav, WebDavConfig};
use tracing::info_span;

use crate::cli::{AddArgs, ListArgs, MountArgs, NameArgs, UnmountArgs};
use crate::config::{self, DriveConfig};
use crate::control::{self, Request};
use crate::credentials::{self, Secret};
use crate::paths;
use crate::secrets::{self, Place};

/// How long checking the credentials at `add` may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(12);

/// The 0600 file a drive's credentials go to when there is no keyring.
fn fallback_file(name: &str) -> PathBuf {
    config::config_dir().join("credentials").join(name)
}

/// `edrive add NAME URL MOUNTPOINT [options]`: checks the credentials against the server;
/// only then stores them (keyring, else a 0600 file) and the drive (config.toml). An
/// `s3://` drive is checked against its bucket with the keys found the AWS way, which are
/// never stored.
pub fn add(args: AddArgs, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    let _span = info_span!("add", name = %args.name).entered();
    let path = config::config_path();
    if !config::valid_name(&args.name) {
        bail!(config::ConfigError::BadName(args.name));
    }
    let m = &args.mount;
    if m.all || m.url.is_empty() || m.mountpoint.as_os_str().is_empty() {
        bail!("usage: edrive add NAME URL MOUNTPOINT [mount options]");
    }
    if m.foreground {
        bail!("--foreground is not kept in a drive (`edrive mount NAME --foreground` runs one in the foreground)");
    }
    if config::load(&path)?.drives.contains_key(&args.name) {
        bail!(config::ConfigError::Exists {
            path,
            name: args.name
        });
    }
    let (url, url_user, url_password) = crate::daemon::split_userinfo(&m.url);
    let mountpoint = std::path::absolute(&m.mountpoint)?;
    let mut drive = DriveConfig::from_matches(&url, &mountpoint, matches)
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    if drive.user.is_none() {
        drive.user = url_user;
    }
    // The options must make a mount (checked as `edrive mount` checks them).
    drive.mount_args(&path, &args.name)?;
    if edrive_s3::is_s3_url(&url) {
        let s3_creds = drive.user.is_some()
            || m.password_file.is_some()
            || m.bearer_token_file.is_some()
            || drive.credentials_file.is_some()
            || url_password.is_some();
        if s3_creds {
            bail!(
                "an s3:// drive takes no user, password, token or credentials file: its keys \
                 come the AWS way (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, \
                 ~/.aws/credentials) and edrive does not store them; nothing was saved"
            );
        }
        let source = crate::s3_mount::check(&url, &m.s3, CHECK_TIMEOUT)
            .map_err(|e| anyhow!("{e}; nothing was saved"))?;
        config::add(&path, &args.name, &drive)?;
        println!(
            "edrive: drive '{}' added to {}: `edrive mount {}` mounts {} at {} (credentials \
             from {source} when it mounts; edrive does not store them)",
            args.name,
            path.display(),
            args.name,
            url,
            mountpoint.display()
        );
        return Ok(());
    }
    let s3 = &m.s3;
    if s3.endpoint.is_some() || s3.region.is_some() || s3.path_style || s3.virtual_hosted {
        bail!(
            "--endpoint, --region, --path-style and --virtual-hosted are for s3:// URLs; \
             nothing was saved"
        );
    }

    let creds = if let Some(f) = &m.bearer_token_file {
        drive.bearer_token = true;
        Credentials::Bearer(credentials::first_line(f)?.into())
    } else if let Some(user) = drive.user.clone() {
        let password = match &m.password_file {
            Some(f) => credentials::first_line(f)?,
            None => match std::env::var("EDRIVE_PASSWORD")
                .ok()
                .filter(|p| !p.is_empty())
                .or(url_password)
            {
                Some(p) => Secret::new(p),
                None => credentials::prompt_hidden(&format!("Password for {user} at {url}: "))?,
            },
        };
        Credentials::Basic {
            user,
            password: Some(password.into()),
        }
    } else {
        Credentials::None
    };
    check_credentials(&url, &creds)?;
    if !matches!(creds, Credentials::None) {
        let file = drive
            .credentials_file
            .clone()
            .unwrap_or_else(|| fallback_file(&args.name));
        let place = secrets::store(&url, &creds, &file)?;
        if let Place::File(f) = &place {
            drive.credentials_file = Some(f.clone());
        }
        println!("edrive: credentials stored in {place}");
    }
    config::add(&path, &args.name, &drive)?;
    println!(
        "edrive: drive '{}' added to {}: `edrive mount {}` mounts {} at {}",
        args.name,
        path.display(),
        args.name,
        url,
        mountpoint.display()
    );
    Ok(())
}

/// One PROPFIND of the share's root with `creds`; a refusal or an unreachable server is an
/// error (then nothing is written).
fn check_credentials(url: &str, creds: &Credentials) -> anyhow::Result<()> {
    let mut config = WebDavConfig::new(url.to_string());
    match creds {
        Credentials::Basic { user, password } => {
            config.user = Some(user.clone());
            config.password = password.clone();
        }
        Credentials::Bearer(token) => config.bearer_token = Some(token.clone()),
        Credentials::None => {}
    }
    let webdav = WebDav::new(config).map_err(|e| anyhow!("bad URL {url}: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let probe = rt.block_on(async {
        tokio::time::timeout(CHECK_TIMEOUT, webdav.stat(&RemotePath::root())).await
    });
    match probe {
        Ok(Ok(root)) if root.is_dir => Ok(()),
        Ok(Ok(_)) => bail!("{url} is a file, not a folder; nothing was saved"),
        Ok(Err(RemoteError::Auth(code))) => bail!(
            "the server refused the credentials (HTTP {code}){}; nothing was saved",
            creds
                .user()
                .map(|u| format!(" for user '{u}'"))
                .unwrap_or_default()
        ),
        Ok(Err(RemoteError::Unreachable(why))) => {
            bail!("cannot reach server {url}: {why}; nothing was saved")
        }
        Ok(Err(e)) => bail!("server {url} cannot be used: {e}; nothing was saved"),
        Err(_) => bail!(
            "server {url} did not answer within {} s; nothing was saved",
            CHECK_TIMEOUT.as_secs()
        ),
    }
}

/// `edrive remove NAME`: forgets the drive, its stored credentials and its unit.
pub fn remove(args: NameArgs) -> anyhow::Result<()> {
    let path = config::config_path();
    let file = config::load(&path)?;
    let drive = file.drive(&path, &args.name)?.clone();
    let mp = paths::absolute_mountpoint(&drive.mountpoint)?;
    if paths::is_mounted(&mp) {
        bail!(
            "drive '{}' is mounted at {}: `edrive unmount {}` first",
            args.name,
            mp.display(),
            args.name
        );
    }
    #[cfg(target_os = "linux")]
    crate::systemd::disable_quietly(&args.name);
    config::remove(&path, &args.name)?;
    let still_used = file
        .drives
        .iter()
        .any(|(n, d)| *n != args.name && d.url == drive.url);
    let cred_file = drive
        .credentials_file
        .clone()
        .unwrap_or_else(|| fallback_file(&args.name));
    if edrive_s3::is_s3_url(&drive.url) {
        // Nothing of an S3 drive's was stored: its keys are the AWS environment's.
    } else if still_used {
        // The keyring item is per share: another drive still needs it.
        let _ = std::fs::remove_file(&cred_file);
    } else {
        secrets::forget(&drive.url, &cred_file);
    }
    println!(
        "edrive: drive '{}' removed (its cache stays in {})",
        args.name,
        drive
            .cache_dir
            .clone()
            .unwrap_or_else(|| paths::default_cache_dir(&drive.url, &mp))
            .display()
    );
    Ok(())
}

/// `edrive mount`: a URL and a mountpoint as before, a drive NAME, or `--all`.
pub fn mount(args: MountArgs) -> anyhow::Result<()> {
    if args.all {
        return mount_all();
    }
    if args.url.is_empty() {
        bail!(
            "usage: edrive mount URL MOUNTPOINT [options] | edrive mount NAME | edrive mount --all"
        );
    }
    if !args.mountpoint.as_os_str().is_empty() {
        return crate::daemon::run(args);
    }
    let path = config::config_path();
    let file = config::load(&path)?;
    let drive = file.drive(&path, &args.url)?;
    let mut m = drive.mount_args(&path, &args.url)?;
    m.foreground = args.foreground;
    m.password_file = args.password_file.or(m.password_file);
    prepare_mountpoint(&m.mountpoint)?;
    crate::daemon::run(m)
}

/// Creates a drive's mountpoint if it does not exist yet.
fn prepare_mountpoint(mp: &Path) -> anyhow::Result<()> {
    if !mp.exists() {
        std::fs::create_dir_all(mp).with_context(|| format!("cannot create {}", mp.display()))?;
    }
    Ok(())
}

/// `edrive mount --all`: every drive not mounted yet; all are tried, and it fails if one
/// could not be mounted.
fn mount_all() -> anyhow::Result<()> {
    let path = config::config_path();
    let file = config::load(&path)?;
    let mut failed = 0;
    for (name, drive) in &file.drives {
        let mp = paths::absolute_mountpoint(&drive.mountpoint)?;
        if paths::is_mounted(&mp) {
            println!("edrive: {name}: already mounted at {}", mp.display());
            continue;
        }
        let result = drive
            .mount_args(&path, name)
            .map_err(anyhow::Error::from)
            .and_then(|m| {
                prepare_mountpoint(&m.mountpoint)?;
                crate::daemon::run(m)
            });
        match result {
            Ok(()) => println!("edrive: {name}: mounted at {}", mp.display()),
            Err(e) => {
                failed += 1;
                eprintln!("edrive: {name}: {e:#}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} drive(s) could not be mounted");
    }
    Ok(())
}

/// `edrive unmount NAME`: the drive's mountpoint, when the argument names a drive and is
/// not itself a mountpoint.
pub fn unmount_target(mut args: UnmountArgs) -> anyhow::Result<UnmountArgs> {
    let arg = args.mountpoint.to_string_lossy().into_owned();
    if !config::valid_name(&arg) {
        return Ok(args);
    }
    if paths::absolute_mountpoint(&args.mountpoint).is_ok_and(|p| paths::is_mounted(&p)) {
        return Ok(args);
    }
    let path = config::config_path();
    if let Ok(file) = config::load(&path) {
        if let Some(d) = file.drives.get(&arg) {
            args.mountpoint = d.mountpoint.clone();
        }
    }
    Ok(args)
}

/// A running edrive mount found in /proc/mounts.
struct Running {
    mountpoint: PathBuf,
    url: String,
}

fn running_mounts() -> Vec<Running> {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return Vec::new();
    };
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let (src, mp, fstype) = (f.next()?, f.next()?, f.next()?);
            let mountpoint = PathBuf::from(unescape(mp));
            // edrive's mounts: FUSE, with an edrive control socket.
            (fstype.starts_with("fuse") && paths::socket_path(&mountpoint).exists()).then(|| {
                Running {
                    mountpoint,
                    url: unescape(src),
                }
            })
        })
        .collect()
}

/// /proc/mounts' octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The state `edrive status` reports for the mount at `mp`, or why there is none.
fn state_of(mp: &Path) -> String {
    match control::request(mp, &Request::Status) {
        Ok(s) => s["state"].as_str().unwrap_or("?").to_string(),
        Err(_) => "no daemon".into(),
    }
}

/// `edrive list [--json]`: the named drives (mounted or not, enabled at login or not) and
/// the other running mounts.
pub fn list(args: ListArgs) -> anyhow::Result<()> {
    let path = config::config_path();
    let file = config::load(&path)?;
    let running = running_mounts();
    let mut rows = Vec::new();
    for (name, d) in &file.drives {
        let mp = paths::absolute_mountpoint(&d.mountpoint)?;
        let mounted = running.iter().any(|r| r.mountpoint == mp);
        rows.push(serde_json::json!({
            "name": name,
            "url": d.url,
            "mountpoint": mp,
            "mounted": mounted,
            "state": if mounted { state_of(&mp) } else { "not mounted".into() },
            "enabled": enabled(name),
        }));
    }
    for r in &running {
        let known = file
            .drives
            .values()
            .any(|d| paths::absolute_mountpoint(&d.mountpoint).is_ok_and(|p| p == r.mountpoint));
        if !known {
            rows.push(serde_json::json!({
                "name": null,
                "url": r.url,
                "mountpoint": r.mountpoint,
                "mounted": true,
                "state": state_of(&r.mountpoint),
                "enabled": false,
            }));
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "config": path,
                "drives": rows,
            }))?
        );
        return Ok(());
    }
    if rows.is_empty() {
        println!(
            "no drives (add one with `edrive add NAME URL MOUNTPOINT`; config: {})",
            path.display()
        );
        return Ok(());
    }
    println!(
        "{:<16} {:<14} {:<8} {:<40} URL",
        "NAME", "STATE", "AT LOGIN", "MOUNTPOINT"
    );
    for r in rows {
        println!(
            "{:<16} {:<14} {:<8} {:<40} {}",
            r["name"].as_str().unwrap_or("-"),
            r["state"].as_str().unwrap_or("?"),
            if r["enabled"] == true { "yes" } else { "no" },
            r["mountpoint"].as_str().unwrap_or("?"),
            r["url"].as_str().unwrap_or("?"),
        );
    }
    Ok(())
}

fn enabled(name: &str) -> bool {
    #[cfg(target_os = "linux")]
    {
        crate::systemd::is_enabled(name)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = name;
        false
    }
}
