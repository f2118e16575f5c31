//! Dolphin's service menu: `$XDG_DATA_HOME/kio/servicemenus/edrive.desktop` (executable,
//! as KDE Frameworks 5.85+ require for a service menu of the user's). KIO has no condition
//! on a path, so the items show on every local file, under an "edrive" submenu; outside a
//! mount the action says so.

use super::files::WholeFile;
use super::utf8;

/// (action id, verb of the action script, label, icon): the same four everywhere.
pub const ACTIONS: [(&str, &str, &str, &str); 4] = [
    ("pin", "pin", "Always keep on this device", "emblem-default"),
    ("free", "free", "Free up space", "edit-clear"),
    ("onlineonly", "online-only", "Online only", "emblem-web"),
    ("status", "status", "Sync status", "dialog-information"),
];

/// The service menu piece.
pub fn service_menu() -> WholeFile {
    WholeFile::new(
        "Dolphin service menu",
        |dirs| dirs.data_home.join("kio/servicemenus/edrive.desktop"),
        |dirs| {
            let action = exec_quote(utf8(&dirs.action_script())?);
            let ids: Vec<&str> = ACTIONS.iter().map(|a| a.0).collect();
            let mut out = format!(
                "# Installed by `edrive desktop install`; removed by `edrive desktop uninstall`.\n\
                 [Desktop Entry]\n\
                 Type=Service\n\
                 ServiceTypes=KonqPopupMenu/Plugin\n\
                 X-KDE-ServiceTypes=KonqPopupMenu/Plugin\n\
                 MimeType=all/all;\n\
                 X-KDE-Protocols=file\n\
                 X-KDE-Submenu=edrive\n\
                 Actions={};\n",
                ids.join(";")
            );
            for (id, verb, label, icon) in ACTIONS {
                out.push_str(&format!(
                    "\n[Desktop Action {id}]\nName={label}\nIcon={icon}\nExec={action} {verb} %F\n"
                ));
            }
            Ok(out)
        },
        0o755,
    )
}

/// `arg` as one argument of a desktop entry's `Exec` key: double-quoted, with `"`, `` ` ``,
/// `$` and `\` escaped by a backslash, then the key's own escaping (a backslash doubled)
/// and `%` doubled (Desktop Entry Specification, "The Exec key").
pub fn exec_quote(arg: &str) -> String {
    let mut quoted = String::from("\"");
    for c in arg.chars() {
        if matches!(c, '"' | '`' | '$' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted.replace('\\', r"\\").replace('%', "%%")
}
