//! The small safe wrapper over the `windows` crate's ProjFS bindings: every `unsafe` call
//! into `projectedfslib.dll` is here, behind functions that take Rust values.

use std::ffi::c_void;

use windows::core::{GUID, HRESULT, PCWSTR};
use windows::Win32::Storage::ProjectedFileSystem::{
    PrjAllocateAlignedBuffer, PrjCompleteCommand, PrjDeleteFile, PrjFillDirEntryBuffer,
    PrjFreeAlignedBuffer, PrjGetVirtualizationInstanceInfo, PrjUpdateFileIfNeeded,
    PrjWriteFileData, PrjWritePlaceholderInfo, PRJ_DIR_ENTRY_BUFFER_HANDLE, PRJ_FILE_BASIC_INFO,
    PRJ_NAMESPACE_VIRTUALIZATION_CONTEXT, PRJ_PLACEHOLDER_INFO, PRJ_PLACEHOLDER_VERSION_INFO,
    PRJ_UPDATE_FAILURE_CAUSES, PRJ_UPDATE_TYPES, PRJ_VIRTUALIZATION_INSTANCE_INFO,
};

use crate::enumeration::Push;
use crate::hresult::Hresult;
use crate::path::VirtPath;
use crate::placeholder::{provider_id, BasicInfo, ContentId};
use crate::refresh::UPDATE_FLAGS;

/// A NUL-terminated UTF-16 copy of `s`.
pub fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// The string behind a ProjFS `PCWSTR` (`None` for a null pointer).
///
/// # Safety
/// `p` is null or points to a NUL-terminated UTF-16 string valid for the call.
pub unsafe fn string(p: PCWSTR) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null and NUL-terminated per the caller's contract.
    Some(String::from_utf16_lossy(unsafe { p.as_wide() }))
}

/// A GUID as the 16 bytes the platform-neutral modules key by.
pub fn guid_bytes(g: &GUID) -> [u8; 16] {
    g.to_u128().to_be_bytes()
}

/// A GUID from 16 bytes.
pub fn guid(bytes: [u8; 16]) -> GUID {
    GUID::from_u128(u128::from_be_bytes(bytes))
}

impl From<Hresult> for HRESULT {
    fn from(h: Hresult) -> HRESULT {
        HRESULT(h.0)
    }
}

fn result(r: windows::core::Result<()>) -> Result<(), Hresult> {
    r.map_err(|e| Hresult(e.code().0))
}

/// A started virtualization instance's context handle.
#[derive(Clone, Copy, Debug)]
pub struct Ctx(pub PRJ_NAMESPACE_VIRTUALIZATION_CONTEXT);

// SAFETY: the context is an opaque handle that ProjFS allows to be used from any thread.
unsafe impl Send for Ctx {}
// SAFETY: as above; ProjFS serializes internally.
unsafe impl Sync for Ctx {}

/// `PRJ_FILE_BASIC_INFO` from its plain-Rust form.
pub fn basic_info(b: &BasicInfo) -> PRJ_FILE_BASIC_INFO {
    PRJ_FILE_BASIC_INFO {
        IsDirectory: b.is_dir,
        FileSize: b.size,
        CreationTime: b.creation,
        LastAccessTime: b.last_access,
        LastWriteTime: b.last_write,
        ChangeTime: b.change,
        FileAttributes: b.attributes,
    }
}

/// `PRJ_PLACEHOLDER_INFO` for a placeholder.
pub fn placeholder_info(info: &BasicInfo, content: ContentId) -> PRJ_PLACEHOLDER_INFO {
    PRJ_PLACEHOLDER_INFO {
        FileBasicInfo: basic_info(info),
        VersionInfo: PRJ_PLACEHOLDER_VERSION_INFO {
            ProviderID: provider_id(),
            ContentID: content.to_bytes(),
        },
        ..Default::default()
    }
}

/// Adds one entry to a directory-entry buffer.
pub fn fill_dir_entry(buffer: PRJ_DIR_ENTRY_BUFFER_HANDLE, name: &str, info: &BasicInfo) -> Push {
    let name = wide(name);
    let info = basic_info(info);
    // SAFETY: `name` is NUL-terminated and `info` valid for the call; the buffer handle is
    // the one ProjFS passed to the running callback.
    let r = unsafe { PrjFillDirEntryBuffer(PCWSTR(name.as_ptr()), Some(&info), buffer) };
    match result(r) {
        Ok(()) => Push::Added,
        Err(hr) => {
            if hr != Hresult::INSUFFICIENT_BUFFER {
                tracing::warn!(%hr, "PrjFillDirEntryBuffer failed");
            }
            Push::Full
        }
    }
}

/// `PrjCompleteCommand` for a command that returned `ERROR_IO_PENDING`.
pub fn complete(ctx: Ctx, command: i32, hr: Hresult) {
    // SAFETY: `ctx` is a started instance (the caller holds it under the stop lock).
    if let Err(e) = unsafe { PrjCompleteCommand(ctx.0, command, hr.into(), None) } {
        tracing::debug!(command, error = %e, "PrjCompleteCommand failed (cancelled meanwhile?)");
    }
}

/// `PrjWritePlaceholderInfo`.
pub fn write_placeholder(
    ctx: Ctx,
    path: &VirtPath,
    info: &BasicInfo,
    content: ContentId,
) -> Result<(), Hresult> {
    let dest = wide(&path.to_string());
    let ph = placeholder_info(info, content);
    // SAFETY: valid context, NUL-terminated path, and a complete PRJ_PLACEHOLDER_INFO of
    // the size passed.
    result(unsafe {
        PrjWritePlaceholderInfo(
            ctx.0,
            PCWSTR(dest.as_ptr()),
            &ph,
            std::mem::size_of::<PRJ_PLACEHOLDER_INFO>() as u32,
        )
    })
}

/// `PrjUpdateFileIfNeeded` with `PRJ_UPDATE_NONE`; returns the result and failure causes.
pub fn update_file(
    ctx: Ctx,
    path: &VirtPath,
    info: &BasicInfo,
    content: ContentId,
) -> (Hresult, i32) {
    let dest = wide(&path.to_string());
    let ph = placeholder_info(info, content);
    let mut cause = PRJ_UPDATE_FAILURE_CAUSES(0);
    // SAFETY: as in `write_placeholder`; `cause` outlives the call.
    let r = unsafe {
        PrjUpdateFileIfNeeded(
            ctx.0,
            PCWSTR(dest.as_ptr()),
            &ph,
            std::mem::size_of::<PRJ_PLACEHOLDER_INFO>() as u32,
            Some(PRJ_UPDATE_TYPES(UPDATE_FLAGS)),
            Some(&mut cause),
        )
    };
    (result(r).err().unwrap_or(Hresult::OK), cause.0)
}

/// `PrjDeleteFile` with `PRJ_UPDATE_NONE`; returns the result and failure causes.
pub fn delete_file(ctx: Ctx, path: &VirtPath) -> (Hresult, i32) {
    let dest = wide(&path.to_string());
    let mut cause = PRJ_UPDATE_FAILURE_CAUSES(0);
    // SAFETY: valid context, NUL-terminated path, `cause` outlives the call.
    let r = unsafe {
        PrjDeleteFile(
            ctx.0,
            PCWSTR(dest.as_ptr()),
            Some(PRJ_UPDATE_TYPES(UPDATE_FLAGS)),
            Some(&mut cause),
        )
    };
    (result(r).err().unwrap_or(Hresult::OK), cause.0)
}

/// The instance's write alignment (`PrjGetVirtualizationInstanceInfo`), 4096 if unknown.
pub fn write_alignment(ctx: Ctx) -> u32 {
    let mut info = PRJ_VIRTUALIZATION_INSTANCE_INFO::default();
    // SAFETY: valid context and an output struct that outlives the call.
    match unsafe { PrjGetVirtualizationInstanceInfo(ctx.0, &mut info) } {
        Ok(()) if info.WriteAlignment > 0 => info.WriteAlignment,
        _ => 4096,
    }
}

/// A buffer from `PrjAllocateAlignedBuffer`, freed on drop.
pub struct AlignedBuffer {
    ptr: *mut c_void,
    len: usize,
}

// SAFETY: plain heap memory owned by this value alone; ProjFS does not tie it to a thread.
unsafe impl Send for AlignedBuffer {}

impl AlignedBuffer {
    /// A buffer of `len` bytes for instance `ctx`.
    pub fn new(ctx: Ctx, len: usize) -> Result<AlignedBuffer, Hresult> {
        // SAFETY: valid context; a null result means failure.
        let ptr = unsafe { PrjAllocateAlignedBuffer(ctx.0, len) };
        if ptr.is_null() {
            return Err(Hresult::OUT_OF_MEMORY);
        }
        Ok(AlignedBuffer { ptr, len })
    }

    /// Writes `data` (at most the buffer's length) to the file being hydrated, at `offset`
    /// (`PrjWriteFileData`).
    pub fn write(
        &mut self,
        ctx: Ctx,
        stream: &GUID,
        offset: u64,
        data: &[u8],
    ) -> Result<(), Hresult> {
        if data.len() > self.len {
            return Err(Hresult::INVALID_PARAMETER);
        }
        // SAFETY: `ptr` owns `len` >= data.len() writable bytes that do not overlap `data`.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.cast::<u8>(), data.len()) };
        // SAFETY: valid context and stream id; the buffer holds `data.len()` initialized bytes.
        result(unsafe { PrjWriteFileData(ctx.0, stream, self.ptr, offset, data.len() as u32) })
    }
}

impl Drop for AlignedBuffer {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from PrjAllocateAlignedBuffer and is freed once.
        unsafe { PrjFreeAlignedBuffer(self.ptr) };
    }
}

/// On Windows, the platform-neutral name rules are checked against the real ProjFS
/// functions (`PrjFileNameCompare`, `PrjFileNameMatch`). These need projectedfslib.dll,
/// i.e. the Client-ProjFS optional feature.
#[cfg(test)]
mod crosscheck {
    use std::cmp::Ordering;

    use windows::Win32::Storage::ProjectedFileSystem::{PrjFileNameCompare, PrjFileNameMatch};

    use super::*;
    use crate::{name_order, wildcard};

    const NAMES: &[&str] = &[
        "a", "A", "ab", "B", "_x", "Zeta", "éa", "ÉA", "Ø", "ø", "straße", "STRASSE", "ı", "I",
        "ſ", "S", "ÿ", "Ÿ", "µ", "Μ", "я", "Я", "λ", "😀", "Ａ", "ａ", "a.b.txt", "doc.txt",
        "Makefile", "x~1",
    ];

    fn win_compare(a: &str, b: &str) -> Ordering {
        let (wa, wb) = (wide(a), wide(b));
        // SAFETY: both NUL-terminated.
        unsafe { PrjFileNameCompare(PCWSTR(wa.as_ptr()), PCWSTR(wb.as_ptr())) }.cmp(&0)
    }

    fn win_match(name: &str, expr: &str) -> bool {
        let (wn, we) = (wide(name), wide(expr));
        // SAFETY: both NUL-terminated.
        unsafe { PrjFileNameMatch(PCWSTR(wn.as_ptr()), PCWSTR(we.as_ptr())) }
    }

    #[test]
    fn compare_matches_prj_file_name_compare() {
        for a in NAMES {
            for b in NAMES {
                assert_eq!(
                    name_order::compare(a, b),
                    win_compare(a, b),
                    "{a:?} vs {b:?}"
                );
            }
        }
    }

    #[test]
    fn match_matches_prj_file_name_match() {
        let exprs = [
            "*", "*.txt", "?", "??", "A*", "<.txt", "<\"", "doc\">>>", "a>", "*.*", "STRA?E", "x~?",
        ];
        for name in NAMES {
            for expr in exprs {
                assert_eq!(
                    wildcard::matches(name, expr),
                    win_match(name, expr),
                    "{name:?} ~ {expr:?}"
                );
            }
        }
    }
}
