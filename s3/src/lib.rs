//! edrive's S3 backend: [`S3`] implements [`Remote`] for a bucket (and key prefix) of
//! an S3-compatible object store: ListObjectsV2 listings with the `/` delimiter, paginated
//! and handed on page by page; ranged GETs; PUTs with `If-Match` / `If-None-Match: *`
//! (enforced or not is learnt by the generic capability probe, never assumed);
//! journaled, resumable multipart uploads for large files; renames as CopyObject + DELETE,
//! folder renames object by object; the modification time in `x-amz-meta-mtime` as
//! rclone writes it.
//!
//! The client is deliberate: rusty-s3 signs (SigV4, presigned, with the headers we choose
//! signed along) and builds the XML, the workspace's reqwest sends. That keeps full
//! control of conditional headers, multipart and retries at a fraction of aws-sdk-s3's
//! size, and every request is visible in one place.
//!
//! Not for anything above the trait (metadata store, cache, write-back policy: fs-core).
//!
//! Modules: `config` (URL, endpoint, region, credentials the AWS way), `http` (requests,
//! S3 errors → [`RemoteError`], body streams), `keys` (paths ↔ keys, hostile keys,
//! mtimes), `multipart` (resumable uploads).

pub mod config;
mod http;
mod keys;
mod multipart;

use std::fmt;
use std::ops::Range;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{CONTENT_LENGTH, ETAG, LAST_MODIFIED};
use reqwest::Method;
use rusty_s3::actions::{ListObjectsV2, ListObjectsV2Response};
use rusty_s3::{Bucket, S3Action, UrlStyle};
use tracing::{debug, warn};

pub use self::config::{is_s3_url, Addressing, ConfigError, S3Config, S3Options};
use self::http::{body_stream, read_text, Body, Http};
use self::keys::{
    classify, dir_entry, dir_prefix, file_entry, format_mtime, object_key, parse_iso, parse_mtime,
    Listed, MTIME_META,
};
use edrive_remote::{
    again, ByteStream, ChildSink, Download, ETag, Listing, ListingHead, Precondition, Remote,
    RemoteEntry, RemoteError, RemotePath,
};

/// How long a presigned request stays valid (it is sent at once).
const SIGNED_FOR: Duration = Duration::from_secs(3600);

/// Above this size a file goes up in parts (resumable); at or below, in one PUT.
pub const MULTIPART_THRESHOLD: u64 = 16 << 20;

/// A bucket (and prefix) of an S3-compatible store as a [`Remote`].
pub struct S3 {
    bucket: Bucket,
    credentials: Option<rusty_s3::Credentials>,
    prefix: String,
    http: Http,
    journal: Option<multipart::Journal>,
    url: String,
    endpoint: String,
    keys_source: Option<String>,
}

impl fmt::Debug for S3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3").field("url", &self.describe()).finish()
    }
}

impl S3 {
    /// Sets up the (lazily connecting) client for `config`.
    pub fn new(config: S3Config) -> Result<S3, RemoteError> {
        let style = if config.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(
            config.endpoint.clone(),
            style,
            config.bucket.clone(),
            config.region.clone(),
        )
        .map_err(|e| RemoteError::Local(format!("cannot address bucket: {e:?}")))?;
        let credentials = config.keys.as_ref().map(|k| match &k.session_token {
            Some(t) => rusty_s3::Credentials::new_with_token(&k.access_key, &k.secret_key, t),
            None => rusty_s3::Credentials::new(&k.access_key, &k.secret_key),
        });
        let journal = match &config.state_dir {
            Some(dir) => Some(multipart::Journal::open(&dir.join("s3-uploads"))?),
            None => None,
        };
        Ok(S3 {
            http: Http::new(&config)?,
            bucket,
            credentials,
            prefix: config.prefix.clone(),
            journal,
            url: config.url(),
            endpoint: config.endpoint.to_string(),
            keys_source: config.keys.as_ref().map(|k| k.source.clone()),
        })
    }

    /// Where the credentials came from (`environment`, `profile NAME`); `None`:
    /// anonymous.
    pub fn credentials_source(&self) -> Option<&str> {
        self.keys_source.as_deref()
    }

    /// Aborts multipart uploads of ours journaled more than `older_than` ago and never
    /// continued (the file went before it could be), so the store keeps no parts of ours
    /// forever; returns how many. Meant for the start of a mount.
    pub async fn sweep_abandoned(&self, older_than: Duration) -> usize {
        multipart::sweep(self, older_than).await
    }

    fn creds(&self) -> Option<&rusty_s3::Credentials> {
        self.credentials.as_ref()
    }

    /// Sends a signed request for `action` with `headers` (those the action signs among
    /// them, with the same values).
    async fn call<'a, A: S3Action<'a>>(
        &self,
        action: &A,
        headers: &[(&str, String)],
        body: Body,
        whole: bool,
    ) -> Result<reqwest::Response, RemoteError> {
        let url = action.sign(SIGNED_FOR);
        let method = match A::METHOD {
            rusty_s3::Method::Head => Method::HEAD,
            rusty_s3::Method::Get => Method::GET,
            rusty_s3::Method::Post => Method::POST,
            rusty_s3::Method::Put => Method::PUT,
            rusty_s3::Method::Delete => Method::DELETE,
        };
        self.http.send(method, url, headers, body, whole).await
    }

    /// One page of a listing of `prefix`: with the `/` delimiter (children) or without
    /// (every key below).
    async fn list_page(
        &self,
        prefix: &str,
        delimiter: bool,
        token: Option<&str>,
        max: Option<usize>,
    ) -> Result<ListObjectsV2Response, RemoteError> {
        let mut action = ListObjectsV2::new(&self.bucket, self.creds());
        if !prefix.is_empty() {
            action.with_prefix(prefix);
        }
        if delimiter {
            action.with_delimiter("/");
        }
        if let Some(t) = token {
            action.with_continuation_token(t);
        }
        if let Some(m) = max {
            action.with_max_keys(m);
        }
        let resp = self.call(&action, &[], Body::Empty, false).await?;
        let text = read_text(resp, self.http.timeout()).await?;
        ListObjectsV2::parse_response(&text)
            .map_err(|e| RemoteError::Malformed(format!("ListObjectsV2 reply: {e}")))
    }

    /// Whether any key starts with `prefix`.
    async fn any_under(&self, prefix: &str) -> Result<bool, RemoteError> {
        let page = again(|| self.list_page(prefix, false, None, Some(1))).await?;
        Ok(!page.contents.is_empty() || !page.common_prefixes.is_empty())
    }

    /// HEAD of `key`: the file entry named `name`.
    async fn head(&self, key: &str, name: &str) -> Result<RemoteEntry, RemoteError> {
        let action = self.bucket.head_object(self.creds(), key);
        let resp = self.call(&action, &[], Body::Empty, true).await?;
        let h = resp.headers();
        let text = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
        let size = text(CONTENT_LENGTH.as_str()).and_then(|v| v.trim().parse::<u64>().ok());
        let mtime = text(MTIME_META).and_then(parse_mtime).or_else(|| {
            text(LAST_MODIFIED.as_str()).and_then(|v| httpdate::parse_http_date(v).ok())
        });
        Ok(file_entry(name, size, text(ETAG.as_str()), mtime))
    }

    /// A single PUT of `key`.
    async fn put_single(
        &self,
        key: &str,
        body: Body,
        len: u64,
        precondition: &Precondition,
        mtime: Option<SystemTime>,
    ) -> Result<Option<ETag>, RemoteError> {
        let mut action = self.bucket.put_object(self.creds(), key);
        let mut headers = vec![
            ("content-length", len.to_string()),
            ("content-type", "application/octet-stream".to_string()),
        ];
        if let Some(t) = mtime {
            action.headers_mut().insert(MTIME_META, format_mtime(t));
            headers.push((MTIME_META, format_mtime(t)));
        }
        headers.extend(precondition_headers(precondition));
        let resp = self.call(&action, &headers, body, false).await?;
        Ok(resp
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .and_then(ETag::parse))
    }

    /// DELETE of `key` (succeeds also if there is none).
    async fn delete_key(&self, key: &str, precondition: &Precondition) -> Result<(), RemoteError> {
        let action = self.bucket.delete_object(self.creds(), key);
        let headers = precondition_headers(precondition);
        self.call(&action, &headers, Body::Empty, true)
            .await
            .map(drop)
    }

    /// Server-side copy of `from` to `to` (metadata kept).
    async fn copy_key(&self, from: &str, to: &str) -> Result<(), RemoteError> {
        let mut action = self.bucket.put_object(self.creds(), to);
        let source = format!("/{}/{}", self.bucket.name(), encode_key(from));
        action
            .headers_mut()
            .insert("x-amz-copy-source", source.clone());
        action
            .headers_mut()
            .insert("x-amz-metadata-directive", "COPY");
        let headers = [
            ("x-amz-copy-source", source),
            ("x-amz-metadata-directive", "COPY".to_string()),
            ("content-length", "0".to_string()),
        ];
        let resp = self
            .call(&action, &headers, Body::Bytes(Bytes::new()), true)
            .await?;
        // A copy can fail after its 200 status: the error is then in the body.
        let text = read_text(resp, self.http.timeout()).await?;
        if text.contains("<Error>") {
            let code = text
                .split("<Code>")
                .nth(1)
                .and_then(|r| r.split("</Code>").next());
            return Err(http::error_for(500, code));
        }
        Ok(())
    }

    /// Moves every object under the folder prefix `from` to `to`, one at a time (copy,
    /// then delete): a crash leaves each object in one place or both, never in none.
    async fn move_prefix(&self, from: &str, to: &str) -> Result<(), RemoteError> {
        loop {
            // From the start each time: the keys handled are gone.
            let page = again(|| self.list_page(from, false, None, None)).await?;
            if page.contents.is_empty() {
                return Ok(());
            }
            for obj in &page.contents {
                let Some(rest) = obj.key.strip_prefix(from) else {
                    continue;
                };
                let target = format!("{to}{rest}");
                again(|| self.copy_key(&obj.key, &target)).await?;
                again(|| self.delete_key(&obj.key, &Precondition::None)).await?;
            }
        }
    }

    /// Keeps an emptied folder (its last child deleted or moved away) by writing its
    /// marker, as a folder on a file server would stay.
    async fn keep_folder(&self, path: &RemotePath) {
        let Some(parent) = path.parent() else { return };
        if parent.is_root() {
            return;
        }
        let prefix = dir_prefix(&self.prefix, &parent);
        match self.any_under(&prefix).await {
            Ok(true) => {}
            Ok(false) => {
                if let Err(e) = again(|| {
                    self.put_single(
                        &prefix,
                        Body::Bytes(Bytes::new()),
                        0,
                        &Precondition::None,
                        None,
                    )
                })
                .await
                {
                    warn!(folder = %parent, error = %e, "cannot keep the emptied folder");
                }
            }
            Err(e) => debug!(folder = %parent, error = %e, "cannot check the folder"),
        }
    }
}

/// `If-Match` / `If-None-Match: *` for a precondition (none for a made-up version, which
/// the write-back checks itself).
fn precondition_headers(p: &Precondition) -> Vec<(&'static str, String)> {
    match p {
        Precondition::IfMatch(t) if !t.is_synthetic() => vec![("if-match", t.to_header())],
        Precondition::IfNoneExists => vec![("if-none-match", "*".to_string())],
        _ => Vec::new(),
    }
}

/// A key as `x-amz-copy-source` wants it: percent-encoded except `/`.
fn encode_key(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[async_trait]
impl Remote for S3 {
    async fn list(&self, path: &RemotePath) -> Result<Listing, RemoteError> {
        let children = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let into = children.clone();
        let head = self
            .list_each(
                path,
                Box::new(move |c| {
                    into.lock().unwrap_or_else(|p| p.into_inner()).push(c);
                    Ok(())
                }),
            )
            .await?;
        let children = std::mem::take(&mut *children.lock().unwrap_or_else(|p| p.into_inner()));
        Ok(Listing {
            dir: head.dir,
            children,
            complete: head.complete,
        })
    }

    #[tracing::instrument(level = "debug", skip(self, sink), fields(%path))]
    async fn list_each(
        &self,
        path: &RemotePath,
        mut sink: ChildSink,
    ) -> Result<ListingHead, RemoteError> {
        let listed = dir_prefix(&self.prefix, path);
        let mut token: Option<String> = None;
        let (mut any, mut count) = (false, 0usize);
        loop {
            let page = again(|| self.list_page(&listed, true, token.as_deref(), None)).await?;
            any |= !page.contents.is_empty() || !page.common_prefixes.is_empty();
            for obj in &page.contents {
                match classify(&listed, &obj.key) {
                    Listed::Child(name) => {
                        let mtime = obj.last_modified.as_deref().and_then(parse_iso);
                        sink(file_entry(name, obj.size, obj.etag.as_deref(), mtime))?;
                        count += 1;
                    }
                    Listed::Marker => {}
                    Listed::Hostile(why) => {
                        warn!(key = %obj.key.escape_debug(), why, "key skipped: it cannot be a name here")
                    }
                }
            }
            for cp in &page.common_prefixes {
                let name = cp.prefix.strip_suffix('/').unwrap_or(&cp.prefix);
                match classify(&listed, name) {
                    Listed::Child(name) => {
                        sink(dir_entry(name))?;
                        count += 1;
                    }
                    _ => {
                        warn!(prefix = %cp.prefix.escape_debug(), "folder skipped: it cannot be a name here (empty, '.', '..', NUL or too long)")
                    }
                }
            }
            match page.next_continuation_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        if !any && !path.is_root() {
            return Err(RemoteError::NotFound);
        }
        Ok(ListingHead {
            dir: dir_entry(""),
            complete: true,
            children: count,
        })
    }

    async fn stat(&self, path: &RemotePath) -> Result<RemoteEntry, RemoteError> {
        let Some(name) = path.name() else {
            // The root: any answer proves the bucket is there and readable.
            again(|| self.list_page(&self.prefix, true, None, Some(1))).await?;
            return Ok(dir_entry(""));
        };
        let key = object_key(&self.prefix, path);
        match again(|| self.head(&key, name)).await {
            Ok(e) => Ok(e),
            Err(RemoteError::NotFound) => {
                if self.any_under(&dir_prefix(&self.prefix, path)).await? {
                    Ok(dir_entry(name))
                } else {
                    Err(RemoteError::NotFound)
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn read(
        &self,
        path: &RemotePath,
        range: Option<Range<u64>>,
    ) -> Result<Download, RemoteError> {
        let key = object_key(&self.prefix, path);
        let action = self.bucket.get_object(self.creds(), &key);
        let mut headers = Vec::new();
        if let Some(r) = &range {
            if r.start >= r.end {
                return Ok(empty_download());
            }
            headers.push(("range", format!("bytes={}-{}", r.start, r.end - 1)));
        }
        let resp = match self.call(&action, &headers, Body::Empty, false).await {
            Err(RemoteError::Status(416)) => return Ok(empty_download()),
            other => other?,
        };
        if range.as_ref().is_some_and(|r| r.start > 0) && resp.status().as_u16() != 206 {
            return Err(RemoteError::Malformed(
                "the store ignored the Range of a GET".into(),
            ));
        }
        let len = resp.content_length();
        let etag = resp
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .and_then(ETag::parse);
        Ok(Download {
            len,
            etag,
            made_up: None,
            skipped: 0,
            body: body_stream(resp, len, self.http.timeout()),
        })
    }

    #[tracing::instrument(level = "debug", skip(self, body, precondition, mtime), fields(%path))]
    async fn put(
        &self,
        path: &RemotePath,
        body: ByteStream,
        len: u64,
        precondition: Precondition,
        mtime: Option<SystemTime>,
    ) -> Result<Option<ETag>, RemoteError> {
        let key = object_key(&self.prefix, path);
        if len > MULTIPART_THRESHOLD {
            return multipart::upload(self, &key, body, len, &precondition, mtime).await;
        }
        let body = Body::Stream(Box::pin(edrive_remote::SizedBody::new(body, len)));
        self.put_single(&key, body, len, &precondition, mtime).await
    }

    async fn mkdir(&self, path: &RemotePath) -> Result<(), RemoteError> {
        if path.is_root() {
            return Ok(());
        }
        let marker = dir_prefix(&self.prefix, path);
        self.put_single(
            &marker,
            Body::Bytes(Bytes::new()),
            0,
            &Precondition::None,
            None,
        )
        .await
        .map(drop)
    }

    #[tracing::instrument(level = "debug", skip(self), fields(%from, %to))]
    async fn rename(
        &self,
        from: &RemotePath,
        to: &RemotePath,
        overwrite: bool,
    ) -> Result<(), RemoteError> {
        let (Some(name), Some(to_name)) = (from.name(), to.name()) else {
            return Err(RemoteError::Local("cannot rename the root".into()));
        };
        let from_key = object_key(&self.prefix, from);
        let to_key = object_key(&self.prefix, to);
        match again(|| self.head(&from_key, name)).await {
            Ok(_) => {
                if !overwrite {
                    match again(|| self.head(&to_key, to_name)).await {
                        Ok(_) => return Err(RemoteError::PreconditionFailed),
                        Err(RemoteError::NotFound) => {}
                        Err(e) => return Err(e),
                    }
                }
                again(|| self.copy_key(&from_key, &to_key)).await?;
                again(|| self.delete_key(&from_key, &Precondition::None)).await?;
            }
            Err(RemoteError::NotFound) => {
                let from_dir = dir_prefix(&self.prefix, from);
                let to_dir = dir_prefix(&self.prefix, to);
                if !self.any_under(&from_dir).await? {
                    return Err(RemoteError::NotFound);
                }
                let resumed = self
                    .journal
                    .as_ref()
                    .is_some_and(|j| j.renaming(&from_dir, &to_dir));
                if !overwrite && !resumed && self.any_under(&to_dir).await? {
                    return Err(RemoteError::PreconditionFailed);
                }
                if let Some(j) = &self.journal {
                    j.start_rename(&from_dir, &to_dir)?;
                }
                self.move_prefix(&from_dir, &to_dir).await?;
                if let Some(j) = &self.journal {
                    j.end_rename(&from_dir, &to_dir);
                }
            }
            Err(e) => return Err(e),
        }
        self.keep_folder(from).await;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip(self, precondition), fields(%path))]
    async fn delete(
        &self,
        path: &RemotePath,
        precondition: Precondition,
    ) -> Result<(), RemoteError> {
        if path.is_root() {
            return Err(RemoteError::Local("cannot delete the root".into()));
        }
        let key = object_key(&self.prefix, path);
        if !matches!(precondition, Precondition::None) {
            self.delete_key(&key, &precondition).await?;
        } else {
            let dir = dir_prefix(&self.prefix, path);
            let is_dir = self.any_under(&dir).await?;
            if is_dir {
                loop {
                    let page = again(|| self.list_page(&dir, false, None, None)).await?;
                    if page.contents.is_empty() {
                        break;
                    }
                    for obj in &page.contents {
                        again(|| self.delete_key(&obj.key, &Precondition::None)).await?;
                    }
                }
            } else {
                // A file, or nothing: S3 answers both alike.
                match again(|| self.head(&key, "")).await {
                    Ok(_) => self.delete_key(&key, &Precondition::None).await?,
                    Err(e) => return Err(e),
                }
            }
        }
        self.keep_folder(path).await;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("{} at {}", self.url, self.endpoint)
    }
}

fn empty_download() -> Download {
    Download {
        len: Some(0),
        etag: None,
        made_up: None,
        skipped: 0,
        body: Box::pin(futures_util::stream::empty()),
    }
}
