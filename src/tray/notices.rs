//! Which desktop notifications the panel sends, decided from successive views of a mount:
//! each once (a conflict per file, credentials refused per episode, …), offline / back
//! online rate-limited so a flapping link never makes a storm. Pure: tested without D-Bus.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::view::{plural, MountView};

/// At most one offline notice per mount within this time (and "back online" only after
/// an offline notice was shown).
pub const LINK_QUIET: Duration = Duration::from_secs(300);

/// What a notification is about (and what its action does).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topic {
    /// A file waits for a choice (`/path` in the mount).
    Conflict(String),
    /// A conflict copy was made (the copy's path in the mount).
    ConflictCopy(String),
    /// The server refused the credentials.
    AuthRefused,
    /// The server has no room.
    ServerFull,
    /// The server refused a change (403).
    Refused(String),
    /// The server cannot be reached.
    Offline,
    /// It can again.
    Online,
    /// Pinned content is local.
    PinsDone,
}

/// One notification to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The mount it is about.
    pub mountpoint: PathBuf,
    /// What it is about.
    pub topic: Topic,
    /// The headline.
    pub summary: String,
    /// The text.
    pub body: String,
}

impl Notice {
    /// The action offered with it: (key, label).
    pub fn action(&self) -> Option<(&'static str, &'static str)> {
        match self.topic {
            Topic::Conflict(_) => Some(("resolve", "Resolve")),
            Topic::ConflictCopy(_) | Topic::Refused(_) | Topic::PinsDone => Some(("show", "Show")),
            Topic::AuthRefused => Some(("login", "Log in")),
            _ => None,
        }
    }

    /// The freedesktop icon name shown with it.
    pub fn icon(&self) -> &'static str {
        match self.topic {
            Topic::Online | Topic::PinsDone => "dialog-information",
            Topic::Offline => "network-offline",
            _ => "dialog-warning",
        }
    }
}

/// What was already said about one mount.
#[derive(Debug, Default)]
struct Said {
    conflicts: BTreeSet<String>,
    refused: BTreeSet<String>,
    auth: bool,
    full: bool,
    newest_event: i64,
    offline_shown: bool,
    last_offline_notice: Option<Instant>,
    was_offline: bool,
    pins_running: bool,
}

/// Remembers what was said, per mount.
#[derive(Debug, Default)]
pub struct Notifier {
    said: HashMap<PathBuf, Said>,
}

impl Notifier {
    /// The notices the view `v` of a mount calls for, seen at `now`. At a mount's first
    /// view, what waits for the user is said (conflicts, credentials, refusals, a full
    /// server) but not past events, the link or pins.
    pub fn observe(&mut self, now: Instant, v: &MountView) -> Vec<Notice> {
        let first = !self.said.contains_key(&v.mountpoint);
        let said = self.said.entry(v.mountpoint.clone()).or_default();
        let name = v.name();
        let mut out = Vec::new();
        let mut say = |topic: Topic, summary: String, body: String| {
            out.push(Notice {
                mountpoint: v.mountpoint.clone(),
                topic,
                summary,
                body,
            })
        };

        let now_conflicts: BTreeSet<String> = v.conflicts.iter().cloned().collect();
        for c in now_conflicts.difference(&said.conflicts) {
            say(
                Topic::Conflict(c.clone()),
                format!("Conflict in {name}"),
                format!(
                    "{c} was changed here and on the server. Choose which version to keep \
                     (panel menu → Conflicts)."
                ),
            );
        }
        said.conflicts = now_conflicts;

        let newest = v.events.iter().map(|e| e.0).max().unwrap_or(0);
        if !first {
            for (at, kind, path, detail) in v.events.iter().rev() {
                if *at > said.newest_event && kind == "kept-both" {
                    say(
                        Topic::ConflictCopy(path.clone()),
                        format!("Conflict copy made in {name}"),
                        format!(
                            "{path} was changed here and on the server; both versions are \
                             kept (yours as {detail})."
                        ),
                    );
                }
            }
        }
        said.newest_event = said.newest_event.max(newest);

        let auth = v.state == "auth-required";
        if auth && !said.auth {
            say(
                Topic::AuthRefused,
                format!("{name}: sign-in required"),
                "The server refused the credentials. Changes stay here until you log in \
                 again."
                    .to_string(),
            );
        }
        said.auth = auth;

        if v.no_space && !said.full {
            say(
                Topic::ServerFull,
                format!("{name}: the server is full"),
                "Some changes cannot be uploaded: the server has no room. They stay here."
                    .to_string(),
            );
        }
        said.full = v.no_space;

        let now_refused: BTreeSet<String> = v.refused.iter().cloned().collect();
        for r in now_refused.difference(&said.refused) {
            say(
                Topic::Refused(r.clone()),
                format!("{name}: change refused"),
                format!("The server refused the change of {r} (403). It is kept here."),
            );
        }
        said.refused = now_refused;

        let offline = v.state == "offline";
        if !first && offline && !said.was_offline {
            let quiet = said
                .last_offline_notice
                .is_none_or(|t| now.duration_since(t) >= LINK_QUIET);
            said.offline_shown = quiet;
            if quiet {
                said.last_offline_notice = Some(now);
                say(
                    Topic::Offline,
                    format!("{name} is offline"),
                    format!(
                        "{}. Cached files still open; changes wait.",
                        v.offline_reason
                            .clone()
                            .unwrap_or_else(|| "The server cannot be reached".into())
                    ),
                );
            }
        }
        if !offline && said.was_offline && said.offline_shown && !auth {
            said.offline_shown = false;
            say(
                Topic::Online,
                format!("{name} is back online"),
                "Waiting changes upload now.".to_string(),
            );
        }
        said.was_offline = offline;

        if !first && said.pins_running && !v.pins_running && v.pins.0 > 0 {
            let (files, done, failed) = v.pins;
            let body = if failed > 0 {
                format!(
                    "{} local; {} could not be downloaded (tried again later).",
                    plural(done, "file"),
                    plural(failed, "file")
                )
            } else {
                format!("{} available offline.", plural(files, "file"))
            };
            say(
                Topic::PinsDone,
                format!("{name}: pinned files are local"),
                body,
            );
        }
        said.pins_running = v.pins_running;
        out
    }

    /// Forgets a mount that went away.
    pub fn forget(&mut self, mountpoint: &std::path::Path) {
        self.said.remove(mountpoint);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(state: &str) -> MountView {
        MountView {
            mountpoint: PathBuf::from("/home/me/Drive"),
            state: state.to_string(),
            ..MountView::default()
        }
    }

    fn topics(n: &[Notice]) -> Vec<Topic> {
        n.iter().map(|n| n.topic.clone()).collect()
    }

    #[test]
    fn a_conflict_and_refused_credentials_are_said_once() {
        let mut n = Notifier::default();
        let t = Instant::now();
        assert!(n.observe(t, &view("synced")).is_empty());
        let mut v = view("transferring");
        v.conflicts = vec!["/a.txt".into()];
        assert_eq!(
            topics(&n.observe(t, &v)),
            [Topic::Conflict("/a.txt".into())]
        );
        assert!(n.observe(t, &v).is_empty());
        v.state = "auth-required".into();
        let said = n.observe(t, &v);
        assert_eq!(topics(&said), [Topic::AuthRefused]);
        assert_eq!(said[0].action(), Some(("login", "Log in")));
        assert!(n.observe(t, &v).is_empty());
        // Settled, then a new one on the same file: said again.
        let mut w = view("synced");
        assert!(n.observe(t, &w).is_empty());
        w.conflicts = vec!["/a.txt".into()];
        assert_eq!(
            topics(&n.observe(t, &w)),
            [Topic::Conflict("/a.txt".into())]
        );
    }

    #[test]
    fn conflict_copies_are_said_from_new_events_only() {
        let mut n = Notifier::default();
        let t = Instant::now();
        let mut v = view("synced");
        v.events = vec![(
            100,
            "kept-both".into(),
            "/old.txt".into(),
            "old (c).txt".into(),
        )];
        assert!(n.observe(t, &v).is_empty(), "past events are not news");
        v.events.insert(
            0,
            (200, "kept-both".into(), "/r.txt".into(), "r (c).txt".into()),
        );
        v.events.insert(
            0,
            (300, "used-remote".into(), "/s.txt".into(), String::new()),
        );
        assert_eq!(
            topics(&n.observe(t, &v)),
            [Topic::ConflictCopy("/r.txt".into())]
        );
        assert!(n.observe(t, &v).is_empty());
    }

    #[test]
    fn a_flapping_link_makes_no_storm() {
        let mut n = Notifier::default();
        let t0 = Instant::now();
        n.observe(t0, &view("synced"));
        assert_eq!(topics(&n.observe(t0, &view("offline"))), [Topic::Offline]);
        assert_eq!(topics(&n.observe(t0, &view("synced"))), [Topic::Online]);
        for i in 1..20 {
            let t = t0 + Duration::from_secs(i * 5);
            assert!(n.observe(t, &view("offline")).is_empty());
            assert!(n.observe(t, &view("synced")).is_empty());
        }
        let later = t0 + LINK_QUIET;
        assert_eq!(
            topics(&n.observe(later, &view("offline"))),
            [Topic::Offline]
        );
    }

    #[test]
    fn full_server_refusals_and_finished_pins() {
        let mut n = Notifier::default();
        let t = Instant::now();
        let mut v = view("transferring");
        v.pins_running = true;
        v.pins = (4, 1, 0);
        assert!(n.observe(t, &v).is_empty());
        v.no_space = true;
        v.refused = vec!["/ro/x".into()];
        assert_eq!(
            topics(&n.observe(t, &v)),
            [Topic::ServerFull, Topic::Refused("/ro/x".into())]
        );
        v.pins_running = false;
        v.pins = (4, 4, 0);
        let said = n.observe(t, &v);
        assert_eq!(topics(&said), [Topic::PinsDone]);
        assert_eq!(said[0].body, "4 files available offline.");
        assert!(n.observe(t, &v).is_empty());
    }
}
