//! What the panel shows, worked out from the mounts' snapshots (the `watch` lines of the
//! control channel). Pure: tested without D-Bus or a desktop.

use std::path::PathBuf;

use serde_json::Value;

/// The look of one mount, or of all of them, in rising order of urgency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Look {
    /// No drive is mounted.
    Idle,
    /// Nothing to upload, nothing downloading.
    Synced,
    /// Changes waiting or uploading, or downloads running.
    Transferring,
    /// `edrive suspend`: nothing goes out.
    Paused,
    /// The server cannot be reached.
    Offline,
    /// Something waits for the user: a conflict, a refused change, a full server.
    Attention,
    /// The server refused the credentials.
    AuthRequired,
}

impl Look {
    /// The icon's name (shipped SVGs, see `icons`).
    pub fn icon_name(self) -> &'static str {
        match self {
            Look::Idle => "edrive-idle",
            Look::Synced => "edrive-synced",
            Look::Transferring => "edrive-transferring",
            Look::Paused => "edrive-paused",
            Look::Offline => "edrive-offline",
            Look::Attention => "edrive-attention",
            Look::AuthRequired => "edrive-auth",
        }
    }

    /// The StatusNotifierItem `Status`: `Passive` only when nothing is mounted, and
    /// `NeedsAttention` when the user must act.
    pub fn sni_status(self) -> &'static str {
        match self {
            Look::Idle => "Passive",
            Look::Attention | Look::AuthRequired => "NeedsAttention",
            _ => "Active",
        }
    }

    /// A word for it.
    pub fn word(self) -> &'static str {
        match self {
            Look::Idle => "no drive mounted",
            Look::Synced => "up to date",
            Look::Transferring => "syncing",
            Look::Paused => "paused",
            Look::Offline => "offline",
            Look::Attention => "needs attention",
            Look::AuthRequired => "sign-in required",
        }
    }
}

/// One mount as the panel sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MountView {
    /// The mountpoint.
    pub mountpoint: PathBuf,
    /// The server URL.
    pub url: String,
    /// `synced`, `transferring`, `suspended`, `offline` or `auth-required`.
    pub state: String,
    /// Changes waiting to be uploaded.
    pub pending: u64,
    /// Of those, changes that do not move (a conflict, a refusal, a full server).
    pub stuck: u64,
    /// Uploads running.
    pub uploading: u64,
    /// Downloads running.
    pub downloads: u64,
    /// Upload rate, bytes per second.
    pub rate: u64,
    /// Why the server cannot be reached.
    pub offline_reason: Option<String>,
    /// HTTP status of the refused credentials.
    pub auth_status: Option<u64>,
    /// Files in conflict, waiting for a choice (paths in the mount, `/a/b.txt`).
    pub conflicts: Vec<String>,
    /// Changes the server refused (403).
    pub refused: Vec<String>,
    /// Whether the server has no room (507) for some change.
    pub no_space: bool,
    /// Whether pinned content is being downloaded, and how far.
    pub pins_running: bool,
    /// Files under pins, and of those local now, and failed.
    pub pins: (u64, u64, u64),
    /// Recent sync events: (when in ms, kind, path, detail), newest first.
    pub events: Vec<(i64, String, String, String)>,
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

impl MountView {
    /// Reads a snapshot; `None` when it is not one (an error reply).
    pub fn from_snapshot(v: &Value) -> Option<MountView> {
        if v["ok"] != true {
            return None;
        }
        let mountpoint = PathBuf::from(v["mountpoint"].as_str()?);
        let problems = v["sync"]["problems"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let problem_paths = |pred: &dyn Fn(&str) -> bool| -> Vec<String> {
            problems
                .iter()
                .filter(|p| pred(p["problem"].as_str().unwrap_or("")))
                .map(|p| s(&p["path"]))
                .collect()
        };
        Some(MountView {
            mountpoint,
            url: s(&v["url"]),
            state: s(&v["state"]),
            pending: u(&v["transfer"]["pending"]),
            stuck: u(&v["sync"]["stuck"]),
            uploading: u(&v["transfer"]["uploading"]),
            downloads: u(&v["transfer"]["downloads"]),
            rate: u(&v["transfer"]["upload_rate_bytes_per_s"]),
            offline_reason: v["link"]["reason"].as_str().map(str::to_string),
            auth_status: v["link"]["http_status"].as_u64(),
            conflicts: v["conflicts"]
                .as_array()
                .map(|a| a.iter().map(|c| s(&c["path"])).collect())
                .unwrap_or_default(),
            refused: problem_paths(&|p| p.starts_with("error: forbidden")),
            no_space: !problem_paths(&|p| p.starts_with("no-space")).is_empty(),
            pins_running: v["pins"]["running"] == true,
            pins: (
                u(&v["pins"]["files"]),
                u(&v["pins"]["done"]),
                u(&v["pins"]["failed"]),
            ),
            events: v["events"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|e| {
                            (
                                e["at_ms"].as_i64().unwrap_or(0),
                                s(&e["kind"]),
                                s(&e["path"]),
                                s(&e["detail"]),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// The mount's name in menus: the mountpoint's last component.
    pub fn name(&self) -> String {
        self.mountpoint
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.mountpoint.display().to_string())
    }

    /// Whether something waits for the user (besides credentials).
    pub fn needs_attention(&self) -> bool {
        !self.conflicts.is_empty() || !self.refused.is_empty() || self.no_space
    }

    /// The mount's look.
    pub fn look(&self) -> Look {
        match self.state.as_str() {
            "auth-required" => Look::AuthRequired,
            _ if self.needs_attention() => Look::Attention,
            // Every change left waits for the user (held deletions, refused changes).
            "attention" => Look::Attention,
            "offline" => Look::Offline,
            "suspended" => Look::Paused,
            "transferring" => Look::Transferring,
            _ => Look::Synced,
        }
    }

    /// One line that says how the mount is.
    pub fn line(&self) -> String {
        let moving = self.pending.saturating_sub(self.stuck);
        let mut parts = Vec::new();
        match self.state.as_str() {
            "auth-required" => parts.push(match self.auth_status {
                Some(code) => format!("Sign-in required (the server answered {code})"),
                None => "Sign-in required".to_string(),
            }),
            "offline" => parts.push(match &self.offline_reason {
                Some(r) if !r.is_empty() => format!("Offline: {}", short_reason(r)),
                _ => "Offline".to_string(),
            }),
            "suspended" => parts.push("Paused".to_string()),
            "transferring" => parts.extend(self.transfer_line(moving)),
            "attention" => parts.push(
                "Waiting for you: held deletions or refused changes (edrive sync says which)"
                    .to_string(),
            ),
            _ => {}
        }
        if self.state != "transferring" && moving > 0 {
            parts.push(format!("{} waiting", plural(moving, "change")));
        }
        if !self.conflicts.is_empty() {
            parts.push(plural(self.conflicts.len() as u64, "conflict"));
        }
        if !self.refused.is_empty() {
            parts.push(format!(
                "{} refused",
                plural(self.refused.len() as u64, "change")
            ));
        }
        if self.no_space {
            parts.push("server full".to_string());
        }
        if parts.is_empty() {
            return "Up to date".to_string();
        }
        let mut line = parts.join(", ");
        if let Some(first) = line.get(..1) {
            let upper = first.to_uppercase();
            line.replace_range(..1, &upper);
        }
        line
    }

    /// What moves now, `None` when nothing does (only stuck changes wait).
    fn transfer_line(&self, moving: u64) -> Option<String> {
        let mut t = Vec::new();
        if moving > 0 {
            let mut up = format!("uploading {}", plural(moving, "change"));
            if self.rate > 0 {
                up.push_str(&format!(" at {}/s", human_bytes(self.rate)));
            }
            t.push(up);
        }
        if self.downloads > 0 {
            t.push(format!("downloading {}", plural(self.downloads, "file")));
        }
        (!t.is_empty()).then(|| t.join(", "))
    }
}

/// A reason short enough for a menu line: a long chain of causes
/// (`connection failed: …: Connection refused (os error 111)`) gives its last link.
fn short_reason(r: &str) -> &str {
    if r.chars().count() <= 60 {
        return r;
    }
    r.rsplit(": ").next().unwrap_or(r)
}

/// "1 change", "2 changes".
pub fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Bytes for people: `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// The whole panel: the most urgent look of all mounts, and a tooltip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The most urgent look.
    pub look: Look,
    /// Tooltip title.
    pub title: String,
    /// Tooltip text: one line per mount.
    pub description: String,
}

/// Sums up `mounts`.
pub fn summary(mounts: &[MountView]) -> Summary {
    let look = mounts
        .iter()
        .map(MountView::look)
        .max()
        .unwrap_or(Look::Idle);
    let title = match mounts.len() {
        0 => "edrive: no drive mounted".to_string(),
        1 => format!("edrive: {}", look.word()),
        n => format!("edrive: {n} drives, {}", look.word()),
    };
    let description = mounts
        .iter()
        .map(|m| format!("{}: {}", m.name(), m.line()))
        .collect::<Vec<_>>()
        .join("\n");
    Summary {
        look,
        title,
        description,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn snap(state: &str) -> Value {
        json!({
            "ok": true, "mountpoint": "/home/me/Drive", "url": "http://h/dav/",
            "state": state, "link": {"state": "online"},
            "transfer": {"pending": 0, "uploading": 0, "downloads": 0,
                         "upload_rate_bytes_per_s": 0},
            "pins": {"running": false, "files": 0, "done": 0, "failed": 0},
            "sync": {"problems": []}, "conflicts": [], "events": [],
        })
    }

    #[test]
    fn states_map_to_looks_and_lines() {
        let m = MountView::from_snapshot(&snap("synced")).unwrap();
        assert_eq!(m.look(), Look::Synced);
        assert_eq!(m.line(), "Up to date");
        assert_eq!(m.name(), "Drive");

        let mut v = snap("transferring");
        v["transfer"]["pending"] = json!(3);
        v["transfer"]["upload_rate_bytes_per_s"] = json!(1_572_864);
        v["transfer"]["downloads"] = json!(1);
        let m = MountView::from_snapshot(&v).unwrap();
        assert_eq!(m.look(), Look::Transferring);
        assert_eq!(
            m.line(),
            "Uploading 3 changes at 1.5 MiB/s, downloading 1 file"
        );

        let mut v = snap("suspended");
        v["transfer"]["pending"] = json!(2);
        let m = MountView::from_snapshot(&v).unwrap();
        assert_eq!(
            (m.look(), m.line().as_str()),
            (Look::Paused, "Paused, 2 changes waiting")
        );

        let mut v = snap("offline");
        v["link"] = json!({"state": "offline", "reason": "connection refused"});
        let m = MountView::from_snapshot(&v).unwrap();
        assert_eq!(m.look(), Look::Offline);
        assert_eq!(m.line(), "Offline: connection refused");
        let mut v = snap("offline");
        v["link"]["reason"] = json!(
            "connection failed: client error (Connect): tcp connect error: Connection refused \
             (os error 111)"
        );
        let m = MountView::from_snapshot(&v).unwrap();
        assert_eq!(m.line(), "Offline: Connection refused (os error 111)");

        let mut v = snap("auth-required");
        v["link"] = json!({"state": "auth-required", "http_status": 401});
        let m = MountView::from_snapshot(&v).unwrap();
        assert_eq!(m.look(), Look::AuthRequired);
        assert_eq!(m.look().sni_status(), "NeedsAttention");
        assert_eq!(m.line(), "Sign-in required (the server answered 401)");
    }

    #[test]
    fn conflicts_refusals_and_a_full_server_ask_for_attention() {
        let mut v = snap("transferring");
        v["conflicts"] = json!([{"path": "/a.txt", "local_size": 3}]);
        v["sync"]["problems"] = json!([
            {"path": "/a.txt", "problem": "conflict"},
            {"path": "/ro/b.txt", "problem": "error: forbidden (403 Forbidden)"},
            {"path": "/big.iso", "problem": "no-space"},
        ]);
        v["transfer"]["pending"] = json!(3);
        v["sync"]["stuck"] = json!(3);
        let m = MountView::from_snapshot(&v).unwrap();
        assert_eq!(m.conflicts, vec!["/a.txt"]);
        assert_eq!(m.refused, vec!["/ro/b.txt"]);
        assert!(m.no_space);
        assert_eq!(m.look(), Look::Attention);
        assert!(m
            .line()
            .ends_with("1 conflict, 1 change refused, server full"));
    }

    #[test]
    fn the_summary_shows_the_most_urgent_mount() {
        assert_eq!(summary(&[]).look, Look::Idle);
        assert_eq!(Look::Idle.sni_status(), "Passive");
        let a = MountView::from_snapshot(&snap("synced")).unwrap();
        let mut b = MountView::from_snapshot(&snap("offline")).unwrap();
        b.mountpoint = PathBuf::from("/mnt/work");
        let s = summary(&[a, b]);
        assert_eq!(s.look, Look::Offline);
        assert_eq!(s.title, "edrive: 2 drives, offline");
        assert_eq!(s.description, "Drive: Up to date\nwork: Offline");
    }

    #[test]
    fn error_replies_are_no_mount() {
        assert!(MountView::from_snapshot(&json!({"ok": false, "error": "x"})).is_none());
        assert!(MountView::from_snapshot(&json!({"ok": true})).is_none());
    }
}
