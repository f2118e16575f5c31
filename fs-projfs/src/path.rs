//! Paths as ProjFS passes them (relative to the virtualization root, `\`-separated) and the
//! Windows rules for which remote names can be projected at all.

use std::fmt;

use crate::name_order::SortKey;

/// A path below the virtualization root, as components. The root is the empty path.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct VirtPath {
    parts: Vec<String>,
}

impl VirtPath {
    /// The virtualization root.
    pub fn root() -> VirtPath {
        VirtPath::default()
    }

    /// A ProjFS path: components separated by `\` (a `/` is accepted too); empty
    /// components (doubled, leading or trailing separators) are ignored.
    pub fn parse(s: &str) -> VirtPath {
        VirtPath {
            parts: s
                .split(['\\', '/'])
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }

    /// The path from its components.
    pub fn from_parts<I, S>(parts: I) -> VirtPath
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        VirtPath {
            parts: parts.into_iter().map(Into::into).collect(),
        }
    }

    /// The components.
    pub fn parts(&self) -> &[String] {
        &self.parts
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.parts.is_empty()
    }

    /// The last component.
    pub fn name(&self) -> Option<&str> {
        self.parts.last().map(String::as_str)
    }

    /// The parent folder (the root's parent is `None`).
    pub fn parent(&self) -> Option<VirtPath> {
        let (_, head) = self.parts.split_last()?;
        Some(VirtPath {
            parts: head.to_vec(),
        })
    }

    /// This path with `name` appended.
    pub fn join(&self, name: &str) -> VirtPath {
        let mut parts = self.parts.clone();
        parts.push(name.to_string());
        VirtPath { parts }
    }

    /// The identity Windows gives this path: components compared case-insensitively
    /// ([`crate::name_order`]). Two paths with equal keys are the same file.
    pub fn key(&self) -> Vec<SortKey> {
        self.parts.iter().map(|p| SortKey::new(p)).collect()
    }

    /// Whether `self` is `ancestor` or lies below it (case-insensitively).
    pub fn starts_with(&self, ancestor: &VirtPath) -> bool {
        ancestor.parts.len() <= self.parts.len()
            && ancestor
                .parts
                .iter()
                .zip(&self.parts)
                .all(|(a, b)| crate::name_order::same_name(a, b))
    }

    /// `self` with its prefix `from` (which it must start with) replaced by `to`.
    pub fn rebase(&self, from: &VirtPath, to: &VirtPath) -> Option<VirtPath> {
        if !self.starts_with(from) {
            return None;
        }
        let mut parts = to.parts.clone();
        parts.extend(self.parts[from.parts.len()..].iter().cloned());
        Some(VirtPath { parts })
    }
}

impl fmt::Display for VirtPath {
    /// The ProjFS form: `a\b\c`, empty for the root.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.parts.join("\\"))
    }
}

impl fmt::Debug for VirtPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

/// Why a remote name cannot appear in a Windows folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unprojectable {
    /// Contains `< > : " / \ | ? *` or a control character.
    ReservedCharacter,
    /// Ends with a space or a dot (Win32 strips them, so the name could not be opened).
    TrailingDotOrSpace,
    /// A DOS device name (`CON`, `NUL`, `COM1`, …), with or without an extension.
    DeviceName,
    /// Longer than 255 UTF-16 units.
    TooLong,
}

/// Whether a name from the server can be a file or folder name on Windows. Names that
/// cannot are left out of listings (and logged) rather than failing the whole folder.
pub fn check_windows_name(name: &str) -> Result<(), Unprojectable> {
    if name.encode_utf16().count() > 255 {
        return Err(Unprojectable::TooLong);
    }
    if name
        .chars()
        .any(|c| c < ' ' || matches!(c, '<' | '>' | ':' | '"' | '/' | '\\' | '|' | '?' | '*'))
    {
        return Err(Unprojectable::ReservedCharacter);
    }
    if name.ends_with(['.', ' ']) {
        return Err(Unprojectable::TrailingDotOrSpace);
    }
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    let upper = stem.to_ascii_uppercase();
    let device = matches!(upper.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || (upper.len() == 4
            && (upper.starts_with("COM") || upper.starts_with("LPT"))
            && upper.as_bytes()[3].is_ascii_digit()
            && upper.as_bytes()[3] != b'0');
    if device {
        return Err(Unprojectable::DeviceName);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let p = VirtPath::parse("Docs\\Reports\\q1.xlsx");
        assert_eq!(p.parts(), ["Docs", "Reports", "q1.xlsx"]);
        assert_eq!(p.to_string(), "Docs\\Reports\\q1.xlsx");
        assert_eq!(p.name(), Some("q1.xlsx"));
        assert_eq!(p.parent(), Some(VirtPath::parse("Docs\\Reports")));
        assert!(VirtPath::parse("").is_root());
        assert!(VirtPath::parse("\\").is_root());
        assert_eq!(
            VirtPath::parse("a\\\\b\\"),
            VirtPath::from_parts(["a", "b"])
        );
        assert_eq!(VirtPath::root().parent(), None);
        assert_eq!(VirtPath::root().join("x").to_string(), "x");
    }

    #[test]
    fn keys_are_case_insensitive() {
        assert_eq!(
            VirtPath::parse("DOCS\\Été.txt").key(),
            VirtPath::parse("docs\\ÉTÉ.TXT").key()
        );
        assert_ne!(
            VirtPath::parse("docs\\a").key(),
            VirtPath::parse("docs\\b").key()
        );
    }

    #[test]
    fn prefixes_and_rebase() {
        let dir = VirtPath::parse("Projects\\Old");
        let file = VirtPath::parse("projects\\old\\notes.txt");
        assert!(file.starts_with(&dir));
        assert!(!dir.starts_with(&file));
        assert!(!VirtPath::parse("Projects\\Older").starts_with(&dir));
        assert_eq!(
            file.rebase(&dir, &VirtPath::parse("Archive\\2023")),
            Some(VirtPath::parse("Archive\\2023\\notes.txt"))
        );
        assert_eq!(VirtPath::parse("x").rebase(&dir, &VirtPath::root()), None);
    }

    #[test]
    fn windows_name_rules() {
        assert_eq!(check_windows_name("report.docx"), Ok(()));
        assert_eq!(check_windows_name("Ünïcødé ✓.txt"), Ok(()));
        assert_eq!(
            check_windows_name("a:b"),
            Err(Unprojectable::ReservedCharacter)
        );
        assert_eq!(
            check_windows_name("what?"),
            Err(Unprojectable::ReservedCharacter)
        );
        assert_eq!(
            check_windows_name("tab\there"),
            Err(Unprojectable::ReservedCharacter)
        );
        assert_eq!(
            check_windows_name("dots..."),
            Err(Unprojectable::TrailingDotOrSpace)
        );
        assert_eq!(
            check_windows_name("space "),
            Err(Unprojectable::TrailingDotOrSpace)
        );
        assert_eq!(check_windows_name("CON"), Err(Unprojectable::DeviceName));
        assert_eq!(
            check_windows_name("nul.txt"),
            Err(Unprojectable::DeviceName)
        );
        assert_eq!(
            check_windows_name("com1.log"),
            Err(Unprojectable::DeviceName)
        );
        assert_eq!(check_windows_name("LPT9"), Err(Unprojectable::DeviceName));
        assert_eq!(check_windows_name("COM0"), Ok(()));
        assert_eq!(check_windows_name("console.txt"), Ok(()));
        assert_eq!(check_windows_name("CONFIG"), Ok(()));
        assert_eq!(
            check_windows_name(&"x".repeat(256)),
            Err(Unprojectable::TooLong)
        );
        assert_eq!(check_windows_name(&"x".repeat(255)), Ok(()));
    }
}
