//! Working copies: the mutable local content of entries being edited, one file per entry in
//! `work/<entry as 16 hex digits>`.
//!
//! Working copies are outside the byte budget: eviction, [`Cache::free`] and
//! [`Cache::remove_entry`] never touch them, and opening the cache keeps them (they hold changes
//! not uploaded yet). [`Cache::checkout`] makes one from a cached blob,
//! [`Cache::work_create_empty`] makes an empty one, and [`Cache::adopt`] turns an uploaded one
//! into an ordinary clean blob. Operations on one entry's working copy are expected to be
//! serialized by the caller (per inode); different entries are independent.

use crate::cache::Cache;
use crate::dir;
use crate::error::CacheError;
use crate::key::BlobKey;
use crate::shared::MoveOut;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
#[cfg(unix)]
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Name prefix of temp files in `work/` (copies in progress); deleted when the cache opens.
const TMP_PREFIX: &str = ".tmp-";

/// Name suffix of an upload's base: a second name for the working copy being uploaded, so
/// the upload reads a stable snapshot once a writer forks the working copy, and so a crash
/// leaves behind what the interrupted upload was sending.
const BASE_SUFFIX: &str = ".base";

/// The file name of `entry`'s working copy.
fn file_name(entry: u64) -> String {
    format!("{entry:016x}")
}

/// The entry of a working copy file name, or `None` if `name` is not one [`file_name`] makes.
fn parse_name(name: &str) -> Option<u64> {
    if name.len() != 16 || !name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(name, 16).ok()
}

/// Deletes temp files left in `work_dir` by an interrupted copy; returns how many.
pub(crate) fn remove_temps(work_dir: &Path) -> Result<usize, CacheError> {
    let mut removed = 0;
    for entry in fs::read_dir(work_dir).map_err(|e| CacheError::io("list", work_dir, e))? {
        let entry = entry.map_err(|e| CacheError::io("list", work_dir, e))?;
        let is_temp = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(TMP_PREFIX));
        if is_temp {
            dir::remove_any(&entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Whether two stats are of the same file.
#[cfg(unix)]
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// Whether two stats are of the same file (no inode numbers here: assume so, which only
/// costs a copy).
#[cfg(not(unix))]
fn same_file(_a: &fs::Metadata, _b: &fs::Metadata) -> bool {
    true
}

/// Fails with [`CacheError::WorkExists`] if something is at `path`.
fn ensure_absent(path: &Path, entry: u64) -> Result<(), CacheError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Err(CacheError::WorkExists { entry }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CacheError::io("stat", path, e)),
    }
}

impl Cache {
    /// The path of `entry`'s working copy (whether or not it exists).
    pub fn work_path(&self, entry: u64) -> PathBuf {
        self.shared.work_dir().join(file_name(entry))
    }

    /// Opens `entry`'s existing working copy read+write (not following a symlink on Unix);
    /// `None` if it has none.
    pub fn work_open(&self, entry: u64) -> Result<Option<File>, CacheError> {
        let path = self.work_path(entry);
        match dir::open_read_write(&path) {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CacheError::io("open", &path, e)),
        }
    }

    /// Makes the working copies' directory entries durable (for an application's `fsync`:
    /// a working copy created since is then found after a power loss).
    pub fn work_sync_dir(&self) -> Result<(), CacheError> {
        dir::sync_dir(self.shared.work_dir())
    }

    /// Creates `entry`'s working copy empty (truncating an existing one) and returns it open
    /// read+write. Nothing is synced: an empty file holds nothing to lose, a crash of the
    /// daemon keeps it anyway, and an application's `fsync` syncs it with its directory
    /// entry (see [`Cache::work_sync_dir`]); untarring thousands of files does not pay two
    /// disk flushes per file.
    pub fn work_create_empty(&self, entry: u64) -> Result<File, CacheError> {
        let path = self.work_path(entry);
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(true);
        #[cfg(unix)]
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
        let file = options
            .open(&path)
            .map_err(|e| CacheError::io("create", &path, e))?;
        Ok(file)
    }

    /// Turns the complete blob `key` into the working copy of `key.entry` and returns it open
    /// read+write, positioned at the start.
    ///
    /// A blob that is not open, pinned or dirty is moved: it leaves the cache (no longer counts
    /// as used). Otherwise it is copied (through a synced temp file) and stays cached. Fails
    /// with [`CacheError::WorkExists`] if the entry already has a working copy (use
    /// [`Cache::work_open`]) and with [`CacheError::NotFound`] if the blob is not cached.
    pub fn checkout(&self, key: &BlobKey) -> Result<File, CacheError> {
        let path = self.work_path(key.entry);
        ensure_absent(&path, key.entry)?;
        let not_found = || CacheError::NotFound {
            entry: key.entry,
            version: key.version.clone(),
        };
        match self.shared.move_out(key, &path)? {
            MoveOut::Moved(file) => {
                dir::sync_dir(self.shared.work_dir())?;
                return Ok(file);
            }
            MoveOut::Missing => return Err(not_found()),
            MoveOut::InUse => {}
        }
        let blob = self.get(key).ok_or_else(not_found)?;
        let (mut tmp, tmp_path) = self.create_work_temp()?;
        let copied = (|| {
            let mut src: &File = blob.file();
            src.seek(SeekFrom::Start(0))
                .map_err(|e| CacheError::io("seek", &tmp_path, e))?;
            let got =
                io::copy(&mut src, &mut tmp).map_err(|e| CacheError::io("copy", &tmp_path, e))?;
            if got != blob.len() {
                return Err(CacheError::LengthMismatch {
                    expected: blob.len(),
                    got,
                });
            }
            tmp.sync_all()
                .map_err(|e| CacheError::io("fsync", &tmp_path, e))?;
            // Under the cache lock, so a concurrent checkout's move cannot slip in between.
            let _st = self.shared.lock();
            ensure_absent(&path, key.entry)?;
            fs::rename(&tmp_path, &path).map_err(|e| CacheError::io("rename", &tmp_path, e))
        })();
        drop(blob);
        if let Err(err) = copied {
            if let Err(rm) = fs::remove_file(&tmp_path) {
                tracing::warn!(path = %tmp_path.display(), err = %rm, "cache: deleting temp copy failed");
            }
            return Err(err);
        }
        dir::sync_dir(self.shared.work_dir())?;
        tmp.seek(SeekFrom::Start(0))
            .map_err(|e| CacheError::io("seek", &path, e))?;
        Ok(tmp)
    }

    /// Creates a unique temp file in `work/`, open read+write.
    fn create_work_temp(&self) -> Result<(File, PathBuf), CacheError> {
        loop {
            let path = self.shared.work_dir().join(format!(
                "{TMP_PREFIX}{}-{:x}",
                std::process::id(),
                self.shared.next_tmp_seq()
            ));
            let mut options = OpenOptions::new();
            options.read(true).write(true).create_new(true);
            #[cfg(unix)]
            options.mode(0o600);
            match options.open(&path) {
                Ok(file) => return Ok((file, path)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(CacheError::io("create", &path, e)),
            }
        }
    }

    /// Publishes `entry`'s uploaded working copy as the clean complete blob `(entry, version)`.
    ///
    /// Moves the file into the cache as the most recently used blob (keeping the
    /// pin of a same-key blob it replaces), drops other versions of the entry that are not open,
    /// pinned or dirty, and enforces the budget (so the new blob may be evicted at once if it
    /// does not fit). Afterwards the entry has no working copy. Handles already open on the
    /// working copy keep reading the same file, but must not write to it any more. Fails with
    /// [`CacheError::NoWorkingCopy`] if there is none and with [`CacheError::Dirty`] if a dirty
    /// blob with the same key exists (the working copy then stays).
    pub fn adopt(&self, entry: u64, version: &str) -> Result<(), CacheError> {
        let path = self.work_path(entry);
        let len = match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => m.len(),
            Ok(_) => {
                let e = io::Error::other("the working copy is not a regular file");
                return Err(CacheError::io("stat", &path, e));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(CacheError::NoWorkingCopy { entry })
            }
            Err(e) => return Err(CacheError::io("stat", &path, e)),
        };
        let key = BlobKey::new(entry, version);
        let (_, file_name) = self.shared.install(&key, &path, len, 0, 0)?;
        // Synced and indexed in the background, batched with others: a crash before that
        // loses the cached copy only (the server has the content; an unindexed blob is
        // deleted at the next open, and a working copy of a clean entry at recovery).
        self.shared.index_when_synced(key, file_name);
        Ok(())
    }

    fn base_path(&self, entry: u64) -> PathBuf {
        self.shared
            .work_dir()
            .join(format!("{}{BASE_SUFFIX}", file_name(entry)))
    }

    /// Starts an upload of `entry`'s working copy: gives it a second name (its base) and
    /// returns the base opened for reading. A writer that comes during the upload calls
    /// [`Cache::work_fork`] and writes to a copy, so the upload's content never changes under
    /// it. A base left by an earlier, interrupted upload is replaced.
    pub fn work_link_base(&self, entry: u64) -> Result<File, CacheError> {
        let base = self.base_path(entry);
        match fs::remove_file(&base) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(CacheError::io("remove", &base, e)),
        }
        let work = self.work_path(entry);
        fs::hard_link(&work, &base).map_err(|e| CacheError::io("link", &base, e))?;
        File::open(&base).map_err(|e| CacheError::io("open", &base, e))
    }

    /// The base an upload of `entry` left (running, or cut short by a crash), if any.
    pub fn work_base(&self, entry: u64) -> Result<Option<File>, CacheError> {
        let base = self.base_path(entry);
        match File::open(&base) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CacheError::io("open", &base, e)),
        }
    }

    /// Forgets `entry`'s upload base (the upload ended).
    pub fn work_remove_base(&self, entry: u64) -> Result<(), CacheError> {
        let base = self.base_path(entry);
        match fs::remove_file(&base) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CacheError::io("remove", &base, e)),
        }
    }

    /// If the working copy of `entry` is still the file an upload reads (its base), replaces
    /// it with a copy, so writes from now on leave the upload's content alone. Returns whether
    /// it copied.
    pub fn work_fork(&self, entry: u64) -> Result<bool, CacheError> {
        let work = self.work_path(entry);
        let base = self.base_path(entry);
        let (Ok(w), Ok(b)) = (fs::metadata(&work), fs::metadata(&base)) else {
            return Ok(false);
        };
        if !same_file(&w, &b) {
            return Ok(false);
        }
        let tmp = self.shared.work_dir().join(format!(
            "{TMP_PREFIX}fork-{}-{}",
            std::process::id(),
            file_name(entry)
        ));
        match fs::copy(&base, &tmp) {
            Ok(_) => {}
            // The upload ended and dropped its base meanwhile: nothing shares the file now.
            Err(e) if e.kind() == io::ErrorKind::NotFound && !base.exists() => {
                let _ = fs::remove_file(&tmp);
                return Ok(false);
            }
            Err(e) => return Err(CacheError::io("copy", &tmp, e)),
        }
        let f = File::open(&tmp).map_err(|e| CacheError::io("open", &tmp, e))?;
        f.sync_all().map_err(|e| CacheError::io("fsync", &tmp, e))?;
        fs::rename(&tmp, &work).map_err(|e| CacheError::io("rename", &work, e))?;
        dir::sync_dir(self.shared.work_dir())?;
        Ok(true)
    }

    /// Deletes `entry`'s working copy; returns whether it existed. Open handles keep working
    /// on the unlinked file (on Unix).
    pub fn work_remove(&self, entry: u64) -> Result<bool, CacheError> {
        self.work_remove_base(entry)?;
        self.work_remove_keep_base(entry)
    }

    /// Deletes `entry`'s working copy but keeps an upload's base (what a crash-cut upload
    /// was sending, still needed to recognise it on the server).
    pub fn work_remove_keep_base(&self, entry: u64) -> Result<bool, CacheError> {
        let path = self.work_path(entry);
        match fs::remove_file(&path) {
            Ok(()) => {
                dir::sync_dir(self.shared.work_dir())?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(CacheError::io("remove", &path, e)),
        }
    }

    /// Every working copy as `(entry, length in bytes)`, sorted by entry (for recovery at
    /// mount time). Names that are not working copies are skipped with a warning; temp files
    /// of a copy in progress are ignored.
    pub fn work_entries(&self) -> Result<Vec<(u64, u64)>, CacheError> {
        self.scan_work(true)
    }

    /// Total length of all working copies in bytes. Lists the directory, so it is meant for
    /// status output, not hot paths; a failure to list is logged and counts as 0.
    pub fn work_bytes(&self) -> u64 {
        match self.scan_work(false) {
            Ok(entries) => entries.iter().map(|&(_, len)| len).sum(),
            Err(err) => {
                tracing::warn!(%err, "cache: listing working copies failed");
                0
            }
        }
    }

    /// Lists `work/`; `warn` logs names that are not working copies.
    fn scan_work(&self, warn: bool) -> Result<Vec<(u64, u64)>, CacheError> {
        let work_dir = self.shared.work_dir();
        let mut out = Vec::new();
        for item in fs::read_dir(work_dir).map_err(|e| CacheError::io("list", work_dir, e))? {
            let item = item.map_err(|e| CacheError::io("list", work_dir, e))?;
            let path = item.path();
            let name = item.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(TMP_PREFIX) || name.ends_with(BASE_SUFFIX) {
                continue;
            }
            let Some(entry) = parse_name(&name) else {
                if warn {
                    tracing::warn!(path = %path.display(), "cache: skipping a file in work/ that is not a working copy");
                }
                continue;
            };
            let meta = match fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(CacheError::io("stat", &path, e)),
            };
            if !meta.is_file() {
                if warn {
                    tracing::warn!(path = %path.display(), "cache: skipping a working copy that is not a regular file");
                }
                continue;
            }
            out.push((entry, meta.len()));
        }
        out.sort_unstable();
        Ok(out)
    }
}
