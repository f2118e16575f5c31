//! edrive's Windows adapter over the Projected File System (ProjFS): the same drive as the
//! FUSE adapter, shown in Explorer as placeholders that hydrate on open.
//!
//! Not filled yet: the foundation ships this compiling stub so that the workspace layout is
//! final; the ProjFS issue adds the provider callbacks (through the `windows` crate's
//! bindings, not `windows-projfs`) and the platform-neutral enumeration and name rules.

/// The name Windows shows for the provider.
pub const PROVIDER_NAME: &str = "edrive";
