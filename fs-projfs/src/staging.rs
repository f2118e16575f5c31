//! The mirror's staging files: where an upload's copy of a local file is made before it
//! replaces the target (see `mirror`). Their names never leave the machine, and listings
//! leave them out.

/// Names of staging files start with this (and end with `.tmp`): they match the default
/// ignore list, and listings leave them out.
pub const STAGING_PREFIX: &str = "~$edrive-staging-";

/// Whether `name` is one of the mirror's staging files.
pub fn is_staging(name: &str) -> bool {
    name.starts_with(STAGING_PREFIX)
}
