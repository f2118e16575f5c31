//! Paths inside the remote tree, made only of validated names.

use std::fmt;

use thiserror::Error;

/// Why a name cannot be an entry in the mount.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NameError {
    /// Empty name.
    #[error("empty name")]
    Empty,
    /// `.` or `..`.
    #[error("name is . or ..")]
    Dot,
    /// Contains `/`.
    #[error("name contains '/'")]
    Slash,
    /// Contains a NUL byte.
    #[error("name contains NUL")]
    Nul,
    /// Longer than 255 bytes (the Linux NAME_MAX).
    #[error("name longer than 255 bytes")]
    TooLong,
}

/// Checks that `name` can be one path component of the mount.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name == "." || name == ".." {
        return Err(NameError::Dot);
    }
    if name.contains('/') {
        return Err(NameError::Slash);
    }
    if name.contains('\0') {
        return Err(NameError::Nul);
    }
    if name.len() > 255 {
        return Err(NameError::TooLong);
    }
    Ok(())
}

/// A path below the mount's root URL, as validated components (no `/`, `.`, `..`, NUL).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RemotePath {
    parts: Vec<String>,
}

impl RemotePath {
    /// The mount's root.
    pub fn root() -> RemotePath {
        RemotePath { parts: Vec::new() }
    }

    /// Builds a path from components, validating each.
    pub fn from_parts<I, S>(parts: I) -> Result<RemotePath, NameError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut out = Vec::new();
        for p in parts {
            let p = p.into();
            validate_name(&p)?;
            out.push(p);
        }
        Ok(RemotePath { parts: out })
    }

    /// This path with one more component.
    pub fn join(&self, name: &str) -> Result<RemotePath, NameError> {
        validate_name(name)?;
        let mut parts = self.parts.clone();
        parts.push(name.to_string());
        Ok(RemotePath { parts })
    }

    /// The components, root first.
    pub fn parts(&self) -> &[String] {
        &self.parts
    }

    /// The last component; `None` for the root.
    pub fn name(&self) -> Option<&str> {
        self.parts.last().map(String::as_str)
    }

    /// The parent path; `None` for the root.
    pub fn parent(&self) -> Option<RemotePath> {
        if self.parts.is_empty() {
            return None;
        }
        Some(RemotePath {
            parts: self.parts[..self.parts.len() - 1].to_vec(),
        })
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.parts.is_empty()
    }
}

impl fmt::Display for RemotePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.parts.is_empty() {
            return f.write_str("/");
        }
        for p in &self.parts {
            write!(f, "/{p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_hostile_names() {
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert_eq!(validate_name("."), Err(NameError::Dot));
        assert_eq!(validate_name(".."), Err(NameError::Dot));
        assert_eq!(validate_name("a/b"), Err(NameError::Slash));
        assert_eq!(validate_name("a\0b"), Err(NameError::Nul));
        assert!(validate_name(&"x".repeat(256)).is_err());
        assert!(validate_name("日本 #%?&+ é 🎉").is_ok());
        assert!(validate_name("...").is_ok());
    }

    #[test]
    fn paths() {
        let p = RemotePath::root().join("a").unwrap().join("b c").unwrap();
        assert_eq!(p.to_string(), "/a/b c");
        assert_eq!(p.parent().unwrap().to_string(), "/a");
        assert_eq!(p.name(), Some("b c"));
        assert!(RemotePath::root().join("..").is_err());
    }
}
