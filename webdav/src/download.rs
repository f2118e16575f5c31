//! GET: turning a response into a [`Download`] that delivers exactly the asked bytes,
//! counts them itself, and never ends cleanly before the promised length.

use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use reqwest::header::{HeaderMap, CONTENT_LENGTH, CONTENT_RANGE, ETAG};
use reqwest::Response;
use tokio::time::{Instant, Sleep};

use crate::remote::{Download, ETag, RemoteError};

/// What to take from a response body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Bytes to drop first (a server that ignored Range, or served a wider range).
    pub(crate) skip: u64,
    /// Most bytes to deliver after skipping.
    pub(crate) limit: Option<u64>,
    /// Bytes promised to the caller; fewer is an error.
    pub(crate) promised: Option<u64>,
}

/// Decides how to read a successful GET response, given the range that was asked.
pub(crate) fn plan(
    status: u16,
    headers: &HeaderMap,
    range: Option<&Range<u64>>,
) -> Result<Plan, RemoteError> {
    let content_length = header_str(headers, CONTENT_LENGTH.as_str())
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| RemoteError::Malformed(format!("bad Content-Length {v:?}")))
        })
        .transpose()?;
    let Some(range) = range else {
        return Ok(Plan {
            skip: 0,
            limit: content_length,
            promised: content_length,
        });
    };
    let want = range.end - range.start;
    if status != 206 {
        // The server ignored Range and sends the whole file: skip to the range ourselves.
        let promised = content_length.map(|n| n.saturating_sub(range.start).min(want));
        return Ok(Plan {
            skip: range.start,
            limit: Some(promised.unwrap_or(want)),
            promised,
        });
    }
    let Some(served) = header_str(headers, CONTENT_RANGE.as_str()) else {
        let promised = content_length.map(|n| n.min(want));
        return Ok(Plan {
            skip: 0,
            limit: Some(promised.unwrap_or(want)),
            promised,
        });
    };
    let (first, last) = parse_content_range(served)
        .ok_or_else(|| RemoteError::Malformed(format!("bad Content-Range {served:?}")))?;
    if first > range.start || last < first {
        return Err(RemoteError::Malformed(format!(
            "server sent range {served:?} for bytes {}-{}",
            range.start,
            range.end - 1
        )));
    }
    let served_len = last - first + 1;
    if content_length.is_some_and(|n| n != served_len) {
        return Err(RemoteError::Malformed(format!(
            "Content-Length disagrees with Content-Range {served:?}"
        )));
    }
    let skip = range.start - first;
    let promised = served_len.saturating_sub(skip).min(want);
    Ok(Plan {
        skip,
        limit: Some(promised),
        promised: Some(promised),
    })
}

/// Builds the download of a successful response.
pub(crate) fn download(
    resp: Response,
    range: Option<&Range<u64>>,
    idle: Duration,
) -> Result<Download, RemoteError> {
    let plan = plan(resp.status().as_u16(), resp.headers(), range)?;
    let etag = header_str(resp.headers(), ETAG.as_str()).and_then(ETag::parse);
    let made_up = synthetic_etag(resp.status().as_u16(), resp.headers());
    let inner = Box::pin(resp.bytes_stream());
    Ok(Download {
        len: plan.promised,
        etag,
        made_up,
        skipped: plan.skip,
        body: Box::pin(BodyStream::new(inner, plan, idle)),
    })
}

/// A download of zero bytes.
pub(crate) fn empty() -> Download {
    Download {
        len: Some(0),
        etag: None,
        made_up: None,
        skipped: 0,
        body: Box::pin(futures_util::stream::empty()),
    }
}

/// [`ETag::synthetic`] from a GET reply: `Last-Modified`, and the whole file's size
/// (`Content-Length` of a 200, the total of a 206's `Content-Range`).
fn synthetic_etag(status: u16, headers: &HeaderMap) -> Option<ETag> {
    let mtime = httpdate::parse_http_date(header_str(headers, "last-modified")?).ok()?;
    let size: u64 = if status == 206 {
        header_str(headers, CONTENT_RANGE.as_str())?
            .rsplit_once('/')?
            .1
            .trim()
            .parse()
            .ok()?
    } else {
        header_str(headers, CONTENT_LENGTH.as_str())?
            .trim()
            .parse()
            .ok()?
    };
    Some(ETag::synthetic(mtime, size))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `bytes first-last/total` (total may be `*`) → `(first, last)`.
fn parse_content_range(v: &str) -> Option<(u64, u64)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (span, _total) = rest.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    Some((first.trim().parse().ok()?, last.trim().parse().ok()?))
}

type Inner = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// The body of a download: skips and limits per its [`Plan`], counts delivered bytes,
/// turns an early end into [`RemoteError::ShortBody`] and a stall of `idle` into
/// [`RemoteError::Transfer`].
pub(crate) struct BodyStream {
    inner: Inner,
    plan: Plan,
    delivered: u64,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    /// Whether the timer runs: set when the server has no data for a poll, cleared when
    /// data arrives, so time the caller spends not polling does not count as a stall.
    waiting: bool,
    done: bool,
}

impl BodyStream {
    /// Wraps a raw body stream.
    pub(crate) fn new(inner: Inner, plan: Plan, idle: Duration) -> BodyStream {
        let timer = Box::pin(tokio::time::sleep(idle));
        BodyStream {
            inner,
            plan,
            delivered: 0,
            idle,
            timer,
            waiting: false,
            done: false,
        }
    }

    fn short(&self) -> Option<RemoteError> {
        let expected = self.plan.promised?;
        (self.delivered < expected).then_some(RemoteError::ShortBody {
            expected,
            got: self.delivered,
        })
    }

    fn fail(&mut self, e: RemoteError) -> Poll<Option<Result<Bytes, RemoteError>>> {
        self.done = true;
        Poll::Ready(Some(Err(e)))
    }
}

impl Stream for BodyStream {
    type Item = Result<Bytes, RemoteError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if this.plan.limit.is_some_and(|l| this.delivered >= l) {
            this.done = true;
            return Poll::Ready(None);
        }
        loop {
            match this.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(mut chunk))) => {
                    this.waiting = false;
                    if this.plan.skip > 0 {
                        let n = chunk.len() as u64;
                        if n <= this.plan.skip {
                            this.plan.skip -= n;
                            continue;
                        }
                        chunk = chunk.slice(this.plan.skip as usize..);
                        this.plan.skip = 0;
                    }
                    if let Some(limit) = this.plan.limit {
                        let left = limit - this.delivered;
                        if chunk.len() as u64 > left {
                            chunk.truncate(left as usize);
                        }
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    this.delivered += chunk.len() as u64;
                    return Poll::Ready(Some(Ok(chunk)));
                }
                Poll::Ready(Some(Err(e))) => {
                    let err = match this.short() {
                        Some(short) if !e.is_timeout() => short,
                        _ => RemoteError::Transfer(super::client::chain(&e)),
                    };
                    return this.fail(err);
                }
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(this.short().map(Err));
                }
                Poll::Pending => {
                    if !this.waiting {
                        this.waiting = true;
                        this.timer.as_mut().reset(Instant::now() + this.idle);
                    }
                    if this.timer.as_mut().poll(cx).is_ready() {
                        let msg = format!("no data for {} s", this.idle.as_secs_f32());
                        return this.fail(RemoteError::Transfer(msg));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn plan_of(skip: u64, limit: Option<u64>, promised: Option<u64>) -> Plan {
        Plan {
            skip,
            limit,
            promised,
        }
    }

    #[test]
    fn plans() {
        let cl = headers(&[("content-length", "100")]);
        assert_eq!(plan(200, &cl, None), Ok(plan_of(0, Some(100), Some(100))));
        assert_eq!(
            plan(200, &HeaderMap::new(), None),
            Ok(plan_of(0, None, None))
        );
        // Range ignored by the server.
        assert_eq!(
            plan(200, &cl, Some(&(10..20))),
            Ok(plan_of(10, Some(10), Some(10)))
        );
        assert_eq!(
            plan(200, &cl, Some(&(95..120))),
            Ok(plan_of(95, Some(5), Some(5)))
        );
        assert_eq!(
            plan(200, &cl, Some(&(150..160))),
            Ok(plan_of(150, Some(0), Some(0)))
        );
        assert_eq!(
            plan(200, &HeaderMap::new(), Some(&(10..20))),
            Ok(plan_of(10, Some(10), None))
        );
        // Range honoured.
        let exact = headers(&[
            ("content-length", "10"),
            ("content-range", "bytes 10-19/100"),
        ]);
        assert_eq!(
            plan(206, &exact, Some(&(10..20))),
            Ok(plan_of(0, Some(10), Some(10)))
        );
        let wider = headers(&[("content-range", "bytes 0-99/*")]);
        assert_eq!(
            plan(206, &wider, Some(&(10..20))),
            Ok(plan_of(10, Some(10), Some(10)))
        );
        let at_eof = headers(&[
            ("content-length", "5"),
            ("content-range", "bytes 95-99/100"),
        ]);
        assert_eq!(
            plan(206, &at_eof, Some(&(95..120))),
            Ok(plan_of(0, Some(5), Some(5)))
        );
        let wrong = headers(&[("content-range", "bytes 11-19/100")]);
        assert!(matches!(
            plan(206, &wrong, Some(&(10..20))),
            Err(RemoteError::Malformed(_))
        ));
        let garbage = headers(&[("content-range", "items 1-2")]);
        assert!(matches!(
            plan(206, &garbage, Some(&(10..20))),
            Err(RemoteError::Malformed(_))
        ));
        let liar = headers(&[
            ("content-length", "3"),
            ("content-range", "bytes 10-19/100"),
        ]);
        assert!(matches!(
            plan(206, &liar, Some(&(10..20))),
            Err(RemoteError::Malformed(_))
        ));
    }

    fn chunks(parts: &[&'static [u8]]) -> Inner {
        let items: Vec<reqwest::Result<Bytes>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Box::pin(futures_util::stream::iter(items))
    }

    async fn collect(s: BodyStream) -> (Vec<u8>, Option<RemoteError>) {
        let mut s = Box::pin(s);
        let mut out = Vec::new();
        while let Some(item) = s.next().await {
            match item {
                Ok(b) => out.extend_from_slice(&b),
                Err(e) => {
                    assert!(s.next().await.is_none(), "stream continues after an error");
                    return (out, Some(e));
                }
            }
        }
        (out, None)
    }

    const IDLE: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn skips_and_limits_across_chunks() {
        let s = BodyStream::new(
            chunks(&[b"0123", b"4567", b"89ab"]),
            plan_of(3, Some(6), Some(6)),
            IDLE,
        );
        assert_eq!(collect(s).await, (b"345678".to_vec(), None));
        let s = BodyStream::new(
            chunks(&[b"0123", b"4567"]),
            plan_of(4, Some(4), Some(4)),
            IDLE,
        );
        assert_eq!(collect(s).await, (b"4567".to_vec(), None));
    }

    #[tokio::test]
    async fn early_end_is_short_body() {
        let s = BodyStream::new(chunks(&[b"0123"]), plan_of(0, Some(10), Some(10)), IDLE);
        assert_eq!(
            collect(s).await,
            (
                b"0123".to_vec(),
                Some(RemoteError::ShortBody {
                    expected: 10,
                    got: 4
                })
            )
        );
        // Without a promised length, the end of the stream is the end of the file.
        let s = BodyStream::new(chunks(&[b"0123"]), plan_of(2, Some(10), None), IDLE);
        assert_eq!(collect(s).await, (b"23".to_vec(), None));
    }

    #[tokio::test(start_paused = true)]
    async fn stall_is_a_transfer_error() {
        let inner: Inner = Box::pin(
            futures_util::stream::iter(vec![Ok(Bytes::from_static(b"ab"))])
                .chain(futures_util::stream::pending()),
        );
        let s = BodyStream::new(inner, plan_of(0, Some(4), Some(4)), IDLE);
        let (got, err) = collect(s).await;
        assert_eq!(got, b"ab");
        assert!(matches!(err, Some(RemoteError::Transfer(m)) if m.contains("no data")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_is_not_a_stall() {
        let (tx, rx) = tokio::sync::mpsc::channel::<reqwest::Result<Bytes>>(4);
        let inner: Inner = Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }));
        tx.send(Ok(Bytes::from_static(b"ab"))).await.unwrap();
        let mut s = Box::pin(BodyStream::new(inner, plan_of(0, Some(4), Some(4)), IDLE));
        assert_eq!(s.next().await, Some(Ok(Bytes::from_static(b"ab"))));
        // The caller is busy for longer than the idle limit; then the server is a bit slow.
        tokio::time::sleep(IDLE * 3).await;
        tokio::spawn(async move {
            tokio::time::sleep(IDLE / 2).await;
            tx.send(Ok(Bytes::from_static(b"cd"))).await.unwrap();
        });
        assert_eq!(s.next().await, Some(Ok(Bytes::from_static(b"cd"))));
        assert_eq!(s.next().await, None);
    }
}
