//! Multipart uploads that survive a crash, and the journal that makes them resumable.
//!
//! A large file goes up in parts of a size chosen for it (at least 8 MiB, at most 10,000
//! parts). Before the first part the upload id is journaled under the mount's cache dir
//! (`s3-uploads/`), and after each part its number, ETag and the SHA-256 of its bytes. When
//! the same key is uploaded again (the write-back retries after an outage, or the next run
//! after a SIGKILL) with the same length, the journaled upload is continued: the parts the
//! store still has ([ListParts]) whose bytes hash the same are not sent again. A journaled
//! upload that does not fit the new content is aborted, so no parts of ours are left to
//! be billed. Folder renames are journaled here too, so a rename cut short by a crash is
//! finished when it is asked again.
//!
//! [ListParts]: https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListParts.html

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use rusty_s3::actions::{CreateMultipartUpload, ListParts};
use rusty_s3::S3Action;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use super::http::{read_text, Body};
use super::keys::{format_mtime, MTIME_META};
use super::{precondition_headers, S3};
use edrive_remote::{again, ByteStream, ETag, Precondition, RemoteError};

/// Smallest part (S3's minimum is 5 MiB).
const MIN_PART: u64 = 8 << 20;
/// Most parts of one upload (S3's limit).
const MAX_PARTS: u64 = 10_000;

/// The part size for a file of `len` bytes: a whole number of MiB.
pub(crate) fn part_size(len: u64) -> u64 {
    let mib = 1u64 << 20;
    let need = len.div_ceil(MAX_PARTS).div_ceil(mib) * mib;
    need.max(MIN_PART)
}

/// One journaled upload.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Record {
    key: String,
    upload_id: String,
    len: u64,
    part_size: u64,
    /// Completed parts: number → (ETag, SHA-256 of the bytes, hex).
    parts: HashMap<u16, (String, String)>,
}

/// The journal directory (`CACHE/s3-uploads`).
pub(crate) struct Journal {
    dir: PathBuf,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn local(e: std::io::Error) -> RemoteError {
    RemoteError::Local(format!("upload journal: {e}"))
}

impl Journal {
    /// Opens (creating) the journal directory.
    pub(crate) fn open(dir: &Path) -> Result<Journal, RemoteError> {
        std::fs::create_dir_all(dir).map_err(local)?;
        Ok(Journal {
            dir: dir.to_path_buf(),
        })
    }

    fn file(&self, kind: &str, key: &str) -> PathBuf {
        let name = hex(&Sha256::digest(key.as_bytes())[..16]);
        self.dir.join(format!("{kind}-{name}.json"))
    }

    fn load(&self, key: &str) -> Option<Record> {
        let text = std::fs::read(self.file("upload", key)).ok()?;
        serde_json::from_slice::<Record>(&text)
            .ok()
            .filter(|r| r.key == key)
    }

    /// Writes `record` durably (a new file renamed over the old one).
    fn save(&self, record: &Record) -> Result<(), RemoteError> {
        let path = self.file("upload", &record.key);
        let text = serde_json::to_vec(record).map_err(|e| RemoteError::Local(e.to_string()))?;
        write_durably(&path, &text)
    }

    fn remove(&self, key: &str) {
        let _ = std::fs::remove_file(self.file("upload", key));
    }

    /// Whether a rename of folder prefix `from` to `to` was started and not finished.
    pub(crate) fn renaming(&self, from: &str, to: &str) -> bool {
        std::fs::read_to_string(self.file("rename", from)).is_ok_and(|t| t == to)
    }

    /// Journals a folder rename before its first object moves.
    pub(crate) fn start_rename(&self, from: &str, to: &str) -> Result<(), RemoteError> {
        write_durably(&self.file("rename", from), to.as_bytes())
    }

    /// Forgets a finished folder rename.
    pub(crate) fn end_rename(&self, from: &str, _to: &str) {
        let _ = std::fs::remove_file(self.file("rename", from));
    }
}

fn write_durably(path: &Path, data: &[u8]) -> Result<(), RemoteError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(local)?;
    f.write_all(data).map_err(local)?;
    f.sync_all().map_err(local)?;
    std::fs::rename(&tmp, path).map_err(local)?;
    if let Some(dir) = path.parent().and_then(|d| std::fs::File::open(d).ok()) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Aborts the journaled uploads not continued for `older_than` (their file was deleted
/// or replaced here before they could be resumed) and forgets them; removes journal
/// files a kill left half-written. Returns how many uploads were aborted.
pub(crate) async fn sweep(s3: &S3, older_than: std::time::Duration) -> usize {
    let Some(journal) = &s3.journal else { return 0 };
    let Ok(entries) = std::fs::read_dir(&journal.dir) else {
        return 0;
    };
    let mut aborted = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= older_than);
        if name.ends_with(".tmp") {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        if !old || !name.starts_with("upload-") {
            continue;
        }
        let record = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Record>(&b).ok());
        if let Some(r) = record {
            abort(s3, &r.key, &r.upload_id).await;
            aborted += 1;
        }
        let _ = std::fs::remove_file(&path);
    }
    aborted
}

/// Reads the next `n` bytes of `body` (keeping what comes after in `rest`).
async fn next_part(
    body: &mut ByteStream,
    rest: &mut BytesMut,
    n: u64,
) -> Result<Bytes, RemoteError> {
    let n = n as usize;
    while rest.len() < n {
        match body.next().await {
            Some(Ok(chunk)) => rest.extend_from_slice(&chunk),
            Some(Err(e)) => return Err(e),
            None => {
                return Err(RemoteError::Local(format!(
                    "upload source ended {} bytes short of a part",
                    n - rest.len()
                )))
            }
        }
    }
    Ok(rest.split_to(n).freeze())
}

/// Checks `precondition` against the store's version of `key` right before the upload
/// is completed (the store may not enforce it on CompleteMultipartUpload).
async fn check(s3: &S3, key: &str, precondition: &Precondition) -> Result<(), RemoteError> {
    let current = match again(|| s3.head(key, "")).await {
        Ok(e) => Some(e),
        Err(RemoteError::NotFound) => None,
        Err(e) => return Err(e),
    };
    let ok = match precondition {
        Precondition::None => true,
        Precondition::IfNoneExists => current.is_none(),
        Precondition::IfMatch(want) if want.is_synthetic() => true,
        Precondition::IfMatch(want) => current
            .and_then(|c| c.etag)
            .is_some_and(|t| t.value == want.value),
    };
    if ok {
        Ok(())
    } else {
        Err(RemoteError::PreconditionFailed)
    }
}

/// Parts the store holds for an upload: number → ETag; `NotFound` if the upload is gone.
async fn listed_parts(
    s3: &S3,
    key: &str,
    upload_id: &str,
) -> Result<HashMap<u16, String>, RemoteError> {
    let mut out = HashMap::new();
    let mut marker = None;
    loop {
        let mut action = ListParts::new(&s3.bucket, s3.creds(), key, upload_id);
        if let Some(m) = marker {
            action.set_part_number_marker(m);
        }
        let resp = s3.call(&action, &[], Body::Empty, false).await?;
        let text = read_text(resp, s3.http.timeout()).await?;
        let page = ListParts::parse_response(&text)
            .map_err(|e| RemoteError::Malformed(format!("ListParts reply: {e}")))?;
        for p in &page.parts {
            out.insert(p.number, p.etag.clone());
        }
        match page.next_part_number_marker {
            Some(m) if !page.parts.is_empty() => marker = Some(m),
            _ => return Ok(out),
        }
    }
}

/// Aborts an upload of ours that will not be completed.
async fn abort(s3: &S3, key: &str, upload_id: &str) {
    let action = s3.bucket.abort_multipart_upload(s3.creds(), key, upload_id);
    match s3.call(&action, &[], Body::Empty, true).await {
        Ok(_) | Err(RemoteError::NotFound) => info!(key, "aborted an abandoned multipart upload"),
        Err(e) => warn!(key, error = %e, "cannot abort an abandoned multipart upload"),
    }
}

/// Uploads `len` bytes of `body` to `key` in parts, continuing a journaled upload of the
/// same content if there is one.
pub(crate) async fn upload(
    s3: &S3,
    key: &str,
    mut body: ByteStream,
    len: u64,
    precondition: &Precondition,
    mtime: Option<SystemTime>,
) -> Result<Option<ETag>, RemoteError> {
    let size = part_size(len);
    let count = len.div_ceil(size);
    // An early refusal saves sending the parts.
    check(s3, key, precondition).await?;
    let mut record = None;
    let mut held = HashMap::new();
    if let Some(old) = s3.journal.as_ref().and_then(|j| j.load(key)) {
        if old.len == len && old.part_size == size {
            match listed_parts(s3, key, &old.upload_id).await {
                Ok(parts) => {
                    let mut listed: Vec<_> = parts.keys().copied().collect();
                    listed.sort_unstable();
                    let mut journaled: Vec<_> = old.parts.keys().copied().collect();
                    journaled.sort_unstable();
                    info!(key, ?listed, ?journaled, "continuing a multipart upload");
                    held = parts;
                    record = Some(old);
                }
                Err(RemoteError::NotFound) => {
                    info!(key, "the journaled multipart upload is gone; starting over")
                }
                Err(e) => return Err(e),
            }
        } else {
            abort(s3, key, &old.upload_id).await;
        }
        if record.is_none() {
            if let Some(j) = &s3.journal {
                j.remove(key);
            }
        }
    }
    let mut record = match record {
        Some(r) => r,
        None => {
            let mut action = CreateMultipartUpload::new(&s3.bucket, s3.creds(), key);
            let mut headers = vec![("content-type", "application/octet-stream".to_string())];
            if let Some(t) = mtime {
                action.headers_mut().insert(MTIME_META, format_mtime(t));
                headers.push((MTIME_META, format_mtime(t)));
            }
            let resp = s3.call(&action, &headers, Body::Empty, true).await?;
            let text = read_text(resp, s3.http.timeout()).await?;
            let created = CreateMultipartUpload::parse_response(&text)
                .map_err(|e| RemoteError::Malformed(format!("CreateMultipartUpload reply: {e}")))?;
            info!(key, len, part_size = size, "starting a multipart upload");
            let r = Record {
                key: key.to_string(),
                upload_id: created.upload_id().to_string(),
                len,
                part_size: size,
                parts: HashMap::new(),
            };
            if let Some(j) = &s3.journal {
                j.save(&r)?;
            }
            r
        }
    };
    let mut rest = BytesMut::new();
    let mut etags = Vec::with_capacity(count as usize);
    for i in 0..count {
        let number =
            u16::try_from(i + 1).map_err(|_| RemoteError::Local("too many parts".into()))?;
        let n = size.min(len - i * size);
        let bytes = next_part(&mut body, &mut rest, n).await?;
        let digest = hex(&Sha256::digest(&bytes));
        let kept = record
            .parts
            .get(&number)
            .filter(|(etag, sha)| *sha == digest && held.get(&number) == Some(etag));
        if kept.is_none() && record.parts.contains_key(&number) {
            let (etag, sha) = &record.parts[&number];
            info!(key, number, journaled = %etag, listed = ?held.get(&number), same_bytes = (*sha == digest), "journaled part sent again");
        }
        if let Some((etag, _)) = kept {
            debug!(key, number, "part already stored");
            etags.push(etag.clone());
            continue;
        }
        let etag = again(|| async {
            let action = s3
                .bucket
                .upload_part(s3.creds(), key, number, &record.upload_id);
            let headers = [("content-length", bytes.len().to_string())];
            let resp = s3
                .call(&action, &headers, Body::Bytes(bytes.clone()), false)
                .await?;
            resp.headers()
                .get(reqwest::header::ETAG)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .ok_or_else(|| RemoteError::Malformed("part stored without an ETag".into()))
        })
        .await?;
        record.parts.insert(number, (etag.clone(), digest));
        if let Some(j) = &s3.journal {
            j.save(&record)?;
        }
        etags.push(etag);
    }
    if !rest.is_empty() || body.next().await.is_some() {
        return Err(RemoteError::Local(format!(
            "upload source yields more than the announced {len} bytes"
        )));
    }
    if let Err(e) = check(s3, key, precondition).await {
        abort(s3, key, &record.upload_id).await;
        if let Some(j) = &s3.journal {
            j.remove(key);
        }
        return Err(e);
    }
    let action = s3.bucket.complete_multipart_upload(
        s3.creds(),
        key,
        &record.upload_id,
        etags.iter().map(String::as_str),
    );
    let xml = action.body();
    let action = s3.bucket.complete_multipart_upload(
        s3.creds(),
        key,
        &record.upload_id,
        std::iter::empty::<&str>(),
    );
    let mut headers = precondition_headers(precondition);
    headers.push(("content-length", xml.len().to_string()));
    let done = again(|| async {
        let resp = s3
            .call(
                &action,
                &headers,
                Body::Bytes(Bytes::from(xml.clone())),
                true,
            )
            .await?;
        let text = read_text(resp, s3.http.timeout()).await?;
        if text.contains("<Error>") {
            let code = text
                .split("<Code>")
                .nth(1)
                .and_then(|r| r.split("</Code>").next());
            return Err(super::http::error_for(500, code));
        }
        Ok(text)
    })
    .await;
    let text = match done {
        Ok(text) => text,
        Err(e @ RemoteError::PreconditionFailed) => {
            abort(s3, key, &record.upload_id).await;
            if let Some(j) = &s3.journal {
                j.remove(key);
            }
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    if let Some(j) = &s3.journal {
        j.remove(key);
    }
    let etag = text
        .split("<ETag>")
        .nth(1)
        .and_then(|r| r.split("</ETag>").next())
        .map(|t| t.replace("&quot;", "\"").replace("&#34;", "\""))
        .and_then(|t| ETag::parse(&t));
    Ok(etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes() {
        assert_eq!(part_size(20 << 20), 8 << 20);
        assert_eq!(part_size(1 << 40), 105 << 20);
        assert!(part_size(5 << 40).div_ceil(1) * MAX_PARTS >= 5 << 40);
    }

    #[test]
    fn journal_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let mut r = Record {
            key: "a/b".into(),
            upload_id: "id".into(),
            len: 10,
            part_size: 8,
            parts: HashMap::new(),
        };
        r.parts.insert(1, ("\"e\"".into(), "00".into()));
        j.save(&r).unwrap();
        assert_eq!(j.load("a/b"), Some(r));
        assert_eq!(j.load("a/c"), None);
        j.remove("a/b");
        assert_eq!(j.load("a/b"), None);
        assert!(!j.renaming("x/", "y/"));
        j.start_rename("x/", "y/").unwrap();
        assert!(j.renaming("x/", "y/"));
        j.end_rename("x/", "y/");
        assert!(!j.renaming("x/", "y/"));
    }
}
