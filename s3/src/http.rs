//! The HTTP side: one pooled reqwest client, presigned requests sent with the headers
//! they were signed with, S3 error replies mapped to [`RemoteError`], and response bodies
//! as streams that fail rather than end early.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Response};
use tracing::debug;
use url::Url;

use crate::config::S3Config;
pub(crate) use edrive_remote::http::{read_capped, transport_error};
use edrive_remote::{ByteStream, RemoteError};

/// Sent with every request.
const USER_AGENT: &str = concat!("edrive/", env!("CARGO_PKG_VERSION"));
/// Largest error or XML reply read whole (a listing page of 1,000 keys is ~300 KiB).
pub(crate) const MAX_REPLY: usize = 8 << 20;

/// A request body.
pub(crate) enum Body {
    /// None.
    Empty,
    /// In memory (can be sent again).
    Bytes(Bytes),
    /// Streamed, `len` bytes.
    Stream(ByteStream),
}

/// The connection to one store.
pub(crate) struct Http {
    client: reqwest::Client,
    timeout: Duration,
}

impl Http {
    /// Builds the client; an https endpoint trusts the configured CA bundle as well.
    pub(crate) fn new(config: &S3Config) -> Result<Http, RemoteError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .tcp_keepalive(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(4));
        if let Some(pem) = &config.ca_bundle {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| RemoteError::Local(format!("bad CA bundle: {e}")))?;
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder
            .build()
            .map_err(|e| RemoteError::Local(format!("cannot set up HTTP client: {e}")))?;
        Ok(Http {
            client,
            timeout: config.request_timeout,
        })
    }

    /// The request timeout (also the longest pause within a body).
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends one request and returns the response if it succeeded, else the error its
    /// status and S3 error code mean. `whole`: the timeout covers the whole exchange
    /// (else only the wait for the headers; bodies have their own pause limit).
    pub(crate) async fn send(
        &self,
        method: Method,
        url: Url,
        headers: &[(&str, String)],
        body: Body,
        whole: bool,
    ) -> Result<Response, RemoteError> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| RemoteError::Local(format!("bad header name {name}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| RemoteError::Local(format!("invalid value for header {name}")))?;
            map.insert(name, value);
        }
        let mut req = self.client.request(method.clone(), url).headers(map);
        req = match body {
            Body::Empty => req,
            Body::Bytes(b) => req.body(b),
            Body::Stream(s) => req.body(reqwest::Body::wrap_stream(s)),
        };
        let streamed_upload = method == Method::PUT && !whole;
        let resp = if whole {
            req.timeout(self.timeout)
                .send()
                .await
                .map_err(transport_error)?
        } else if streamed_upload {
            req.send().await.map_err(transport_error)?
        } else {
            match tokio::time::timeout(self.timeout, req.send()).await {
                Ok(r) => r.map_err(transport_error)?,
                Err(_) => {
                    return Err(RemoteError::Unreachable(format!(
                        "no response within {} s",
                        self.timeout.as_secs_f32()
                    )))
                }
            }
        };
        if resp.status().is_success() {
            return Ok(resp);
        }
        let code = resp.status().as_u16();
        let body = tokio::time::timeout(self.timeout, read_capped(resp, 64 << 10))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let s3_code = error_code(&body);
        debug!(
            code,
            s3_code = s3_code.as_deref().unwrap_or(""),
            "request failed"
        );
        Err(error_for(code, s3_code.as_deref()))
    }
}

/// The `<Code>` of an S3 error reply.
fn error_code(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<Code>")? + "<Code>".len();
    let end = text[start..].find("</Code>")? + start;
    Some(text[start..end].trim().to_string())
}

/// The error for a failed request's status and S3 error code.
pub(crate) fn error_for(status: u16, code: Option<&str>) -> RemoteError {
    match (status, code) {
        (_, Some("SlowDown" | "ServiceUnavailable" | "InternalError")) => {
            RemoteError::Status(if status >= 500 { status } else { 503 })
        }
        (_, Some("PreconditionFailed" | "ConditionalRequestConflict")) | (412, _) => {
            RemoteError::PreconditionFailed
        }
        (401 | 403, _) => RemoteError::Auth(status),
        (404 | 410, _) => RemoteError::NotFound,
        (507, _) => RemoteError::InsufficientStorage,
        (_, Some("QuotaExceeded" | "EntityTooLarge")) => RemoteError::InsufficientStorage,
        _ => RemoteError::Status(status),
    }
}

/// Reads an XML reply whole (bounded by [`MAX_REPLY`] and the request timeout).
pub(crate) async fn read_text(resp: Response, timeout: Duration) -> Result<String, RemoteError> {
    let body = tokio::time::timeout(timeout, read_capped(resp, MAX_REPLY))
        .await
        .map_err(|_| RemoteError::Transfer("reply stalled".into()))??;
    String::from_utf8(body).map_err(|_| RemoteError::Malformed("reply is not UTF-8".into()))
}

/// A response body as a stream of exactly `len` bytes (if known): an early end is a
/// [`RemoteError::ShortBody`], a pause longer than `idle` a transfer error.
pub(crate) fn body_stream(resp: Response, len: Option<u64>, idle: Duration) -> ByteStream {
    struct State {
        inner: futures_util::stream::BoxStream<'static, reqwest::Result<Bytes>>,
        got: u64,
        done: bool,
    }
    let state = State {
        inner: resp.bytes_stream().boxed(),
        got: 0,
        done: false,
    };
    Box::pin(futures_util::stream::unfold(
        state,
        move |mut s| async move {
            if s.done {
                return None;
            }
            let next = tokio::time::timeout(idle, s.inner.next()).await;
            let item = match next {
                Err(_) => Err(RemoteError::Transfer(format!(
                    "no data for {} s",
                    idle.as_secs_f32()
                ))),
                Ok(Some(Ok(chunk))) => {
                    s.got += chunk.len() as u64;
                    if len.is_some_and(|l| s.got > l) {
                        Err(RemoteError::Malformed("body longer than promised".into()))
                    } else {
                        return Some((Ok(chunk), s));
                    }
                }
                Ok(Some(Err(e))) => match len {
                    Some(expected) if expected > s.got && !e.is_timeout() => {
                        Err(RemoteError::ShortBody {
                            expected,
                            got: s.got,
                        })
                    }
                    _ => Err(transport_error(e)),
                },
                Ok(None) => match len {
                    Some(expected) if expected > s.got => Err(RemoteError::ShortBody {
                        expected,
                        got: s.got,
                    }),
                    _ => return None,
                },
            };
            s.done = true;
            Some((item, s))
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_errors() {
        let body =
            b"<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>m</Message></Error>";
        assert_eq!(error_code(body).as_deref(), Some("SlowDown"));
        assert_eq!(error_for(503, Some("SlowDown")), RemoteError::Status(503));
        assert_eq!(error_for(400, Some("SlowDown")), RemoteError::Status(503));
        assert_eq!(error_for(412, None), RemoteError::PreconditionFailed);
        assert_eq!(
            error_for(409, Some("ConditionalRequestConflict")),
            RemoteError::PreconditionFailed
        );
        assert_eq!(error_for(404, Some("NoSuchKey")), RemoteError::NotFound);
        assert_eq!(error_for(403, Some("AccessDenied")), RemoteError::Auth(403));
        assert_eq!(error_for(500, None), RemoteError::Status(500));
        assert!(RemoteError::Status(503).is_transient());
        assert_eq!(error_code(b"garbage"), None);
    }
}
