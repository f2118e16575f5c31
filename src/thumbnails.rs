//! Thumbnails refused for want of content get another chance once it is local.
//!
//! A thumbnailer that fails on a file records the failure in its fail cache
//! (`$XDG_CACHE_HOME/thumbnails/fail/APP/MD5.png`, the freedesktop thumbnail spec) and
//! never tries again while the file's mtime stays the same. The drive refuses background
//! readers content that is not local, so once a person reads the file (or a pin fetches
//! it) those entries are removed, and the next view of the folder makes the thumbnail.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use edrive_fs_core::Drive;
use md5::{Digest, Md5};
use percent_encoding::{AsciiSet, CONTROLS};
use tracing::debug;

/// How often files refused earlier are checked.
const EVERY: Duration = Duration::from_secs(2);

/// What GLib's `g_filename_to_uri` escapes in a path (its `UNSAFE_PATH` set): everything
/// but letters, digits and `!$&'()*+,-./:=@_~`.
const URI_PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b';')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Runs for the life of the mount: clears the failed thumbnails of files that became
/// local.
pub async fn retry_failed(drive: Arc<Drive>, mountpoint: PathBuf) {
    let Some(fail_dir) = fail_cache() else {
        return;
    };
    loop {
        tokio::time::sleep(EVERY).await;
        for path in drive.thumbnails_to_retry() {
            let file = mountpoint.join(&path);
            let removed = forget_failure(&fail_dir, &file);
            debug!(%path, removed, "content local now; failed thumbnails cleared");
        }
    }
}

/// `$XDG_CACHE_HOME/thumbnails/fail` (`~/.cache/thumbnails/fail`).
fn fail_cache() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join("thumbnails").join("fail"))
}

/// Removes the fail-cache entries of `file` (every thumbnailer's folder); how many.
fn forget_failure(fail_dir: &Path, file: &Path) -> usize {
    let name = format!("{}.png", uri_md5(file));
    let Ok(apps) = std::fs::read_dir(fail_dir) else {
        return 0;
    };
    apps.flatten()
        .filter(|app| std::fs::remove_file(app.path().join(&name)).is_ok())
        .count()
}

/// The thumbnail spec's name of `file`: the MD5 of its `file://` URI, in hex.
fn uri_md5(file: &Path) -> String {
    let uri = file_uri(file);
    Md5::digest(uri.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `file`'s URI as GLib writes it.
fn file_uri(file: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let bytes = file.as_os_str().as_bytes();
    let encoded: String = percent_encoding::percent_encode(bytes, URI_PATH).collect();
    format!("file://{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_as_glib_writes_them() {
        assert_eq!(
            file_uri(Path::new("/mnt/d/a b/c#d;é.jpg")),
            "file:///mnt/d/a%20b/c%23d%3B%C3%A9.jpg"
        );
        assert_eq!(
            file_uri(Path::new("/x/!$&'()*+,-.:=@_~")),
            "file:///x/!$&'()*+,-.:=@_~"
        );
        // The spec's example: file:///home/jens/photos/me.png
        assert_eq!(
            uri_md5(Path::new("/home/jens/photos/me.png")),
            "c6ee772d9e49320e97ec29a7eb5b1697"
        );
    }
}
