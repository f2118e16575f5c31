//! `edrive demo`: the embedded server on a generated sample tree, mounted, with a few
//! things to try; Ctrl-C unmounts and stops the server.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::cli::{DemoArgs, MountArgs, UnmountArgs};

fn data_home() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("edrive");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(h).join(".local/share/edrive");
    }
    std::env::temp_dir().join("edrive-data")
}

/// Runs the demo until interrupted.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let data = data_home().join("demo-share");
    let marker = data.join("README.txt");
    let files = if marker.exists() {
        count_files(&data)
    } else {
        std::fs::create_dir_all(&data)?;
        crate::demo_tree::generate_demo_tree(&data)
            .with_context(|| format!("cannot write the sample tree to {}", data.display()))?
    };
    let mountpoint = args
        .mountpoint
        .unwrap_or_else(|| PathBuf::from("edrive-demo"));
    std::fs::create_dir_all(&mountpoint)
        .with_context(|| format!("cannot create {}", mountpoint.display()))?;
    let mountpoint = crate::paths::absolute_mountpoint(&mountpoint)?;

    let exe = std::env::current_exe()?;
    let server_log = data_home().join("demo-server.log");
    let mut server = Command::new(&exe)
        .arg("serve")
        .arg(&data)
        .args(["--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&server_log)?)
        .spawn()
        .context("cannot start the demo server")?;
    let mut line = String::new();
    if let Some(out) = server.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    let Some(url) = line
        .trim()
        .strip_prefix("edrive serve: listening on ")
        .map(str::to_string)
    else {
        let _ = server.kill();
        bail!(
            "the demo server did not start; see {}",
            server_log.display()
        );
    };

    let mounted = crate::daemon::run(MountArgs {
        url: url.clone(),
        mountpoint: mountpoint.clone(),
        s3: Default::default(),
        user: None,
        password_file: None,
        bearer_token_file: None,
        credentials_file: None,
        cache_dir: None,
        cache_size: 1 << 30,
        dir_cache_ttl: Duration::from_secs(30),
        upload_delay: Duration::from_secs(2),
        ignore: Vec::new(),
        no_default_ignore: false,
        poll_interval: std::time::Duration::from_secs(30),
        on_conflict: Default::default(),
        conditional_writes: Default::default(),
        allow_other: false,
        no_passthrough: false,
        background_reader: Vec::new(),
        allow_reader: Vec::new(),
        download_streams: 4,
        all: false,
        read_only: false,
        uid: None,
        gid: None,
        umask: None,
        hold_deletions_over: 100,
        hold_deletions_bytes: 1 << 30,
        foreground: false,
        daemon_child: false,
    });
    if let Err(e) = mounted {
        let _ = server.kill();
        let _ = server.wait();
        return Err(e);
    }

    let mp = mountpoint.display();
    let exe_name = exe.display();
    println!("edrive demo: {files} sample files served at {url} and mounted at {mp}");
    println!();
    println!("Try in another terminal:");
    println!("  ls -l '{mp}'                      # names, sizes, times: nothing downloaded");
    println!("  getfattr -n user.edrive.state '{mp}/README.txt'   # online-only");
    println!("  cat '{mp}/README.txt'             # fetched on demand");
    println!("  getfattr -n user.edrive.state '{mp}/README.txt'   # hydrated");
    println!("  {exe_name} status '{mp}'");
    println!();
    println!("Press Ctrl-C to unmount and stop the demo.");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(wait_for_stop());
    println!("\nedrive demo: unmounting");
    let result = crate::commands::unmount(UnmountArgs {
        mountpoint,
        force: false,
        timeout: std::time::Duration::from_secs(600),
    });
    let _ = server.kill();
    let _ = server.wait();
    result
}

async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn count_files(dir: &std::path::Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                match e.file_type() {
                    Ok(t) if t.is_dir() => stack.push(e.path()),
                    Ok(_) => n += 1,
                    Err(_) => {}
                }
            }
        }
    }
    n
}
