//! Pieces that are whole files of edrive's own: the action script and the Nautilus
//! extension (Dolphin's service menu is one too, built in `dolphin`).

use std::path::PathBuf;

use super::{shell_quote, utf8, write_atomically, DesktopError, Dirs, Piece};

/// A file that is edrive's alone: installed whole, removed whole.
pub struct WholeFile {
    what: &'static str,
    /// Its path from the user's directories.
    path: fn(&Dirs) -> PathBuf,
    /// Its contents for the user's directories.
    contents: fn(&Dirs) -> Result<String, DesktopError>,
    /// Its permission bits.
    mode: u32,
}

impl WholeFile {
    /// A piece that writes `contents(dirs)` to `path(dirs)` with permission bits `mode`.
    pub fn new(
        what: &'static str,
        path: fn(&Dirs) -> PathBuf,
        contents: fn(&Dirs) -> Result<String, DesktopError>,
        mode: u32,
    ) -> WholeFile {
        WholeFile {
            what,
            path,
            contents,
            mode,
        }
    }
}

impl Piece for WholeFile {
    fn what(&self) -> &'static str {
        self.what
    }

    fn path(&self, dirs: &Dirs) -> PathBuf {
        (self.path)(dirs)
    }

    fn install(&self, dirs: &Dirs) -> Result<(), DesktopError> {
        let contents = (self.contents)(dirs)?;
        write_atomically(&self.path(dirs), contents.as_bytes(), self.mode)
    }

    fn uninstall(&self, dirs: &Dirs) -> Result<bool, DesktopError> {
        let path = self.path(dirs);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(DesktopError::io(&path)(e)),
        }
    }
}

const ACTION_SCRIPT: &str = include_str!("assets/edrive-action.sh");
const NAUTILUS_EXTENSION: &str = include_str!("assets/edrive_nautilus.py");

/// The script every file manager's action runs: `edrive-action VERB PATH...`.
pub fn action_script() -> WholeFile {
    WholeFile::new(
        "action script",
        Dirs::action_script,
        |dirs| {
            let edrive = utf8(&dirs.edrive)?;
            Ok(ACTION_SCRIPT
                .replace("@EDRIVE@", &shell_quote(edrive))
                // Inside a double-quoted message: no quotes, `$` or backquotes from the path.
                .replace("@EDRIVE_TEXT@", &edrive.replace(['"', '$', '`', '\\'], "?")))
        },
        0o755,
    )
}

/// The Nautilus extension, loaded by python3-nautilus from
/// `$XDG_DATA_HOME/nautilus-python/extensions/`.
pub fn nautilus_extension() -> WholeFile {
    WholeFile::new(
        "Nautilus extension",
        |dirs| {
            dirs.data_home
                .join("nautilus-python/extensions/edrive_nautilus.py")
        },
        |dirs| {
            let action = dirs.action_script();
            // A JSON string is a valid Python string literal.
            let literal = serde_json::to_string(utf8(&action)?)
                .map_err(|e| DesktopError::io(&action)(std::io::Error::other(e)))?;
            Ok(NAUTILUS_EXTENSION.replace("\"@ACTION@\"", &literal))
        },
        0o644,
    )
}
