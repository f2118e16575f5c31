//! What a placeholder says about a remote entry: `PRJ_FILE_BASIC_INFO` (size, FILETIMEs,
//! attributes) and `PRJ_PLACEHOLDER_VERSION_INFO` (which version of the content it stands
//! for), computed from fs-core's [`Attr`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edrive_fs_core::{Attr, Kind};

/// `FILE_ATTRIBUTE_READONLY`.
pub const FILE_ATTRIBUTE_READONLY: u32 = 0x1;
/// `FILE_ATTRIBUTE_DIRECTORY`.
pub const FILE_ATTRIBUTE_DIRECTORY: u32 = 0x10;
/// `FILE_ATTRIBUTE_ARCHIVE`: what NTFS gives every ordinary file.
pub const FILE_ATTRIBUTE_ARCHIVE: u32 = 0x20;

/// 100-nanosecond intervals between 1601-01-01 (the FILETIME epoch) and 1970-01-01.
const EPOCH_DIFF_TICKS: i64 = 116_444_736_000_000_000;
const TICKS_PER_SEC: i64 = 10_000_000;

/// A time as a FILETIME: 100-ns ticks since 1601-01-01 UTC. Times before 1601 become 0;
/// times beyond what 64 bits hold saturate.
pub fn filetime(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => {
            let secs = i64::try_from(after.as_secs()).unwrap_or(i64::MAX);
            secs.checked_mul(TICKS_PER_SEC)
                .and_then(|v| v.checked_add(i64::from(after.subsec_nanos() / 100)))
                .and_then(|v| v.checked_add(EPOCH_DIFF_TICKS))
                .unwrap_or(i64::MAX)
        }
        Err(before) => {
            let d = before.duration();
            let ticks = i64::try_from(d.as_secs())
                .ok()
                .and_then(|s| s.checked_mul(TICKS_PER_SEC))
                .and_then(|v| v.checked_add(i64::from(d.subsec_nanos().div_ceil(100))));
            match ticks {
                Some(t) if t <= EPOCH_DIFF_TICKS => EPOCH_DIFF_TICKS - t,
                _ => 0,
            }
        }
    }
}

/// The time a FILETIME stands for (the inverse of [`filetime`] to 100 ns).
pub fn from_filetime(ticks: i64) -> SystemTime {
    let rel = ticks.saturating_sub(EPOCH_DIFF_TICKS);
    let d = |t: i64| {
        let t = t.unsigned_abs();
        Duration::new(
            t / TICKS_PER_SEC as u64,
            ((t % TICKS_PER_SEC as u64) * 100) as u32,
        )
    };
    if rel >= 0 {
        UNIX_EPOCH + d(rel)
    } else {
        UNIX_EPOCH - d(rel)
    }
}

/// `PRJ_FILE_BASIC_INFO` in plain Rust.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BasicInfo {
    /// A folder.
    pub is_dir: bool,
    /// Size in bytes (0 for folders).
    pub size: i64,
    /// FILETIME of creation.
    pub creation: i64,
    /// FILETIME of last access.
    pub last_access: i64,
    /// FILETIME of last write.
    pub last_write: i64,
    /// FILETIME of last change (data or metadata).
    pub change: i64,
    /// `FILE_ATTRIBUTE_*` bits.
    pub attributes: u32,
}

impl BasicInfo {
    /// What ProjFS shows for an entry fs-core describes with `attr`. The server gives one
    /// time (last modification), so every time is that one; a file without any write
    /// permission bit is `READONLY`.
    pub fn from_attr(attr: &Attr) -> BasicInfo {
        let t = filetime(attr.mtime);
        let is_dir = attr.kind == Kind::Dir;
        let mut attributes = if is_dir {
            FILE_ATTRIBUTE_DIRECTORY
        } else {
            FILE_ATTRIBUTE_ARCHIVE
        };
        if !is_dir && attr.perm & 0o222 == 0 {
            attributes |= FILE_ATTRIBUTE_READONLY;
        }
        BasicInfo {
            is_dir,
            size: if is_dir {
                0
            } else {
                i64::try_from(attr.size).unwrap_or(i64::MAX)
            },
            creation: t,
            last_access: t,
            last_write: t,
            change: t,
            attributes,
        }
    }
}

/// Length of `PRJ_PLACEHOLDER_VERSION_INFO`'s two identifiers.
pub const ID_LEN: usize = 128;

/// `PRJ_PLACEHOLDER_VERSION_INFO.ProviderID`: marks placeholders written by edrive.
pub fn provider_id() -> [u8; ID_LEN] {
    let mut id = [0u8; ID_LEN];
    id[..7].copy_from_slice(b"edrive\x01");
    id
}

/// `PRJ_PLACEHOLDER_VERSION_INFO.ContentID`: the inode, size and modification time the
/// placeholder was written for. ProjFS hands it back with every file-data request, so a
/// request for content that changed on the server since is recognized instead of mixing
/// old size and new bytes. (fs-core's `Attr` carries no ETag; a change that keeps both
/// size and modification time is not seen here.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentId {
    /// fs-core's inode.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// FILETIME of the last modification.
    pub mtime: i64,
}

const CONTENT_ID_TAG: u8 = 1;

impl ContentId {
    /// The content id of an entry fs-core describes with `attr`.
    pub fn from_attr(attr: &Attr) -> ContentId {
        ContentId {
            ino: attr.ino,
            size: attr.size,
            mtime: filetime(attr.mtime),
        }
    }

    /// The 128 bytes stored in the placeholder: a tag byte, then the three fields in
    /// little-endian order, then zeros.
    pub fn to_bytes(self) -> [u8; ID_LEN] {
        let mut b = [0u8; ID_LEN];
        b[0] = CONTENT_ID_TAG;
        b[1..9].copy_from_slice(&self.ino.to_le_bytes());
        b[9..17].copy_from_slice(&self.size.to_le_bytes());
        b[17..25].copy_from_slice(&self.mtime.to_le_bytes());
        b
    }

    /// Reads back what [`ContentId::to_bytes`] wrote; `None` for anything else (a
    /// placeholder from another provider version, or all zeros).
    pub fn from_bytes(b: &[u8; ID_LEN]) -> Option<ContentId> {
        if b[0] != CONTENT_ID_TAG || b[25..].iter().any(|&x| x != 0) {
            return None;
        }
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            a
        };
        Some(ContentId {
            ino: u64::from_le_bytes(u64_at(1)),
            size: u64::from_le_bytes(u64_at(9)),
            mtime: i64::from_le_bytes(u64_at(17)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: Kind, size: u64, mtime: SystemTime, perm: u16) -> Attr {
        Attr {
            ino: 42,
            kind,
            size,
            size_known: true,
            mtime,
            atime: mtime,
            ctime: mtime,
            perm,
            nlink: 1,
            uid: 0,
            gid: 0,
        }
    }

    #[test]
    fn filetime_known_values() {
        assert_eq!(filetime(UNIX_EPOCH), 116_444_736_000_000_000);
        // 2024-01-01T00:00:00Z = 1704067200 s.
        let t = UNIX_EPOCH + Duration::from_secs(1_704_067_200);
        assert_eq!(filetime(t), 133_485_408_000_000_000);
        assert_eq!(
            filetime(t + Duration::from_nanos(1_234)),
            133_485_408_000_000_012
        );
        // 1601-01-01 itself, and before it.
        let start = UNIX_EPOCH - Duration::from_secs(11_644_473_600);
        assert_eq!(filetime(start), 0);
        assert_eq!(filetime(start - Duration::from_secs(1)), 0);
        assert_eq!(
            filetime(UNIX_EPOCH - Duration::from_secs(1)),
            116_444_735_990_000_000
        );
    }

    #[test]
    fn filetime_round_trips_to_100ns() {
        for t in [
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::new(1_704_067_200, 123_456_700),
            UNIX_EPOCH - Duration::new(86_400, 500),
        ] {
            assert_eq!(from_filetime(filetime(t)), t);
        }
    }

    #[test]
    fn basic_info_of_files_and_folders() {
        let t = UNIX_EPOCH + Duration::from_secs(1_704_067_200);
        let f = BasicInfo::from_attr(&attr(Kind::File, 1234, t, 0o644));
        assert_eq!(
            f,
            BasicInfo {
                is_dir: false,
                size: 1234,
                creation: 133_485_408_000_000_000,
                last_access: 133_485_408_000_000_000,
                last_write: 133_485_408_000_000_000,
                change: 133_485_408_000_000_000,
                attributes: FILE_ATTRIBUTE_ARCHIVE,
            }
        );
        let ro = BasicInfo::from_attr(&attr(Kind::File, 1, t, 0o444));
        assert_eq!(
            ro.attributes,
            FILE_ATTRIBUTE_ARCHIVE | FILE_ATTRIBUTE_READONLY
        );
        let d = BasicInfo::from_attr(&attr(Kind::Dir, 4096, t, 0o555));
        assert!(d.is_dir);
        assert_eq!(d.size, 0);
        assert_eq!(
            d.attributes, FILE_ATTRIBUTE_DIRECTORY,
            "folders are never READONLY"
        );
    }

    #[test]
    fn content_id_round_trips_and_changes_with_the_content() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let a = ContentId::from_attr(&attr(Kind::File, 10, t, 0o644));
        let bytes = a.to_bytes();
        assert_eq!(bytes[0], 1);
        assert_eq!(&bytes[1..9], &42u64.to_le_bytes());
        assert_eq!(ContentId::from_bytes(&bytes), Some(a));
        assert_ne!(a, ContentId::from_attr(&attr(Kind::File, 11, t, 0o644)));
        let later = t + Duration::from_secs(1);
        assert_ne!(a, ContentId::from_attr(&attr(Kind::File, 10, later, 0o644)));
        assert_eq!(ContentId::from_bytes(&[0u8; ID_LEN]), None);
        assert_eq!(ContentId::from_bytes(&provider_id()), None);
    }
}
