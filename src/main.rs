//! The `edrive` command: CLI, mount daemon, control socket, embedded server and demo.

mod cli;
mod commands;
mod control;
mod credentials;
mod daemon;
mod demo;
mod demo_tree;
mod logging;
mod memory;
mod paths;
mod serve;
#[cfg(unix)]
mod serve_control;
#[cfg(windows)]
mod serve_control_windows;
mod status_reply;
mod units;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => {
            logging::to_stderr();
            runtime().and_then(|rt| rt.block_on(serve::run(args)))
        }
        Command::Mount(args) => daemon::run(args),
        Command::Unmount(args) => commands::unmount(args),
        Command::Status(args) => commands::status(args),
        Command::Login(args) => commands::login(args),
        Command::Sync(args) => commands::sync(args),
        Command::Suspend(args) => commands::suspend(args),
        Command::Resume(args) => commands::resume(args),
        Command::Pin(args) => commands::pin(args),
        Command::Unpin(args) => commands::unpin(args),
        Command::Free(args) => commands::free(args),
        Command::Demo(args) => demo::run(args),
        Command::Conflicts(args) => commands::conflicts(args),
        Command::Resolve(args) => commands::resolve(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edrive: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
