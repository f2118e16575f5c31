//! Write-back: bringing the server in line with local changes.
//!
//! There is no separate log of operations to replay. Every local change is recorded in the
//! metadata store before the kernel is answered, and each row carries both where the user
//! has the entry and where the server has it ([`crate::meta`]); dirty content sits in the
//! cache as a working copy that is never evicted. The [`plan`] compares the two locations
//! and derives the server operations in an order that works (parents first, moves out of a
//! folder before its deletion); the [`Uploader`] runs them and records each outcome. After
//! a crash the same rows give the same plan, so nothing is replayed twice or lost, and a
//! file created and deleted before it was uploaded costs the server nothing.

mod activity;
pub mod attention;
mod conflict;
pub mod held;
mod ignore;
pub mod plan;
mod uploader;

pub use activity::Activity;
pub use attention::Attention;
pub use conflict::{conflict_name, host_name, local_date, ConflictPolicy};
pub use held::HoldLimits;
pub use ignore::{IgnoreList, DEFAULT_IGNORE};
pub use uploader::{SyncProgress, Uploader, STAGING_PREFIX};
