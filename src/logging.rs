//! Log setup: the daemon logs to a file in its cache directory; `EDRIVE_LOG` (or `RUST_LOG`)
//! sets the filter, default `info`. Credentials are never logged by any layer.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

fn filter() -> EnvFilter {
    let spec = std::env::var("EDRIVE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_string());
    EnvFilter::try_new(spec).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Logs to standard error (servers, foreground use).
pub fn to_stderr() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Logs to `file` (appending), and to standard error too when `also_stderr`.
pub fn to_file(file: &Path, also_stderr: bool) -> anyhow::Result<()> {
    let f = OpenOptions::new().create(true).append(true).open(file)?;
    if also_stderr {
        use tracing_subscriber::fmt::writer::MakeWriterExt;
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_ansi(false)
            .with_writer(Mutex::new(f).and(std::io::stderr))
            .try_init();
    } else {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_ansi(false)
            .with_writer(Mutex::new(f))
            .try_init();
    }
    Ok(())
}
