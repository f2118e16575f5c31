//! `edrive status`: of a mount (text or JSON), or of one entry.

use super::*;

/// `edrive status`: of the mount when given its mountpoint, else of the entry at the
/// path inside a mount.
pub fn status(args: StatusArgs) -> anyhow::Result<()> {
    // A mountpoint is found without touching it (it may be a hung mount).
    let mp = paths::absolute_mountpoint(&args.path)?;
    if paths::socket_path(&mp).exists() {
        return mount_status(&mp, args.json);
    }
    let (mp, parts) = locate(&args.path)?;
    if parts.is_empty() {
        mount_status(&mp, args.json)
    } else {
        entry_status(&args, &mp, parts)
    }
}

/// `edrive status PATH` for an entry inside the mount at `mp`.
pub(super) fn entry_status(
    args: &StatusArgs,
    mp: &std::path::Path,
    parts: Vec<String>,
) -> anyhow::Result<()> {
    let r = control::request(mp, &Request::Entry { path: parts })?;
    if r["ok"] != true {
        bail!(
            "{}: {}",
            args.path.display(),
            r["error"].as_str().unwrap_or("status failed")
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let folder = r["kind"] == "folder";
    println!("{}", args.path.display());
    println!("  state:   {}", r["state"].as_str().unwrap_or("?"));
    println!(
        "  pinned:  {}",
        if r["pinned"] == true { "yes" } else { "no" }
    );
    println!(
        "  size:    {} ({} bytes{})",
        human_bytes(n(&r["size"])),
        n(&r["size"]),
        if folder { ", files below" } else { "" }
    );
    println!("  cached:  {}", human_bytes(n(&r["cached_bytes"])));
    if let Some(p) = r["problem"].as_str() {
        println!("  problem: {p}");
    }
    Ok(())
}

fn sync_of(s: &serde_json::Value) -> &serde_json::Value {
    &s["sync"]
}

/// `edrive status MOUNTPOINT`.
pub(super) fn mount_status(mp: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let mp = mp.to_path_buf();
    let s = control::request(&mp, &Request::Status)?;
    if s["ok"] != true {
        bail!("{}", s["error"].as_str().unwrap_or("status failed"));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    let c = &s["cache"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    println!("edrive mount at {}", mp.display());
    println!("  server:  {}", s["url"].as_str().unwrap_or("?"));
    let srv = &s["server"];
    if srv["probed"] == true {
        let yn = |k: &str| match srv[k].as_bool() {
            Some(true) => "yes",
            Some(false) => "no",
            None => "unknown",
        };
        println!(
            "  guarantees: ETags {}, If-Match {}, If-None-Match {}, MOVE Overwrite: F {}, mtime {}, ranges {}",
            yn("etags"),
            yn("if_match"),
            yn("if_none_match"),
            yn("move_no_overwrite"),
            yn("mtime"),
            yn("ranges")
        );
    } else if let Some(note) = srv["note"].as_str() {
        println!("  guarantees: unknown ({note})");
    }
    println!(
        "  conflicts checked by: {}",
        srv["write_check"].as_str().unwrap_or("?")
    );
    let link = &s["link"];
    let state = s["state"].as_str().unwrap_or("?");
    let detail = match state {
        "offline" => format!(
            " (server unreachable for {} s: {}; next retry in {} s)",
            unix_now().saturating_sub(n(&link["since_unix"])),
            link["reason"].as_str().unwrap_or("?"),
            n(&link["next_retry_in_s"])
        ),
        "auth-required" => format!(
            " (the server refused the credentials with HTTP {}; local data is kept, changes are queued; `edrive login {}` gives new ones)",
            n(&link["http_status"]),
            mp.display()
        ),
        "suspended" if s["suspended"] == "offline" => " (offline: no requests at all)".into(),
        "attention" => format!(" ({})", crate::attention::describe(sync_of(&s))),
        "transferring" => {
            let t = &s["transfer"];
            format!(
                " ({} change(s) to upload, {} downloading, {}/s)",
                n(&t["pending"]),
                n(&t["downloads"]),
                human_bytes(n(&t["upload_rate_bytes_per_s"]))
            )
        }
        _ => String::new(),
    };
    println!("  state:   {state}{detail}");
    let auth = &s["auth"];
    match auth["kind"].as_str() {
        Some("basic") => println!(
            "  auth:    user {}{}",
            auth["user"].as_str().unwrap_or("?"),
            stored_note(auth)
        ),
        Some("bearer") => println!("  auth:    bearer token{}", stored_note(auth)),
        _ => {}
    }
    println!(
        "  cache:   {} used of {} ({} files hydrated, {} downloading)",
        human_bytes(n(&c["used_bytes"])),
        human_bytes(n(&c["limit_bytes"])),
        n(&s["hydrated_files"]),
        n(&s["downloads"]),
    );
    let bg = &s["background_reads_refused"];
    let by: Vec<String> = bg["by_program"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k} {}", n(v))).collect())
        .unwrap_or_default();
    println!(
        "  background: refused {} download(s) to thumbnailers and indexers{}",
        n(&bg["total"]),
        if by.is_empty() {
            String::new()
        } else {
            format!(" ({})", by.join(", "))
        }
    );
    let kr = &s["kernel_reads"];
    println!(
        "  reads:   {}",
        if kr["available"] == true {
            format!(
                "cached files read by the kernel (passthrough; {} open now)",
                n(&kr["open"])
            )
        } else {
            "through the daemon (passthrough off or not offered by the kernel)".to_string()
        }
    );
    let sync = &s["sync"];
    println!(
        "  uploads: {} change(s) pending, {} dirty{}",
        n(&sync["pending"]),
        human_bytes(n(&sync["pending_bytes"])),
        if n(&sync["stuck"]) > 0 {
            format!(
                ", {} need attention (conflict, full server or error; see the log)",
                n(&sync["stuck"])
            )
        } else {
            String::new()
        }
    );
    if !sync["uploading"].is_null() {
        let up = &sync["uploading"];
        println!(
            "           uploading {} ({} of {})",
            up["path"].as_str().unwrap_or("?"),
            human_bytes(n(&up["sent_bytes"])),
            human_bytes(n(&up["total_bytes"]))
        );
    }
    if let Some(problems) = sync["problems"].as_array() {
        for p in problems {
            println!(
                "           {}: {}",
                p["path"].as_str().unwrap_or("?"),
                p["problem"].as_str().unwrap_or("?")
            );
        }
    }
    if let Some(e) = sync["last_error"].as_str() {
        println!("           last error: {e}");
    }
    let p = &s["pins"];
    if p["running"] == true {
        println!(
            "  pins:    fetching, {} of {} file(s) local",
            n(&p["done"]),
            n(&p["files"])
        );
    }
    if n(&c["pinned_bytes"]) > n(&c["limit_bytes"]) {
        println!(
            "  warning: pinned content ({}) exceeds the cache limit ({}); pins hold, the limit applies to the rest",
            human_bytes(n(&c["pinned_bytes"])),
            human_bytes(n(&c["limit_bytes"]))
        );
    }
    if n(&c["over_limit_bytes"]) > 0 {
        println!(
            "  warning: {} over the limit, held by open files",
            human_bytes(n(&c["over_limit_bytes"]))
        );
    }
    println!(
        "  daemon:  pid {}, log {}",
        n(&s["pid"]),
        s["log_file"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// ", stored in FILE" when `edrive login` stored the mount's credentials.
pub(super) fn stored_note(auth: &serde_json::Value) -> String {
    if auth["in_keyring"] == true {
        ", stored in the keyring".to_string()
    } else if auth["stored"] == true {
        format!(
            ", stored in {}",
            auth["credentials_file"].as_str().unwrap_or("?")
        )
    } else {
        String::new()
    }
}
