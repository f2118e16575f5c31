//! Upload bodies (WebDAV PUT, S3 PUT and parts): the caller's stream, checked against
//! the length announced in Content-Length so that a wrong-sized source aborts the upload
//! instead of storing a truncated file. Shared by every backend.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;

use crate::{ByteStream, RemoteError};

/// An upload body that fails if its source yields more or fewer than `len` bytes.
pub struct SizedBody {
    inner: ByteStream,
    len: u64,
    sent: u64,
    done: bool,
}

impl SizedBody {
    /// Wraps `inner`, which must yield exactly `len` bytes.
    pub fn new(inner: ByteStream, len: u64) -> SizedBody {
        SizedBody {
            inner,
            len,
            sent: 0,
            done: false,
        }
    }
}

impl Stream for SizedBody {
    type Item = Result<Bytes, RemoteError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        let item = match this.inner.as_mut().poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(item) => item,
        };
        let result = match item {
            Some(Ok(chunk)) => {
                this.sent += chunk.len() as u64;
                if this.sent > this.len {
                    Err(RemoteError::Local(format!(
                        "upload source yields more than the announced {} bytes",
                        this.len
                    )))
                } else {
                    return Poll::Ready(Some(Ok(chunk)));
                }
            }
            Some(Err(e)) => Err(e),
            None if this.sent < this.len => Err(RemoteError::Local(format!(
                "upload source ended after {} of {} bytes",
                this.sent, this.len
            ))),
            None => {
                this.done = true;
                return Poll::Ready(None);
            }
        };
        this.done = true;
        Poll::Ready(Some(result))
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    fn source(parts: &[&'static [u8]]) -> ByteStream {
        let items: Vec<Result<Bytes, RemoteError>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Box::pin(futures_util::stream::iter(items))
    }

    async fn run(parts: &[&'static [u8]], len: u64) -> Vec<Result<Bytes, RemoteError>> {
        SizedBody::new(source(parts), len).collect().await
    }

    #[tokio::test]
    async fn exact_length_passes() {
        let out = run(&[b"abc", b"de"], 5).await;
        assert_eq!(
            out,
            vec![
                Ok(Bytes::from_static(b"abc")),
                Ok(Bytes::from_static(b"de"))
            ]
        );
        assert!(run(&[], 0).await.is_empty());
    }

    #[tokio::test]
    async fn wrong_length_fails() {
        let short = run(&[b"abc"], 5).await;
        assert!(matches!(short.last(), Some(Err(RemoteError::Local(m))) if m.contains("3 of 5")));
        let long = run(&[b"abc", b"def"], 5).await;
        assert_eq!(long.len(), 2);
        assert!(matches!(long[1], Err(RemoteError::Local(_))));
    }
}
