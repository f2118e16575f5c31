//! `edrive serve`: an embedded WebDAV server (dav-server's `LocalFs` + `MemLs` over hyper 1).
//!
//! Prints one line, `edrive serve: listening on http://ADDR/`, to stdout once bound, logs every
//! request to stderr as `request method=M path=P status=S`, and stops gracefully on
//! SIGINT/SIGTERM.

use std::convert::Infallible;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use dav_server::body::Body;
use dav_server::localfs::LocalFs;
use dav_server::memls::MemLs;
use dav_server::DavHandler;
use futures_util::{StreamExt, TryStreamExt};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cli::ServeArgs;

/// How long open connections get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Credentials every request must carry, when `--user/--password` (or a bearer token
/// file) are given.
#[derive(Clone, PartialEq, Eq)]
enum ServeAuth {
    /// HTTP Basic with this user and password.
    Basic { user: String, password: String },
    /// `Authorization: Bearer` with this token.
    Bearer(String),
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing_fallback();

    let meta = std::fs::metadata(&args.dir)
        .with_context(|| format!("cannot serve {}", args.dir.display()))?;
    if !meta.is_dir() {
        anyhow::bail!("cannot serve {}: not a directory", args.dir.display());
    }
    let dir = std::fs::canonicalize(&args.dir)
        .with_context(|| format!("cannot serve {}", args.dir.display()))?;

    let password = match (&args.password, &args.password_file) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(f)) => Some(first_line(f)?),
        (None, None) => None,
    };
    let auth = match (args.user, password, &args.bearer_token_file) {
        (Some(user), Some(password), None) => Some(Arc::new(ServeAuth::Basic { user, password })),
        (None, None, Some(f)) => Some(Arc::new(ServeAuth::Bearer(first_line(f)?))),
        (None, None, None) => None,
        _ => anyhow::bail!("--user and --password (or --password-file) must be given together"),
    };

    let faults = Arc::new(Faults {
        root: dir.clone(),
        quota: args.quota,
        fail_every: args.fail_every.filter(|n| *n > 0),
        rate_limit: args.rate_limit.filter(|n| *n > 0),
        ignore_range: args.ignore_range,
        ignore_preconditions: args.ignore_preconditions,
        writes: std::sync::atomic::AtomicU64::new(0),
    });
    let handler = DavHandler::builder()
        .filesystem(LocalFs::new(&dir, true, false, false))
        .locksystem(MemLs::new())
        .build_handler();

    let shutdown = shutdown_signal()?;
    tokio::pin!(shutdown);
    let listener = TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let local = listener
        .local_addr()
        .context("cannot read the bound address")?;
    announce(&format!("edrive serve: listening on http://{local}/"))?;
    tracing::info!("serving {} on http://{local}/", dir.display());

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();

    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let handler = handler.clone();
                    let auth = auth.clone();
                    let stop_rx = stop_rx.clone();
                    let faults = faults.clone();
                    conns.spawn(serve_connection(stream, handler, auth, faults, stop_rx));
                }
                Err(e) => {
                    // Typically EMFILE or a connection reset before accept: keep serving.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
        while conns.try_join_next().is_some() {}
    }

    tracing::info!("shutting down");
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
        conns.shutdown().await;
    }
    Ok(())
}

/// The first line of `path` (a password or token file).
fn first_line(path: &std::path::Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text.lines().next().unwrap_or("").to_string())
}

/// Prints the listening line to stdout and flushes it (tests read the port from it).
fn announce(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").context("cannot write to stdout")?;
    out.flush().context("cannot flush stdout")?;
    Ok(())
}

/// Serves one TCP connection until the client closes it or a shutdown is requested.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    handler: DavHandler,
    auth: Option<Arc<ServeAuth>>,
    faults: Arc<Faults>,
    mut stop_rx: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| {
        let handler = handler.clone();
        let auth = auth.clone();
        let faults = faults.clone();
        async move { Ok::<_, Infallible>(handle(req, handler, auth.as_deref(), &faults).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop_rx.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!("connection ended with an error: {e}");
    }
}

/// Authenticates, dispatches to dav-server and logs one line per request.
async fn handle(
    mut req: Request<Incoming>,
    handler: DavHandler,
    auth: Option<&ServeAuth>,
    faults: &Faults,
) -> Response<ServedBody> {
    if faults.ignore_range {
        req.headers_mut().remove(hyper::header::RANGE);
    }
    if faults.ignore_preconditions {
        let h = req.headers_mut();
        h.remove(hyper::header::IF_MATCH);
        h.remove(hyper::header::IF_NONE_MATCH);
    }
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let resp = match auth {
        Some(expected) if !authorized(&req, expected) => unauthorized(),
        _ => match faults.refuse(&req) {
            Some(status) => plain(status),
            None => handler.handle(req).await,
        },
    };
    tracing::info!(
        "request method={method} path={path} status={}",
        resp.status().as_u16()
    );
    match faults.rate_limit {
        Some(rate) if method == "GET" => resp.map(|b| {
            UnsyncBoxBody::new(http_body_util::StreamBody::new(
                throttled(b, rate).map_ok(hyper::body::Frame::data),
            ))
        }),
        _ => resp.map(UnsyncBoxBody::new),
    }
}

/// What a request is answered with.
type ServedBody = UnsyncBoxBody<bytes::Bytes, std::io::Error>;

/// `body`, sent no faster than `rate` bytes a second.
fn throttled(
    body: Body,
    rate: u64,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> {
    let start = tokio::time::Instant::now();
    futures_util::stream::unfold((body, 0u64), move |(mut body, sent)| async move {
        let item = body.next().await?;
        let sent = sent + item.as_ref().map_or(0, |b| b.len() as u64);
        let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
        tokio::time::sleep_until(due).await;
        Some((item, (body, sent)))
    })
}

/// Server-side limits and injected failures (`--quota`, `--fail-every`, `--rate-limit`,
/// `--ignore-range`, `--ignore-preconditions`).
struct Faults {
    root: std::path::PathBuf,
    quota: Option<u64>,
    fail_every: Option<u64>,
    /// Bytes a second each GET's body is sent at, at most.
    rate_limit: Option<u64>,
    /// Answer every GET whole, whatever its Range header asks.
    ignore_range: bool,
    /// Write whatever the version (no If-Match / If-None-Match).
    ignore_preconditions: bool,
    writes: std::sync::atomic::AtomicU64,
}

impl Faults {
    /// The status to refuse `req` with, if any.
    fn refuse<B>(&self, req: &Request<B>) -> Option<u16> {
        let m = req.method().as_str();
        let write = matches!(m, "PUT" | "MKCOL" | "MOVE" | "DELETE" | "COPY");
        if !write {
            return None;
        }
        if let Some(n) = self.fail_every {
            let i = self
                .writes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                + 1;
            if i % n == 0 {
                return Some(500);
            }
        }
        if let (Some(quota), "PUT") = (self.quota, m) {
            let incoming = req
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            if tree_size(&self.root).saturating_add(incoming) > quota {
                return Some(507);
            }
        }
        None
    }
}

/// Total bytes of regular files below `dir`.
fn tree_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// An empty answer with `status`.
fn plain(status: u16) -> Response<Body> {
    let mut r = Response::new(Body::from(String::new()));
    *r.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    r
}

/// The 401 answer with a Basic challenge.
fn unauthorized() -> Response<Body> {
    let mut resp = Response::new(Body::from("authentication required\n".to_string()));
    *resp.status_mut() = StatusCode::UNAUTHORIZED;
    resp.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        hyper::header::HeaderValue::from_static("Basic realm=\"edrive\""),
    );
    resp
}

/// Whether the request carries `Authorization` with exactly the expected credentials.
fn authorized<B>(req: &Request<B>, expected: &ServeAuth) -> bool {
    let Some(value) = req.headers().get(hyper::header::AUTHORIZATION) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let value = value.trim();
    let Some((scheme, token)) = value.split_once(' ') else {
        return false;
    };
    let (expected_user, expected_password) = match expected {
        ServeAuth::Bearer(want) => {
            return scheme.eq_ignore_ascii_case("bearer")
                && ct_eq(token.trim().as_bytes(), want.as_bytes());
        }
        ServeAuth::Basic { user, password } => (user, password),
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Some(decoded) = base64_decode(token.trim()) else {
        return false;
    };
    let Some(colon) = decoded.iter().position(|&b| b == b':') else {
        return false;
    };
    let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
    // Evaluate both comparisons so timing does not reveal which part differed.
    let user_ok = ct_eq(user, expected_user.as_bytes());
    let password_ok = ct_eq(password, expected_password.as_bytes());
    user_ok & password_ok
}

/// Compares two byte strings in time that depends only on their lengths.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Decodes standard base64 (padding optional); `None` on any invalid input.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    let trimmed = match bytes {
        [rest @ .., b'=', b'='] => rest,
        [rest @ .., b'='] => rest,
        _ => bytes,
    };
    if trimmed.len() % 4 == 1 || (bytes.len() != trimmed.len() && bytes.len() % 4 != 0) {
        return None;
    }
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    for chunk in trimmed.chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = (acc << 6) | val(c)?;
        }
        match chunk.len() {
            4 => out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]),
            3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
            2 => out.push((acc >> 4) as u8),
            _ => return None,
        }
    }
    Some(out)
}

/// Registers SIGINT/SIGTERM handlers now (so a signal sent right after the listening line
/// is not lost) and returns a future that resolves when one arrives.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// Returns a future that resolves on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// Installs a stderr subscriber (env filter, default `info`) unless one is already set, so
/// the request log exists even when the caller did not initialize tracing.
fn init_tracing_fallback() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if tracing::dispatcher::has_been_set() {
            return;
        }
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .try_init();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_known_vectors() {
        assert_eq!(base64_decode("").as_deref(), Some(&b""[..]));
        assert_eq!(base64_decode("Zg==").as_deref(), Some(&b"f"[..]));
        assert_eq!(base64_decode("Zm8=").as_deref(), Some(&b"fo"[..]));
        assert_eq!(base64_decode("Zm9v").as_deref(), Some(&b"foo"[..]));
        assert_eq!(base64_decode("Zm9vYg").as_deref(), Some(&b"foob"[..]));
        assert_eq!(
            base64_decode("dXNlcjpwQHNzOndvcmQ=").as_deref(),
            Some(&b"user:p@ss:word"[..])
        );
        assert_eq!(base64_decode("Zm9v!"), None);
        assert_eq!(base64_decode("Z"), None);
        assert_eq!(base64_decode("Zg=x"), None);
    }

    #[test]
    fn basic_auth_checks_user_and_password() {
        let expected = ServeAuth::Basic {
            user: "user".into(),
            password: "p@ss:word".into(),
        };
        let req = |v: &str| {
            Request::builder()
                .header("Authorization", v)
                .body(())
                .unwrap()
        };
        assert!(authorized(&req("Basic dXNlcjpwQHNzOndvcmQ="), &expected));
        assert!(authorized(&req("basic  dXNlcjpwQHNzOndvcmQ="), &expected));
        assert!(!authorized(&req("Basic dXNlcjp3cm9uZw=="), &expected));
        assert!(!authorized(&req("Bearer dXNlcjpwQHNzOndvcmQ="), &expected));
        assert!(!authorized(&Request::new(()), &expected));
        let bearer = ServeAuth::Bearer("tok".into());
        assert!(authorized(&req("Bearer tok"), &bearer));
        assert!(!authorized(&req("Bearer tok2"), &bearer));
        assert!(!authorized(&req("Basic dG9r"), &bearer));
    }
}
