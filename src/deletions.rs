//! `edrive deletions`: mass deletions held back (see `edrive_fs_core::sync::held`), and
//! the daemon's answer to it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::bail;
use edrive_fs_core::Drive;
use serde_json::json;

use crate::cli::DeletionsArgs;
use crate::control::{self, Request};
use crate::paths;

/// The mount a path lies in and its components below the mountpoint. The path itself
/// may be gone (a deletion held): its deepest existing folder finds the mount.
fn locate_gone(path: &Path) -> anyhow::Result<(PathBuf, Vec<String>)> {
    let abs = std::path::absolute(path)?;
    let mut rest: Vec<String> = Vec::new();
    let mut existing = abs.as_path();
    while std::fs::symlink_metadata(existing).is_err() {
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_string_lossy().into_owned());
                existing = parent;
            }
            _ => bail!("{} is not inside an edrive mount", path.display()),
        }
    }
    rest.reverse();
    let real = std::fs::canonicalize(existing)?;
    for mp in real.ancestors() {
        if paths::socket_path(mp).exists() && paths::is_mounted(mp) {
            let rel = real.strip_prefix(mp).unwrap_or(Path::new(""));
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            parts.extend(rest);
            return Ok((mp.to_path_buf(), parts));
        }
    }
    bail!("{} is not inside an edrive mount", path.display())
}

/// `edrive deletions PATH [--confirm | --restore] [--json]`.
pub fn run(args: DeletionsArgs) -> anyhow::Result<()> {
    // A mountpoint is found without touching it (it may be a hung mount).
    let mp = paths::absolute_mountpoint(&args.path)?;
    let (mp, parts) = if paths::socket_path(&mp).exists() {
        (mp, Vec::new())
    } else {
        locate_gone(&args.path)?
    };
    let action = if args.confirm {
        "confirm"
    } else if args.restore {
        "restore"
    } else {
        "list"
    };
    let r = control::request(
        &mp,
        &Request::Deletions {
            path: parts,
            action: action.into(),
        },
    )?;
    if r["ok"] != true {
        bail!(
            "{}: {}",
            args.path.display(),
            r["error"].as_str().unwrap_or("failed")
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let n = r["entries"].as_u64().unwrap_or(0);
    match action {
        "confirm" => println!("{n} held deletion(s) are sent to the server"),
        "restore" => println!("{n} entrie(s) are back (content is fetched when opened)"),
        _ => {
            let held = r["held"].as_array().cloned().unwrap_or_default();
            if held.is_empty() {
                println!("no deletion is held");
            }
            for h in &held {
                let entries = h["entries"].as_u64().unwrap_or(0);
                let bytes = h["bytes"].as_u64().unwrap_or(0);
                println!(
                    "{}{}  held: {entries} entr{}, {bytes} bytes",
                    h["path"].as_str().unwrap_or("?"),
                    if h["kind"] == "folder" { "/" } else { "" },
                    if entries == 1 { "y" } else { "ies" },
                );
            }
            if !held.is_empty() {
                println!(
                    "(`edrive deletions PATH --confirm` deletes them on the server; --restore brings them back)"
                );
            }
        }
    }
    Ok(())
}

/// The daemon's answer to [`Request::Deletions`].
pub async fn answer(drive: &Arc<Drive>, path: &[String], action: &str) -> serde_json::Value {
    let under = (!path.is_empty()).then_some(path);
    let r = match action {
        "list" => drive.held_deletions().map(|held| {
            let entries: u64 = held.iter().map(|h| h.entries).sum();
            json!({"ok": true, "held": held, "entries": entries})
        }),
        "confirm" => drive
            .confirm_deletions(under)
            .map(|n| json!({"ok": true, "entries": n})),
        "restore" => match drive.restore_deletions(under).await {
            Ok(n) => {
                crate::pin_hydration::spawn_pin_hydration(drive);
                Ok(json!({"ok": true, "entries": n}))
            }
            Err(e) => Err(e),
        },
        _ => return json!({"ok": false, "error": "unknown action"}),
    };
    r.unwrap_or_else(|e| json!({"ok": false, "error": e.to_string()}))
}
