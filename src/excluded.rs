//! `edrive exclude PATH...` and `edrive include PATH...`, and the daemon's answer.

use std::sync::Arc;

use anyhow::bail;
use edrive_fs_core::{Drive, FsError, ROOT_INO};
use serde_json::json;

use crate::cli::PathsArgs;
use crate::control::{self, Request};

/// Excludes (`exclude`) or includes each path.
pub fn run(args: PathsArgs, exclude: bool) -> anyhow::Result<()> {
    for p in &args.paths {
        let (mp, parts) = crate::commands::locate(p)?;
        let r = control::request(
            &mp,
            &Request::Exclude {
                path: parts,
                exclude,
            },
        )?;
        if r["ok"] != true {
            bail!(
                "{}: {}",
                p.display(),
                r["error"].as_str().unwrap_or("failed")
            );
        }
        if exclude {
            println!(
                "{}: excluded on this device (an empty read-only placeholder; `edrive include` undoes it)",
                p.display()
            );
        } else {
            println!("{}: included again", p.display());
        }
    }
    Ok(())
}

/// The daemon's answer to [`Request::Exclude`].
pub async fn answer(drive: &Arc<Drive>, path: &[String], exclude: bool) -> serde_json::Value {
    let r = async {
        let mut ino = ROOT_INO;
        for name in path {
            ino = drive.lookup(ino, name).await?.ino;
        }
        if exclude {
            drive.exclude(ino)
        } else {
            drive.include(ino)
        }
    };
    match r.await {
        Ok(()) => json!({"ok": true}),
        Err::<(), FsError>(e) => json!({"ok": false, "error": e.to_string()}),
    }
}
