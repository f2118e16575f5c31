//! What the package installs besides the binary, generated from the clap definitions:
//! the man page (`edrive.1`), shell completions (`edrive completions SHELL`), and the
//! systemd user unit.

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::{AssetsArgs, CompletionShell, CompletionsArgs};

impl From<CompletionShell> for Shell {
    fn from(s: CompletionShell) -> Shell {
        match s {
            CompletionShell::Bash => Shell::Bash,
            CompletionShell::Zsh => Shell::Zsh,
            CompletionShell::Fish => Shell::Fish,
        }
    }
}

/// `edrive completions SHELL`: the script on standard output.
pub fn completions(args: CompletionsArgs) -> anyhow::Result<()> {
    let mut cmd = crate::cli::Cli::command();
    clap_complete::generate(
        Shell::from(args.shell),
        &mut cmd,
        "edrive",
        &mut std::io::stdout(),
    );
    Ok(())
}

/// `edrive generate-assets DIR`: `edrive.1` and `edrive-SUBCOMMAND.1`, `edrive.bash`, `_edrive`, `edrive.fish` and
/// `edrive@.service` in DIR.
pub fn generate(args: AssetsArgs) -> anyhow::Result<()> {
    let dir = &args.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cmd = crate::cli::Cli::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    std::fs::write(dir.join("edrive.1"), page)?;
    // A page per subcommand, as git has: edrive-mount(1), edrive-add(1), …
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("edrive-{}", sub.get_name());
        let mut page = Vec::new();
        // clap takes static names here; this runs once, at packaging.
        let static_name: &'static str = name.clone().leak();
        let mut sub = sub.clone().name(static_name);
        sub = sub.version(env!("CARGO_PKG_VERSION"));
        clap_mangen::Man::new(sub).render(&mut page)?;
        std::fs::write(dir.join(format!("{name}.1")), page)?;
    }
    for (shell, file) in [
        (Shell::Bash, "edrive.bash"),
        (Shell::Zsh, "_edrive"),
        (Shell::Fish, "edrive.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut crate::cli::Cli::command(), "edrive", &mut out);
        std::fs::write(dir.join(file), out)?;
    }
    #[cfg(target_os = "linux")]
    std::fs::write(
        dir.join("edrive@.service"),
        crate::systemd::unit_text(&args.exe),
    )?;
    println!("edrive: assets written to {}", dir.display());
    Ok(())
}
