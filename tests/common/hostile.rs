//! [`HostileServer`]: a tiny HTTP/1.1 server (std threads) answering canned responses per
//! (method, path), for testing how the client copes with broken or malicious servers.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::TestServer;

/// A canned answer.
#[derive(Clone, Debug)]
pub struct Canned {
    /// Status code.
    pub status: u16,
    /// Extra headers, sent as given. `Content-Length` is added from the body unless set here.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Send only this many body bytes, then close the connection (a truncated response).
    pub send_only: Option<usize>,
    /// Wait this long before answering.
    pub delay: Option<Duration>,
    /// Close the connection after this response.
    pub close: bool,
    /// Serve `body` as a file: honour `Range: bytes=A-B` with 206 and Content-Range.
    pub ranges: bool,
    /// Bytes inserted into the body as it is sent (never held whole in memory).
    pub filler: Option<Filler>,
}

/// `times` copies of `unit`, sent at byte `at` of a [`Canned`] body: a body of hundreds of
/// megabytes that the server never holds (see [`Canned::fill`]).
#[derive(Clone, Debug)]
pub struct Filler {
    /// Where in the body the copies go.
    pub at: usize,
    /// What is repeated.
    pub unit: Vec<u8>,
    /// How many times.
    pub times: u64,
}

impl Canned {
    /// An empty response with this status.
    pub fn new(status: u16) -> Canned {
        Canned {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            send_only: None,
            delay: None,
            close: false,
            ranges: false,
            filler: None,
        }
    }

    /// A 207 multistatus answer with this XML body.
    pub fn multistatus(xml: impl Into<String>) -> Canned {
        Canned::new(207)
            .header("Content-Type", "application/xml; charset=utf-8")
            .body(xml.into())
    }

    /// A 200 file answer with ETag/Last-Modified that honours single byte ranges.
    pub fn file(data: impl Into<Vec<u8>>, etag: &str) -> Canned {
        let mut c = Canned::new(200)
            .header("ETag", &format!("\"{etag}\""))
            .header("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT")
            .header("Accept-Ranges", "bytes")
            .header("Content-Type", "application/octet-stream")
            .body(data);
        c.ranges = true;
        c
    }

    /// A 200 answer announcing `Content-Length: declared` but sending only `body`, then
    /// closing the connection.
    pub fn short_body(declared: usize, body: impl Into<Vec<u8>>) -> Canned {
        let body: Vec<u8> = body.into();
        let sent = body.len();
        let mut c = Canned::new(200)
            .header("Content-Length", &declared.to_string())
            .body(body);
        c.send_only = Some(sent);
        c.close = true;
        c
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Canned {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Canned {
        self.body = body.into();
        self
    }

    /// Sends only the first `n` body bytes, then closes the connection.
    pub fn truncate(mut self, n: usize) -> Canned {
        self.send_only = Some(n);
        self.close = true;
        self
    }

    /// Sends `times` copies of `unit` at byte `at` of the body (`at` is clamped to the
    /// body's length), streamed as they are sent. Ranges and `truncate` do not apply.
    pub fn fill(mut self, at: usize, unit: &[u8], times: u64) -> Canned {
        self.filler = Some(Filler {
            at: at.min(self.body.len()),
            unit: unit.to_vec(),
            times,
        });
        self
    }

    /// Waits `d` before answering.
    pub fn delay(mut self, d: Duration) -> Canned {
        self.delay = Some(d);
        self
    }

    /// Closes the connection after answering.
    pub fn close(mut self) -> Canned {
        self.close = true;
        self
    }
}

/// One request as the hostile server received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// The method.
    pub method: String,
    /// The raw path (query included).
    pub path: String,
    /// Headers in order (names lowercased).
    pub headers: Vec<(String, String)>,
    /// The request body.
    pub body: Vec<u8>,
    /// The status answered.
    pub status: u16,
}

impl RecordedRequest {
    /// The first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

type Routes = Arc<Mutex<HashMap<(String, String), Canned>>>;

/// Builds a [`HostileServer`].
#[derive(Default)]
pub struct HostileBuilder {
    routes: HashMap<(String, String), Canned>,
}

impl HostileBuilder {
    /// Answers `METHOD path` (exact raw path, query excluded) with `resp`.
    pub fn route(mut self, method: &str, path: &str, resp: Canned) -> Self {
        self.routes
            .insert((method.to_ascii_uppercase(), path.to_string()), resp);
        self
    }

    /// Answers `PROPFIND path` with `status` and this XML body.
    pub fn propfind(self, path: &str, status: u16, xml: impl Into<String>) -> Self {
        let resp = Canned::new(status)
            .header("Content-Type", "application/xml; charset=utf-8")
            .body(xml.into());
        self.route("PROPFIND", path, resp)
    }

    /// Answers `GET path` with `resp` (see [`Canned::file`] and [`Canned::short_body`]).
    pub fn get(self, path: &str, resp: Canned) -> Self {
        self.route("GET", path, resp)
    }

    /// Answers `GET path` with [`Canned::file`]`(data, etag)` and `HEAD path` with its headers.
    pub fn file(self, path: &str, data: impl Into<Vec<u8>>, etag: &str) -> Self {
        let c = Canned::file(data, etag);
        self.route("HEAD", path, c.clone()).route("GET", path, c)
    }

    /// Starts the server on 127.0.0.1 (an ephemeral port).
    pub fn build(self) -> HostileServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind the hostile server");
        let port = listener.local_addr().expect("no local addr").port();
        let routes: Routes = Arc::new(Mutex::new(self.routes));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, l, s) = (routes.clone(), log.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (r, l, s) = (r.clone(), l.clone(), s.clone());
                std::thread::spawn(move || serve_conn(stream, &r, &l, &s));
            }
        });
        HostileServer {
            port,
            routes,
            log,
            stop,
            mark: 0,
        }
    }
}

/// A canned-response HTTP server; unknown (method, path) pairs get 404. Stops when dropped.
pub struct HostileServer {
    port: u16,
    routes: Routes,
    log: Arc<Mutex<Vec<RecordedRequest>>>,
    stop: Arc<AtomicBool>,
    mark: usize,
}

impl HostileServer {
    /// A builder: add routes, then `.build()`.
    pub fn builder() -> HostileBuilder {
        HostileBuilder::default()
    }

    /// Starts a server with these ((method, path), response) routes.
    pub fn start(routes: Vec<((&str, &str), Canned)>) -> HostileServer {
        let mut b = HostileServer::builder();
        for ((m, p), c) in routes {
            b = b.route(m, p, c);
        }
        b.build()
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of `rel` (raw, no leading `/`).
    pub fn url_of(&self, rel: &str) -> String {
        format!("http://127.0.0.1:{}/{}", self.port, rel)
    }

    /// Adds or replaces a route while running.
    pub fn set_route(&self, method: &str, path: &str, resp: Canned) {
        self.routes
            .lock()
            .unwrap()
            .insert((method.to_ascii_uppercase(), path.to_string()), resp);
    }

    /// Removes a route (it answers 404 afterwards).
    pub fn remove_route(&self, method: &str, path: &str) {
        self.routes
            .lock()
            .unwrap()
            .remove(&(method.to_ascii_uppercase(), path.to_string()));
    }

    /// Full records of the requests received (since the last `reset_requests`).
    pub fn recorded(&self) -> Vec<RecordedRequest> {
        self.log.lock().unwrap()[self.mark..].to_vec()
    }

    /// Same as [`TestServer::url`]: `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        TestServer::url(self)
    }

    /// Same as [`TestServer::requests`], without importing the trait.
    pub fn requests(&self) -> Vec<(String, String, u16)> {
        TestServer::requests(self)
    }

    /// Same as [`TestServer::count_requests`], without importing the trait.
    pub fn count_requests(&self, method: &str) -> usize {
        TestServer::count_requests(self, method)
    }

    /// Same as [`TestServer::reset_requests`], without importing the trait.
    pub fn reset_requests(&mut self) {
        TestServer::reset_requests(self)
    }
}

impl TestServer for HostileServer {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    fn requests(&self) -> Vec<(String, String, u16)> {
        super::without_probe(
            self.recorded()
                .into_iter()
                .map(|r| {
                    let path = r.path.split('?').next().unwrap_or("").to_string();
                    (r.method, path, r.status)
                })
                .collect(),
        )
    }

    fn reset_requests(&mut self) {
        self.mark = self.log.lock().unwrap().len();
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Serves requests on one connection until it closes or a response asks to close it.
fn serve_conn(
    stream: TcpStream,
    routes: &Routes,
    log: &Mutex<Vec<RecordedRequest>>,
    stop: &AtomicBool,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut out = write_half;
    let mut reader = BufReader::new(stream);
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Some(mut req) = read_request(&mut reader) else {
            return;
        };
        let canned = {
            let routes = routes.lock().unwrap();
            let path = req.path.split('?').next().unwrap_or("").to_string();
            routes.get(&(req.method.clone(), path)).cloned()
        };
        let canned = canned.unwrap_or_else(|| Canned::new(404));
        if let Some(d) = canned.delay {
            std::thread::sleep(d);
        }
        let (status, extra, body) = select_range(&canned, req.header("range"));
        req.status = status;
        let close_req = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let is_head = req.method == "HEAD";
        log.lock().unwrap().push(req);

        let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
        let mut has_len = false;
        for (n, v) in canned.headers.iter().chain(extra.iter()) {
            if n.eq_ignore_ascii_case("content-length") {
                if status == 206 {
                    continue; // replaced by the range length below
                }
                has_len = true;
            }
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        if !has_len {
            let filled = canned
                .filler
                .as_ref()
                .map_or(0, |f| f.unit.len() as u64 * f.times);
            head.push_str(&format!(
                "Content-Length: {}\r\n",
                body.len() as u64 + filled
            ));
        }
        let close = canned.close || close_req;
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut ok = out.write_all(head.as_bytes()).is_ok();
        if ok && !is_head {
            ok = match &canned.filler {
                Some(f) => send_filled(&mut out, &body, f).is_ok(),
                None => {
                    let n = canned.send_only.unwrap_or(body.len()).min(body.len());
                    out.write_all(&body[..n]).is_ok()
                }
            };
        }
        let _ = out.flush();
        if !ok || close {
            let _ = out.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Writes `body` with `f`'s copies inserted, a block at a time.
fn send_filled(out: &mut impl Write, body: &[u8], f: &Filler) -> std::io::Result<()> {
    out.write_all(&body[..f.at])?;
    if !f.unit.is_empty() {
        let per_block = ((1usize << 16) / f.unit.len()).max(1);
        let block = f.unit.repeat(per_block);
        let mut left = f.times;
        while left > 0 {
            let n = left.min(per_block as u64) as usize;
            out.write_all(&block[..n * f.unit.len()])?;
            left -= n as u64;
        }
    }
    out.write_all(&body[f.at..])
}

/// Applies a single `bytes=A-B` / `bytes=A-` / `bytes=-N` range to a file-like canned body.
fn select_range(c: &Canned, range: Option<&str>) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let whole = (c.status, Vec::new(), c.body.clone());
    let (true, Some(range), None) = (c.ranges, range, &c.filler) else {
        return whole;
    };
    let Some(spec) = range.trim().strip_prefix("bytes=") else {
        return whole;
    };
    if spec.contains(',') {
        return whole;
    }
    let len = c.body.len() as u64;
    let Some((a, b)) = spec.split_once('-') else {
        return whole;
    };
    let (start, end) = match (a.trim().parse::<u64>().ok(), b.trim().parse::<u64>().ok()) {
        (Some(s), Some(e)) => (s, e.min(len.saturating_sub(1))),
        (Some(s), None) => (s, len.saturating_sub(1)),
        (None, Some(n)) => (len.saturating_sub(n), len.saturating_sub(1)),
        (None, None) => return whole,
    };
    if start >= len || start > end {
        return (
            416,
            vec![("Content-Range".into(), format!("bytes */{len}"))],
            Vec::new(),
        );
    }
    (
        206,
        vec![("Content-Range".into(), format!("bytes {start}-{end}/{len}"))],
        c.body[start as usize..=end as usize].to_vec(),
    )
}

/// Reads one request (headers and a Content-Length or chunked body); `None` at EOF/error.
fn read_request(r: &mut BufReader<TcpStream>) -> Option<RecordedRequest> {
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if !line.trim().is_empty() {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_ascii_uppercase();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let mut req = RecordedRequest {
        method,
        path,
        headers,
        body: Vec::new(),
        status: 0,
    };
    if req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?.trim(), 16).ok()?;
            if n == 0 {
                // Trailers until an empty line.
                loop {
                    let mut t = String::new();
                    if r.read_line(&mut t).ok()? == 0 || t.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0; n];
            r.read_exact(&mut chunk).ok()?;
            req.body.extend_from_slice(&chunk);
            let mut crlf = String::new();
            r.read_line(&mut crlf).ok()?;
        }
    } else if let Some(n) = req
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        let mut body = vec![0; n];
        r.read_exact(&mut body).ok()?;
        req.body = body;
    }
    Some(req)
}

/// The reason phrase for common codes.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        412 => "Precondition Failed",
        416 => "Range Not Satisfiable",
        423 => "Locked",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        507 => "Insufficient Storage",
        _ => "Status",
    }
}

/// One entry of a PROPFIND multistatus answer.
#[derive(Clone, Debug)]
pub struct DavEntry {
    /// The `<D:href>` text, inserted as given (percent-encode it yourself; it is XML-escaped).
    pub href: String,
    /// A collection?
    pub is_dir: bool,
    /// `getcontentlength` (files only).
    pub size: u64,
    /// `getetag` without quotes (empty: no etag property).
    pub etag: String,
    /// `getlastmodified`, an HTTP date.
    pub last_modified: String,
}

impl DavEntry {
    /// A file entry.
    pub fn file(href: &str, size: u64, etag: &str) -> DavEntry {
        DavEntry {
            href: href.to_string(),
            is_dir: false,
            size,
            etag: etag.to_string(),
            last_modified: "Mon, 01 Jan 2024 00:00:00 GMT".to_string(),
        }
    }

    /// A collection entry.
    pub fn dir(href: &str) -> DavEntry {
        DavEntry {
            is_dir: true,
            ..DavEntry::file(href, 0, "")
        }
    }
}

/// A valid `207 Multi-Status` body from (href, is_dir, size, etag) tuples. The first entry is
/// normally the folder itself (e.g. `("/dir/", true, 0, "")`).
pub fn multistatus_xml(entries: &[(&str, bool, u64, &str)]) -> String {
    let entries: Vec<DavEntry> = entries
        .iter()
        .map(|&(href, is_dir, size, etag)| {
            if is_dir {
                DavEntry {
                    etag: etag.to_string(),
                    ..DavEntry::dir(href)
                }
            } else {
                DavEntry::file(href, size, etag)
            }
        })
        .collect();
    multistatus(&entries)
}

/// A valid `207 Multi-Status` body from [`DavEntry`]s.
pub fn multistatus(entries: &[DavEntry]) -> String {
    let mut x = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:multistatus xmlns:D=\"DAV:\">\n",
    );
    for e in entries {
        x.push_str("<D:response><D:href>");
        x.push_str(&xml_escape(&e.href));
        x.push_str("</D:href><D:propstat><D:prop>");
        if e.is_dir {
            x.push_str("<D:resourcetype><D:collection/></D:resourcetype>");
        } else {
            x.push_str("<D:resourcetype/>");
            x.push_str(&format!(
                "<D:getcontentlength>{}</D:getcontentlength>",
                e.size
            ));
        }
        if !e.etag.is_empty() {
            x.push_str(&format!(
                "<D:getetag>\"{}\"</D:getetag>",
                xml_escape(&e.etag)
            ));
        }
        x.push_str(&format!(
            "<D:getlastmodified>{}</D:getlastmodified>",
            xml_escape(&e.last_modified)
        ));
        x.push_str("</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>\n");
    }
    x.push_str("</D:multistatus>\n");
    x
}

/// Escapes `&`, `<`, `>`, `"`.
fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
