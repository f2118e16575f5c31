//! What the provider projects, as async operations over fs-core's [`Drive`]: resolving a
//! ProjFS path, a folder's listing in ProjFS order, a placeholder's info, and a file's
//! content streamed in aligned chunks.
//!
//! ProjFS is path-based and case-insensitive; fs-core is inode-based and its server is
//! case-sensitive. Paths are resolved by walking [`Drive::lookup`] from the root; a
//! component not found under its exact name is looked up case-insensitively in the
//! folder's listing, and the name the server uses is returned (the placeholder takes that
//! case). Names Windows cannot show ([`check_windows_name`]) are left out of listings and
//! cannot be resolved; of names that differ only in case, the first in code-unit order is
//! shown (logged).
//!
//! Nothing here blocks a thread: every wait is an `.await` on fs-core, and the callers run
//! these futures on the async runtime, never inside a ProjFS callback.

use std::sync::Arc;

use edrive_fs_core::{Attr, DirEntry, Drive, FsError, Kind, ROOT_INO};
use tracing::{debug, warn};

use crate::enumeration::DirRow;
use crate::filedata::{plan, Chunk};
use crate::hresult::Hresult;
use crate::name_order::{same_name, sort_unique};
use crate::path::{check_windows_name, VirtPath};
use crate::placeholder::{BasicInfo, ContentId};

/// A resolved path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// fs-core's inode.
    pub ino: u64,
    /// The path with every component in the server's case.
    pub path: VirtPath,
    /// Its attributes.
    pub attr: Attr,
}

/// What `PrjWritePlaceholderInfo` is called with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placeholder {
    /// Destination path, in the server's case.
    pub path: VirtPath,
    /// Basic info.
    pub info: BasicInfo,
    /// Version info (`ContentID`).
    pub content: ContentId,
}

/// How file content is written back to ProjFS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadShape {
    /// The instance's write alignment (`PRJ_VIRTUALIZATION_INSTANCE_INFO.WriteAlignment`).
    pub alignment: u32,
    /// The largest single write.
    pub max_chunk: u32,
}

/// The drive as ProjFS sees it.
#[derive(Clone)]
pub struct Projection {
    drive: Arc<Drive>,
}

/// Releases an fs-core file handle when dropped, also when the reading task is aborted.
struct OpenHandle<'a> {
    drive: &'a Drive,
    fh: u64,
}

impl Drop for OpenHandle<'_> {
    fn drop(&mut self) {
        // A read-only handle: nothing to record, so nothing can fail that matters here.
        if let Err(e) = self.drive.release(self.fh) {
            tracing::debug!(error = %e, "release failed");
        }
    }
}

impl Projection {
    /// The projection of `drive`.
    pub fn new(drive: Arc<Drive>) -> Projection {
        Projection { drive }
    }

    /// The drive.
    pub fn drive(&self) -> &Arc<Drive> {
        &self.drive
    }

    /// The entries of folder `dir`.
    pub(crate) async fn children(&self, dir: u64) -> Result<Vec<DirEntry>, FsError> {
        self.drive.list_dir(dir).await
    }

    /// Resolves `path`, matching each component case-insensitively.
    pub async fn resolve(&self, path: &VirtPath) -> Result<Resolved, FsError> {
        let mut attr = self.drive.getattr(ROOT_INO)?;
        let mut parts = Vec::with_capacity(path.parts().len());
        for part in path.parts() {
            if attr.kind != Kind::Dir {
                return Err(FsError::NotFound);
            }
            let (name, child) = match self.drive.lookup(attr.ino, part).await {
                Ok(child) => (part.clone(), child),
                Err(FsError::NotFound) | Err(FsError::InvalidName(_)) => {
                    self.find_ignoring_case(attr.ino, part).await?
                }
                Err(e) => return Err(e),
            };
            if check_windows_name(&name).is_err() {
                return Err(FsError::NotFound);
            }
            parts.push(name);
            attr = child;
        }
        Ok(Resolved {
            ino: attr.ino,
            path: VirtPath::from_parts(parts),
            attr,
        })
    }

    async fn find_ignoring_case(&self, dir: u64, name: &str) -> Result<(String, Attr), FsError> {
        let rows = self.children(dir).await?;
        rows.iter()
            .filter(|e| same_name(&e.name, name) && check_windows_name(&e.name).is_ok())
            .min_by(|a, b| a.name.encode_utf16().cmp(b.name.encode_utf16()))
            .map(|e| (e.name.clone(), e.attr.clone()))
            .ok_or(FsError::NotFound)
    }

    /// The listing of folder `dir` for an enumeration: ProjFS order, names Windows cannot
    /// show and case duplicates left out.
    pub async fn listing(&self, dir: &VirtPath) -> Result<Vec<DirRow>, FsError> {
        let r = self.resolve(dir).await?;
        if r.attr.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        let entries = self.children(r.ino).await?;
        let mut rows: Vec<DirRow> = entries
            .iter()
            // The mirror's staging files are never shown (see `mirror`).
            .filter(|e| !crate::staging::is_staging(&e.name))
            .filter(|e| match check_windows_name(&e.name) {
                Ok(()) => true,
                Err(why) => {
                    debug!(dir = %r.path, name = %e.name, ?why, "name cannot be shown on Windows");
                    false
                }
            })
            .map(|e| DirRow {
                name: e.name.clone(),
                info: BasicInfo::from_attr(&e.attr),
            })
            .collect();
        let dropped = sort_unique(&mut rows, |r| r.name.as_str());
        if !dropped.is_empty() {
            warn!(dir = %r.path, ?dropped, "names differing only in case; showing one of each");
        }
        Ok(rows)
    }

    /// The placeholder for `path`.
    pub async fn placeholder(&self, path: &VirtPath) -> Result<Placeholder, FsError> {
        let r = self.resolve(path).await?;
        Ok(Placeholder {
            info: BasicInfo::from_attr(&r.attr),
            content: ContentId::from_attr(&r.attr),
            path: r.path,
        })
    }

    /// Streams `length` bytes at `offset` of file `path` into `sink`, chunk by chunk as
    /// [`plan`] cuts them (so possibly more than asked, to alignment). `expected` is the
    /// content id the placeholder was written with: if the file changed since, nothing is
    /// written and the result is `ERROR_FILE_INVALID` (the provider then updates the
    /// placeholder). Returns the bytes written.
    pub async fn read(
        &self,
        path: &VirtPath,
        offset: u64,
        length: u32,
        shape: ReadShape,
        expected: Option<ContentId>,
        mut sink: impl FnMut(Chunk, &[u8]) -> Result<(), Hresult>,
    ) -> Result<u64, Hresult> {
        let r = self.resolve(path).await?;
        if r.attr.kind == Kind::Dir {
            return Err(FsError::IsDir.into());
        }
        if let Some(want) = expected {
            let now = ContentId::from_attr(&r.attr);
            if want != now {
                debug!(%path, ?want, ?now, "placeholder is older than the server's file");
                return Err(Hresult::FILE_INVALID);
            }
        }
        let chunks = plan(
            offset,
            length,
            r.attr.size,
            shape.alignment,
            shape.max_chunk,
        );
        let fh = self.drive.open(r.ino, false, false).await?;
        let handle = OpenHandle {
            drive: &self.drive,
            fh,
        };
        let mut written = 0u64;
        for chunk in chunks {
            let data = self.drive.read(handle.fh, chunk.offset, chunk.len).await?;
            if data.len() != chunk.len as usize {
                warn!(%path, offset = chunk.offset, want = chunk.len, got = data.len(), "short read");
                return Err(Hresult::FILE_INVALID);
            }
            sink(chunk, &data)?;
            written += u64::from(chunk.len);
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{drive_with, MemTree};

    fn p(s: &str) -> VirtPath {
        VirtPath::parse(s)
    }

    fn tree() -> MemTree {
        MemTree::new()
            .file("Docs/Report.docx", b"report v1")
            .file("Docs/notes.txt", b"n")
            .file("Docs/README", b"upper")
            .file("Docs/readme", b"lower")
            .file("Docs/a:b.txt", b"colon")
            .file("Docs/Été.txt", b"accent")
            .file(
                "big.bin",
                &(0..20_000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>(),
            )
            .dir("Empty")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resolves_case_insensitively_to_the_server_case() {
        let (_tmp, drive) = drive_with(tree());
        let proj = Projection::new(drive);
        let r = proj.resolve(&p("DOCS\\report.DOCX")).await.unwrap();
        assert_eq!(r.path, VirtPath::from_parts(["Docs", "Report.docx"]));
        assert_eq!(r.path.to_string(), "Docs\\Report.docx");
        assert_eq!(r.attr.size, 9);
        let e = proj.resolve(&p("docs\\ÉTÉ.TXT")).await.unwrap();
        assert_eq!(e.path.to_string(), "Docs\\Été.txt");
        // The exact name wins when it exists; otherwise the first in code-unit order.
        assert_eq!(
            proj.resolve(&p("Docs\\readme"))
                .await
                .unwrap()
                .path
                .to_string(),
            "Docs\\readme"
        );
        assert_eq!(
            proj.resolve(&p("Docs\\ReadMe"))
                .await
                .unwrap()
                .path
                .to_string(),
            "Docs\\README"
        );
        assert!(proj
            .resolve(&VirtPath::root())
            .await
            .unwrap()
            .path
            .is_root());
        assert!(matches!(
            proj.resolve(&p("Docs\\missing")).await,
            Err(FsError::NotFound)
        ));
        assert!(matches!(
            proj.resolve(&p("big.bin\\x")).await,
            Err(FsError::NotFound)
        ));
        assert!(matches!(
            proj.resolve(&p("Docs\\a:b.txt")).await,
            Err(FsError::NotFound)
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn listing_is_sorted_filtered_and_deduplicated() {
        let (_tmp, drive) = drive_with(tree());
        let proj = Projection::new(drive);
        let rows = proj.listing(&p("docs")).await.unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["notes.txt", "README", "Report.docx", "Été.txt"]);
        assert_eq!(rows[2].info.size, 9);
        assert!(!rows[2].info.is_dir);
        let root = proj.listing(&VirtPath::root()).await.unwrap();
        let names: Vec<(&str, bool)> = root
            .iter()
            .map(|r| (r.name.as_str(), r.info.is_dir))
            .collect();
        assert_eq!(names, [("big.bin", false), ("Docs", true), ("Empty", true)]);
        assert!(proj.listing(&p("Empty")).await.unwrap().is_empty());
        assert!(matches!(
            proj.listing(&p("big.bin")).await,
            Err(FsError::NotDir)
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn placeholder_carries_server_case_and_content_id() {
        let (_tmp, drive) = drive_with(tree());
        let proj = Projection::new(drive);
        let ph = proj.placeholder(&p("docs\\REPORT.docx")).await.unwrap();
        assert_eq!(ph.path.to_string(), "Docs\\Report.docx");
        assert_eq!(ph.info.size, 9);
        assert_eq!(ph.content.size, 9);
        let r = proj.resolve(&p("Docs\\Report.docx")).await.unwrap();
        assert_eq!(ph.content.ino, r.ino);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_stream_in_aligned_chunks() {
        let (_tmp, drive) = drive_with(tree());
        let proj = Projection::new(drive);
        let shape = ReadShape {
            alignment: 4096,
            max_chunk: 8192,
        };
        let mut got: Vec<(Chunk, Vec<u8>)> = Vec::new();
        let n = proj
            .read(&p("BIG.BIN"), 5000, 100, shape, None, |c, d| {
                got.push((c, d.to_vec()));
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(n, 4096);
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].0,
            Chunk {
                offset: 4096,
                len: 4096
            }
        );
        let expect: Vec<u8> = (4096..8192u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(got[0].1, expect);

        let mut whole = Vec::new();
        let mut offsets = Vec::new();
        let n = proj
            .read(&p("big.bin"), 0, 20_000, shape, None, |c, d| {
                offsets.push(c.offset);
                whole.extend_from_slice(d);
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(n, 20_000);
        assert_eq!(offsets, [0, 8192, 16384]);
        assert_eq!(
            whole,
            (0..20_000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stale_placeholders_and_sink_errors_fail_the_read() {
        let (_tmp, drive) = drive_with(tree());
        let proj = Projection::new(drive);
        let shape = ReadShape {
            alignment: 512,
            max_chunk: 1 << 20,
        };
        let ph = proj.placeholder(&p("Docs\\notes.txt")).await.unwrap();
        let mut stale = ph.content;
        stale.size += 1;
        let r = proj
            .read(&p("Docs\\notes.txt"), 0, 1, shape, Some(stale), |_, _| {
                Ok(())
            })
            .await;
        assert_eq!(r, Err(Hresult::FILE_INVALID));
        let notes = p("Docs\\notes.txt");
        let r = proj.read(&notes, 0, 1, shape, Some(ph.content), |_, d| {
            assert_eq!(d, b"n");
            Ok(())
        });
        assert_eq!(r.await, Ok(1));
        let r = proj
            .read(&p("Docs\\notes.txt"), 0, 1, shape, None, |_, _| {
                Err(Hresult::CANCELLED)
            })
            .await;
        assert_eq!(r, Err(Hresult::CANCELLED));
        let r = proj
            .read(&p("Docs"), 0, 1, shape, None, |_, _| Ok(()))
            .await;
        assert_eq!(r, Err(Hresult::from(FsError::IsDir)));
        let r = proj
            .read(&p("nope"), 0, 1, shape, None, |_, _| Ok(()))
            .await;
        assert_eq!(r, Err(Hresult::FILE_NOT_FOUND));
    }
}
