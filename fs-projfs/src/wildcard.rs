//! Search expressions as ProjFS matches them (`PrjFileNameMatch`), in plain Rust.
//!
//! `PrjFileNameMatch` is the kernel's `FsRtlIsNameInExpression` with `IgnoreCase`, the rules
//! of [MS-FSA] 2.1.4.4. A directory enumeration passes the expression the application gave
//! `FindFirstFile`, after the Win32 layer rewrote it for DOS compatibility into the three
//! DOS wildcards: `*.*` becomes `*`, every `?` becomes `>`, a `*` before a `.` becomes `<`,
//! and a `.` before a wildcard or at the end becomes `"` (so `*.` arrives as `<"`):
//!
//! | in the expression | matches |
//! | --- | --- |
//! | `*` | zero or more characters |
//! | `?` | exactly one character |
//! | `<` (DOS_STAR) | zero or more characters, up to and including the *last* `.` of the name; after consuming that `.` the expression moves on |
//! | `>` (DOS_QM) | one character; at a `.` or past the end of the name it matches nothing and the expression moves on (so `>>>` matches up to three characters of a base name) |
//! | `"` (DOS_DOT) | a `.`, or nothing past the end of the name |
//! | anything else | that character, case-insensitively ([`crate::name_order::upcase_unit`]) |
//!
//! Characters are UTF-16 code units, as in the kernel: `?` matches one unit, so a character
//! outside the Basic Multilingual Plane needs `??`. A backslash is an ordinary character.
//! An empty name matches only the empty expression. An absent or empty *search
//! expression* in an enumeration means "everything" ([`Pattern::parse`]); that is the
//! enumeration's rule, not the matcher's.

use crate::name_order::upcase_unit;

const STAR: u16 = b'*' as u16;
const QM: u16 = b'?' as u16;
const DOS_STAR: u16 = b'<' as u16;
const DOS_QM: u16 = b'>' as u16;
const DOS_DOT: u16 = b'"' as u16;
const DOT: u16 = b'.' as u16;

/// Whether `s` contains any of the five wildcard characters (`PrjDoesNameContainWildCards`).
pub fn has_wildcards(s: &str) -> bool {
    s.chars().any(|c| matches!(c, '*' | '?' | '<' | '>' | '"'))
}

/// Whether `name` matches `expression` (`PrjFileNameMatch`).
pub fn matches(name: &str, expression: &str) -> bool {
    Pattern::compile(expression).is_match(name)
}

/// A compiled search expression, reused for every entry of an enumeration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    /// Upcased UTF-16 units; `None` matches every name.
    units: Option<Vec<u16>>,
}

impl Pattern {
    /// The pattern every name matches.
    pub fn all() -> Pattern {
        Pattern { units: None }
    }

    /// An enumeration's search expression: absent, empty and a lone `*` match everything.
    pub fn parse(expression: Option<&str>) -> Pattern {
        match expression {
            None | Some("") | Some("*") => Pattern::all(),
            Some(e) => Pattern::compile(e),
        }
    }

    /// `expression` as `PrjFileNameMatch` reads it (no special case for empty).
    pub fn compile(expression: &str) -> Pattern {
        Pattern {
            units: Some(expression.encode_utf16().map(upcase_unit).collect()),
        }
    }

    /// Whether this pattern matches every name.
    pub fn is_all(&self) -> bool {
        self.units.is_none()
    }

    /// Whether `name` matches.
    pub fn is_match(&self, name: &str) -> bool {
        let Some(expr) = &self.units else {
            return true;
        };
        let name: Vec<u16> = name.encode_utf16().map(upcase_unit).collect();
        if name.is_empty() {
            return expr.is_empty();
        }
        is_match_units(expr, &name)
    }
}

/// The matcher: `ok[i][j]` says whether `expr[i..]` matches `name[j..]`, filled from the
/// end so every case reads only cells already known (O(|expr|·|name|), no recursion).
fn is_match_units(expr: &[u16], name: &[u16]) -> bool {
    let (n, m) = (expr.len(), name.len());
    let last_dot = name.iter().rposition(|&u| u == DOT);
    let width = m + 1;
    let mut ok = vec![false; (n + 1) * width];
    ok[n * width + m] = true;
    for i in (0..n).rev() {
        for j in (0..=m).rev() {
            let at = |i: usize, j: usize| ok[i * width + j];
            let end = j == m;
            let c = if end { 0 } else { name[j] };
            let v = match expr[i] {
                STAR => at(i + 1, j) || (!end && at(i, j + 1)),
                DOS_STAR => {
                    at(i + 1, j)
                        || (!end
                            && if Some(j) == last_dot {
                                // The final '.' may be consumed, and ends the DOS_STAR.
                                at(i + 1, j + 1)
                            } else {
                                at(i, j + 1)
                            })
                }
                DOS_QM => {
                    if end || c == DOT {
                        at(i + 1, j)
                    } else {
                        at(i + 1, j + 1)
                    }
                }
                DOS_DOT => {
                    if end {
                        at(i + 1, j)
                    } else {
                        c == DOT && at(i + 1, j + 1)
                    }
                }
                QM => !end && at(i + 1, j + 1),
                literal => !end && literal == c && at(i + 1, j + 1),
            };
            ok[i * width + j] = v;
        }
    }
    ok[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expression, name, expected: results of the real `FsRtlIsNameInExpression` with
    /// IgnoreCase, as published in ReactOS' kernel-mode test suite (checked on Windows).
    const KERNEL_CASES: &[(&str, &str, bool)] = &[
        ("", "", true),
        ("", "a", false),
        ("*", "a", true),
        ("*", "", false),
        ("**", "", false),
        ("**", "a", true),
        ("ntdll.dll", "ntdll.dll", true),
        ("smss.exe", "NTDLL.DLL", false),
        ("nt??krnl.???", "ntoskrnl.exe", true),
        ("he*o", "hello", true),
        ("he*o", "helo", true),
        ("he*o", "hella", false),
        ("*.cpl", "kdcom.dll", false),
        ("F0_*.*", "f0_", false),
        ("F0_*.*", "f0_.", true),
        ("F0_*.*", "f0_001", false),
        ("F0_*.*", "f0_001.txt", true),
        ("F0_*.", "f0_.", true),
        ("F0_*.", "F0_001.", true),
        ("F0_*.", "f0_001.txt", false),
        ("F0_<\"*", "f0_", true),
        ("F0_<\"*", "f0_.", true),
        ("F0_<\"*", "F0_001", true),
        ("F0_<\"*", "f0_001.txt", true),
        ("F0_<\"*", "SETUP.EXE", false),
        ("*", ".", true),
        ("*", "..", true),
        (".*", "1", false),
        (".*", ".", true),
        (".*", "1.txt", false),
        (".*", ".txt", true),
        ("\"ntoskrnl.exe", "ntoskrnl.exe", false),
        ("ntoskrnl\"exe", "ntoskrnl.exe", true),
        ("ntoskrn\".exe", "ntoskrnl.exe", false),
        ("ntoskrn\"\"exe", "ntoskrnl.exe", false),
        ("ntoskrnl.\"exe", "ntoskrnl.exe", false),
        ("ntoskrnl.exe\"", "ntoskrnl.exe", true),
        ("*.c.d", "a.b.c.d", true),
        ("*.?.c.d", "a.b.c.d", true),
        ("**.?.c.d", "a.b.c.d", true),
        ("a.**.c.d", "a.b.c.d", true),
        ("a.b.??.d", "a.b.c1.d", true),
        ("a.b.??.d", "a.b.c.d", false),
        ("a.b.*?.d", "a.b.c.d", true),
        ("a.b.*??.d", "a.b.ccc.d", true),
        ("a.b.*??.d", "a.b.c.d", false),
        ("a.b.*?*.d", "a.b.c.d", true),
        ("*?", "a", true),
        ("*?", "aaa", true),
        ("?*?", "a", false),
        ("?*?", "aa", true),
        ("C:\\ReactOS\\**", "C:\\ReactOS\\dings.bmp", true),
        ("C:\\Windows\\*a*", "C:\\ReactOS\\dings.bmp", false),
        ("*.bmp;*.dib", "winhlp32.exe", false),
        ("*.*.*.*", "127.0.0.1", true),
        ("*?*?*?*", "1.0.0.1", true),
        ("?.?.?.?", "1.0.0.1", true),
        ("*a*ab*abc", "aabaabcdadabdabc", true),
        ("ab<exe", "abcd.exe", true),
        ("ab<exe", "ab.exe", true),
        ("ab<exe", "abcdexe", true),
        ("ab<exe", "acd.exe", false),
        ("a.b<exe", "a.bcd.exe", true),
        ("a<b.exe", "a.bcd.exe", false),
        ("abc.exe", "abc.exe.", false),
        ("abc.exe", "abc.exes", false),
        ("a>c.exe", "abc.exe", true),
        ("a>c.exe", "ac.exe", false),
        ("a>>>exe", "abc.exe", false),
        ("a>>>exe", "ac.exe", false),
        ("<.exe", "test.exe", true),
        ("<.EXE", "test.exe", true),
    ];

    #[test]
    fn agrees_with_the_kernel_on_published_cases() {
        for &(expr, name, want) in KERNEL_CASES {
            assert_eq!(matches(name, expr), want, "{expr:?} vs {name:?}");
        }
    }

    #[test]
    fn star_and_question_mark() {
        assert!(matches("report.docx", "*.DOCX"));
        assert!(matches("Report 2024.docx", "report ????.*"));
        assert!(!matches("Report 24.docx", "report ????.*"));
        assert!(matches("a", "?"));
        assert!(!matches("ab", "?"));
        assert!(
            matches("naïve.txt", "NAÏVE.*"),
            "non-ASCII letters match case-insensitively"
        );
        assert!(!matches("😀.txt", "?.txt"), "one ? is one UTF-16 unit");
        assert!(matches("😀.txt", "??.txt"));
    }

    #[test]
    fn dos_wildcards_as_win32_rewrites_them() {
        // FindFirstFile("*.") becomes "<\"*"-style: names without an extension.
        assert!(matches("Makefile", "<\""));
        assert!(!matches("main.rs", "<\""));
        // "name.???" arrives as "name\">>>": extensions of up to three characters.
        assert!(matches("doc.txt", "doc\">>>"));
        assert!(matches("doc.md", "doc\">>>"));
        assert!(
            matches("doc", "doc\">>>"),
            "DOS_DOT matches nothing past the end"
        );
        assert!(!matches("doc.text", "doc\">>>"));
        // "<.txt": any base name, the last extension .txt.
        assert!(matches("a.b.txt", "<.txt"));
        assert!(!matches("a.txt.bak", "<.txt"));
        // "file>" : "file" plus at most one more base-name character.
        assert!(matches("file1", "file>"));
        assert!(matches("file", "file>"));
        assert!(!matches("file12", "file>"));
        assert!(matches("file.txt", "file>.txt"));
    }

    #[test]
    fn enumeration_patterns_treat_absent_and_empty_as_all() {
        assert!(Pattern::parse(None).is_all());
        assert!(Pattern::parse(Some("")).is_all());
        assert!(Pattern::parse(Some("*")).is_all());
        assert!(!Pattern::parse(Some("*.txt")).is_all());
        assert!(Pattern::parse(Some("*.txt")).is_match("A.TXT"));
        assert!(!Pattern::parse(Some("*.txt")).is_match("a.doc"));
        assert!(
            !Pattern::compile("").is_match("a"),
            "the matcher itself has no special case"
        );
    }

    #[test]
    fn wildcard_detection() {
        for w in ["*", "a?", "<", "x>", "\"y"] {
            assert!(has_wildcards(w), "{w}");
        }
        assert!(!has_wildcards("plain name.txt"));
    }
}
