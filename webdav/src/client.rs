//! The HTTP side: one pooled reqwest client, the base URL, credentials, timeouts,
//! redirects and the mapping of transport failures to [`RemoteError`].

use std::error::Error as _;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, IF_MATCH, IF_NONE_MATCH, LOCATION};
use reqwest::{Method, Response, Url};
use secrecy::SecretString;
use tracing::debug;

use super::href::{join_url, path_parts};
use super::status::{error_for_status, MAX_ERROR_BODY};
use super::{Credentials, WebDavConfig};
use crate::remote::{ByteStream, Precondition, RemoteError, RemotePath};
pub(crate) use edrive_remote::http::{chain, read_capped, transport_error};

/// Sent with every request.
const USER_AGENT: &str = concat!("edrive/", env!("CARGO_PKG_VERSION"));

/// Redirects followed per request (only for requests whose body can be sent again).
const MAX_REDIRECTS: usize = 5;

/// How long an idle pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(4);

/// A request body.
pub(crate) enum Body {
    /// No body.
    Empty,
    /// A body in memory; can be sent again after a redirect.
    Bytes(Bytes),
    /// A streamed upload; sent once, so redirects are not followed.
    Stream(ByteStream),
}

/// How long a request may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Deadline {
    /// The request timeout covers everything, the reply body included.
    Total,
    /// The request timeout covers the wait for the response headers only (downloads:
    /// the body has its own inactivity timeout).
    Headers,
    /// No timeout beyond the connect timeout (uploads of unbounded size).
    Unbounded,
}

/// One request to make.
pub(crate) struct Call {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Body,
    pub(crate) deadline: Deadline,
}

impl Call {
    /// A request without headers or body.
    pub(crate) fn new(method: Method, url: Url, deadline: Deadline) -> Call {
        Call {
            method,
            url,
            headers: HeaderMap::new(),
            body: Body::Empty,
            deadline,
        }
    }

    /// Adds a header; fails with [`RemoteError::Local`] if the value cannot be a header.
    pub(crate) fn header(mut self, name: HeaderName, value: &str) -> Result<Call, RemoteError> {
        let value = HeaderValue::from_str(value)
            .map_err(|_| RemoteError::Local(format!("invalid value for header {name}")))?;
        self.headers.insert(name, value);
        Ok(self)
    }

    /// Adds `If-Match` / `If-None-Match` for a precondition.
    pub(crate) fn precondition(self, p: &Precondition) -> Result<Call, RemoteError> {
        match p {
            Precondition::None => Ok(self),
            // A made-up version means nothing to the server; the write-back checks it
            // itself before writing (see `sync` in `edrive-fs-core`).
            Precondition::IfMatch(etag) if etag.is_synthetic() => Ok(self),
            Precondition::IfMatch(etag) => self.header(IF_MATCH, &etag.to_header()),
            Precondition::IfNoneExists => self.header(IF_NONE_MATCH, "*"),
        }
    }

    /// Sets the body.
    pub(crate) fn body(mut self, body: Body) -> Call {
        self.body = body;
        self
    }
}

/// The connection to one WebDAV server.
pub(crate) struct Client {
    http: reqwest::Client,
    /// The base URL: no userinfo, no query or fragment, path ending with `/`.
    base: Url,
    /// The decoded components of the base URL's path.
    base_parts: Vec<String>,
    /// Replaced as a whole while requests run; each request uses one snapshot.
    credentials: RwLock<Arc<Credentials>>,
    timeout: Duration,
}

impl Client {
    /// Validates the configuration and builds the HTTP client.
    pub(crate) fn new(config: &WebDavConfig) -> Result<Client, RemoteError> {
        let mut base = Url::parse(config.url.trim())
            .map_err(|e| RemoteError::Local(format!("invalid server URL: {e}")))?;
        if base.scheme() != "http" && base.scheme() != "https" {
            return Err(RemoteError::Local(
                "server URL must be http:// or https://".into(),
            ));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(RemoteError::Local(
                "server URL must not have a query or fragment".into(),
            ));
        }
        let credentials = match (&config.bearer_token, &config.user) {
            (Some(_), Some(_)) => {
                return Err(RemoteError::Local(
                    "give either a user or a bearer token, not both".into(),
                ))
            }
            (Some(token), None) => Credentials::Bearer(token.clone()),
            (None, Some(user)) => Credentials::Basic {
                user: user.clone(),
                password: config.password.clone(),
            },
            (None, None) if !base.username().is_empty() => Credentials::Basic {
                user: decode_userinfo(base.username()),
                password: base
                    .password()
                    .map(|p| SecretString::from(decode_userinfo(p)))
                    .or_else(|| config.password.clone()),
            },
            (None, None) => Credentials::None,
        };
        let stripped = base.set_username("").and_then(|()| base.set_password(None));
        if stripped.is_err() {
            return Err(RemoteError::Local(
                "server URL cannot carry credentials".into(),
            ));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let base_parts = path_parts(base.path())
            .map_err(|e| RemoteError::Local(format!("server URL path is {e}")))?;
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .tcp_keepalive(Duration::from_secs(30))
            // Below the usual server keep-alive timeouts (Apache and lighttpd: 5 s), so a
            // pooled connection is rarely one the server is closing as we send on it.
            .pool_idle_timeout(POOL_IDLE)
            .build()
            .map_err(|e| RemoteError::Local(format!("cannot set up HTTP client: {}", chain(&e))))?;
        Ok(Client {
            http,
            base,
            base_parts,
            credentials: RwLock::new(Arc::new(credentials)),
            timeout: config.request_timeout,
        })
    }

    /// The base URL (without credentials, ending with `/`).
    pub(crate) fn base(&self) -> &Url {
        &self.base
    }

    /// The decoded components of the base URL's path.
    pub(crate) fn base_parts(&self) -> &[String] {
        &self.base_parts
    }

    /// The credentials requests use now.
    pub(crate) fn credentials(&self) -> Arc<Credentials> {
        self.credentials
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the credentials; requests already sent keep the old ones.
    pub(crate) fn set_credentials(&self, credentials: Credentials) {
        *self.credentials.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(credentials);
    }

    /// The request timeout.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The URL of `path`; folders for PROPFIND get a trailing slash with `dir`.
    pub(crate) fn url(&self, path: &RemotePath, dir: bool) -> Result<Url, RemoteError> {
        Url::parse(&join_url(self.base.as_str(), path.parts(), dir))
            .map_err(|e| RemoteError::Local(format!("cannot build URL for {path}: {e}")))
    }

    /// Sends a request and returns the response, whatever its status. Redirects are
    /// followed (method and body kept) unless the body is a stream; credentials are only
    /// sent to the base URL's origin.
    pub(crate) async fn send(&self, call: Call) -> Result<Response, RemoteError> {
        let credentials = self.credentials();
        self.send_as(call, &credentials).await
    }

    /// [`Client::send`] with the given credentials instead of the current ones.
    pub(crate) async fn send_as(
        &self,
        mut call: Call,
        credentials: &Credentials,
    ) -> Result<Response, RemoteError> {
        let mut hops = 0;
        let mut retried = false;
        loop {
            let body = std::mem::replace(&mut call.body, Body::Empty);
            let replay = match &body {
                Body::Empty => Some(Body::Empty),
                Body::Bytes(b) => Some(Body::Bytes(b.clone())),
                Body::Stream(_) => None,
            };
            let mut req = self.http.request(call.method.clone(), call.url.clone());
            req = req.headers(call.headers.clone());
            if call.url.origin() == self.base.origin() {
                req = credentials.apply(req);
            }
            req = match body {
                Body::Empty => req,
                Body::Bytes(b) => req.body(b),
                Body::Stream(s) => req.body(reqwest::Body::wrap_stream(s)),
            };
            if call.deadline == Deadline::Total {
                req = req.timeout(self.timeout);
            }
            let sent = req.send();
            let result = if call.deadline == Deadline::Headers {
                match tokio::time::timeout(self.timeout, sent).await {
                    Ok(r) => r,
                    Err(_) => {
                        return Err(RemoteError::Unreachable(format!(
                            "no response within {} s",
                            self.timeout.as_secs_f32()
                        )))
                    }
                }
            } else {
                sent.await
            };
            let resp = match result {
                Ok(resp) => resp,
                // A pooled connection the server closed as the request went out: a request
                // that changes nothing is sent again at once, on a new connection.
                Err(e) if !retried && is_safe(&call.method) && is_stale_connection(&e) => {
                    debug!(method = %call.method, error = %chain(&e), "connection closed by the server; sending again");
                    retried = true;
                    if let Some(replay) = replay {
                        call.body = replay;
                    }
                    continue;
                }
                Err(e) => return Err(transport_error(e)),
            };
            let next = match replay {
                Some(replay) if hops < MAX_REDIRECTS => redirect_target(&resp).map(|u| (u, replay)),
                _ => None,
            };
            match next {
                Some((url, replay)) => {
                    debug!(from = %call.url, to = %url, status = resp.status().as_u16(), "following redirect");
                    call.url = url;
                    call.body = replay;
                    hops += 1;
                }
                None => return Ok(resp),
            }
        }
    }

    /// Returns the response if its status is a success, else the matching error (reading
    /// a 423 body for the lock owner).
    pub(crate) async fn check(&self, resp: Response) -> Result<Response, RemoteError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let code = status.as_u16();
        let body = if code == 423 {
            match tokio::time::timeout(self.timeout, read_capped(resp, MAX_ERROR_BODY)).await {
                Ok(Ok(body)) => Some(body),
                _ => None,
            }
        } else {
            None
        };
        debug!(code, "request failed");
        Err(error_for_status(code, body.as_deref()))
    }
}

/// Whether a request with this method changes nothing on the server, so sending it twice
/// is harmless.
fn is_safe(method: &Method) -> bool {
    matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS" | "PROPFIND")
}

/// Whether a failed request died with its connection (closed or reset by the server
/// before any reply), as a kept-alive connection does when the server times it out just as
/// the request is sent.
fn is_stale_connection(e: &reqwest::Error) -> bool {
    if e.is_connect() || e.is_timeout() || e.is_builder() {
        return false;
    }
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            ) {
                return true;
            }
        }
        let text = s.to_string();
        if text.contains("connection closed before message completed")
            || text.contains("connection reset")
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// The absolute URL a 301/302/307/308 response points to, if any.
fn redirect_target(resp: &Response) -> Option<Url> {
    if !matches!(resp.status().as_u16(), 301 | 302 | 307 | 308) {
        return None;
    }
    let location = resp.headers().get(LOCATION)?.to_str().ok()?;
    let url = resp.url().join(location).ok()?;
    matches!(url.scheme(), "http" | "https").then_some(url)
}

/// Seconds since the Unix epoch, for `X-OC-Mtime`; `None` before 1970.
pub(crate) fn unix_seconds(t: SystemTime) -> Option<u64> {
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// Percent-decodes the user or password part of a URL.
fn decode_userinfo(raw: &str) -> String {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned()
}
