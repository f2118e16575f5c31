//! Extended attributes: edrive's own (`user.edrive.state`, `user.edrive.pinned`, and
//! `user.edrive.pin` to pin), and the other `user.*` ones applications set (a file
//! manager's tags, ratings and comments, a browser's download origin), kept in the
//! metadata store, never sent to the server. Other namespaces (security labels, ACLs,
//! capabilities) are not supported.

use std::time::SystemTime;

use super::{Drive, XATTR_PIN, XATTR_PINNED, XATTR_STATE};
use crate::error::{FsError, XattrError};
use crate::meta::{XattrMode, XattrSet};

/// Longest attribute name, prefix included (Linux's `XATTR_NAME_MAX`).
pub const XATTR_MAX_NAME: usize = 255;
/// Largest attribute value (Linux's `XATTR_SIZE_MAX`).
pub const XATTR_MAX_VALUE: usize = 64 << 10;
/// Most bytes (names and values) one entry's stored attributes take together.
pub const XATTR_MAX_TOTAL: usize = 256 << 10;

/// The namespace applications may use.
const USER: &[u8] = b"user.";
/// edrive's own names within it: never stored.
const EDRIVE: &[u8] = b"user.edrive.";

/// Whether `name` is a `user.*` name, checked for what Linux allows of one.
fn user_name(name: &[u8]) -> Result<(), FsError> {
    if !name.starts_with(USER) {
        return Err(FsError::XattrNamespace);
    }
    if name.len() > XATTR_MAX_NAME {
        return Err(XattrError::NameTooLong.into());
    }
    if name.len() == USER.len() {
        return Err(FsError::Invalid(
            "an attribute name needs more than its namespace",
        ));
    }
    Ok(())
}

impl Drive {
    /// The names of `ino`'s extended attributes: edrive's own, then those applications
    /// set, in byte order.
    pub fn listxattr(&self, ino: u64) -> Result<Vec<Vec<u8>>, FsError> {
        self.entry(ino)?;
        let mut names = vec![
            XATTR_STATE.as_bytes().to_vec(),
            XATTR_PINNED.as_bytes().to_vec(),
        ];
        names.extend(self.meta.xattr_names(ino)?);
        Ok(names)
    }

    /// The value of extended attribute `name` of `ino`.
    pub fn getxattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>, FsError> {
        if name == XATTR_STATE.as_bytes() {
            return Ok(self.state(ino)?.as_str().as_bytes().to_vec());
        }
        if name == XATTR_PINNED.as_bytes() {
            self.entry(ino)?;
            let pinned = self.meta.pinned_by(ino)?.is_some();
            return Ok(if pinned { b"1" } else { b"0" }.to_vec());
        }
        user_name(name)?;
        let value = if name.starts_with(EDRIVE) {
            None
        } else {
            self.meta.xattr(ino, name)?
        };
        match value {
            Some(v) => Ok(v),
            None => {
                self.entry(ino)?;
                Err(FsError::NoAttr)
            }
        }
    }

    /// Sets extended attribute `name` of `ino` to `value` as `mode` allows. Setting
    /// `user.edrive.pin` pins (`1`) or unpins (`0`); returns whether pinned content
    /// should now be fetched ([`Drive::request_pin_run`]). edrive's other attributes
    /// cannot be set.
    pub fn setxattr(
        &self,
        ino: u64,
        name: &[u8],
        value: &[u8],
        mode: XattrMode,
    ) -> Result<bool, FsError> {
        user_name(name)?;
        if name == XATTR_PIN.as_bytes() {
            return self.set_pin_xattr(ino, value);
        }
        if name.starts_with(EDRIVE) {
            return Err(XattrError::ReadOnly.into());
        }
        if value.len() > XATTR_MAX_VALUE {
            return Err(XattrError::ValueTooLarge.into());
        }
        let set =
            self.meta
                .set_xattr(ino, name, value, mode, XATTR_MAX_TOTAL, SystemTime::now())?;
        match set {
            XattrSet::Done => Ok(false),
            XattrSet::Exists => Err(FsError::Exists),
            XattrSet::Missing => Err(FsError::NoAttr),
            XattrSet::Full => Err(XattrError::NoRoom.into()),
            XattrSet::NoEntry => Err(FsError::NotFound),
        }
    }

    /// Removes extended attribute `name` of `ino` (edrive's own cannot be removed).
    pub fn removexattr(&self, ino: u64, name: &[u8]) -> Result<(), FsError> {
        user_name(name)?;
        if name.starts_with(EDRIVE) {
            self.entry(ino)?;
            return Err(XattrError::ReadOnly.into());
        }
        if self.meta.remove_xattr(ino, name, SystemTime::now())? {
            return Ok(());
        }
        self.entry(ino)?;
        Err(FsError::NoAttr)
    }
}
