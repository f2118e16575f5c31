//! The ProjFS callbacks: decode the C arguments, call the platform-neutral modules, encode
//! the answer. Each is `extern "system"`, never unwinds (panics are caught and reported as
//! failures), and never waits on the network.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use tracing::{debug, warn};
use windows::core::{GUID, HRESULT, PCWSTR};
use windows::Win32::Storage::ProjectedFileSystem::{
    PRJ_CALLBACKS, PRJ_CALLBACK_DATA, PRJ_CB_DATA_FLAG_ENUM_RESTART_SCAN,
    PRJ_CB_DATA_FLAG_ENUM_RETURN_SINGLE_ENTRY, PRJ_DIR_ENTRY_BUFFER_HANDLE, PRJ_NOTIFICATION,
    PRJ_NOTIFICATION_FILE_HANDLE_CLOSED_FILE_DELETED,
    PRJ_NOTIFICATION_FILE_HANDLE_CLOSED_FILE_MODIFIED,
    PRJ_NOTIFICATION_FILE_HANDLE_CLOSED_NO_MODIFICATION, PRJ_NOTIFICATION_FILE_OVERWRITTEN,
    PRJ_NOTIFICATION_FILE_PRE_CONVERT_TO_FULL, PRJ_NOTIFICATION_FILE_RENAMED,
    PRJ_NOTIFICATION_NEW_FILE_CREATED, PRJ_NOTIFICATION_PARAMETERS, PRJ_NOTIFICATION_PRE_DELETE,
    PRJ_NOTIFICATION_PRE_RENAME,
};

use super::ffi::{self, Ctx};
use super::{lock, Shared};
use crate::command::{CommandId, Finish};
use crate::enumeration::EnumError;
use crate::hresult::Hresult;
use crate::notification::Notification;
use crate::path::VirtPath;
use crate::placeholder::{ContentId, ID_LEN};
use crate::refresh::Plan;

/// The callback table given to `PrjStartVirtualizing`.
pub(super) fn table() -> PRJ_CALLBACKS {
    PRJ_CALLBACKS {
        StartDirectoryEnumerationCallback: Some(start_enumeration),
        EndDirectoryEnumerationCallback: Some(end_enumeration),
        GetDirectoryEnumerationCallback: Some(get_enumeration),
        GetPlaceholderInfoCallback: Some(get_placeholder_info),
        GetFileDataCallback: Some(get_file_data),
        QueryFileNameCallback: Some(query_file_name),
        NotificationCallback: Some(notification),
        CancelCommandCallback: Some(cancel_command),
    }
}

/// What every callback reads from `PRJ_CALLBACK_DATA`.
struct Call {
    shared: Arc<Shared>,
    ctx: Ctx,
    command: CommandId,
    path: VirtPath,
    flags: i32,
}

/// Decodes the callback data.
///
/// # Safety
/// `data` is the pointer ProjFS passed to a callback of an instance started by
/// [`super::start`], whose `InstanceContext` is a live `Arc<Shared>` reference.
unsafe fn call(data: *const PRJ_CALLBACK_DATA) -> Option<Call> {
    // SAFETY: per the contract, valid for the callback's duration.
    let d = unsafe { data.as_ref()? };
    let instance = d.InstanceContext as *const Shared;
    if instance.is_null() {
        return None;
    }
    // SAFETY: the instance context is a strong reference held until PrjStopVirtualizing has
    // returned, which waits for running callbacks; take one more for this call.
    let shared = unsafe {
        Arc::increment_strong_count(instance);
        Arc::from_raw(instance)
    };
    // SAFETY: FilePathName is NUL-terminated (or null) for the callback's duration.
    let path = unsafe { ffi::string(d.FilePathName) }.unwrap_or_default();
    Some(Call {
        shared,
        ctx: Ctx(d.NamespaceVirtualizationContext),
        command: d.CommandId,
        path: VirtPath::parse(&path),
        flags: d.Flags.0,
    })
}

/// Runs a callback body, turning a panic into a failure instead of unwinding into ProjFS.
fn guarded(name: &str, f: impl FnOnce() -> Hresult) -> HRESULT {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(hr) => hr.into(),
        Err(_) => {
            warn!(callback = name, "callback panicked");
            Hresult::IO_DEVICE.into()
        }
    }
}

/// Starts `work` on the runtime for command `call.command`; returns what the callback
/// returns (`ERROR_IO_PENDING`, or the result if the work already finished).
fn pending(call: &Call, work: impl Future<Output = Hresult> + Send + 'static) -> Hresult {
    let id = call.command;
    lock(&call.shared.commands).begin(id);
    let shared = call.shared.clone();
    let task = call.shared.rt.spawn(async move {
        let hr = work.await;
        let finish = lock(&shared.commands).finish(id, hr);
        if finish == Finish::Complete {
            shared.with_ctx(|ctx| ffi::complete(ctx, id, hr));
        }
    });
    lock(&call.shared.commands).attach(id, task.abort_handle());
    lock(&call.shared.commands)
        .returning(id)
        .unwrap_or(Hresult::IO_PENDING)
}

unsafe extern "system" fn start_enumeration(
    data: *const PRJ_CALLBACK_DATA,
    id: *const GUID,
) -> HRESULT {
    guarded("start enumeration", || {
        // SAFETY: arguments as ProjFS passed them.
        let (Some(call), Some(id)) = (unsafe { call(data) }, unsafe { id.as_ref() }) else {
            return Hresult::INVALID_PARAMETER;
        };
        let id = ffi::guid_bytes(id);
        let shared = call.shared.clone();
        let dir = call.path.clone();
        pending(&call, async move {
            match shared.projection.listing(&dir).await {
                Ok(rows) => {
                    debug!(%dir, entries = rows.len(), "enumeration started");
                    lock(&shared.sessions).start(id, Arc::new(rows));
                    Hresult::OK
                }
                Err(e) => {
                    debug!(%dir, error = %e, "enumeration failed");
                    Hresult::from(&e)
                }
            }
        })
    })
}

unsafe extern "system" fn end_enumeration(
    data: *const PRJ_CALLBACK_DATA,
    id: *const GUID,
) -> HRESULT {
    guarded("end enumeration", || {
        // SAFETY: arguments as ProjFS passed them.
        let (Some(call), Some(id)) = (unsafe { call(data) }, unsafe { id.as_ref() }) else {
            return Hresult::INVALID_PARAMETER;
        };
        lock(&call.shared.sessions).end(&ffi::guid_bytes(id));
        Hresult::OK
    })
}

unsafe extern "system" fn get_enumeration(
    data: *const PRJ_CALLBACK_DATA,
    id: *const GUID,
    search: PCWSTR,
    buffer: PRJ_DIR_ENTRY_BUFFER_HANDLE,
) -> HRESULT {
    guarded("get enumeration", || {
        // SAFETY: arguments as ProjFS passed them.
        let (Some(call), Some(id)) = (unsafe { call(data) }, unsafe { id.as_ref() }) else {
            return Hresult::INVALID_PARAMETER;
        };
        // SAFETY: the search expression is NUL-terminated or null.
        let search = unsafe { ffi::string(search) };
        let restart = call.flags & PRJ_CB_DATA_FLAG_ENUM_RESTART_SCAN.0 != 0;
        let single = call.flags & PRJ_CB_DATA_FLAG_ENUM_RETURN_SINGLE_ENTRY.0 != 0;
        // Entries come from the snapshot taken at start: no I/O under this lock.
        let filled = lock(&call.shared.sessions).fill(
            &ffi::guid_bytes(id),
            search.as_deref(),
            restart,
            single,
            |row| ffi::fill_dir_entry(buffer, &row.name, &row.info),
        );
        match filled {
            Ok(_) => Hresult::OK,
            Err(EnumError::BufferTooSmall) => Hresult::INSUFFICIENT_BUFFER,
            Err(EnumError::UnknownSession) => Hresult::INVALID_PARAMETER,
        }
    })
}

unsafe extern "system" fn get_placeholder_info(data: *const PRJ_CALLBACK_DATA) -> HRESULT {
    guarded("get placeholder info", || {
        // SAFETY: arguments as ProjFS passed them.
        let Some(call) = (unsafe { call(data) }) else {
            return Hresult::INVALID_PARAMETER;
        };
        let shared = call.shared.clone();
        let path = call.path.clone();
        pending(&call, async move {
            match shared.projection.placeholder(&path).await {
                Ok(ph) => shared
                    .with_ctx(|ctx| ffi::write_placeholder(ctx, &ph.path, &ph.info, ph.content))
                    .unwrap_or(Err(Hresult::CANCELLED))
                    .err()
                    .unwrap_or(Hresult::OK),
                Err(e) => Hresult::from(&e),
            }
        })
    })
}

unsafe extern "system" fn get_file_data(
    data: *const PRJ_CALLBACK_DATA,
    offset: u64,
    length: u32,
) -> HRESULT {
    guarded("get file data", || {
        // SAFETY: arguments as ProjFS passed them.
        let Some(call) = (unsafe { call(data) }) else {
            return Hresult::INVALID_PARAMETER;
        };
        // SAFETY: `data` is valid (checked by `call`); VersionInfo is null or valid.
        let (stream, expected) = unsafe {
            let d = &*data;
            let expected = d.VersionInfo.as_ref().and_then(|v| {
                let id: &[u8; ID_LEN] = &v.ContentID;
                ContentId::from_bytes(id)
            });
            (d.DataStreamId, expected)
        };
        let shared = call.shared.clone();
        let path = call.path.clone();
        let shape = shared.shape(call.ctx);
        pending(&call, async move {
            let mut buffer: Option<ffi::AlignedBuffer> = None;
            let written = shared
                .projection
                .read(&path, offset, length, shape, expected, |chunk, bytes| {
                    shared
                        .with_ctx(|ctx| {
                            if buffer.is_none() {
                                let size = (shape.max_chunk.max(shape.alignment)) as usize;
                                buffer = Some(ffi::AlignedBuffer::new(ctx, size.max(bytes.len()))?);
                            }
                            match buffer.as_mut() {
                                Some(b) => b.write(ctx, &stream, chunk.offset, bytes),
                                None => Err(Hresult::OUT_OF_MEMORY),
                            }
                        })
                        .unwrap_or(Err(Hresult::CANCELLED))
                })
                .await;
            match written {
                Ok(n) => {
                    debug!(%path, offset, length, written = n, "file data written");
                    Hresult::OK
                }
                Err(hr) if hr == Hresult::FILE_INVALID => {
                    // Changed on the server since the placeholder was written: update it
                    // so the next open sees the new version.
                    let shared2 = shared.clone();
                    let path2 = path.clone();
                    shared.rt.spawn(async move {
                        let dirty = lock(&shared2.tracker).is_dirty(&path2);
                        let plan = if dirty { Plan::SkipDirty } else { Plan::Update };
                        let outcome = shared2.apply(&path2, plan).await;
                        debug!(path = %path2, ?outcome, "stale placeholder refreshed");
                    });
                    hr
                }
                Err(hr) => hr,
            }
        })
    })
}

unsafe extern "system" fn query_file_name(data: *const PRJ_CALLBACK_DATA) -> HRESULT {
    guarded("query file name", || {
        // SAFETY: arguments as ProjFS passed them.
        let Some(call) = (unsafe { call(data) }) else {
            return Hresult::INVALID_PARAMETER;
        };
        let shared = call.shared.clone();
        let path = call.path.clone();
        pending(&call, async move {
            match shared.projection.resolve(&path).await {
                Ok(_) => Hresult::OK,
                Err(e) => Hresult::from(&e),
            }
        })
    })
}

unsafe extern "system" fn notification(
    data: *const PRJ_CALLBACK_DATA,
    is_dir: bool,
    kind: PRJ_NOTIFICATION,
    destination: PCWSTR,
    params: *mut PRJ_NOTIFICATION_PARAMETERS,
) -> HRESULT {
    guarded("notification", || {
        // SAFETY: arguments as ProjFS passed them.
        let Some(call) = (unsafe { call(data) }) else {
            return Hresult::INVALID_PARAMETER;
        };
        // SAFETY: NUL-terminated or null.
        let dest = unsafe { ffi::string(destination) }
            .filter(|s| !s.is_empty())
            .map(|s| VirtPath::parse(&s));
        let from = Some(call.path.clone()).filter(|p| !p.is_root());
        let path = call.path.clone();
        let n = match kind {
            PRJ_NOTIFICATION_NEW_FILE_CREATED => Notification::NewFileCreated { path, is_dir },
            PRJ_NOTIFICATION_FILE_OVERWRITTEN => Notification::FileOverwritten { path },
            PRJ_NOTIFICATION_PRE_DELETE => Notification::PreDelete { path, is_dir },
            PRJ_NOTIFICATION_PRE_RENAME => Notification::PreRename {
                from: path,
                to: dest,
            },
            PRJ_NOTIFICATION_FILE_PRE_CONVERT_TO_FULL => Notification::PreConvertToFull { path },
            PRJ_NOTIFICATION_FILE_RENAMED => Notification::FileRenamed {
                from,
                to: dest,
                is_dir,
            },
            PRJ_NOTIFICATION_FILE_HANDLE_CLOSED_NO_MODIFICATION => Notification::HandleClosed {
                path,
                is_dir,
                modified: false,
                deleted: false,
            },
            PRJ_NOTIFICATION_FILE_HANDLE_CLOSED_FILE_MODIFIED => Notification::HandleClosed {
                path,
                is_dir,
                modified: true,
                deleted: false,
            },
            PRJ_NOTIFICATION_FILE_HANDLE_CLOSED_FILE_DELETED => {
                // SAFETY: for this notification ProjFS passes FileDeletedOnHandleClose.
                let modified = unsafe {
                    params
                        .as_ref()
                        .is_some_and(|p| p.FileDeletedOnHandleClose.IsFileModified)
                };
                Notification::HandleClosed {
                    path,
                    is_dir,
                    modified,
                    deleted: true,
                }
            }
            other => {
                debug!(notification = other.0, "notification not handled");
                return Hresult::OK;
            }
        };
        let mut tracker = lock(&call.shared.tracker);
        if !tracker.permits(&n, call.shared.mode) {
            debug!(?n, "refused: read-only drive");
            return Hresult::from(edrive_fs_core::FsError::ReadOnly);
        }
        let ops = tracker.observe(&n);
        // Queued under the tracker's lock: operations reach the mirror in the order the
        // tracker produced them, whichever pool threads the notifications came on.
        call.shared.carry_out(ops);
        drop(tracker);
        Hresult::OK
    })
}

unsafe extern "system" fn cancel_command(data: *const PRJ_CALLBACK_DATA) {
    let _ = guarded("cancel command", || {
        // SAFETY: arguments as ProjFS passed them.
        let Some(call) = (unsafe { call(data) }) else {
            return Hresult::OK;
        };
        if let Some(task) = lock(&call.shared.commands).cancel(call.command) {
            debug!(command = call.command, "cancelled");
            task.abort();
        }
        Hresult::OK
    });
}
