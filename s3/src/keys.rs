//! Paths ↔ object keys, and what a listed key becomes in the mount.
//!
//! A file is an object; a folder is a key prefix ending in `/`, implied by the keys
//! under it or held by a zero-byte marker object named `FOLDER/` (written by `mkdir` so
//! that an empty folder survives). Keys that cannot be names in the mount (`.`, `..`, an
//! empty component from `//`, NUL, over 255 bytes) are skipped with a warning, like the
//! hostile names of a WebDAV listing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edrive_remote::{validate_name, ETag, RemoteEntry, RemotePath};

/// The object key of the file at `path` under `prefix` (empty, or ending in `/`).
pub(crate) fn object_key(prefix: &str, path: &RemotePath) -> String {
    format!("{prefix}{}", path.parts().join("/"))
}

/// The key prefix of the folder at `path`: ends in `/`, except for an empty root prefix.
pub(crate) fn dir_prefix(prefix: &str, path: &RemotePath) -> String {
    if path.is_root() {
        prefix.to_string()
    } else {
        format!("{}/", object_key(prefix, path))
    }
}

/// What a key or common prefix listed under `listed` is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Listed<'a> {
    /// A child with this name.
    Child(&'a str),
    /// The folder's own marker (`listed` itself): not a child.
    Marker,
    /// No usable name: why, for the warning.
    Hostile(String),
}

/// Classifies `key` (an object's key, or a common prefix with its trailing `/` removed)
/// listed under the folder prefix `listed`.
pub(crate) fn classify<'a>(listed: &str, key: &'a str) -> Listed<'a> {
    let Some(rel) = key.strip_prefix(listed) else {
        return Listed::Hostile("outside the listed prefix".into());
    };
    if rel.is_empty() {
        return if key.ends_with('/') || listed.is_empty() {
            Listed::Marker
        } else {
            Listed::Hostile("empty name".into())
        };
    }
    match validate_name(rel) {
        Ok(()) => Listed::Child(rel),
        Err(e) => Listed::Hostile(e.to_string()),
    }
}

/// A folder entry named `name`.
pub(crate) fn dir_entry(name: &str) -> RemoteEntry {
    RemoteEntry {
        name: name.to_string(),
        is_dir: true,
        size: 0,
        size_known: true,
        mtime: None,
        etag: None,
        // S3 has no per-object rights to list; a refused write (403) teaches them.
        access: None,
    }
}

/// A file entry as a listing or HEAD describes it.
pub(crate) fn file_entry(
    name: &str,
    size: Option<u64>,
    etag: Option<&str>,
    mtime: Option<SystemTime>,
) -> RemoteEntry {
    RemoteEntry {
        name: name.to_string(),
        is_dir: false,
        size: size.unwrap_or(0),
        size_known: size.is_some(),
        mtime,
        etag: etag.and_then(ETag::parse),
        access: None,
    }
}

/// A listing's `LastModified` (ISO 8601, `2026-12-07T16:40:58.000Z`).
pub(crate) fn parse_iso(s: &str) -> Option<SystemTime> {
    let t: jiff::Timestamp = s.trim().parse().ok()?;
    let (secs, nanos) = (t.as_second(), t.subsec_nanosecond());
    if secs < 0 || nanos < 0 {
        return UNIX_EPOCH.checked_sub(Duration::new(secs.unsigned_abs(), nanos.unsigned_abs()));
    }
    UNIX_EPOCH.checked_add(Duration::new(secs as u64, nanos as u32))
}

/// Object metadata key of the modification time, as rclone writes it
/// (`X-Amz-Meta-Mtime`), so both tools agree.
pub(crate) const MTIME_META: &str = "x-amz-meta-mtime";

/// A modification time as rclone stores it: seconds since 1970 with nine decimals.
pub(crate) fn format_mtime(t: SystemTime) -> String {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => format!("{}.{:09}", d.as_secs(), d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            // -1.5 s: secs -2, nanos 0.5e9, written as "-1.500000000".
            let (s, n) = (d.as_secs(), d.subsec_nanos());
            format!("-{s}.{n:09}")
        }
    }
}

/// Reads [`format_mtime`]'s form (and plain or fractional seconds of any precision).
pub(crate) fn parse_mtime(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    let mut nanos = 0u32;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
    }
    let d = Duration::new(secs, nanos);
    if neg {
        UNIX_EPOCH.checked_sub(d)
    } else {
        UNIX_EPOCH.checked_add(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_prefixes() {
        let p = RemotePath::from_parts(["a", "b c"]).unwrap();
        assert_eq!(object_key("", &p), "a/b c");
        assert_eq!(object_key("pre/", &p), "pre/a/b c");
        assert_eq!(dir_prefix("pre/", &p), "pre/a/b c/");
        assert_eq!(dir_prefix("", &RemotePath::root()), "");
        assert_eq!(dir_prefix("pre/", &RemotePath::root()), "pre/");
    }

    #[test]
    fn hostile_keys() {
        assert_eq!(classify("d/", "d/x"), Listed::Child("x"));
        assert_eq!(classify("d/", "d/"), Listed::Marker);
        assert_eq!(classify("", "x"), Listed::Child("x"));
        assert!(matches!(classify("d/", "d/."), Listed::Hostile(_)));
        assert!(matches!(classify("d/", "d/.."), Listed::Hostile(_)));
        assert!(matches!(classify("d/", "d/a\0b"), Listed::Hostile(_)));
        assert!(matches!(classify("d/", "e/x"), Listed::Hostile(_)));
        // `d//` listed as a common prefix, its `/` removed: an empty name.
        assert!(matches!(classify("d/", "d/"), Listed::Marker));
        assert!(matches!(
            classify("d/", &"x".repeat(300)),
            Listed::Hostile(_)
        ));
    }

    #[test]
    fn mtimes_as_rclone_writes_them() {
        let t = UNIX_EPOCH + Duration::new(1_696_512_345, 123_456_789);
        assert_eq!(format_mtime(t), "1696512345.123456789");
        assert_eq!(parse_mtime("1696512345.123456789"), Some(t));
        assert_eq!(
            parse_mtime("1696512345.5"),
            Some(UNIX_EPOCH + Duration::new(1_696_512_345, 500_000_000))
        );
        assert_eq!(
            parse_mtime("1000000000"),
            Some(UNIX_EPOCH + Duration::from_secs(1_000_000_000))
        );
        let before = UNIX_EPOCH - Duration::new(5, 250_000_000);
        assert_eq!(parse_mtime(&format_mtime(before)), Some(before));
        for bad in ["", "x", "1e9", "1.2.3", "--1", "1. 5"] {
            assert_eq!(parse_mtime(bad), None, "{bad}");
        }
        assert!(parse_iso("2026-12-07T16:40:58.000Z").is_some());
        assert!(parse_iso("yesterday").is_none());
    }
}
