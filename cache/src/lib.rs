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
//!
//! # Modules
//!
//! Each module uses only modules listed before it, so there are no import cycles (the tests
//! in `tests/` use any):
//!
//! - `key`: [`BlobKey`] and the blob file names derived from it. Uses none.
//! - `error`: [`CacheError`]. Uses none.
//! - `dir`: the directory layout's housekeeping: private modes, the lock, emptying, directory
//!   sync, no-follow opens. Uses `error`.
//! - `index`: the persisted SQLite index (`Index`) and its rows. Uses `error`, `key`.
//! - `budget`: the `Ledger` of complete blobs (recency, flags, bytes, what to evict),
//!   [`CacheStats`], [`FreeReport`]. Uses `key`.
//! - `partial`: the partial downloads kept for later (`Partials`), [`PresentRanges`]. Uses
//!   `error`, `index`, `key`.
//! - `sync`: the sync thread (`Syncer`), which makes committed blobs durable and has them
//!   recorded through the `SyncTarget` trait. Uses `dir`, `key`.
//! - `state`: `State`, the bookkeeping behind the cache's mutex (index, ledger, partial
//!   downloads, counters) and its recovery at open. Uses `budget`, `dir`, `error`, `index`,
//!   `key`, `partial`, `sync`.
//! - `shared`: `Shared`, what the cache and its handles share (directories, the `State` mutex,
//!   bytes of fills in progress, the `Syncer`, the directory lock); moving files into `blobs/`
//!   and out of it. Uses `budget`, `dir`, `error`, `key`, `state`, `sync`.
//! - `blob`: the [`Blob`] handle: opening one (a use), reading, releasing. Uses `key`,
//!   `shared`.
//! - `fill`: the [`Fill`] handle: writing, commit, parking as a partial download and resuming.
//!   Uses `blob`, `dir`, `error`, `key`, `partial`, `shared`.
//! - `work`: `WorkCopies`, the working copies in `work/`: create, checkout, adopt, upload
//!   bases. Uses `blob`, `dir`, `error`, `key`, `shared`.
//! - `cache`: [`Cache`]: opening the directory and the public operations, delegated to the
//!   modules above. Uses all of them.

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
