//! From ProjFS notifications to the operations fs-core's write path must carry out.
//!
//! ProjFS lets local writes happen on the local disk and *notifies* the provider: a file
//! was created, a handle was closed after modification, a file was renamed or deleted.
//! [`Tracker`] turns that stream into [`CoreOp`]s — what must change on the server — and
//! [`Tracker::permits`] answers the pre-operation notifications (pre-delete, pre-rename,
//! pre-convert-to-full), which can veto the local operation.
//!
//! The mapping is not one notification → one operation. Applications save by writing a
//! temporary file and renaming it over the original (Word, Excel, LibreOffice,
//! `ReplaceFile`). Mirrored naively that uploads a temp file under a temp name, moves the
//! original aside, moves the temp file over it and deletes the backup: four server
//! operations, a window in which the document does not exist on the server, and lost
//! server-side version history and share links. Instead, files with a transient name
//! ([`is_transient`]) are *deferred*: they stay local until renamed to a real name, and a
//! real file renamed to a transient name keeps its server copy where it is (a *shadow*)
//! until that name is settled. An Office save then becomes one `Upload` of the document.
//!
//! Paths are compared as Windows does, case-insensitively ([`VirtPath::key`]).

use std::collections::HashMap;

use crate::name_order::SortKey;
use crate::path::VirtPath;

/// One ProjFS notification, in plain Rust.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notification {
    /// `PRJ_NOTIFICATION_NEW_FILE_CREATED`: a new file or folder exists locally.
    NewFileCreated {
        /// Its path.
        path: VirtPath,
        /// Whether it is a folder.
        is_dir: bool,
    },
    /// `PRJ_NOTIFICATION_FILE_OVERWRITTEN`: an existing file was opened for overwrite
    /// (truncated); its new content is complete when the handle closes.
    FileOverwritten {
        /// Its path.
        path: VirtPath,
    },
    /// `PRJ_NOTIFICATION_PRE_DELETE`: a file or folder is about to be deleted (can veto).
    PreDelete {
        /// Its path.
        path: VirtPath,
        /// Whether it is a folder.
        is_dir: bool,
    },
    /// `PRJ_NOTIFICATION_PRE_RENAME`: about to be renamed (can veto). `to` is `None` when
    /// the destination is outside the virtualization root.
    PreRename {
        /// Current path.
        from: VirtPath,
        /// New path.
        to: Option<VirtPath>,
    },
    /// `PRJ_NOTIFICATION_FILE_PRE_CONVERT_TO_FULL`: a placeholder is about to become a
    /// full file because it is being modified (can veto).
    PreConvertToFull {
        /// Its path.
        path: VirtPath,
    },
    /// `PRJ_NOTIFICATION_FILE_RENAMED`: renamed. A `None` side is outside the root.
    FileRenamed {
        /// Old path.
        from: Option<VirtPath>,
        /// New path.
        to: Option<VirtPath>,
        /// Whether it is a folder.
        is_dir: bool,
    },
    /// `PRJ_NOTIFICATION_FILE_HANDLE_CLOSED_*`: a handle was closed, after modifying the
    /// file (`modified`) and/or with the file deleted on close (`deleted`).
    HandleClosed {
        /// Its path.
        path: VirtPath,
        /// Whether it is a folder.
        is_dir: bool,
        /// Whether the content was modified through this handle.
        modified: bool,
        /// Whether the file was deleted when the handle closed.
        deleted: bool,
    },
}

/// A change the server must see, in fs-core's terms. Carried out in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoreOp {
    /// Create a folder.
    CreateDir {
        /// Its path.
        path: VirtPath,
    },
    /// Create an empty file (its content, if any, follows as an `Upload`).
    CreateFile {
        /// Its path.
        path: VirtPath,
    },
    /// Make the local file at `path` the server's content of `path` (create or replace).
    Upload {
        /// Its path.
        path: VirtPath,
    },
    /// Move `from` to `to` on the server, replacing `to` if it exists (the local rename
    /// already succeeded, so a replaced target is what the user asked for).
    Rename {
        /// Old path.
        from: VirtPath,
        /// New path.
        to: VirtPath,
    },
    /// Delete a file or a folder with its content.
    Delete {
        /// Its path.
        path: VirtPath,
        /// Whether it is a folder.
        is_dir: bool,
    },
}

/// Whether local changes may reach the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// Server files cannot be modified, renamed or deleted; files created locally may
    /// be, and stay local.
    ReadOnly,
    /// Every local change is mirrored.
    ReadWrite,
}

/// Whether a name is one applications use for a temporary file during a save, so that
/// the file should not reach the server under that name:
///
/// * `~$…` — Office owner (lock) files;
/// * `….tmp` (any case) — Word's `~WRD0001.tmp` / `~WRL0002.tmp`, PowerPoint's and
///   LibreOffice's save temps, most `ReplaceFile` users;
/// * eight hexadecimal digits and no extension — Excel's save temps (`3A1F09C2`);
/// * `.~lock.…#` — LibreOffice lock files.
pub fn is_transient(name: &str) -> bool {
    let lower = name.to_lowercase();
    name.starts_with("~$")
        || (lower.ends_with(".tmp") && lower.len() > 4)
        || (name.len() == 8 && name.bytes().all(|b| b.is_ascii_hexdigit()))
        || (name.starts_with(".~lock.") && name.ends_with('#'))
}

fn transient_path(p: &VirtPath) -> bool {
    p.name().is_some_and(is_transient)
}

/// Where a deferred path's content lives on the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deferred {
    /// Nowhere: created locally under a transient name.
    LocalOnly,
    /// At `remote`: a server file renamed locally to a transient name.
    Shadow {
        /// Where the server still has it.
        remote: VirtPath,
    },
}

type Key = Vec<SortKey>;

/// The notification → operation mapping, with the little state it needs.
#[derive(Debug, Default)]
pub struct Tracker {
    /// Paths whose server state is not their local name (see [`Deferred`]).
    deferred: HashMap<Key, (VirtPath, Deferred)>,
    /// Files and folders created locally since the mount started.
    local: HashMap<Key, VirtPath>,
    /// Files overwritten and not closed since.
    overwritten: HashMap<Key, VirtPath>,
}

impl Tracker {
    /// A tracker with nothing pending.
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// Whether a pre-operation notification may proceed (`false`: the provider fails it
    /// with `ERROR_WRITE_PROTECT`). Post-operation notifications are always permitted.
    pub fn permits(&self, n: &Notification, mode: WriteMode) -> bool {
        if mode == WriteMode::ReadWrite {
            return true;
        }
        match n {
            Notification::PreConvertToFull { .. } => false,
            Notification::PreDelete { path, .. } => self.is_local(path),
            Notification::PreRename { from, .. } => self.is_local(from),
            _ => true,
        }
    }

    /// Whether `path` (or a folder above it) was created locally since the mount started.
    pub fn is_local(&self, path: &VirtPath) -> bool {
        let key = path.key();
        (1..=key.len()).any(|n| self.local.contains_key(&key[..n]))
    }

    /// Whether `path` is in the middle of a local change (deferred, or overwritten and not
    /// closed yet): it must not be replaced from the server nor dehydrated. (ProjFS itself
    /// refuses to touch files with local modifications; this covers what it cannot know.)
    pub fn is_dirty(&self, path: &VirtPath) -> bool {
        let key = path.key();
        self.deferred.contains_key(&key) || self.overwritten.contains_key(&key)
    }

    /// The deferred paths now: after a completed save none remain; one that stays (an
    /// application that crashed mid-save) is listed for the status output.
    pub fn deferred(&self) -> Vec<(VirtPath, Deferred)> {
        self.deferred.values().cloned().collect()
    }

    /// Takes one post-operation notification; returns the operations it completes.
    pub fn observe(&mut self, n: &Notification) -> Vec<CoreOp> {
        let mut ops = Vec::new();
        match n {
            Notification::NewFileCreated { path, is_dir } => {
                self.local.insert(path.key(), path.clone());
                if *is_dir {
                    ops.push(CoreOp::CreateDir { path: path.clone() });
                } else if transient_path(path) {
                    self.deferred
                        .insert(path.key(), (path.clone(), Deferred::LocalOnly));
                } else {
                    ops.push(CoreOp::CreateFile { path: path.clone() });
                }
            }
            Notification::FileOverwritten { path } => {
                self.overwritten.insert(path.key(), path.clone());
            }
            Notification::HandleClosed {
                path,
                is_dir,
                deleted: true,
                ..
            } => {
                self.deleted(path, *is_dir, &mut ops);
            }
            Notification::HandleClosed {
                path,
                is_dir,
                modified,
                deleted: false,
            } => {
                let overwritten = self.overwritten.remove(&path.key()).is_some();
                if (*modified || overwritten)
                    && !*is_dir
                    && !self.deferred.contains_key(&path.key())
                {
                    ops.push(CoreOp::Upload { path: path.clone() });
                }
            }
            Notification::FileRenamed {
                from: None,
                to: Some(to),
                is_dir,
            } => {
                // Moved in from outside the root: new here, content complete.
                self.local.insert(to.key(), to.clone());
                if *is_dir {
                    ops.push(CoreOp::CreateDir { path: to.clone() });
                } else if transient_path(to) {
                    self.deferred
                        .insert(to.key(), (to.clone(), Deferred::LocalOnly));
                } else {
                    ops.push(CoreOp::Upload { path: to.clone() });
                }
            }
            Notification::FileRenamed {
                from: Some(from),
                to: None,
                is_dir,
            } => {
                self.deleted(from, *is_dir, &mut ops);
            }
            Notification::FileRenamed {
                from: Some(from),
                to: Some(to),
                is_dir: true,
            } => {
                self.rebase_all(from, to);
                ops.push(CoreOp::Rename {
                    from: from.clone(),
                    to: to.clone(),
                });
            }
            Notification::FileRenamed {
                from: Some(from),
                to: Some(to),
                is_dir: false,
            } => {
                self.renamed_file(from, to, &mut ops);
            }
            Notification::FileRenamed {
                from: None,
                to: None,
                ..
            }
            | Notification::PreDelete { .. }
            | Notification::PreRename { .. }
            | Notification::PreConvertToFull { .. } => {}
        }
        ops
    }

    fn renamed_file(&mut self, from: &VirtPath, to: &VirtPath, ops: &mut Vec<CoreOp>) {
        let src = self.deferred.remove(&from.key()).map(|(_, d)| d);
        if self.local.remove(&from.key()).is_some() {
            self.local.insert(to.key(), to.clone());
        }
        if self.overwritten.remove(&from.key()).is_some() {
            self.overwritten.insert(to.key(), to.clone());
        }
        // Whatever was at `to` is replaced: a shadow there held the only local copy of a
        // server file, which is now gone.
        if let Some((_, Deferred::Shadow { remote })) = self.deferred.remove(&to.key()) {
            ops.push(CoreOp::Delete {
                path: remote,
                is_dir: false,
            });
        }
        let to_transient = transient_path(to);
        match src {
            Some(Deferred::LocalOnly) if to_transient => {
                self.deferred
                    .insert(to.key(), (to.clone(), Deferred::LocalOnly));
            }
            Some(Deferred::LocalOnly) => {
                self.orphan_shadows_of(to);
                ops.push(CoreOp::Upload { path: to.clone() });
            }
            Some(Deferred::Shadow { remote }) if to_transient => {
                self.deferred
                    .insert(to.key(), (to.clone(), Deferred::Shadow { remote }));
            }
            Some(Deferred::Shadow { remote }) => {
                if remote.key() != to.key() {
                    self.orphan_shadows_of(to);
                    ops.push(CoreOp::Rename {
                        from: remote,
                        to: to.clone(),
                    });
                }
            }
            None if to_transient => {
                self.deferred.insert(
                    to.key(),
                    (
                        to.clone(),
                        Deferred::Shadow {
                            remote: from.clone(),
                        },
                    ),
                );
            }
            None => {
                self.orphan_shadows_of(to);
                ops.push(CoreOp::Rename {
                    from: from.clone(),
                    to: to.clone(),
                });
            }
        }
    }

    /// The server file at `remote` is about to be replaced: shadows of it now hold content
    /// the server no longer has, so they become local-only.
    fn orphan_shadows_of(&mut self, remote: &VirtPath) {
        let key = remote.key();
        for (_, d) in self.deferred.values_mut() {
            if matches!(d, Deferred::Shadow { remote: r } if r.key() == key) {
                *d = Deferred::LocalOnly;
            }
        }
    }

    fn deleted(&mut self, path: &VirtPath, is_dir: bool, ops: &mut Vec<CoreOp>) {
        let key = path.key();
        self.overwritten.retain(|_, p| !p.starts_with(path));
        self.local.retain(|_, p| !p.starts_with(path));
        match self.deferred.remove(&key).map(|(_, d)| d) {
            Some(Deferred::LocalOnly) => {}
            Some(Deferred::Shadow { remote }) => ops.push(CoreOp::Delete {
                path: remote,
                is_dir,
            }),
            None => {
                if is_dir {
                    // Shadows inside the folder whose server copy lives elsewhere go too.
                    let inside: Vec<Key> = self
                        .deferred
                        .iter()
                        .filter(|(_, (p, _))| p.starts_with(path))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in inside {
                        if let Some((_, Deferred::Shadow { remote })) = self.deferred.remove(&k) {
                            if !remote.starts_with(path) {
                                ops.push(CoreOp::Delete {
                                    path: remote,
                                    is_dir: false,
                                });
                            }
                        }
                    }
                }
                ops.push(CoreOp::Delete {
                    path: path.clone(),
                    is_dir,
                });
            }
        }
    }

    fn rebase_all(&mut self, from: &VirtPath, to: &VirtPath) {
        fn rebase_map<V>(
            m: &mut HashMap<Key, V>,
            path_of: fn(&mut V) -> &mut VirtPath,
            from: &VirtPath,
            to: &VirtPath,
        ) {
            let prefix = from.key();
            let moved: Vec<Key> = m
                .keys()
                .filter(|k| k.starts_with(&prefix))
                .cloned()
                .collect();
            for k in moved {
                if let Some(mut v) = m.remove(&k) {
                    let p = path_of(&mut v);
                    if let Some(n) = p.rebase(from, to) {
                        *p = n;
                    }
                    let key = p.key();
                    m.insert(key, v);
                }
            }
        }
        fn itself(p: &mut VirtPath) -> &mut VirtPath {
            p
        }
        fn first(e: &mut (VirtPath, Deferred)) -> &mut VirtPath {
            &mut e.0
        }
        rebase_map(&mut self.local, itself, from, to);
        rebase_map(&mut self.overwritten, itself, from, to);
        rebase_map(&mut self.deferred, first, from, to);
        // Shadows whose server copy was inside the moved folder moved with it.
        for (_, d) in self.deferred.values_mut() {
            if let Deferred::Shadow { remote } = d {
                if let Some(n) = remote.rebase(from, to) {
                    *remote = n;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
