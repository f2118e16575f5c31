//! Names that stay local: editors' lock, swap and temp files are kept in the cache and
//! shown in the mount, but never uploaded.

use wildmatch::WildMatch;

/// The default list: Office and LibreOffice lock files, vim swap files, backups, macOS and
/// Windows folder metadata, partial downloads and temp files.
pub const DEFAULT_IGNORE: &[&str] = &[
    "~$*",
    ".~lock.*#",
    "*.swp",
    "*.swx",
    "*~",
    ".DS_Store",
    "Thumbs.db",
    "desktop.ini",
    "*.part",
    "*.tmp",
];

/// Wildcard patterns (`*` any run of characters, `?` one character, nothing else special)
/// matched against a whole name, case-sensitively.
#[derive(Clone, Debug, Default)]
pub struct IgnoreList {
    patterns: Vec<WildMatch>,
}

impl IgnoreList {
    /// A list of these patterns.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> IgnoreList {
        IgnoreList {
            patterns: patterns
                .iter()
                .map(|p| WildMatch::new(p.as_ref()))
                .collect(),
        }
    }

    /// The default list ([`DEFAULT_IGNORE`]).
    pub fn defaults() -> IgnoreList {
        IgnoreList::new(DEFAULT_IGNORE)
    }

    /// Whether `name` matches any pattern.
    pub fn matches(&self, name: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_editor_temp_files() {
        let l = IgnoreList::defaults();
        for n in [
            "~$report.docx",
            ".~lock.report.odt#",
            ".notes.txt.swp",
            "notes.txt~",
            ".DS_Store",
            "Thumbs.db",
            "desktop.ini",
            "big.iso.part",
            "x.tmp",
        ] {
            assert!(l.matches(n), "{n}");
        }
        for n in ["report.docx", "notes.txt", "swp", "a.tmpl", "part", "~x"] {
            assert!(!l.matches(n), "{n}");
        }
    }

    #[test]
    fn glob_forms() {
        let l = IgnoreList::new(&["a*b?c", "*"]);
        assert!(l.matches("anything"));
        let l = IgnoreList::new(&["a*b?c"]);
        assert!(l.matches("aXXbYc"));
        assert!(l.matches("abbbzc"));
        assert!(!l.matches("abc"));
        assert!(IgnoreList::new(&["*ab"]).matches("aab"));
        assert!(!IgnoreList::new(&[""]).matches("a"));
    }

    #[test]
    fn question_mark_is_one_character_not_one_byte() {
        let l = IgnoreList::new(&["Entw?rfe", "?"]);
        assert!(l.matches("Entwürfe"));
        assert!(l.matches("é"));
        assert!(!l.matches("Entwrfe"));
        assert!(!l.matches("éé"));
    }

    #[test]
    fn only_star_and_question_mark_are_special() {
        let l = IgnoreList::new(&["notes[1].txt", "{a,b}", "\\x", "*.TMP"]);
        assert!(l.matches("notes[1].txt") && !l.matches("notes1.txt"));
        assert!(l.matches("{a,b}") && !l.matches("a"));
        assert!(l.matches("\\x") && !l.matches("x"));
        assert!(!l.matches("a.tmp"));
    }
}
