//! The client commands that talk to a running mount: `unmount` and `status`.

use std::time::{Duration, Instant};

use anyhow::bail;

use crate::cli::{StatusArgs, UnmountArgs};
use crate::control::{self, Request};
use crate::paths;

/// `edrive unmount`: asks the daemon to unmount and waits until it has; falls back to
/// `fusermount3 -u` for a mount whose daemon is gone.
pub fn unmount(args: UnmountArgs) -> anyhow::Result<()> {
    let mp = paths::absolute_mountpoint(&args.mountpoint)?;
    match control::request(&mp, &Request::Unmount) {
        Ok(reply) if reply["ok"] == true => {
            let deadline = Instant::now() + Duration::from_secs(60);
            while paths::socket_path(&mp).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(())
        }
        Ok(reply) => bail!("{}", reply["error"].as_str().unwrap_or("unmount failed")),
        Err(e) => {
            if !paths::is_mounted(&mp) {
                bail!("{e}");
            }
            let out = std::process::Command::new("fusermount3")
                .arg("-u")
                .arg(&mp)
                .output()?;
            if !out.status.success() {
                bail!(
                    "the daemon does not answer and fusermount3 failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            Ok(())
        }
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `edrive status`.
pub fn status(args: StatusArgs) -> anyhow::Result<()> {
    let mp = paths::absolute_mountpoint(&args.mountpoint)?;
    let s = control::request(&mp, &Request::Status)?;
    if s["ok"] != true {
        bail!("{}", s["error"].as_str().unwrap_or("status failed"));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    let c = &s["cache"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    println!("edrive mount at {}", mp.display());
    println!("  server:  {}", s["url"].as_str().unwrap_or("?"));
    println!("  state:   {}", s["state"].as_str().unwrap_or("?"));
    println!(
        "  cache:   {} used of {} ({} files hydrated, {} downloading)",
        human_bytes(n(&c["used_bytes"])),
        human_bytes(n(&c["limit_bytes"])),
        n(&s["hydrated_files"]),
        n(&s["downloads"]),
    );
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

#[cfg(test)]
mod tests {
    #[test]
    fn human_bytes() {
        assert_eq!(super::human_bytes(10), "10 B");
        assert_eq!(super::human_bytes(10 << 20), "10.0 MiB");
    }
}
