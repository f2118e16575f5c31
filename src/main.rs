//! The `edrive` command: CLI, mount daemon, control socket, embedded server and demo.

mod assets;
mod attention;
mod cli;
mod commands;
mod config;
mod control;
mod credentials;
mod daemon;
mod deletions;
mod demo;
mod demo_tree;
mod desktop;
mod drives;
mod excluded;
#[cfg(unix)]
mod fuse_access;
mod logging;
mod login;
mod memory;
#[cfg(unix)]
mod mount_helper;
mod paths;
mod pin_hydration;
mod s3_mount;
mod secrets;
mod serve;
#[cfg(unix)]
mod serve_control;
#[cfg(windows)]
mod serve_control_windows;
mod status_reply;
mod status_watch;
#[cfg(target_os = "linux")]
mod systemd;
#[cfg(unix)]
mod thumbnails;
#[cfg(target_os = "linux")]
mod tray;
mod units;

use clap::{CommandFactory, FromArgMatches};

use cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    #[cfg(unix)]
    if mount_helper::called_as_helper() {
        return mount_helper::run();
    }
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Serve(args) => {
            logging::to_stderr();
            runtime().and_then(|rt| rt.block_on(serve::run(args)))
        }
        Command::Mount(args) => drives::mount(args),
        Command::Unmount(args) => drives::unmount_target(args).and_then(commands::unmount),
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
        Command::Desktop(args) => desktop::run(args),
        Command::Add(args) => match matches.subcommand_matches("add") {
            Some(m) => drives::add(args, m),
            None => Err(anyhow::anyhow!("no arguments")),
        },
        Command::Remove(args) => drives::remove(args),
        Command::List(args) => drives::list(args),
        #[cfg(target_os = "linux")]
        Command::Enable(args) => systemd::enable(args),
        #[cfg(target_os = "linux")]
        Command::Disable(args) => systemd::disable(args),
        #[cfg(not(target_os = "linux"))]
        Command::Enable(_) | Command::Disable(_) => Err(anyhow::anyhow!(
            "starting at login is only set up on Linux (systemd) yet"
        )),
        Command::Completions(args) => assets::completions(args),
        Command::GenerateAssets(args) => assets::generate(args),
        Command::Tray(args) => tray(args),
        Command::Deletions(args) => deletions::run(args),
        Command::Exclude(args) => excluded::run(args, true),
        Command::Include(args) => excluded::run(args, false),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edrive: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `edrive tray`: the panel icon, or its autostart entry.
#[cfg(target_os = "linux")]
fn tray(args: cli::TrayArgs) -> anyhow::Result<()> {
    if args.install_autostart {
        let file = tray::autostart::install()?;
        println!("edrive: {} starts the panel icon at login", file.display());
        return Ok(());
    }
    tray::run()
}

/// `edrive tray` (Linux desktops only).
#[cfg(not(target_os = "linux"))]
fn tray(_args: cli::TrayArgs) -> anyhow::Result<()> {
    anyhow::bail!("the panel icon is available on Linux desktops only")
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
