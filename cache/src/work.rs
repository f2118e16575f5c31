//! Working copies: the mutable local content of entries being edited, one file per entry in
//! `work/<entry as 16 hex digits>`.
//!
//! Working copies are outside the byte budget: eviction, [`crate::Cache::free`] and
//! [`crate::Cache::remove_entry`] never touch them, and opening the cache keeps them (they hold
//! changes not uploaded yet). [`WorkCopies::checkout`] makes one from a cached blob,
//! [`WorkCopies::create_empty`] makes an empty one, and [`WorkCopies::adopt`] turns an uploaded
//! one into an ordinary clean blob. Operations on one entry's working copy are expected to be
//! serialized by the caller (per inode); different entries are independent.

use crate::blob::Blob;
use crate::dir;
use crate::error::CacheError;
use crate::key::BlobKey;
use crate::shared::{MoveOut, Shared};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
#[cfg(unix)]
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
fn remove_temps(work_dir: &Path) -> Result<usize, CacheError> {
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

/// The working copies in `work/`.
pub(crate) struct WorkCopies {
    dir: PathBuf,
}

impl WorkCopies {
    /// The working copies in `dir` (which exists); deletes the temp files of an interrupted
    /// copy.
    pub(crate) fn recover(dir: PathBuf) -> Result<WorkCopies, CacheError> {
        let wiped = remove_temps(&dir)?;
        if wiped > 0 {
            tracing::info!(
                count = wiped,
                "cache: discarded interrupted working copy copies"
            );
        }
        Ok(WorkCopies { dir })
    }

    /// The path of `entry`'s working copy (whether or not it exists).
    pub(crate) fn path(&self, entry: u64) -> PathBuf {
        self.dir.join(file_name(entry))
    }

    /// Opens `entry`'s existing working copy read+write (not following a symlink on Unix);
    /// `None` if it has none.
    pub(crate) fn open(&self, entry: u64) -> Result<Option<File>, CacheError> {
        let path = self.path(entry);
        match dir::open_read_write(&path) {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CacheError::io("open", &path, e)),
        }
    }

    /// Makes the working copies' directory entries durable.
    pub(crate) fn sync_dir(&self) -> Result<(), CacheError> {
        dir::sync_dir(&self.dir)
    }

    /// Creates `entry`'s working copy empty (truncating an existing one), open read+write and
    /// not synced (see [`crate::Cache::work_create_empty`]).
    pub(crate) fn create_empty(&self, entry: u64) -> Result<File, CacheError> {
        let path = self.path(entry);
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(true);
        #[cfg(unix)]
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
        let file = options
            .open(&path)
            .map_err(|e| CacheError::io("create", &path, e))?;
        Ok(file)
    }

    /// Turns the complete blob `key` into the working copy of `key.entry`: moved out of the
    /// cache if nothing needs it there, else copied (see [`crate::Cache::checkout`]).
    pub(crate) fn checkout(&self, shared: &Arc<Shared>, key: &BlobKey) -> Result<File, CacheError> {
        let path = self.path(key.entry);
        ensure_absent(&path, key.entry)?;
        let not_found = || CacheError::NotFound {
            entry: key.entry,
            version: key.version.clone(),
        };
        match shared.move_out(key, &path)? {
            MoveOut::Moved(file) => {
                dir::sync_dir(&self.dir)?;
                return Ok(file);
            }
            MoveOut::Missing => return Err(not_found()),
            MoveOut::InUse => {}
        }
        let blob = Blob::open(shared, key).ok_or_else(not_found)?;
        let (mut tmp, tmp_path) = self.create_temp(shared)?;
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
            let _st = shared.lock();
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
        dir::sync_dir(&self.dir)?;
        tmp.seek(SeekFrom::Start(0))
            .map_err(|e| CacheError::io("seek", &path, e))?;
        Ok(tmp)
    }

    /// Creates a unique temp file in `work/`, open read+write.
    fn create_temp(&self, shared: &Shared) -> Result<(File, PathBuf), CacheError> {
        loop {
            let path = self.dir.join(format!(
                "{TMP_PREFIX}{}-{:x}",
                std::process::id(),
                shared.next_tmp_seq()
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

    /// Moves `entry`'s uploaded working copy into the cache as the clean complete blob
    /// `(entry, version)` (see [`crate::Cache::adopt`]).
    pub(crate) fn adopt(
        &self,
        shared: &Arc<Shared>,
        entry: u64,
        version: &str,
    ) -> Result<(), CacheError> {
        let path = self.path(entry);
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
        let (_, file_name) = shared.install(&key, &path, len, 0, 0)?;
        // Synced and indexed in the background, batched with others: a crash before that
        // loses the cached copy only (the server has the content; an unindexed blob is
        // deleted at the next open, and a working copy of a clean entry at recovery).
        shared.index_when_synced(key, file_name);
        Ok(())
    }

    /// The path of `entry`'s upload base.
    fn base_path(&self, entry: u64) -> PathBuf {
        self.dir.join(format!("{}{BASE_SUFFIX}", file_name(entry)))
    }

    /// Gives `entry`'s working copy a second name, its upload's base, and returns the base
    /// open for reading (see [`crate::Cache::work_link_base`]).
    pub(crate) fn link_base(&self, entry: u64) -> Result<File, CacheError> {
        let base = self.base_path(entry);
        match fs::remove_file(&base) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(CacheError::io("remove", &base, e)),
        }
        let work = self.path(entry);
        fs::hard_link(&work, &base).map_err(|e| CacheError::io("link", &base, e))?;
        File::open(&base).map_err(|e| CacheError::io("open", &base, e))
    }

    /// The base an upload of `entry` left (running, or cut short by a crash), if any.
    pub(crate) fn base(&self, entry: u64) -> Result<Option<File>, CacheError> {
        let base = self.base_path(entry);
        match File::open(&base) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CacheError::io("open", &base, e)),
        }
    }

    /// Forgets `entry`'s upload base (the upload ended).
    pub(crate) fn remove_base(&self, entry: u64) -> Result<(), CacheError> {
        let base = self.base_path(entry);
        match fs::remove_file(&base) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CacheError::io("remove", &base, e)),
        }
    }

    /// Replaces `entry`'s working copy with a copy if it is still the file an upload reads;
    /// returns whether it copied.
    pub(crate) fn fork(&self, entry: u64) -> Result<bool, CacheError> {
        let work = self.path(entry);
        let base = self.base_path(entry);
        let (Ok(w), Ok(b)) = (fs::metadata(&work), fs::metadata(&base)) else {
            return Ok(false);
        };
        if !same_file(&w, &b) {
            return Ok(false);
        }
        let tmp = self.dir.join(format!(
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
        dir::sync_dir(&self.dir)?;
        Ok(true)
    }

    /// Deletes `entry`'s working copy and its upload base; returns whether the copy existed.
    pub(crate) fn remove(&self, entry: u64) -> Result<bool, CacheError> {
        self.remove_base(entry)?;
        self.remove_keep_base(entry)
    }

    /// Deletes `entry`'s working copy but keeps an upload's base.
    pub(crate) fn remove_keep_base(&self, entry: u64) -> Result<bool, CacheError> {
        let path = self.path(entry);
        match fs::remove_file(&path) {
            Ok(()) => {
                dir::sync_dir(&self.dir)?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(CacheError::io("remove", &path, e)),
        }
    }

    /// Every working copy as `(entry, length in bytes)`, sorted by entry; other names are
    /// skipped with a warning.
    pub(crate) fn entries(&self) -> Result<Vec<(u64, u64)>, CacheError> {
        self.scan(true)
    }

    /// Total length of all working copies in bytes (0 if `work/` cannot be listed).
    pub(crate) fn bytes(&self) -> u64 {
        match self.scan(false) {
            Ok(entries) => entries.iter().map(|&(_, len)| len).sum(),
            Err(err) => {
                tracing::warn!(%err, "cache: listing working copies failed");
                0
            }
        }
    }

    /// Lists `work/`; `warn` logs names that are not working copies.
    fn scan(&self, warn: bool) -> Result<Vec<(u64, u64)>, CacheError> {
        let work_dir = &self.dir;
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
