//! Thunar's custom actions: `$XDG_CONFIG_HOME/Thunar/uca.xml`, a file the user edits
//! through Thunar too. edrive's actions are those whose `<unique-id>` starts with
//! `edrive-`; install replaces only those (adding them before `</actions>`), uninstall
//! removes only those, and everything else in the file stays byte for byte. Without a
//! file of the user's, install starts from the system's (`$XDG_CONFIG_DIRS`, default
//! `/etc/xdg`), which Thunar would otherwise stop reading. Thunar has no condition on a
//! path, so the items show on every file, under an "edrive" submenu; outside a mount the
//! action says so.

use std::path::{Path, PathBuf};

use quick_xml::events::Event;
use quick_xml::Reader;

use super::dolphin::ACTIONS;
use super::{shell_quote, utf8, write_atomically, DesktopError, Dirs, Piece};

/// The prefix of the `<unique-id>` of edrive's actions.
const ID_PREFIX: &str = "edrive-";

/// The Thunar piece.
pub struct ThunarActions;

impl Piece for ThunarActions {
    fn what(&self) -> &'static str {
        "Thunar custom actions"
    }

    fn path(&self, dirs: &Dirs) -> PathBuf {
        dirs.config_home.join("Thunar/uca.xml")
    }

    fn install(&self, dirs: &Dirs) -> Result<(), DesktopError> {
        let path = self.path(dirs);
        let base = match read(&path)? {
            Some(text) => text,
            None => system_actions().unwrap_or_else(|| {
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<actions>\n</actions>\n".into()
            }),
        };
        let ours = our_actions(dirs)?;
        let (merged, _) = merge(&base, Some(&ours)).map_err(|reason| DesktopError::BadUcaXml {
            path: path.clone(),
            reason,
        })?;
        write_atomically(&path, merged.as_bytes(), mode_of(&path).unwrap_or(0o644))
    }

    fn uninstall(&self, dirs: &Dirs) -> Result<bool, DesktopError> {
        let path = self.path(dirs);
        let Some(text) = read(&path)? else {
            return Ok(false);
        };
        let (rest, removed) = merge(&text, None).map_err(|reason| DesktopError::BadUcaXml {
            path: path.clone(),
            reason,
        })?;
        if removed == 0 {
            return Ok(false);
        }
        if system_actions().as_deref() == Some(rest.as_str()) {
            // Only the system's actions are left, copied by install: Thunar reads
            // those without a file of the user's.
            std::fs::remove_file(&path).map_err(DesktopError::io(&path))?;
        } else {
            write_atomically(&path, rest.as_bytes(), mode_of(&path).unwrap_or(0o644))?;
        }
        Ok(true)
    }
}

fn read(path: &Path) -> Result<Option<String>, DesktopError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(DesktopError::io(path)(e)),
    }
}

fn mode_of(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// The first `Thunar/uca.xml` of `$XDG_CONFIG_DIRS` (default `/etc/xdg`).
fn system_actions() -> Option<String> {
    let dirs = std::env::var("XDG_CONFIG_DIRS")
        .ok()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "/etc/xdg".into());
    dirs.split(':')
        .filter(|d| !d.is_empty())
        .find_map(|d| std::fs::read_to_string(Path::new(d).join("Thunar/uca.xml")).ok())
}

/// edrive's `<action>` elements, one per line group, ending in a newline.
fn our_actions(dirs: &Dirs) -> Result<String, DesktopError> {
    use quick_xml::escape::partial_escape as escape;
    // Thunar expands `%` sequences in the command; a `%` of the path stays one.
    let script = shell_quote(utf8(&dirs.action_script())?).replace('%', "%%");
    let mut out = String::new();
    for (id, verb, label, icon) in ACTIONS {
        let command = format!("{script} {verb} %F");
        out.push_str(&format!(
            "<action>\n\
             \t<icon>{icon}</icon>\n\
             \t<name>{label}</name>\n\
             \t<submenu>edrive</submenu>\n\
             \t<unique-id>{ID_PREFIX}{id}</unique-id>\n\
             \t<command>{}</command>\n\
             \t<description>edrive: {label} (files inside an edrive mount)</description>\n\
             \t<range></range>\n\
             \t<patterns>*</patterns>\n\
             \t<directories/>\n\
             \t<audio-files/>\n\
             \t<image-files/>\n\
             \t<other-files/>\n\
             \t<text-files/>\n\
             \t<video-files/>\n\
             </action>\n",
            escape(command.as_str())
        ));
    }
    Ok(out)
}

/// `doc` without edrive's actions, and with `ours` added before `</actions>` when given;
/// how many of edrive's actions were removed. Fails (the caller changes nothing) unless
/// `doc` is well-formed XML whose root is `<actions>`.
pub fn merge(doc: &str, ours: Option<&str>) -> Result<(String, usize), String> {
    let mut reader = Reader::from_str(doc);
    let mut depth = 0usize;
    let mut root_seen = false;
    // Byte ranges of edrive's actions, to cut out.
    let mut cut: Vec<(usize, usize)> = Vec::new();
    // Where `ours` goes, and what replaces a self-closing root `<actions/>`.
    let mut insert_at: Option<usize> = None;
    let mut empty_root: Option<(usize, usize)> = None;
    // The action being read: its start and its unique-id so far.
    let mut action: Option<(usize, String)> = None;
    let mut in_id = false;
    loop {
        let before = pos(&reader);
        let event = reader
            .read_event()
            .map_err(|e| format!("at byte {}: {e}", reader.error_position()))?;
        match event {
            Event::Start(e) => {
                let name = e.name();
                if depth == 0 {
                    if !is(name, "actions") || root_seen {
                        return Err("the root element is not <actions>".into());
                    }
                    root_seen = true;
                } else if depth == 1 && is(name, "action") {
                    action = Some((before, String::new()));
                } else if depth == 2 && action.is_some() && is(name, "unique-id") {
                    in_id = true;
                }
                depth += 1;
            }
            Event::Empty(e) if depth == 0 => {
                if !is(e.name(), "actions") || root_seen {
                    return Err("the root element is not <actions>".into());
                }
                root_seen = true;
                empty_root = Some((before, pos(&reader)));
            }
            Event::End(e) => {
                depth = depth.saturating_sub(1);
                in_id = false;
                if depth == 1 && is(e.name(), "action") {
                    if let Some((start, id)) = action.take() {
                        if id.trim().starts_with(ID_PREFIX) {
                            cut.push(line_span(doc, start, pos(&reader)));
                        }
                    }
                } else if depth == 0 {
                    insert_at = Some(line_start(doc, before));
                }
            }
            Event::Text(t) if in_id => {
                if let Some((_, id)) = action.as_mut() {
                    id.push_str(&t.xml10_content());
                }
            }
            Event::CData(t) if in_id => {
                if let Some((_, id)) = action.as_mut() {
                    id.push_str(&t.xml10_content());
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !root_seen || depth != 0 {
        return Err("no complete <actions> element".into());
    }
    let removed = cut.len();
    let mut out = String::with_capacity(doc.len() + ours.map_or(0, str::len));
    let mut at = 0;
    for (start, end) in cut {
        out.push_str(&doc[at..start]);
        at = end;
    }
    match (ours, empty_root, insert_at) {
        (Some(ours), Some((start, end)), _) => {
            out.push_str(&doc[at..start]);
            out.push_str("<actions>\n");
            out.push_str(ours);
            out.push_str("</actions>");
            at = end;
        }
        (Some(ours), None, Some(close)) => {
            let close = close.max(at);
            out.push_str(&doc[at..close]);
            if !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(ours);
            at = close;
        }
        _ => {}
    }
    out.push_str(&doc[at..]);
    Ok((out, removed))
}

fn is(name: quick_xml::name::QName<'_>, want: &str) -> bool {
    name.into_inner() == want
}

fn pos(reader: &Reader<&[u8]>) -> usize {
    usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX)
}

/// `start..end` widened to the indentation before it and the line break after it, so
/// cutting it leaves no blank line.
fn line_span(doc: &str, start: usize, end: usize) -> (usize, usize) {
    let start = line_start(doc, start);
    let end = if doc[end..].starts_with("\r\n") {
        end + 2
    } else if doc[end..].starts_with('\n') {
        end + 1
    } else {
        end
    };
    (start, end)
}

/// `at`, moved back over spaces and tabs to the start of its line when only those
/// precede it there.
fn line_start(doc: &str, at: usize) -> usize {
    let head = &doc[..at];
    let trimmed = head.trim_end_matches([' ', '\t']);
    if trimmed.is_empty() || trimmed.ends_with('\n') {
        trimmed.len()
    } else {
        at
    }
}
