//! Start at login: the systemd user unit `edrive@NAME.service` (`edrive enable` /
//! `disable`), and the daemon's side of `Type=notify` (READY=1 once mounted, STOPPING=1
//! while it uploads pending changes before it exits). Under systemd the daemon runs with
//! `--foreground`, so its log goes to standard error, which is the journal
//! (`JOURNAL_STREAM`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use tracing::{debug, info};

use crate::cli::NameArgs;
use crate::config;

/// The unit template, `@EXE@` standing for the edrive binary. The package ships it with
/// `/usr/bin/edrive`; `edrive enable` writes it with the running binary's path.
pub const UNIT_TEMPLATE: &str = "\
[Unit]
Description=edrive drive %i (a remote drive as a local folder)
Documentation=man:edrive(1)
After=network-online.target
Wants=network-online.target
StartLimitIntervalSec=10min
StartLimitBurst=5

[Service]
Type=notify
NotifyAccess=main
ExecStart=@EXE@ mount %i --foreground
# Uploads pending changes, then unmounts; the daemon says STOPPING=1 meanwhile.
ExecStop=@EXE@ unmount %i
TimeoutStopSec=15min
Restart=on-failure
RestartSec=10s

[Install]
WantedBy=default.target
";

/// The unit template with `exe` as the binary.
pub fn unit_text(exe: &Path) -> String {
    UNIT_TEMPLATE.replace("@EXE@", &exe.display().to_string())
}

/// `~/.config/systemd/user` (`$XDG_CONFIG_HOME/systemd/user`).
fn unit_dir() -> PathBuf {
    config::config_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
        .join("systemd")
        .join("user")
}

fn instance(name: &str) -> String {
    format!("edrive@{name}.service")
}

/// The `default.target.wants` link that starts the drive at login.
fn wants_link(name: &str) -> PathBuf {
    unit_dir().join("default.target.wants").join(instance(name))
}

/// Whether the drive starts at login.
pub fn is_enabled(name: &str) -> bool {
    wants_link(name).symlink_metadata().is_ok()
}

/// Runs `systemctl --user ARGS`; `Err` with its message when there is no user manager.
fn systemctl(args: &[&str]) -> Result<(), String> {
    let out = Command::new("systemctl")
        .arg("--user")
        .args(args)
        .output()
        .map_err(|e| format!("systemctl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// `edrive enable NAME`: writes the unit template (with this binary) to
/// `~/.config/systemd/user/edrive@.service`, links `edrive@NAME.service` into
/// `default.target.wants`, and starts it now if a user manager runs.
pub fn enable(args: NameArgs) -> anyhow::Result<()> {
    let path = config::config_path();
    config::load(&path)?.drive(&path, &args.name)?;
    let exe = std::env::current_exe().context("cannot find the edrive executable")?;
    let dir = unit_dir();
    std::fs::create_dir_all(dir.join("default.target.wants"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let template = dir.join("edrive@.service");
    std::fs::write(&template, unit_text(&exe))
        .with_context(|| format!("cannot write {}", template.display()))?;
    let link = wants_link(&args.name);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink("../edrive@.service", &link)
        .with_context(|| format!("cannot create {}", link.display()))?;
    println!(
        "edrive: {} starts at login ({})",
        instance(&args.name),
        template.display()
    );
    match systemctl(&["daemon-reload"]).and_then(|()| systemctl(&["start", &instance(&args.name)]))
    {
        Ok(()) => println!(
            "edrive: started now (systemctl --user status {})",
            instance(&args.name)
        ),
        Err(why) => println!(
            "edrive: not started now (no systemd user session: {why}); `edrive mount {}` mounts it",
            args.name
        ),
    }
    Ok(())
}

/// `edrive disable NAME`: stops starting the drive at login (a running mount stays).
pub fn disable(args: NameArgs) -> anyhow::Result<()> {
    if !is_enabled(&args.name) {
        bail!("{} is not enabled", instance(&args.name));
    }
    disable_quietly(&args.name);
    println!(
        "edrive: {} no longer starts at login (a running mount stays; `edrive unmount {}` stops it)",
        instance(&args.name),
        args.name
    );
    Ok(())
}

/// Removes the drive's login link, if any.
pub fn disable_quietly(name: &str) {
    if std::fs::remove_file(wants_link(name)).is_ok() {
        if let Err(why) = systemctl(&["daemon-reload"]) {
            debug!(%why, "no systemd user manager to reload");
        }
    }
}

/// Tells systemd the mount is ready (READY=1), when run as a `Type=notify` unit.
pub fn notify_ready(mountpoint: &Path) {
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&format!("mounted at {}", mountpoint.display())),
    ]);
}

/// Tells systemd the daemon is stopping (STOPPING=1): it uploads pending changes, then
/// unmounts.
pub fn notify_stopping() {
    notify(&[
        sd_notify::NotifyState::Stopping,
        sd_notify::NotifyState::Status("uploading pending changes, then unmounting"),
    ]);
}

fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    match sd_notify::notify(false, state) {
        Ok(()) => info!("told systemd"),
        Err(e) => debug!(error = %e, "could not notify systemd"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unit_names_the_binary() {
        let t = super::unit_text(std::path::Path::new("/usr/bin/edrive"));
        assert!(t.contains("ExecStart=/usr/bin/edrive mount %i --foreground"));
        assert!(t.contains("Type=notify") && !t.contains("@EXE@"));
    }
}
