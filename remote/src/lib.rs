//! The remote store as edrive sees it: a tree of folders and files reached by path.
//!
//! [`Remote`] is the only thing the filesystem core (`edrive-fs-core`) knows about a
//! server, and this crate is the boundary between the two: the trait and the types that
//! cross it ([`RemotePath`], [`RemoteEntry`], [`Listing`], [`Download`], [`ETag`],
//! [`Precondition`], [`RemoteError`]), what a server guarantees ([`Capabilities`], learnt
//! by the generic [`capabilities::probe`] through the trait alone), versions for servers
//! that send no ETags ([`versioned::Versioned`]), and the in-memory backends the tests of
//! the layers above run on (`memory`: `MemRemote`, `FaultyRemote`; built for this crate's
//! own tests and, for other crates' tests, with the `testing` feature).
//!
//! Backends implement [`Remote`] in crates of their own: WebDAV is `edrive-webdav`; an S3
//! backend implements the same trait later without touching the metadata store, the cache
//! or the kernel adapters.
//!
//! Not for any protocol (no HTTP, no XML: those belong to a backend crate), nor for what
//! the drive does with a server's answers (metadata store, cache, write-back: fs-core).

pub mod capabilities;
#[cfg(feature = "http")]
pub mod http;
#[cfg(any(test, feature = "testing"))]
pub mod memory;
pub mod versioned;

mod error;
mod path;
mod sized;

pub use capabilities::Capabilities;
pub use error::{again, RemoteError};
pub use path::{validate_name, NameError, RemotePath};
pub use sized::SizedBody;

use std::ops::Range;
use std::pin::Pin;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;

/// A stream of body bytes; ends early with an error, never silently.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, RemoteError>> + Send>>;

/// How a made-up version tag starts ([`ETag::synthetic`]).
pub const SYNTHETIC_ETAG: &str = "edrive-mtime-size:";

/// An entity tag as the server sent it, or one the client made up ([`ETag::synthetic`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ETag {
    /// The opaque value without `W/` and without quotes.
    pub value: String,
    /// Whether the server marked it weak (`W/"..."`).
    pub weak: bool,
}

impl Download {
    /// The version this reply carries, as comparable with a listed version `want`: the
    /// server's ETag, or for a made-up `want` ([`ETag::synthetic`]) the one made up from
    /// the reply in the same way.
    pub fn version_for(&self, want: &str) -> Option<&ETag> {
        if want.starts_with(SYNTHETIC_ETAG) {
            self.made_up.as_ref()
        } else {
            self.etag.as_ref()
        }
    }
}

impl ETag {
    /// Parses a header or property value: `"abc"`, `W/"abc"`, or unquoted `abc`.
    /// Returns `None` (no usable tag) for an empty value, and for one that could not be
    /// sent back in an `If-Match`: characters other than visible ASCII, or a quote inside.
    pub fn parse(raw: &str) -> Option<ETag> {
        let raw = raw.trim();
        let (weak, rest) = match raw.strip_prefix("W/").or_else(|| raw.strip_prefix("w/")) {
            Some(rest) => (true, rest.trim()),
            None => (false, raw),
        };
        let value = rest
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .unwrap_or(rest);
        let usable = |c: char| c.is_ascii_graphic() && c != '"';
        if value.is_empty() || !value.chars().all(usable) {
            return None;
        }
        Some(ETag {
            value: value.to_string(),
            weak,
        })
    }

    /// A version the client makes up from a file's modification time (whole seconds, as
    /// HTTP dates have them) and size, for a server that sends no ETags (nginx). It tells
    /// versions apart as well as those two do, and is never sent to the server.
    pub fn synthetic(mtime: SystemTime, size: u64) -> ETag {
        let secs = match mtime.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i128,
            Err(e) => -(e.duration().as_secs() as i128),
        };
        ETag {
            value: format!("{SYNTHETIC_ETAG}{secs}-{size}"),
            weak: false,
        }
    }

    /// Whether this tag was made up by the client ([`ETag::synthetic`]).
    pub fn is_synthetic(&self) -> bool {
        self.value.starts_with(SYNTHETIC_ETAG)
    }

    /// The value as an HTTP header expects it (`"abc"` or `W/"abc"`).
    pub fn to_header(&self) -> String {
        if self.weak {
            format!("W/\"{}\"", self.value)
        } else {
            format!("\"{}\"", self.value)
        }
    }
}

/// What the server says about one file or folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteEntry {
    /// The entry's own name (one validated path component); empty for the listed folder
    /// itself and for the root.
    pub name: String,
    /// Folder (collection) or file.
    pub is_dir: bool,
    /// Content length in bytes; 0 for folders, and 0 when `size_known` is false.
    pub size: u64,
    /// Whether `size` is what the server said. False for a file whose length the server
    /// did not give, or gave as something that is no length (`-5`, `1e30`, `abc`): the
    /// size is then unknown (never taken as 0) until a download finds it.
    pub size_known: bool,
    /// Last modification time, if the server sent a parseable one.
    pub mtime: Option<SystemTime>,
    /// The version tag, if the server sent one.
    pub etag: Option<ETag>,
    /// What this user may do with it, where the server says (WebDAV's
    /// `current-user-privilege-set`, Nextcloud's `oc:permissions`); `None`: not said.
    pub access: Option<Access>,
}

/// What the server lets this user do with an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Change it: write a file's content, add entries to a folder.
    pub change: bool,
    /// Delete, rename or move it.
    pub remove: bool,
}

/// One folder's listing: the folder itself and its direct children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// The listed folder.
    pub dir: RemoteEntry,
    /// Its children, names unique and valid; hostile or duplicate names already dropped
    /// (with a warning in the log).
    pub children: Vec<RemoteEntry>,
    /// Whether the reply vouched for every child. False when some response could not be
    /// used (unusable href, failed per-entry status, an href outside the folder, the folder
    /// itself missing): such a listing may add and update entries but never proves that an
    /// entry it lacks was deleted.
    pub complete: bool,
}

/// Takes a listing's children one at a time as they are parsed (see
/// [`Remote::list_each`]); an error stops the listing with it.
pub type ChildSink = Box<dyn FnMut(RemoteEntry) -> Result<(), RemoteError> + Send>;

/// A listing whose children went to a [`ChildSink`]: everything else about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListingHead {
    /// The listed folder.
    pub dir: RemoteEntry,
    /// Whether the reply vouched for every child (see [`Listing::complete`]).
    pub complete: bool,
    /// How many children went to the sink.
    pub children: usize,
}

/// A response body being downloaded.
pub struct Download {
    /// Bytes the server promised (Content-Length, or the length of the served range).
    pub len: Option<u64>,
    /// The version the server is sending, if it said.
    pub etag: Option<ETag>,
    /// The version made up from the reply's `Last-Modified` and the file's whole size
    /// ([`ETag::synthetic`]), to compare with a listed version made up the same way (a
    /// server that lists no ETags); `None` where the reply does not say both.
    pub made_up: Option<ETag>,
    /// Bytes before the asked range that the server sends and the body drops (all of them
    /// when the server ignores Range and sends the whole file).
    pub skipped: u64,
    /// The body. Yields an error (never a clean end) if fewer than `len` bytes arrive.
    pub body: ByteStream,
}

/// The space the server grants the share (RFC 4331), in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Bytes that may still be stored (`quota-available-bytes`).
    pub available: u64,
    /// Bytes stored (`quota-used-bytes`), if the server said.
    pub used: Option<u64>,
}

/// A condition a write must meet on the server, so that a concurrent change is detected
/// rather than overwritten.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Unconditional.
    None,
    /// Only if the server's current version is this one (`If-Match`).
    IfMatch(ETag),
    /// Only if nothing exists at the path yet (`If-None-Match: *`).
    IfNoneExists,
}

/// A remote tree reached by path. All paths are relative to the mount's root URL.
#[async_trait]
pub trait Remote: Send + Sync {
    /// Lists a folder and its direct children (WebDAV: PROPFIND Depth 1).
    async fn list(&self, path: &RemotePath) -> Result<Listing, RemoteError>;
    /// Lists a folder like [`Remote::list`], handing each child to `sink` as soon as it is
    /// parsed instead of collecting them, so a folder of any size costs bounded memory.
    /// Names are valid, but one may come twice: the sink keeps the first.
    async fn list_each(
        &self,
        path: &RemotePath,
        mut sink: ChildSink,
    ) -> Result<ListingHead, RemoteError> {
        let listing = self.list(path).await?;
        let children = listing.children.len();
        for child in listing.children {
            sink(child)?;
        }
        Ok(ListingHead {
            dir: listing.dir,
            complete: listing.complete,
            children,
        })
    }
    /// Describes one entry (WebDAV: PROPFIND Depth 0).
    async fn stat(&self, path: &RemotePath) -> Result<RemoteEntry, RemoteError>;
    /// Reads a file, the whole of it or one byte range, as a stream.
    async fn read(
        &self,
        path: &RemotePath,
        range: Option<Range<u64>>,
    ) -> Result<Download, RemoteError>;
    /// Writes a whole file from a stream of `len` bytes; returns the new version tag if the
    /// server sent one. `mtime` is passed on to servers that accept one.
    async fn put(
        &self,
        path: &RemotePath,
        body: ByteStream,
        len: u64,
        precondition: Precondition,
        mtime: Option<SystemTime>,
    ) -> Result<Option<ETag>, RemoteError>;
    /// Creates a folder; its parent must exist.
    async fn mkdir(&self, path: &RemotePath) -> Result<(), RemoteError>;
    /// Moves a file or folder server-side; `overwrite` allows replacing an existing target.
    async fn rename(
        &self,
        from: &RemotePath,
        to: &RemotePath,
        overwrite: bool,
    ) -> Result<(), RemoteError>;
    /// Deletes a file or a folder with everything in it.
    async fn delete(
        &self,
        path: &RemotePath,
        precondition: Precondition,
    ) -> Result<(), RemoteError>;
    /// A short description of the server for status output (its URL, without credentials).
    fn describe(&self) -> String;
    /// The space the server grants the share, if it says (WebDAV: the quota properties
    /// of the root); `None` when it does not, which is the default.
    async fn quota(&self) -> Result<Option<Quota>, RemoteError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::ETag;

    #[test]
    fn etag_forms() {
        assert_eq!(
            ETag::parse("\"abc\""),
            Some(ETag {
                value: "abc".into(),
                weak: false
            })
        );
        assert_eq!(
            ETag::parse("W/\"abc\""),
            Some(ETag {
                value: "abc".into(),
                weak: true
            })
        );
        assert_eq!(
            ETag::parse("abc"),
            Some(ETag {
                value: "abc".into(),
                weak: false
            })
        );
        assert_eq!(ETag::parse(" \"\" "), None);
        for garbage in [
            "W/", "\"", "\"a b\"", "\"a\nb\"", "\"a\"b\"", "\"abc", "\"é\"",
        ] {
            assert_eq!(ETag::parse(garbage), None, "{garbage:?}");
        }
        assert_eq!(
            ETag::parse("W/\"x\"").map(|e| e.to_header()),
            Some("W/\"x\"".into())
        );
    }
}
