//! edrive's WebDAV backend: [`WebDav`] implements [`Remote`] over HTTP(S) with PROPFIND
//! listings, ranged GETs, streamed PUTs, MKCOL, MOVE and DELETE. The binary builds it from
//! a [`WebDavConfig`] and hands it to the filesystem core as an `Arc<dyn Remote>`; what the
//! server guarantees is learnt through the trait by `edrive_remote::capabilities::probe`.
//! A server's quirks (hrefs, status codes, XML it gets wrong) stay in this crate.
//!
//! Not for anything above the trait: it knows no metadata store, cache, inode or
//! write-back policy (that is `edrive-fs-core`), and no kernel adapter.
//!
//! Modules: `client` (HTTP, timeouts, redirects), `credentials` (Basic or bearer,
//! swappable at runtime), `href` (paths ↔ URLs),
//! `propfind` (the multistatus parser), `xml` (namespace-aware XML reading), `status`
//! (HTTP status → [`RemoteError`]), `download` / `upload` (body streams), `streamed`
//! (listings parsed as they arrive).

mod client;
mod credentials;
mod download;
mod href;
mod propfind;
mod status;
mod streamed;
mod xml;

#[cfg(test)]
mod tests;

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{HeaderName, CONTENT_LENGTH, CONTENT_TYPE, ETAG};
use reqwest::Method;
use secrecy::SecretString;
use url::{Position, Url};

use self::client::{Body, Call, Client, Deadline};
pub use self::credentials::Credentials;
// The trait crate under the name the modules use for it (`crate::remote::…`).
use edrive_remote as remote;
use edrive_remote::{
    ByteStream, ChildSink, Download, ETag, Listing, ListingHead, Precondition, Quota, Remote,
    RemoteEntry, RemoteError, RemotePath,
};

/// How to reach a WebDAV server.
#[derive(Clone)]
pub struct WebDavConfig {
    /// The base URL of the share (`https://host/remote.php/dav/files/alice/`); a trailing
    /// slash is optional. Credentials in the URL are used if `user` is `None`.
    pub url: String,
    /// User name for HTTP Basic authentication; none means no authentication.
    pub user: Option<String>,
    /// Password for HTTP Basic authentication.
    pub password: Option<SecretString>,
    /// A bearer token (`Authorization: Bearer ...`) instead of a user and password.
    pub bearer_token: Option<SecretString>,
    /// Limit for establishing a connection.
    pub connect_timeout: Duration,
    /// Limit for a metadata request as a whole, and for waiting on a download's headers or
    /// its next body bytes.
    pub request_timeout: Duration,
}

impl WebDavConfig {
    /// A configuration without credentials, with a 5 s connect and 30 s request timeout.
    pub fn new(url: impl Into<String>) -> WebDavConfig {
        WebDavConfig {
            url: url.into(),
            user: None,
            password: None,
            bearer_token: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl fmt::Debug for WebDavConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebDavConfig")
            .field("url", &redact_userinfo(&self.url))
            .field("user", &self.user)
            .field("password", &self.password)
            .field("bearer_token", &self.bearer_token)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// `url` as parsed, with any `user:password@` replaced by `<redacted>@`; `<invalid URL>`
/// if it does not parse (it may still carry credentials).
fn redact_userinfo(url: &str) -> String {
    let Ok(parsed) = Url::parse(url.trim()) else {
        return "<invalid URL>".into();
    };
    if parsed.username().is_empty() && parsed.password().is_none() {
        return parsed.into();
    }
    format!(
        "{}<redacted>@{}",
        &parsed[..Position::BeforeUsername],
        &parsed[Position::BeforeHost..]
    )
}

/// A WebDAV server as a [`Remote`].
pub struct WebDav {
    client: Client,
    /// The server wants a trailing `/` on a folder's URL (nginx answers MKCOL, MOVE and
    /// DELETE of `/dir` with 400 or 409): learnt from the first folder request that needed
    /// it, so later MKCOLs go out with the slash at once.
    slash_first: AtomicBool,
}

impl fmt::Debug for WebDav {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebDav")
            .field("url", &self.describe())
            .finish()
    }
}

impl WebDav {
    /// Validates the configuration and sets up the (lazily connecting) HTTP client.
    /// Fails with [`RemoteError::Local`] for an unusable URL.
    pub fn new(config: WebDavConfig) -> Result<WebDav, RemoteError> {
        Ok(WebDav {
            client: Client::new(&config)?,
            slash_first: AtomicBool::new(false),
        })
    }

    /// The credentials requests use now.
    pub fn credentials(&self) -> Arc<Credentials> {
        self.client.credentials()
    }

    /// Replaces the credentials of every later request (requests in flight keep theirs).
    pub fn set_credentials(&self, credentials: Credentials) {
        self.client.set_credentials(credentials);
    }

    /// Checks `credentials` without using them for anything else: a PROPFIND Depth 0 of
    /// the root sent with them. Returns the root as the server describes it.
    pub async fn check_credentials(
        &self,
        credentials: &Credentials,
    ) -> Result<RemoteEntry, RemoteError> {
        self.stat_as(&RemotePath::root(), Some(credentials)).await
    }

    /// PROPFIND Depth 0 of `path` (with the given credentials instead of the current
    /// ones), its reply parsed as it arrives.
    async fn stat_as(
        &self,
        path: &RemotePath,
        credentials: Option<&Credentials>,
    ) -> Result<RemoteEntry, RemoteError> {
        let resp = self
            .propfind_reply(
                path,
                "0",
                false,
                propfind::REQUEST_BODY,
                credentials,
                Deadline::Total,
            )
            .await?;
        let (base, path) = (self.href_base(), path.clone());
        let limits = streamed::Limits {
            max_bytes: propfind::MAX_REPLY,
            idle: self.client.timeout(),
        };
        streamed::parse_streamed(resp, limits, move |body| {
            propfind::parse_stat(body, &base, &path)
        })
        .await
    }

    /// The base URL as the hrefs of a reply are read against it.
    fn href_base(&self) -> href::Base {
        href::Base::new(self.client.base(), self.client.base_parts())
    }

    /// Sends a PROPFIND with `body`; the response, once it is known to carry a
    /// multistatus body.
    async fn propfind_reply(
        &self,
        path: &RemotePath,
        depth: &str,
        dir: bool,
        body: &'static str,
        credentials: Option<&Credentials>,
        deadline: Deadline,
    ) -> Result<reqwest::Response, RemoteError> {
        let call = Call::new(method("PROPFIND")?, self.client.url(path, dir)?, deadline)
            .header(HeaderName::from_static("depth"), depth)?
            .header(CONTENT_TYPE, "application/xml")?
            .body(Body::Bytes(Bytes::from_static(body.as_bytes())));
        let sent = match credentials {
            Some(c) => self.client.send_as(call, c).await?,
            None => self.client.send(call).await?,
        };
        let resp = self.client.check(sent).await?;
        match resp.status().as_u16() {
            207 | 200 => Ok(resp),
            code => Err(RemoteError::Status(code)),
        }
    }

    /// Sends `call` again, addressed as a folder (trailing `/`) after `first` refused the
    /// plain URL; `first` stands if that fails too (the path was no folder, or the refusal
    /// had another reason). Success teaches that the server wants the slash.
    async fn retry_as_collection(&self, first: RemoteError, call: Call) -> Result<(), RemoteError> {
        match self.simple(call).await {
            Ok(()) => {
                if !self.slash_first.swap(true, Ordering::Relaxed) {
                    tracing::info!("the server wants folder URLs to end with '/'");
                }
                Ok(())
            }
            Err(_) => Err(first),
        }
    }

    /// Whether folder URLs are sent with a trailing `/` first (learnt; see
    /// [`WebDav::retry_as_collection`]).
    pub fn wants_folder_slash(&self) -> bool {
        self.slash_first.load(Ordering::Relaxed)
    }

    /// Sends a request without body and checks for a 2xx status.
    async fn simple(&self, call: Call) -> Result<(), RemoteError> {
        self.client
            .check(self.client.send(call).await?)
            .await
            .map(drop)
    }
}

impl WebDav {
    /// The Depth 1 PROPFIND reply for `path`, its body still to come. A listing is parsed
    /// as it arrives: a folder's reply grows with its entries (about 400 bytes each) and
    /// is never held whole.
    async fn listing_reply(&self, path: &RemotePath) -> Result<reqwest::Response, RemoteError> {
        self.propfind_reply(
            path,
            "1",
            true,
            propfind::REQUEST_BODY,
            None,
            Deadline::Headers,
        )
        .await
    }

    /// How much of a listing reply is read. The request timeout bounds the wait for the
    /// headers and each pause of the body, not the whole reply: a large folder on a slow
    /// link takes as long as it takes.
    fn listing_limits(&self) -> streamed::Limits {
        streamed::Limits {
            max_bytes: propfind::MAX_LISTING_REPLY,
            idle: self.client.timeout(),
        }
    }
}

/// Whether a refusal of a folder request may mean "address a folder with a trailing `/`"
/// (nginx: 400 for MOVE, 409 for MKCOL and DELETE; others redirect, which is followed).
fn wants_slash(e: &RemoteError) -> bool {
    matches!(e, RemoteError::Status(400 | 409))
}

/// An HTTP method by name (the WebDAV ones have no constant).
fn method(name: &str) -> Result<Method, RemoteError> {
    Method::from_bytes(name.as_bytes())
        .map_err(|_| RemoteError::Local(format!("bad method {name}")))
}

#[async_trait]
impl Remote for WebDav {
    async fn list(&self, path: &RemotePath) -> Result<Listing, RemoteError> {
        let resp = self.listing_reply(path).await?;
        let base = self.href_base();
        let dir = path.clone();
        streamed::parse_streamed(resp, self.listing_limits(), move |body| {
            propfind::parse_listing_from(body, &base, &dir)
        })
        .await
    }

    async fn list_each(
        &self,
        path: &RemotePath,
        sink: ChildSink,
    ) -> Result<ListingHead, RemoteError> {
        let resp = self.listing_reply(path).await?;
        let base = self.href_base();
        let dir = path.clone();
        streamed::parse_streamed(resp, self.listing_limits(), move |body| {
            propfind::each_child(body, &base, &dir, sink)
        })
        .await
    }

    async fn stat(&self, path: &RemotePath) -> Result<RemoteEntry, RemoteError> {
        self.stat_as(path, None).await
    }

    async fn read(
        &self,
        path: &RemotePath,
        range: Option<Range<u64>>,
    ) -> Result<Download, RemoteError> {
        let mut call = Call::new(
            Method::GET,
            self.client.url(path, false)?,
            Deadline::Headers,
        );
        if let Some(r) = &range {
            if r.start >= r.end {
                return Ok(download::empty());
            }
            call = call.header(
                reqwest::header::RANGE,
                &format!("bytes={}-{}", r.start, r.end - 1),
            )?;
        }
        let resp = self.client.check(self.client.send(call).await?).await?;
        download::download(resp, range.as_ref(), self.client.timeout())
    }

    async fn put(
        &self,
        path: &RemotePath,
        body: ByteStream,
        len: u64,
        precondition: Precondition,
        mtime: Option<SystemTime>,
    ) -> Result<Option<ETag>, RemoteError> {
        let mut call = Call::new(
            Method::PUT,
            self.client.url(path, false)?,
            Deadline::Unbounded,
        )
        .header(CONTENT_LENGTH, &len.to_string())?
        .header(CONTENT_TYPE, "application/octet-stream")?
        .precondition(&precondition)?
        .body(Body::Stream(Box::pin(crate::remote::SizedBody::new(
            body, len,
        ))));
        if let Some(secs) = mtime.and_then(client::unix_seconds) {
            call = call.header(HeaderName::from_static("x-oc-mtime"), &secs.to_string())?;
        }
        let resp = self.client.check(self.client.send(call).await?).await?;
        let headers = resp.headers();
        let etag = headers
            .get(ETAG)
            .or_else(|| headers.get("oc-etag"))
            .and_then(|v| v.to_str().ok())
            .and_then(ETag::parse);
        Ok(etag)
    }

    async fn mkdir(&self, path: &RemotePath) -> Result<(), RemoteError> {
        let slash = self.slash_first.load(Ordering::Relaxed);
        let call = |dir| -> Result<Call, RemoteError> {
            Ok(Call::new(
                method("MKCOL")?,
                self.client.url(path, dir)?,
                Deadline::Total,
            ))
        };
        match self.simple(call(slash)?).await {
            Err(e) if !slash && wants_slash(&e) => self.retry_as_collection(e, call(true)?).await,
            other => other,
        }
    }

    async fn rename(
        &self,
        from: &RemotePath,
        to: &RemotePath,
        overwrite: bool,
    ) -> Result<(), RemoteError> {
        let call = |dir| -> Result<Call, RemoteError> {
            let destination = self.client.url(to, dir)?;
            Call::new(
                method("MOVE")?,
                self.client.url(from, dir)?,
                Deadline::Total,
            )
            .header(HeaderName::from_static("destination"), destination.as_str())?
            .header(
                HeaderName::from_static("overwrite"),
                if overwrite { "T" } else { "F" },
            )
        };
        match self.simple(call(false)?).await {
            Err(e) if wants_slash(&e) => self.retry_as_collection(e, call(true)?).await,
            other => other,
        }
    }

    async fn delete(
        &self,
        path: &RemotePath,
        precondition: Precondition,
    ) -> Result<(), RemoteError> {
        let call = |dir| -> Result<Call, RemoteError> {
            Call::new(Method::DELETE, self.client.url(path, dir)?, Deadline::Total)
                .precondition(&precondition)
        };
        match self.simple(call(false)?).await {
            Err(e) if wants_slash(&e) => self.retry_as_collection(e, call(true)?).await,
            other => other,
        }
    }

    fn describe(&self) -> String {
        self.client.base().to_string()
    }

    /// RFC 4331: `quota-available-bytes` and `quota-used-bytes` of the root (PROPFIND
    /// Depth 0); `None` if the server does not give them.
    async fn quota(&self) -> Result<Option<Quota>, RemoteError> {
        let root = RemotePath::root();
        let resp = self
            .propfind_reply(
                &root,
                "0",
                true,
                propfind::QUOTA_BODY,
                None,
                Deadline::Total,
            )
            .await?;
        let base = self.href_base();
        let limits = streamed::Limits {
            max_bytes: propfind::MAX_REPLY,
            idle: self.client.timeout(),
        };
        streamed::parse_streamed(resp, limits, move |body| {
            propfind::parse_quota(body, &base, &root)
        })
        .await
    }
}
