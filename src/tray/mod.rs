//! `edrive tray`: one panel icon (freedesktop StatusNotifierItem) per user session for
//! every mount, with a menu per mount and desktop notifications. Everything it shows
//! comes over the mounts' control sockets (the `watch` subscription); everything it does
//! is a control request, the same the CLI sends, or the CLI itself (`edrive unmount`).
//!
//! It runs as its own program, started at login by the autostart entry ([`autostart`]),
//! not by the daemons: one icon for all mounts, also mounts made outside the graphical
//! session, and no daemon depends on a desktop being there.

pub mod autostart;
mod icons;
mod item;
mod notices;
mod notify;
mod view;
mod watch;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures_util::StreamExt;
use ksni::TrayMethods;
use tokio::sync::mpsc;
use tracing::{info, info_span, warn};

use crate::control::{self, Request};
use item::{ConfiguredDrive, Panel};
use notices::{Notice, Notifier, Topic};
use view::MountView;

/// What the user asked for, from the menu or a notification.
#[derive(Clone, Debug)]
pub enum Action {
    /// Open the mount's folder.
    Open(PathBuf),
    /// Open the folder holding this file.
    Show(PathBuf),
    /// `edrive suspend`.
    Pause(PathBuf),
    /// `edrive resume`.
    Resume(PathBuf),
    /// `edrive sync` (without waiting).
    Sync(PathBuf),
    /// `edrive resolve`.
    Resolve {
        /// The mount.
        mountpoint: PathBuf,
        /// The file, `/a/b.txt` in the mount.
        path: String,
        /// `use-local`, `use-remote` or `keep-both`.
        choice: &'static str,
    },
    /// Ask which version of a file in conflict to keep (a dialog).
    AskResolve(PathBuf, String),
    /// `edrive free` of the whole drive.
    Free(PathBuf),
    /// `edrive login`, asking for the password.
    Login(PathBuf),
    /// `edrive unmount`.
    Unmount(PathBuf),
    /// Mount a configured drive (issue 24).
    Mount(String),
    /// Stop the panel icon.
    Quit,
}

/// The configured drives that are not mounted, for the "Mount…" menu. The hook for named
/// drives (issue 24): none until drives can be configured.
fn unmounted_drives(_mounted: &[MountView]) -> Vec<ConfiguredDrive> {
    Vec::new()
}

/// Runs the panel icon until "Quit" or a signal.
pub fn run() -> anyhow::Result<()> {
    crate::logging::to_stderr();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(main_loop())
}

async fn main_loop() -> anyhow::Result<()> {
    let Some(notes) = notify::Notifications::connect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the session bus: {e}"))?
    else {
        anyhow::bail!("the panel icon already runs in this session");
    };
    let icon_dir = icons::install(&crate::paths::tray_icon_dir())?;
    let (actions_tx, mut actions_rx) = mpsc::unbounded_channel();
    let panel = Panel {
        mounts: Vec::new(),
        unmounted: Vec::new(),
        icon_dir: icon_dir.display().to_string(),
        actions: actions_tx.clone(),
    };
    let handle = panel
        .assume_sni_available(true)
        .spawn()
        .await
        .map_err(|e| anyhow::anyhow!("cannot show the panel icon: {e}"))?;
    info!("panel icon up");

    // Which notification's action does what.
    let mut shown: HashMap<u32, Notice> = HashMap::new();
    let (clicks_tx, mut clicks_rx) = mpsc::unbounded_channel::<(u32, String)>();
    match notes.invoked().await {
        Ok(stream) => {
            tokio::spawn(async move {
                let mut stream = std::pin::pin!(stream);
                while let Some(click) = stream.next().await {
                    if clicks_tx.send(click).is_err() {
                        return;
                    }
                }
            });
        }
        Err(e) => warn!(error = %e, "notification actions are not followed"),
    }

    let (updates_tx, mut updates) = mpsc::unbounded_channel();
    tokio::spawn(watch::discover(updates_tx));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Notice>();
    let mut mounts: BTreeMap<PathBuf, MountView> = BTreeMap::new();
    let mut notifier = Notifier::default();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;

    loop {
        let mut to_show = Vec::new();
        tokio::select! {
            Some(u) = updates.recv() => match u {
                watch::Update::Snapshot(sock, v) => {
                    if let Some(m) = MountView::from_snapshot(&v) {
                        to_show = notifier.observe(Instant::now(), &m);
                        mounts.insert(sock, m);
                    }
                }
                watch::Update::Gone(sock) => {
                    if let Some(m) = mounts.remove(&sock) {
                        notifier.forget(&m.mountpoint);
                    }
                }
            },
            Some(a) = actions_rx.recv() => {
                if matches!(a, Action::Quit) {
                    break;
                }
                let done = done_tx.clone();
                tokio::task::spawn_blocking(move || {
                    let _span = info_span!("tray_action", action = ?a).entered();
                    if let Some(n) = perform(&a) {
                        let _ = done.send(n);
                    }
                });
            }
            Some(n) = done_rx.recv() => to_show.push(n),
            Some((id, key)) = clicks_rx.recv() => {
                if let Some(n) = shown.get(&id) {
                    if let Some(a) = click_action(n, &key) {
                        let _ = actions_tx.send(a);
                    }
                }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
        let list: Vec<MountView> = mounts.values().cloned().collect();
        let unmounted = unmounted_drives(&list);
        handle
            .update(move |p: &mut Panel| {
                if p.mounts != list || p.unmounted != unmounted {
                    p.mounts = list;
                    p.unmounted = unmounted;
                }
            })
            .await;
        for n in to_show {
            info!(summary = %n.summary, "notification");
            match notes.show(&n).await {
                Ok(id) => {
                    shown.insert(id, n);
                }
                Err(e) => warn!(error = %e, "notification not shown"),
            }
        }
    }
    handle.shutdown().await;
    Ok(())
}

/// What clicking action `key` of notification `n` does.
fn click_action(n: &Notice, key: &str) -> Option<Action> {
    let mp = n.mountpoint.clone();
    let file = |p: &str| mp.join(p.trim_start_matches('/'));
    match (&n.topic, key) {
        (Topic::Conflict(p), "resolve" | "default") => Some(Action::AskResolve(mp, p.clone())),
        (Topic::ConflictCopy(p) | Topic::Refused(p), "show" | "default") => {
            Some(Action::Show(file(p)))
        }
        (Topic::PinsDone, "show" | "default") => Some(Action::Open(mp)),
        (Topic::AuthRefused, "login" | "default") => Some(Action::Login(mp)),
        _ => None,
    }
}

/// A notice about an action's outcome.
fn outcome(mountpoint: &Path, summary: &str, body: String) -> Option<Notice> {
    Some(Notice {
        mountpoint: mountpoint.to_path_buf(),
        topic: Topic::Online,
        summary: summary.to_string(),
        body,
    })
}

/// Sends `req` to the mount; an error becomes a notice.
fn request(mp: &Path, what: &str, req: &Request) -> Result<serde_json::Value, Option<Notice>> {
    match control::request(mp, req) {
        Ok(r) if r["ok"] == true => Ok(r),
        Ok(r) => Err(outcome(
            mp,
            &format!("{what} failed"),
            r["error"]
                .as_str()
                .unwrap_or("the daemon refused")
                .to_string(),
        )),
        Err(e) => Err(outcome(mp, &format!("{what} failed"), format!("{e:#}"))),
    }
}

/// Does `a` (blocking); returns what to tell the user.
fn perform(a: &Action) -> Option<Notice> {
    info!("menu action");
    let result = match a {
        Action::Open(mp) => spawn_detached("xdg-open", &[mp.as_os_str()]).map(|_| None),
        Action::Show(file) => {
            let dir = file.parent().unwrap_or(file);
            spawn_detached("xdg-open", &[dir.as_os_str()]).map(|_| None)
        }
        Action::Pause(mp) => {
            request(mp, "Pause", &Request::Suspend { offline: false }).map(|_| None)
        }
        Action::Resume(mp) => request(mp, "Resume", &Request::Resume).map(|_| None),
        Action::Sync(mp) => request(mp, "Sync", &Request::Sync).map(|_| None),
        Action::Resolve {
            mountpoint,
            path,
            choice,
        } => request(
            mountpoint,
            "Resolve",
            &Request::Resolve {
                path: components(path),
                choice: choice.to_string(),
                save_as: None,
            },
        )
        .map(|r| {
            outcome(
                mountpoint,
                "Conflict resolved",
                r["message"].as_str().unwrap_or("resolved").to_string(),
            )
        }),
        Action::AskResolve(mp, path) => ask_choice(path).map_or(Ok(None), |choice| {
            Ok(perform(&Action::Resolve {
                mountpoint: mp.clone(),
                path: path.clone(),
                choice,
            }))
        }),
        Action::Free(mp) => {
            request(mp, "Free up space", &Request::Free { path: Vec::new() }).map(|r| {
                let n = |k: &str| view::human_bytes(r[k].as_u64().unwrap_or(0));
                outcome(
                    mp,
                    "Space freed",
                    format!(
                        "{} freed; kept {} of changes not uploaded yet and {} pinned.",
                        n("freed_bytes"),
                        n("dirty_bytes"),
                        n("pinned_bytes")
                    ),
                )
            })
        }
        Action::Login(mp) => login(mp),
        Action::Unmount(mp) => unmount(mp),
        Action::Mount(name) => Err(outcome(
            Path::new(""),
            "Mount failed",
            format!("{name}: configured drives are not supported yet"),
        )),
        Action::Quit => Ok(None),
    };
    result.unwrap_or_else(|n| n)
}

/// `/a/b.txt` → `["a", "b.txt"]`.
fn components(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// Runs a program without waiting for it (a thread reaps it).
fn spawn_detached(prog: &str, args: &[&std::ffi::OsStr]) -> Result<(), Option<Notice>> {
    match std::process::Command::new(prog)
        .args(args)
        .stdin(std::process::Stdio::null())
        .spawn()
    {
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
            Ok(())
        }
        Err(e) => Err(outcome(
            Path::new(""),
            &format!("Cannot run {prog}"),
            e.to_string(),
        )),
    }
}

/// Asks which version to keep (zenity); `None` when cancelled or no dialog is there.
fn ask_choice(path: &str) -> Option<&'static str> {
    let out = std::process::Command::new("zenity")
        .args([
            "--list",
            "--radiolist",
            "--title=edrive: conflict",
            &format!("--text={path} was changed here and on the server."),
            "--column=",
            "--column=Keep",
            "TRUE",
            "Use local",
            "FALSE",
            "Use remote",
            "FALSE",
            "Keep both",
        ])
        .output()
        .ok()?;
    match String::from_utf8_lossy(&out.stdout).trim() {
        "Use local" => Some("use-local"),
        "Use remote" => Some("use-remote"),
        "Keep both" => Some("keep-both"),
        _ => None,
    }
}

/// "Log in again…": asks for the password in a dialog without echo (zenity), else runs
/// `edrive login` in a terminal.
fn login(mp: &Path) -> Result<Option<Notice>, Option<Notice>> {
    let dialog = std::process::Command::new("zenity")
        .args([
            "--password",
            &format!("--title=edrive: log in to {}", mp.display()),
        ])
        .output();
    match dialog {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let password = text.trim_end_matches('\n');
            request(
                mp,
                "Log in",
                &Request::Login {
                    user: None,
                    password: Some(crate::credentials::Secret::new(password.to_string())),
                    bearer_token: None,
                },
            )?;
            Ok(outcome(
                mp,
                "Logged in",
                "The drive is online again.".into(),
            ))
        }
        Ok(_) => Ok(None),
        Err(_) => {
            let exe =
                std::env::current_exe().map_err(|e| outcome(mp, "Log in failed", e.to_string()))?;
            spawn_detached(
                "x-terminal-emulator",
                &[
                    "-e".as_ref(),
                    exe.as_os_str(),
                    "login".as_ref(),
                    mp.as_os_str(),
                ],
            )
            .map_err(|_| {
                outcome(
                    mp,
                    "Log in",
                    format!("Run `edrive login {}` in a terminal.", mp.display()),
                )
            })?;
            Ok(None)
        }
    }
}

/// "Unmount": `edrive unmount` (uploads pending changes first).
fn unmount(mp: &Path) -> Result<Option<Notice>, Option<Notice>> {
    let exe = std::env::current_exe().map_err(|e| outcome(mp, "Unmount failed", e.to_string()))?;
    let out = std::process::Command::new(exe)
        .arg("unmount")
        .arg(mp)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| outcome(mp, "Unmount failed", e.to_string()))?;
    if out.status.success() {
        Ok(None)
    } else {
        Err(outcome(
            mp,
            "Unmount failed",
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_actions_map_to_menu_actions() {
        let n = |topic| Notice {
            mountpoint: PathBuf::from("/m"),
            topic,
            summary: String::new(),
            body: String::new(),
        };
        assert!(matches!(
            click_action(&n(Topic::Conflict("/a/b".into())), "resolve"),
            Some(Action::AskResolve(mp, p)) if mp == Path::new("/m") && p == "/a/b"
        ));
        assert!(matches!(
            click_action(&n(Topic::ConflictCopy("/a/b".into())), "show"),
            Some(Action::Show(f)) if f == Path::new("/m/a/b")
        ));
        assert!(matches!(
            click_action(&n(Topic::AuthRefused), "login"),
            Some(Action::Login(_))
        ));
        assert!(click_action(&n(Topic::Offline), "default").is_none());
        assert_eq!(components("/a//b.txt"), ["a", "b.txt"]);
    }
}
