//! Names that stay local: editors' lock, swap and temp files are kept in the cache and
//! shown in the mount, but never uploaded.

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

/// Glob patterns (`*` any run of characters, `?` one character) matched against a name.
#[derive(Clone, Debug, Default)]
pub struct IgnoreList {
    patterns: Vec<Vec<char>>,
}

impl IgnoreList {
    /// A list of these patterns.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> IgnoreList {
        IgnoreList {
            patterns: patterns
                .iter()
                .map(|p| p.as_ref().chars().collect())
                .collect(),
        }
    }

    /// The default list ([`DEFAULT_IGNORE`]).
    pub fn defaults() -> IgnoreList {
        IgnoreList::new(DEFAULT_IGNORE)
    }

    /// Whether `name` matches any pattern.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        self.patterns.iter().any(|p| glob(p, &name))
    }
}

/// Iterative wildcard match with single-star backtracking (linear in practice).
fn glob(p: &[char], s: &[char]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
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
    }
}
