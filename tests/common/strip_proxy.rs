//! A TCP proxy in front of an HTTP/1.1 server that drops `If-Match` and `If-None-Match`
//! from every request, so that a store which enforces them behaves like one that ignores
//! them (as some S3 implementations and WebDAV servers do). Requests must carry a
//! `Content-Length` (no chunked bodies); replies pass through untouched. The `Host` header
//! is kept, so SigV4 signatures made for the proxy's address still hold.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A running proxy; its accept thread lives as long as the test process.
pub struct StripProxy {
    port: u16,
    stripped: Arc<AtomicUsize>,
}

impl StripProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream_port` there.
    pub fn start(upstream_port: u16) -> StripProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let stripped = Arc::new(AtomicUsize::new(0));
        let count = stripped.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let count = count.clone();
                std::thread::spawn(move || {
                    let _ = forward(conn, upstream_port, &count);
                });
            }
        });
        StripProxy { port, stripped }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// How many conditional headers were dropped so far.
    pub fn stripped(&self) -> usize {
        self.stripped.load(Ordering::Relaxed)
    }
}

fn forward(client: TcpStream, upstream_port: u16, stripped: &AtomicUsize) -> std::io::Result<()> {
    let upstream = TcpStream::connect(("127.0.0.1", upstream_port))?;
    let mut to_client = client.try_clone()?;
    let mut from_upstream = upstream.try_clone()?;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_upstream, &mut to_client);
        let _ = to_client.shutdown(Shutdown::Both);
    });
    let mut from_client = BufReader::new(client);
    let mut to_upstream = upstream;
    loop {
        let mut head = String::new();
        let mut len = 0u64;
        loop {
            let mut line = String::new();
            if from_client.read_line(&mut line)? == 0 {
                let _ = to_upstream.shutdown(Shutdown::Write);
                return Ok(());
            }
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("if-match:") || lower.starts_with("if-none-match:") {
                stripped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            assert!(
                !lower.starts_with("transfer-encoding:"),
                "strip proxy: chunked request bodies are not supported"
            );
            let end = line == "\r\n";
            head.push_str(&line);
            if end {
                break;
            }
        }
        to_upstream.write_all(head.as_bytes())?;
        std::io::copy(&mut (&mut from_client).take(len), &mut to_upstream)?;
    }
}
