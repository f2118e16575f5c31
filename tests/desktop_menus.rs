//! The file-manager menus of `edrive desktop install` (issue 20), installed into a
//! temporary HOME and run the way each file manager runs them, against a real mount of
//! the embedded server: Thunar's custom action (the `<command>` of uca.xml with `%F`
//! replaced by the quoted paths, run by a shell), Dolphin's service menu (the `Exec` line
//! split as the Desktop Entry Specification says, `%F` replaced by the paths) and the
//! Nautilus extension (imported by Debian's python3 with the real `gi.repository.Nautilus`
//! 4.0, which needs no display: its menu items are asked for and activated, its emblems
//! read). Each action must change the pin and cache state as promised (`edrive status
//! PATH --json`, the server's GETs), and its errors must reach the user: fake
//! `notify-send`, `zenity` and `kdialog` on PATH record what they were asked to show.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use common::*;

/// Debian's python3, which has the `gi` bindings (a pyenv shim on PATH may not).
const PYTHON: &str = "/usr/bin/python3";

fn require_nautilus_python() {
    let ok = Command::new(PYTHON)
        .args([
            "-c",
            "import gi; gi.require_version('Nautilus', '4.0'); from gi.repository import Nautilus",
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "requires {PYTHON} with the Nautilus 4.0 bindings: apt-get install python3-nautilus"
    );
}

/// A user action the menus must leave alone.
const USER_UCA: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<actions>\n<action>\n\
\t<icon>utilities-terminal</icon>\n\t<name>Open Terminal Here</name>\n\
\t<unique-id>1697000000000000-1</unique-id>\n\
\t<command>exo-open --working-directory %f --launch TerminalEmulator</command>\n\
\t<description>mine</description>\n\t<patterns>*</patterns>\n\t<directories/>\n\
</action>\n</actions>\n";

/// A temporary HOME with the menus installed, and a PATH whose notifiers record.
struct Desktop {
    home: tempfile::TempDir,
    fakebin: PathBuf,
    shown: PathBuf,
}

impl Desktop {
    fn install() -> Desktop {
        let home = tempdir();
        let fakebin = home.path().join("fakebin");
        std::fs::create_dir_all(&fakebin).expect("mkdir");
        let shown = home.path().join("shown.log");
        for tool in ["notify-send", "zenity", "kdialog"] {
            let p = fakebin.join(tool);
            std::fs::write(
                &p,
                format!(
                    "#!/bin/sh\nprintf '%s' '{tool}' >> '{log}'\nfor a in \"$@\"; do printf ' [%s]' \"$a\" >> '{log}'; done\necho >> '{log}'\n",
                    log = shown.display()
                ),
            )
            .expect("write fake notifier");
            set_mode(&p, 0o755);
        }
        let uca = home.path().join(".config/Thunar/uca.xml");
        std::fs::create_dir_all(uca.parent().expect("parent")).expect("mkdir");
        std::fs::write(&uca, USER_UCA).expect("write uca.xml");
        let d = Desktop {
            home,
            fakebin,
            shown,
        };
        let out = d
            .command(edrive_bin())
            .args(["desktop", "install"])
            .output()
            .expect("run edrive");
        assert!(
            out.status.success(),
            "edrive desktop install failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        d
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.home.path().join(rel)
    }

    /// `program` in this desktop's environment: HOME here, the XDG dirs below it, the
    /// recording notifiers first on PATH, no display (so no real dialog can appear).
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("HOME", self.home.path())
            .env("PATH", format!("{}:{path}", self.fakebin.display()))
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .env("XDG_CONFIG_DIRS", self.home.path().join("no-system-config"))
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("KDE_FULL_SESSION");
        cmd
    }

    /// What the notifiers were asked to show so far, one line per call.
    fn shown(&self) -> String {
        std::fs::read_to_string(&self.shown).unwrap_or_default()
    }

    /// Runs Thunar's action `unique_id` on `paths` as Thunar does: `%F` becomes the
    /// paths, each quoted for the shell.
    fn thunar(&self, unique_id: &str, paths: &[&Path]) -> ExitStatus {
        let uca = std::fs::read_to_string(self.path(".config/Thunar/uca.xml")).expect("uca.xml");
        let tag = format!("<unique-id>{unique_id}</unique-id>");
        let at = uca
            .find(&tag)
            .unwrap_or_else(|| panic!("no {tag} in uca.xml:\n{uca}"));
        let start = uca[..at].rfind("<action>").expect("<action>");
        let block = &uca[start..start + uca[start..].find("</action>").expect("</action>")];
        let command = between(block, "<command>", "</command>");
        let command = quick_xml::escape::unescape(command).expect("XML text");
        let files: Vec<String> = paths
            .iter()
            .map(|p| format!("'{}'", p.display().to_string().replace('\'', r"'\''")))
            .collect();
        let line = command.replace("%F", &files.join(" "));
        self.command("sh")
            .arg("-c")
            .arg(line)
            .status()
            .expect("run sh")
    }

    /// Runs Dolphin's action `id` on `paths`: the `Exec` of `[Desktop Action id]`.
    fn dolphin(&self, id: &str, paths: &[&Path]) -> ExitStatus {
        let menu = self.path(".local/share/kio/servicemenus/edrive.desktop");
        let text = std::fs::read_to_string(&menu).expect("service menu");
        let section = format!("[Desktop Action {id}]");
        let at = text
            .find(&section)
            .unwrap_or_else(|| panic!("no {section}:\n{text}"));
        let exec = text[at..]
            .lines()
            .find_map(|l| l.strip_prefix("Exec="))
            .expect("Exec=");
        let mut argv = Vec::new();
        for arg in split_exec(exec) {
            if arg == "%F" {
                argv.extend(paths.iter().map(|p| p.display().to_string()));
            } else {
                argv.push(arg.replace("%%", "%"));
            }
        }
        let (program, args) = argv.split_first().expect("a program");
        self.command(program)
            .args(args)
            .status()
            .expect("run the Exec line")
    }
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> &'a str {
    let a = s.find(open).expect("open tag") + open.len();
    let b = a + s[a..].find(close).expect("close tag");
    &s[a..b]
}

/// An `Exec` value split into arguments: the value's escapes (`\\`, `\s`) first, then
/// double-quoted arguments whose `\` escapes the next character.
fn split_exec(value: &str) -> Vec<String> {
    let mut unescaped = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('s') => unescaped.push(' '),
                Some('n') => unescaped.push('\n'),
                Some('t') => unescaped.push('\t'),
                Some(o) => unescaped.push(o),
                None => {}
            }
        } else {
            unescaped.push(c);
        }
    }
    let (mut args, mut cur, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
    let mut chars = unescaped.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            '\\' if quoted => cur.extend(chars.next()),
            ' ' if !quoted => {
                if any || !cur.is_empty() {
                    args.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        args.push(cur);
    }
    args
}

/// `edrive status PATH --json` of an entry inside the mount.
fn entry(m: &Mount, rel: &str) -> serde_json::Value {
    let (status, out, err) =
        m.edrive_plain(&["status", &m.join(rel).display().to_string(), "--json"]);
    assert!(status.success(), "edrive status {rel} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad JSON ({e}): {out}"))
}

/// Drives the installed Nautilus extension with the real Nautilus 4.0 bindings: file
/// infos are plain objects with the methods the extension calls. Prints one JSON object.
const NAUTILUS_DRIVER: &str = r#"
import importlib.util, json, os, sys
import gi
gi.require_version("Nautilus", "4.0")
from gi.repository import GLib, Gio, Nautilus

ext_path, inside_file, inside_folder, outside, pin_target = sys.argv[1:6]
spec = importlib.util.spec_from_file_location("edrive_nautilus", ext_path)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)

loop = GLib.MainLoop()

class Info:
    def __init__(self, path):
        self.path, self.emblems, self.invalidated = path, [], 0
    def get_uri_scheme(self):
        return "file"
    def is_directory(self):
        return os.path.isdir(self.path)
    def get_location(self):
        return Gio.File.new_for_path(self.path)
    def add_emblem(self, name):
        self.emblems.append(name)
    def invalidate_extension_info(self):
        self.invalidated += 1
        loop.quit()

def labels(items):
    return [i.get_property("label") for i in items]

def emblems(path):
    info = Info(path)
    mod.EdriveExtension().update_file_info(info)
    return info.emblems

ext = mod.EdriveExtension()
out = {
    "file_items": labels(ext.get_file_items([Info(inside_file)])),
    "folder_items": labels(ext.get_background_items(Info(inside_folder))),
    "outside_items": labels(ext.get_file_items([Info(outside)])),
    "mixed_items": labels(ext.get_file_items([Info(inside_file), Info(outside)])),
    "outside_emblems": emblems(outside),
    "pinned_emblems": emblems(inside_file),
    "pinned_folder_emblems": emblems(os.path.dirname(inside_file)),
    "folder_emblems": emblems(inside_folder),
    "before_pin_emblems": emblems(pin_target),
}
target = Info(pin_target)
items = {i.get_property("name"): i for i in ext.get_file_items([target])}
if "Edrive::pin" not in items:
    sys.exit("no pin item for %s: %r; so far %s" % (pin_target, list(items), json.dumps(out)))
GLib.timeout_add_seconds(60, loop.quit)
items["Edrive::pin"].activate()
loop.run()
out["invalidated_after_pin"] = target.invalidated
out["after_pin_emblems"] = emblems(pin_target)
print(json.dumps(out))
"#;

#[test]
fn menus_pin_free_and_show_status_the_way_each_file_manager_runs_them() {
    require_fuse();
    require_nautilus_python();
    let tmp = tempdir();
    let share = tmp.path().join("share");
    std::fs::create_dir_all(share.join("Photos")).expect("mkdir");
    std::fs::create_dir_all(share.join("Docs")).expect("mkdir");
    for i in 0..5u64 {
        std::fs::write(
            share.join(format!("Photos/p{i}.jpg")),
            pseudo_random_bytes(i, 50_000),
        )
        .expect("seed");
    }
    std::fs::write(
        share.join("Docs/report.pdf"),
        pseudo_random_bytes(9, 80_000),
    )
    .expect("seed");
    std::fs::write(share.join("Docs/notes.txt"), b"notes\n").expect("seed");
    let srv = EmbeddedServer::start(&share, None);
    let m = Mount::new(&srv.url(), MountOpts::default());
    let d = Desktop::install();

    // Installed for this user only, with the user's own Thunar action kept.
    let script = d.path(".local/share/edrive/edrive-action");
    let dolphin = d.path(".local/share/kio/servicemenus/edrive.desktop");
    let nautilus = d.path(".local/share/nautilus-python/extensions/edrive_nautilus.py");
    for (file, mode) in [(&script, 0o755), (&dolphin, 0o755), (&nautilus, 0o644)] {
        use std::os::unix::fs::PermissionsExt;
        let md = std::fs::metadata(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(md.permissions().mode() & 0o777, mode, "{}", file.display());
    }
    let uca = std::fs::read_to_string(d.path(".config/Thunar/uca.xml")).expect("uca.xml");
    assert!(uca.contains("1697000000000000-1"), "{uca}");
    assert_eq!(uca.matches("<unique-id>edrive-").count(), 4, "{uca}");

    // Thunar: "Always keep on this device" on a folder downloads it and pins it.
    let gets = srv.count_requests("GET");
    assert!(
        d.thunar("edrive-pin", &[&m.join("Photos")]).success(),
        "{}",
        d.shown()
    );
    let photos = entry(&m, "Photos");
    assert_eq!(photos["pinned"], true, "{photos}");
    assert_eq!(photos["cached_bytes"], 250_000, "{photos}");
    for i in 0..5 {
        assert_eq!(entry(&m, &format!("Photos/p{i}.jpg"))["state"], "pinned");
    }
    assert!(
        srv.count_requests("GET") >= gets + 5,
        "the pin downloaded nothing"
    );
    assert_eq!(entry(&m, "Docs/report.pdf")["state"], "online-only");

    // Nautilus: items only inside the mount, emblems from the state, and "Always keep on
    // this device" pins (the emblems are refreshed when the action ends).
    let out = d
        .command(PYTHON)
        .arg("-c")
        .arg(NAUTILUS_DRIVER)
        .arg(&nautilus)
        .arg(m.join("Photos/p0.jpg"))
        .arg(m.join("Docs"))
        .arg(d.path("fakebin"))
        .arg(m.join("Docs/report.pdf"))
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "the Nautilus extension failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n: serde_json::Value = serde_json::from_slice(&out.stdout).expect("driver JSON");
    let four = serde_json::json!([
        "Always keep on this device",
        "Free up space",
        "Online only",
        "Sync status"
    ]);
    assert_eq!(n["file_items"], four, "{n}");
    assert_eq!(n["folder_items"], four, "{n}");
    assert_eq!(n["outside_items"], serde_json::json!([]), "{n}");
    assert_eq!(n["mixed_items"], serde_json::json!([]), "{n}");
    assert_eq!(n["outside_emblems"], serde_json::json!([]), "{n}");
    assert_eq!(
        n["pinned_emblems"],
        serde_json::json!(["emblem-default"]),
        "{n}"
    );
    assert_eq!(
        n["pinned_folder_emblems"],
        serde_json::json!(["emblem-default"]),
        "{n}"
    );
    assert_eq!(n["folder_emblems"], serde_json::json!([]), "{n}");
    assert_eq!(
        n["before_pin_emblems"],
        serde_json::json!(["emblem-web"]),
        "{n}"
    );
    assert_eq!(n["invalidated_after_pin"], 1, "{n}");
    assert_eq!(
        n["after_pin_emblems"],
        serde_json::json!(["emblem-default"]),
        "{n}"
    );
    let report = entry(&m, "Docs/report.pdf");
    assert_eq!(report["state"], "pinned", "{report}");
    assert_eq!(report["cached_bytes"], 80_000, "{report}");

    // Dolphin: "Online only" on the folder unpins it and frees its content.
    assert!(
        d.dolphin("onlineonly", &[&m.join("Photos")]).success(),
        "{}",
        d.shown()
    );
    let photos = entry(&m, "Photos");
    assert_eq!(photos["pinned"], false, "{photos}");
    assert_eq!(photos["cached_bytes"], 0, "{photos}");
    assert_eq!(entry(&m, "Photos/p3.jpg")["state"], "online-only");

    // Dolphin: "Free up space" on a file that was read.
    assert_eq!(
        std::fs::read(m.join("Docs/notes.txt")).expect("read"),
        b"notes\n"
    );
    assert_eq!(entry(&m, "Docs/notes.txt")["state"], "hydrated");
    assert!(
        d.dolphin("free", &[&m.join("Docs/notes.txt")]).success(),
        "{}",
        d.shown()
    );
    let notes = entry(&m, "Docs/notes.txt");
    assert_eq!(notes["state"], "online-only", "{notes}");
    assert_eq!(notes["cached_bytes"], 0, "{notes}");
    assert!(
        d.shown().is_empty(),
        "a quiet success showed: {}",
        d.shown()
    );

    // "Sync status" shows what `edrive status` says.
    assert!(d
        .thunar("edrive-status", &[&m.join("Docs/report.pdf")])
        .success());
    let shown = d.shown();
    assert!(shown.contains("[Sync status]"), "{shown}");
    assert!(shown.contains("state:   pinned"), "{shown}");

    // Errors reach the user: a path outside any mount, from Thunar and Dolphin.
    let outside = d.path("outside.txt");
    std::fs::write(&outside, b"x").expect("write");
    assert!(!d.thunar("edrive-pin", &[&outside]).success());
    let shown = d.shown();
    let last = shown.lines().last().unwrap_or_default();
    assert!(last.contains("[Always keep on this device]"), "{shown}");
    assert!(last.contains("is not inside an edrive mount"), "{shown}");
    assert!(!d.dolphin("onlineonly", &[&outside]).success());
    let shown = d.shown();
    let last = shown.lines().last().unwrap_or_default();
    assert!(last.contains("[Online only]"), "{shown}");
    assert!(last.contains("is not inside an edrive mount"), "{shown}");

    // Uninstall removes what was installed and only that.
    let out = d
        .command(edrive_bin())
        .args(["desktop", "uninstall"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!script.exists() && !dolphin.exists() && !nautilus.exists());
    assert_eq!(
        std::fs::read_to_string(d.path(".config/Thunar/uca.xml")).expect("uca.xml"),
        USER_UCA
    );

    m.unmount();
}
