//! edrive's bounded on-disk content cache.
//!
//! Holds the content of remote files on local disk, downloaded on demand, within a byte budget
//! that evicts the least recently used content. Each blob is keyed by a [`BlobKey`]: the file's
//! stable entry id plus the server's version (ETag), so a changed remote file is never answered
//! from stale content. Blobs are written through a [`Fill`] (readable while in progress),
//! published complete on [`Fill::commit`] and read through [`Blob`] handles; open, pinned and
//! dirty blobs are never evicted. The set of blobs, their recency and flags persist in a SQLite
//! index inside the cache directory, and opening the cache recovers from a crash. Files being
//! edited locally get a mutable working copy per entry (see [`Cache::checkout`]), kept outside
//! the budget and never evicted until [`Cache::adopt`] turns the uploaded content into a clean blob.
//!
//! Not for metadata (names, sizes, directory listings: the metadata store does that) and does
//! no network I/O.

mod blob;
mod budget;
mod cache;
mod dir;
mod error;
mod fill;
mod index;
mod key;
mod partial;
mod shared;
mod state;
mod sync;
mod work;

#[cfg(all(test, unix))]
mod tests;

pub use blob::Blob;
pub use budget::{CacheStats, FreeReport};
pub use cache::Cache;
pub use error::CacheError;
pub use fill::Fill;
pub use key::BlobKey;
pub use partial::PresentRanges;
