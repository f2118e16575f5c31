//! `edrive conflicts` and `edrive resolve`: what waits for a decision, and settling it.

use super::*;

/// `edrive conflicts`.
pub fn conflicts(args: ConflictsArgs) -> anyhow::Result<()> {
    let mp = std::fs::canonicalize(&args.mountpoint)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.mountpoint.display()))?;
    let r = control::request(&mp, &Request::Conflicts)?;
    if r["ok"] != true {
        bail!("{}", r["error"].as_str().unwrap_or("failed"));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let empty = Vec::new();
    let conflicts = r["conflicts"].as_array().unwrap_or(&empty);
    if conflicts.is_empty() {
        println!("no conflicts wait for a decision");
    } else {
        println!(
            "{} file(s) changed here and on the server:",
            conflicts.len()
        );
        for c in conflicts {
            println!(
                "  {}  (local version: {})",
                c["path"].as_str().unwrap_or("?"),
                human_bytes(c["local_size"].as_u64().unwrap_or(0))
            );
        }
        println!("settle each with: edrive resolve PATH --use-local | --use-remote | --keep-both");
    }
    let stuck = r["stuck"].as_array().unwrap_or(&empty);
    if !stuck.is_empty() {
        println!("{} other change(s) do not reach the server:", stuck.len());
        for c in stuck {
            println!(
                "  {}  ({})",
                c["path"].as_str().unwrap_or("?"),
                c["problem"].as_str().unwrap_or("?")
            );
        }
        println!(
            "try again now with: edrive resolve PATH --use-local; give the change up with --use-remote"
        );
    }
    let events = r["events"].as_array().unwrap_or(&empty);
    if !events.is_empty() {
        println!("recent events:");
        for e in events {
            let when = e["at_ms"].as_u64().unwrap_or(0) / 1000;
            let ago = unix_now().saturating_sub(when);
            let detail = e["detail"].as_str().unwrap_or("");
            let what = match e["kind"].as_str().unwrap_or("") {
                "kept-both" => format!("changed on both sides; your version is kept as {detail}"),
                "kept-local" => {
                    "deleted on the server while changed here; kept and uploaded again".to_string()
                }
                "restored" => {
                    "deleted here but changed on the server; the server's version is back"
                        .to_string()
                }
                "used-local" => "resolved: the local version replaced the server's".to_string(),
                "used-remote" => {
                    format!("resolved: took the server's version; yours is kept at {detail}")
                }
                other => format!("{other} {detail}"),
            };
            println!(
                "  {} ago  {}: {what}",
                human_age(ago),
                e["path"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(())
}

pub(super) fn human_age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// `edrive resolve`.
pub fn resolve(args: ResolveArgs) -> anyhow::Result<()> {
    let choice = if args.use_local {
        "use-local"
    } else if args.use_remote {
        "use-remote"
    } else if args.discard {
        "discard"
    } else if args.save_as.is_some() {
        "save-as"
    } else {
        "keep-both"
    };
    let save_as = args
        .save_as
        .as_deref()
        .map(std::path::absolute)
        .transpose()?;
    let (_, r) = path_request(&args.path, |path| Request::Resolve {
        path,
        choice: choice.to_string(),
        save_as,
    })?;
    println!("{}", r["message"].as_str().unwrap_or("resolved"));
    Ok(())
}
