//! Who may download content: a person's programs may; the programs that scan files in the
//! background (thumbnailers, desktop indexers, `updatedb`) get only what is already local.
//!
//! A file manager showing a folder of photos must not download the folder: its
//! thumbnailer opens every file it sees. The adapter learns which program asks (FUSE: the
//! caller's executable, its first arguments and its parents) and hands the names here;
//! an open of content that is not local from a background reader fails at once, without a
//! request, and is counted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use wildmatch::WildMatch;

/// The programs refused downloads by default, as patterns (`*` and `?`) matched against
/// the base names of the caller's executable and first arguments, and of its parents'.
pub const DEFAULT_BACKGROUND_READERS: &[&str] = &[
    // Thumbnailers: XFCE's tumbler (plugins run inside tumblerd), the GNOME ones that
    // gnome-desktop runs through bwrap (gdk-pixbuf-, evince-, totem-video-,
    // gnome-epub-thumbnailer, gnome-thumbnail-font, ffmpegthumbnailer, …), KDE's thumbnail
    // workers (`kioworker …/thumbnail.so`).
    "tumblerd",
    "*thumbnailer*",
    "*thumbnail-font*",
    "thumbnail.so",
    // Desktop indexers and what they run.
    "tracker-extract*",
    "tracker-miner-fs*",
    "localsearch*",
    "baloo_file*",
    "recollindex",
    // locate's database.
    "updatedb*",
];

/// Which callers are background readers. Built once per mount from the defaults, the
/// user's additions and the programs the user allows.
#[derive(Debug)]
pub struct ReaderPolicy {
    refuse: Vec<(String, WildMatch)>,
    allow: Vec<WildMatch>,
}

impl ReaderPolicy {
    /// The defaults plus `add`; a program matched by a pattern of `allow` is never refused
    /// (`allow` = `["*"]` refuses nobody).
    pub fn new(add: &[String], allow: &[String]) -> ReaderPolicy {
        let mut refuse: Vec<(String, WildMatch)> = Vec::new();
        for p in DEFAULT_BACKGROUND_READERS
            .iter()
            .map(|p| p.to_string())
            .chain(add.iter().cloned())
        {
            if !p.is_empty() && !refuse.iter().any(|(q, _)| *q == p) {
                let m = WildMatch::new(&p);
                refuse.push((p, m));
            }
        }
        let allow: Vec<WildMatch> = allow.iter().map(|a| WildMatch::new(a)).collect();
        if allow.iter().any(|a| a.matches("*") && a.matches("")) {
            refuse.clear();
        }
        ReaderPolicy { refuse, allow }
    }

    /// A policy that refuses nobody.
    pub fn everyone() -> ReaderPolicy {
        ReaderPolicy {
            refuse: Vec::new(),
            allow: Vec::new(),
        }
    }

    /// The patterns refused.
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.refuse.iter().map(|(p, _)| p.as_str())
    }

    /// The first of `names` (program base names) that is refused.
    pub fn matching<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
        names.into_iter().find(|n| {
            !n.is_empty()
                && self.refuse.iter().any(|(_, m)| m.matches(n))
                && !self.allow.iter().any(|a| a.matches(n))
        })
    }

    /// Whether nobody is refused (no need to look at callers then).
    pub fn is_empty(&self) -> bool {
        self.refuse.is_empty()
    }
}

impl Default for ReaderPolicy {
    fn default() -> Self {
        ReaderPolicy::new(&[], &[])
    }
}

/// Who opens a file, as the adapter found out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opener {
    /// A person's program: content is downloaded as needed.
    Person,
    /// A background reader (the program's name): only local content is served.
    Background(String),
}

/// Most program names [`Refusals`] counts separately.
const MAX_NAMES: usize = 32;
/// Most refused files remembered for the thumbnail fail cache.
const MAX_REFUSED_FILES: usize = 4096;

/// The background reads refused so far: a count per program, and the files refused (so a
/// thumbnail that failed for want of content can be retried once the content is local).
#[derive(Debug, Default)]
pub struct Refusals {
    inner: Mutex<RefusalsInner>,
}

#[derive(Debug, Default)]
struct RefusalsInner {
    total: u64,
    by_program: BTreeMap<String, u64>,
    files: HashMap<u64, ()>,
}

impl Refusals {
    /// Counts one refused open of `ino` by `program`.
    pub fn note(&self, program: &str, ino: u64) {
        let mut r = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        r.total += 1;
        if r.by_program.len() < MAX_NAMES || r.by_program.contains_key(program) {
            *r.by_program.entry(program.to_string()).or_default() += 1;
        } else {
            *r.by_program.entry("others".to_string()).or_default() += 1;
        }
        if r.files.len() >= MAX_REFUSED_FILES && !r.files.contains_key(&ino) {
            // Bounded: forgetting only leaves a failed thumbnail in place.
            r.files.clear();
        }
        r.files.insert(ino, ());
    }

    /// How many opens were refused, in all and per program.
    pub fn counts(&self) -> (u64, Vec<(String, u64)>) {
        let r = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (
            r.total,
            r.by_program.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        )
    }

    /// The refused files, forgetting those `is_local` says are local now.
    pub fn take_local(&self, mut is_local: impl FnMut(u64) -> bool) -> Vec<u64> {
        let mut r = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let local: Vec<u64> = r.files.keys().copied().filter(|&i| is_local(i)).collect();
        for i in &local {
            r.files.remove(i);
        }
        local
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_scanners_and_not_people() {
        let p = ReaderPolicy::default();
        for n in [
            "tumblerd",
            "gdk-pixbuf-thumbnailer",
            "evince-thumbnailer",
            "totem-video-thumbnailer",
            "ffmpegthumbnailer",
            "gnome-epub-thumbnailer",
            "gnome-thumbnail-font",
            "thumbnail.so",
            "tracker-extract-3",
            "localsearch-extractor-3",
            "baloo_file_extractor",
            "updatedb.plocate",
        ] {
            assert_eq!(p.matching([n]), Some(n), "{n}");
        }
        for n in [
            "cat", "eog", "nautilus", "thunar", "python3", "cp", "bwrap", "",
        ] {
            assert_eq!(p.matching([n]), None, "{n}");
        }
        assert_eq!(p.matching(["bash", "tumblerd"]), Some("tumblerd"));
    }

    #[test]
    fn additions_and_removals() {
        let p = ReaderPolicy::new(&["clamscan".into()], &["tumblerd".into()]);
        assert_eq!(p.matching(["clamscan"]), Some("clamscan"));
        assert_eq!(p.matching(["tumblerd"]), None);
        // An allowed program is exempt; the pattern still refuses the others.
        let p = ReaderPolicy::new(&[], &["ffmpegthumbnailer".into()]);
        assert_eq!(p.matching(["ffmpegthumbnailer"]), None);
        assert!(p.matching(["gdk-pixbuf-thumbnailer"]).is_some());
        let p = ReaderPolicy::new(&[], &["*".into()]);
        assert!(p.is_empty());
        assert!(ReaderPolicy::everyone().is_empty());
    }

    #[test]
    fn refusals_count_and_forget() {
        let r = Refusals::default();
        r.note("tumblerd", 5);
        r.note("tumblerd", 6);
        r.note("tracker-extract-3", 5);
        let (total, by) = r.counts();
        assert_eq!(total, 3);
        assert_eq!(
            by,
            vec![("tracker-extract-3".into(), 1), ("tumblerd".into(), 2)]
        );
        assert_eq!(r.take_local(|i| i == 6), vec![6]);
        assert!(r.take_local(|i| i == 6).is_empty());
        assert_eq!(r.take_local(|_| true), vec![5]);
    }
}
