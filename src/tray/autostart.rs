//! The login autostart entry for the panel icon (freedesktop Desktop Application
//! Autostart): `$XDG_CONFIG_HOME/autostart/edrive-tray.desktop` runs `edrive tray` when a
//! graphical session starts. `edrive tray --install-autostart` writes it; `edrive desktop
//! install` can call [`install`] too.

use std::path::{Path, PathBuf};

/// The entry's file name.
pub const FILE_NAME: &str = "edrive-tray.desktop";

/// The text of the entry that runs `exe tray`.
pub fn entry(exe: &Path) -> String {
    // Exec quoting (Desktop Entry spec): the path in double quotes, `"`, `` ` ``, `$`
    // and `\` escaped with a backslash.
    let mut quoted = String::new();
    for c in exe.display().to_string().chars() {
        if matches!(c, '"' | '`' | '$' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    format!(
        "[Desktop Entry]\nType=Application\nName=edrive panel icon\n\
         Comment=Shows the state of the edrive mounts in the panel\n\
         Exec=\"{quoted}\" tray\nIcon=folder-remote\nTerminal=false\nNoDisplay=true\n\
         X-GNOME-Autostart-enabled=true\n"
    )
}

/// The autostart folder: `$XDG_CONFIG_HOME/autostart`, else `~/.config/autostart`.
pub fn dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|d| !d.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })
        .map(|d| d.join("autostart"))
}

/// Writes the entry for this program; returns its path.
pub fn install() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = dir().ok_or_else(|| anyhow::anyhow!("neither XDG_CONFIG_HOME nor HOME is set"))?;
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(FILE_NAME);
    std::fs::write(&file, entry(&exe))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_runs_the_tray_with_the_path_quoted() {
        let e = entry(Path::new("/opt/my \"bin\"/edrive"));
        assert!(e.starts_with("[Desktop Entry]\nType=Application\n"));
        assert!(e.contains("Exec=\"/opt/my \\\"bin\\\"/edrive\" tray\n"));
    }
}
