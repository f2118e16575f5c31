//! Parsing a reply as it arrives: the body is fed chunk by chunk from the async side to a
//! parser on a blocking thread, so a reply of any length is never held whole.

use std::io::{self, BufRead, Read};
use std::time::Duration;

use bytes::{Buf, Bytes};
use reqwest::Response;
use tokio::sync::mpsc;

use super::client::transport_error;
use crate::remote::RemoteError;

/// Chunks in flight between the connection and the parser.
const IN_FLIGHT: usize = 8;

/// A blocking reader over the chunks of a body.
pub(crate) struct ChunkReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl BufRead for ChunkReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => break,
            }
        }
        Ok(&self.current)
    }

    fn consume(&mut self, n: usize) {
        self.current.advance(n.min(self.current.len()));
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// How much of a reply is read, and how long it may pause.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// The most bytes read.
    pub(crate) max_bytes: u64,
    /// The longest wait for the next bytes.
    pub(crate) idle: Duration,
}

/// Runs `parse` over `resp`'s body as it arrives, on a blocking thread. A transfer error,
/// a body over `limits.max_bytes`, or a pause longer than `limits.idle` fails the parse
/// rather than ending the document early.
pub(crate) async fn parse_streamed<T, P>(
    mut resp: Response,
    limits: Limits,
    parse: P,
) -> Result<T, RemoteError>
where
    T: Send + 'static,
    P: FnOnce(ChunkReader) -> Result<T, RemoteError> + Send + 'static,
{
    let cap = limits.max_bytes;
    if resp.content_length().is_some_and(|n| n > cap) {
        return Err(too_big(cap));
    }
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    let parser = tokio::task::spawn_blocking(move || {
        parse(ChunkReader {
            rx,
            current: Bytes::new(),
        })
    });
    let mut total = 0u64;
    let fed: Result<(), RemoteError> = async {
        loop {
            let next = tokio::time::timeout(limits.idle, resp.chunk())
                .await
                .map_err(|_| {
                    RemoteError::Transfer(format!(
                        "the reply stalled for {} s",
                        limits.idle.as_secs_f32()
                    ))
                })?;
            let Some(chunk) = next.map_err(transport_error)? else {
                break;
            };
            total += chunk.len() as u64;
            if total > cap {
                return Err(too_big(cap));
            }
            if tx.send(Ok(chunk)).await.is_err() {
                // The parser stopped early: its error says why.
                break;
            }
        }
        Ok(())
    }
    .await;
    if fed.is_err() {
        let _ = tx
            .send(Err(io::Error::other("the reply was cut short")))
            .await;
    }
    drop(tx);
    let parsed = parser
        .await
        .map_err(|e| RemoteError::Local(format!("reply parser failed: {e}")))?;
    fed?;
    parsed
}

fn too_big(cap: u64) -> RemoteError {
    RemoteError::Malformed(format!("reply larger than {} MiB", cap >> 20))
}
