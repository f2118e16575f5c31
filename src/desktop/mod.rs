//! `edrive desktop install` / `uninstall`: the pieces edrive adds to the current user's
//! desktop (XDG directories, no root). Each piece is one file with its own install and
//! uninstall; [`pieces`] is the list, so a new piece (a panel icon's autostart entry, …)
//! is one more entry there.
//!
//! Today: the shared action script that runs the edrive CLI and shows its errors, the
//! Nautilus extension (menu items and emblems), Thunar's custom actions (merged into the
//! user's `uca.xml`) and Dolphin's service menu.

mod dolphin;
mod files;
mod thunar;

use std::path::{Path, PathBuf};

use tracing::info_span;

pub use thunar::ThunarActions;

/// What can go wrong while installing or removing a piece.
#[derive(Debug, thiserror::Error)]
pub enum DesktopError {
    /// Neither `$XDG_DATA_HOME`/`$XDG_CONFIG_HOME` nor `$HOME` says where the user's files go.
    #[error(
        "cannot tell where your desktop files go: set HOME (or XDG_DATA_HOME and XDG_CONFIG_HOME)"
    )]
    NoHome,
    /// A path that cannot be written into a script or a desktop file.
    #[error("{0:?} is not valid UTF-8 or holds a control character; the menus cannot name it")]
    UnusablePath(PathBuf),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The user's Thunar actions file is not XML we can merge into; it is left unchanged.
    #[error("{path} is not valid Thunar actions XML ({reason}); left unchanged")]
    BadUcaXml {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
}

impl DesktopError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DesktopError + '_ {
        move |source| DesktopError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Where the user's desktop files live, and the edrive binary the menus run.
#[derive(Clone, Debug)]
pub struct Dirs {
    /// `$XDG_DATA_HOME`, else `~/.local/share`.
    pub data_home: PathBuf,
    /// `$XDG_CONFIG_HOME`, else `~/.config`.
    pub config_home: PathBuf,
    /// The `edrive` program the installed actions call.
    pub edrive: PathBuf,
}

impl Dirs {
    /// The XDG base directories of this process's environment, and this very binary.
    pub fn from_env() -> Result<Dirs, DesktopError> {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        let home = var("HOME");
        let data_home = var("XDG_DATA_HOME")
            .or_else(|| home.as_ref().map(|h| h.join(".local/share")))
            .ok_or(DesktopError::NoHome)?;
        let config_home = var("XDG_CONFIG_HOME")
            .or_else(|| home.as_ref().map(|h| h.join(".config")))
            .ok_or(DesktopError::NoHome)?;
        let edrive = std::env::current_exe().map_err(DesktopError::io(Path::new("edrive")))?;
        Ok(Dirs {
            data_home,
            config_home,
            edrive,
        })
    }

    /// The shared action script every file manager runs.
    pub fn action_script(&self) -> PathBuf {
        self.data_home.join("edrive/edrive-action")
    }
}

/// One thing `desktop install` puts in place and `desktop uninstall` takes away.
pub trait Piece {
    /// What it is, for the command's output (e.g. "Thunar custom actions").
    fn what(&self) -> &'static str;
    /// The file it writes.
    fn path(&self, dirs: &Dirs) -> PathBuf;
    /// Writes it (replacing an older version of itself, never the user's own content).
    fn install(&self, dirs: &Dirs) -> Result<(), DesktopError>;
    /// Removes it (only what edrive wrote); whether there was anything to remove.
    fn uninstall(&self, dirs: &Dirs) -> Result<bool, DesktopError>;
}

/// Every piece, in install order (the action script first: the others call it).
pub fn pieces() -> Vec<Box<dyn Piece>> {
    vec![
        Box::new(files::action_script()),
        Box::new(files::nautilus_extension()),
        Box::new(ThunarActions),
        Box::new(dolphin::service_menu()),
        // The panel icon, started at login (`edrive tray`).
        #[cfg(target_os = "linux")]
        Box::new(files::WholeFile::new(
            "panel icon at login",
            |dirs| {
                dirs.config_home
                    .join("autostart")
                    .join(crate::tray::autostart::FILE_NAME)
            },
            |dirs| Ok(crate::tray::autostart::entry(&dirs.edrive)),
            0o644,
        )),
    ]
}

/// Runs `edrive desktop install|uninstall`.
pub fn run(args: crate::cli::DesktopArgs) -> anyhow::Result<()> {
    if cfg!(windows) {
        anyhow::bail!("the file-manager menus are for Linux desktops (Nautilus, Thunar, Dolphin)");
    }
    let dirs = Dirs::from_env()?;
    refuse_root_in_a_users_home()?;
    match args.action {
        crate::cli::DesktopAction::Install => install(&dirs),
        crate::cli::DesktopAction::Uninstall => uninstall(&dirs),
    }
}

/// Installs every piece; one line per piece on stdout.
pub fn install(dirs: &Dirs) -> anyhow::Result<()> {
    let _span = info_span!("desktop_install").entered();
    for piece in pieces() {
        piece.install(dirs)?;
        println!("installed {}: {}", piece.what(), piece.path(dirs).display());
    }
    println!(
        "Restart the file manager to see the menus (nautilus -q; thunar -q; Dolphin reads them on its next menu)."
    );
    if which("notify-send").is_none() && which("zenity").is_none() && which("kdialog").is_none() {
        println!("Note: errors of the menu actions are shown with notify-send, zenity or kdialog, and none is installed (apt-get install libnotify-bin).");
    }
    Ok(())
}

/// Removes every piece (only what edrive wrote); one line per piece removed.
pub fn uninstall(dirs: &Dirs) -> anyhow::Result<()> {
    let _span = info_span!("desktop_uninstall").entered();
    for piece in pieces().iter().rev() {
        if piece.uninstall(dirs)? {
            println!("removed {}: {}", piece.what(), piece.path(dirs).display());
        }
    }
    Ok(())
}

/// `sudo edrive desktop install` would leave files of root's in a user's home that the
/// user could not change or remove: the menus are per user, installed as that user.
fn refuse_root_in_a_users_home() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let home = std::env::var_os("HOME").map(PathBuf::from);
        if let Some(md) = home.as_ref().and_then(|h| std::fs::metadata(h).ok()) {
            if root && md.uid() != 0 {
                anyhow::bail!(
                    "run `edrive desktop` as the user whose menus they are, not as root ({} is uid {}'s)",
                    home.as_deref().unwrap_or(Path::new("")).display(),
                    md.uid()
                );
            }
        }
    }
    Ok(())
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Writes `contents` to `path` through a temporary file in the same folder and a rename,
/// so a crash leaves the old file or the new one, never half of one. Creates the folder.
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), DesktopError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(DesktopError::io(dir))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".edrive-")
        .tempfile_in(dir)
        .map_err(DesktopError::io(dir))?;
    tmp.write_all(contents)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(DesktopError::io(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))
            .map_err(DesktopError::io(path))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    tmp.persist(path)
        .map_err(|e| DesktopError::io(path)(e.error))?;
    Ok(())
}

/// `path` as UTF-8 text without control characters, for a script or a desktop file.
fn utf8(path: &Path) -> Result<&str, DesktopError> {
    path.to_str()
        .filter(|s| !s.chars().any(char::is_control))
        .ok_or_else(|| DesktopError::UnusablePath(path.to_path_buf()))
}

/// `s` quoted for a POSIX shell: `'…'`, a `'` inside as `'\''`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests;
