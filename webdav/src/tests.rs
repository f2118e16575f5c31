//! The client against a tiny hand-written HTTP/1.1 server on 127.0.0.1.

use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::{Credentials, WebDav, WebDavConfig};
use crate::remote::{ByteStream, Download, ETag, Precondition, Remote, RemoteError, RemotePath};

/// One request as the server received it.
#[derive(Debug)]
struct Seen {
    line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A canned HTTP/1.1 response that closes the connection. `Content-Length` is added
/// unless given.
fn reply(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

async fn read_request(sock: &mut TcpStream) -> Seen {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = sock.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return Seen {
                line: String::new(),
                headers: Vec::new(),
                body: buf,
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut seen = Seen {
        line,
        headers,
        body: buf[head_end + 4..].to_vec(),
    };
    let len: usize = seen
        .header("content-length")
        .map_or(0, |v| v.parse().unwrap());
    while seen.body.len() < len {
        // The client may abort an upload midway; keep what arrived.
        let n = sock.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        seen.body.extend_from_slice(&chunk[..n]);
    }
    seen
}

/// Serves `replies` in order, one connection each; returns the base URL and the
/// requests received.
async fn serve(replies: Vec<Vec<u8>>) -> (String, JoinHandle<Vec<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = tokio::spawn(async move {
        let mut seen = Vec::new();
        for reply in replies {
            let (mut sock, _) = listener.accept().await.unwrap();
            seen.push(read_request(&mut sock).await);
            sock.write_all(&reply).await.ok();
            sock.shutdown().await.ok();
        }
        seen
    });
    (format!("http://{addr}/dav"), handle)
}

fn dav(url: &str) -> WebDav {
    let mut config = WebDavConfig::new(url);
    config.user = Some("alice".into());
    config.password = Some("s3cret".into());
    config.connect_timeout = Duration::from_secs(2);
    config.request_timeout = Duration::from_secs(5);
    WebDav::new(config).unwrap()
}

fn path(parts: &[&str]) -> RemotePath {
    RemotePath::from_parts(parts.iter().copied()).unwrap()
}

async fn collect(d: Download) -> (Vec<u8>, Option<RemoteError>) {
    let mut body = d.body;
    let mut out = Vec::new();
    while let Some(item) = body.next().await {
        match item {
            Ok(b) => out.extend_from_slice(&b),
            Err(e) => {
                assert!(
                    body.next().await.is_none(),
                    "stream continues after an error"
                );
                return (out, Some(e));
            }
        }
    }
    (out, None)
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("test timed out")
}

const LISTING: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<D:multistatus xmlns:D="DAV:">
<D:response><D:href>/dav/my%20docs/</D:href><D:propstat><D:prop>
<D:resourcetype><D:collection/></D:resourcetype><D:getetag>"d1"</D:getetag></D:prop>
<D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
<D:response><D:href>/dav/my%20docs/a%23b.txt</D:href><D:propstat><D:prop>
<D:resourcetype/><D:getcontentlength>11</D:getcontentlength>
<D:getlastmodified>Tue, 14 Nov 2023 22:13:20 GMT</D:getlastmodified><D:getetag>"f1"</D:getetag></D:prop>
<D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
<D:response><D:href>/dav/my%20docs/..</D:href><D:propstat><D:prop><D:resourcetype/></D:prop>
<D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
</D:multistatus>"#;

const STAT: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<D:multistatus xmlns:D="DAV:"><D:response><D:href>/dav/my%20docs/a%23b.txt</D:href>
<D:propstat><D:prop><D:resourcetype/><D:getcontentlength>11</D:getcontentlength></D:prop>
<D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response></D:multistatus>"#;

#[tokio::test]
async fn propfind_round_trip() {
    let ms = [("Content-Type", "application/xml; charset=utf-8")];
    let (url, server) = serve(vec![
        reply("207 Multi-Status", &ms, LISTING.as_bytes()),
        reply("207 Multi-Status", &ms, STAT.as_bytes()),
    ])
    .await;
    let dav = dav(&url);
    let listing = within(dav.list(&path(&["my docs"]))).await.unwrap();
    assert!(listing.dir.is_dir);
    assert_eq!(listing.dir.etag, ETag::parse("\"d1\""));
    assert_eq!(listing.children.len(), 1, "{listing:?}");
    let child = &listing.children[0];
    assert_eq!(child.name, "a#b.txt");
    assert_eq!(child.size, 11);
    assert_eq!(
        child.mtime,
        Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
    );
    assert_eq!(child.etag, ETag::parse("\"f1\""));

    let entry = within(dav.stat(&path(&["my docs", "a#b.txt"])))
        .await
        .unwrap();
    assert_eq!(
        (entry.name.as_str(), entry.is_dir, entry.size),
        ("a#b.txt", false, 11)
    );

    let seen = server.await.unwrap();
    assert_eq!(seen[0].line, "PROPFIND /dav/my%20docs/ HTTP/1.1");
    assert_eq!(seen[0].header("depth"), Some("1"));
    assert_eq!(seen[0].header("content-type"), Some("application/xml"));
    assert_eq!(
        seen[0].header("authorization"),
        Some("Basic YWxpY2U6czNjcmV0")
    );
    assert!(seen[0]
        .header("user-agent")
        .is_some_and(|u| u.starts_with("edrive/")));
    let body = String::from_utf8(seen[0].body.clone()).unwrap();
    for prop in [
        "resourcetype",
        "getcontentlength",
        "getlastmodified",
        "getetag",
    ] {
        assert!(body.contains(&format!("<D:{prop}/>")), "{body}");
    }
    assert_eq!(seen[1].line, "PROPFIND /dav/my%20docs/a%23b.txt HTTP/1.1");
    assert_eq!(seen[1].header("depth"), Some("0"));
}

#[tokio::test]
async fn root_listing_uses_base_with_slash_and_follows_redirects() {
    let empty = r#"<D:multistatus xmlns:D="DAV:"><D:response><D:href>/dav/f/</D:href><D:propstat>
<D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop></D:propstat></D:response></D:multistatus>"#;
    let (url, server) = serve(vec![
        reply("301 Moved Permanently", &[("Location", "/dav/f/")], b""),
        reply("207 Multi-Status", &[], empty.as_bytes()),
        reply(
            "207 Multi-Status",
            &[],
            b"<D:multistatus xmlns:D=\"DAV:\"/>",
        ),
    ])
    .await;
    let dav = dav(&format!("{url}/"));
    let entry = within(dav.stat(&path(&["f"]))).await.unwrap();
    assert!(entry.is_dir);
    let root = within(dav.list(&RemotePath::root())).await.unwrap();
    assert!(root.dir.is_dir && root.children.is_empty());
    let seen = server.await.unwrap();
    assert_eq!(seen[0].line, "PROPFIND /dav/f HTTP/1.1");
    assert_eq!(seen[1].line, "PROPFIND /dav/f/ HTTP/1.1");
    assert_eq!(seen[1].header("depth"), Some("0"));
    assert_eq!(
        seen[1].header("authorization"),
        Some("Basic YWxpY2U6czNjcmV0")
    );
    assert_eq!(seen[1].body, seen[0].body);
    assert_eq!(seen[2].line, "PROPFIND /dav/ HTTP/1.1");
}

#[tokio::test]
async fn ranged_get() {
    let whole: Vec<u8> = (0..100u8).collect();
    let (url, server) = serve(vec![
        reply(
            "206 Partial Content",
            &[("Content-Range", "bytes 10-19/100"), ("ETag", "W/\"v7\"")],
            &whole[10..20],
        ),
        // A server that ignores Range.
        reply("200 OK", &[], &whole),
    ])
    .await;
    let dav = dav(&url);
    let d = within(dav.read(&path(&["f.bin"]), Some(10..20)))
        .await
        .unwrap();
    assert_eq!(d.len, Some(10));
    assert_eq!(
        d.etag,
        Some(ETag {
            value: "v7".into(),
            weak: true
        })
    );
    assert_eq!(within(collect(d)).await, (whole[10..20].to_vec(), None));

    let d = within(dav.read(&path(&["f.bin"]), Some(30..35)))
        .await
        .unwrap();
    assert_eq!(d.len, Some(5));
    assert_eq!(within(collect(d)).await, (whole[30..35].to_vec(), None));

    let seen = server.await.unwrap();
    assert_eq!(seen[0].line, "GET /dav/f.bin HTTP/1.1");
    assert_eq!(seen[0].header("range"), Some("bytes=10-19"));
    assert_eq!(seen[1].header("range"), Some("bytes=30-34"));
}

#[tokio::test]
async fn short_get_body_is_an_error() {
    let (url, server) = serve(vec![reply(
        "200 OK",
        &[("Content-Length", "100")],
        &[7u8; 40],
    )])
    .await;
    let dav = dav(&url);
    let d = within(dav.read(&path(&["f"]), None)).await.unwrap();
    assert_eq!(d.len, Some(100));
    let (got, err) = within(collect(d)).await;
    assert_eq!(got.len(), 40);
    assert_eq!(
        err,
        Some(RemoteError::ShortBody {
            expected: 100,
            got: 40
        })
    );
    server.await.unwrap();
}

#[tokio::test]
async fn whole_get() {
    let (url, server) = serve(vec![
        reply("200 OK", &[("ETag", "\"e1\"")], b"hello world"),
        reply("404 Not Found", &[], b"nope"),
    ])
    .await;
    let dav = dav(&url);
    let d = within(dav.read(&path(&["f"]), None)).await.unwrap();
    assert_eq!((d.len, d.etag.clone()), (Some(11), ETag::parse("e1")));
    assert_eq!(within(collect(d)).await, (b"hello world".to_vec(), None));
    let missing = within(dav.read(&path(&["g"]), Some(0..4))).await;
    assert!(matches!(missing, Err(RemoteError::NotFound)));
    let empty = within(dav.read(&path(&["g"]), Some(4..4))).await.unwrap();
    assert_eq!(empty.len, Some(0));
    assert_eq!(within(collect(empty)).await, (Vec::new(), None));
    assert_eq!(server.await.unwrap().len(), 2);
}

#[tokio::test]
async fn unauthorized() {
    let (url, server) = serve(vec![reply(
        "401 Unauthorized",
        &[("WWW-Authenticate", "Basic realm=\"dav\"")],
        b"",
    )])
    .await;
    let result = within(dav(&url).list(&RemotePath::root())).await;
    assert_eq!(result.err(), Some(RemoteError::Auth(401)));
    server.await.unwrap();
}

#[tokio::test]
async fn connection_refused_is_unreachable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dav = dav(&format!("http://bob:hunter2@127.0.0.1:{port}/dav/"));
    let started = Instant::now();
    let result = within(dav.stat(&RemotePath::root())).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    match result {
        Err(RemoteError::Unreachable(msg)) => {
            assert!(
                !msg.contains("s3cret") && !msg.contains("hunter2") && !msg.contains("bob"),
                "{msg}"
            );
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

fn stream(parts: &[&'static [u8]]) -> ByteStream {
    let items: Vec<Result<Bytes, RemoteError>> =
        parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
    Box::pin(futures_util::stream::iter(items))
}

#[tokio::test]
async fn put_sends_length_conditions_and_mtime() {
    let (url, server) = serve(vec![
        reply("201 Created", &[("ETag", "\"v2\"")], b""),
        reply("412 Precondition Failed", &[], b""),
        reply("507 Insufficient Storage", &[], b""),
    ])
    .await;
    let dav = dav(&url);
    let v1 = ETag {
        value: "v1".into(),
        weak: false,
    };
    let mtime = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let p = path(&["new file.txt"]);
    let etag = within(dav.put(
        &p,
        stream(&[b"hel", b"lo"]),
        5,
        Precondition::IfMatch(v1),
        Some(mtime),
    ))
    .await
    .unwrap();
    assert_eq!(etag, ETag::parse("\"v2\""));
    let conflict = within(dav.put(&p, stream(&[b"x"]), 1, Precondition::IfNoneExists, None)).await;
    assert_eq!(conflict, Err(RemoteError::PreconditionFailed));
    let full = within(dav.put(&p, stream(&[]), 0, Precondition::None, None)).await;
    assert_eq!(full, Err(RemoteError::InsufficientStorage));

    let seen = server.await.unwrap();
    assert_eq!(seen[0].line, "PUT /dav/new%20file.txt HTTP/1.1");
    assert_eq!(seen[0].header("content-length"), Some("5"));
    assert_eq!(seen[0].header("if-match"), Some("\"v1\""));
    assert_eq!(seen[0].header("x-oc-mtime"), Some("1700000000"));
    assert_eq!(seen[0].body, b"hello");
    assert_eq!(seen[1].header("if-none-match"), Some("*"));
    assert_eq!(seen[1].header("x-oc-mtime"), None);
    assert_eq!(seen[2].header("content-length"), Some("0"));
}

#[tokio::test]
async fn put_with_a_short_source_fails_locally() {
    let (url, _server) = serve(vec![reply("201 Created", &[], b"")]).await;
    let result = within(dav(&url).put(
        &path(&["f"]),
        stream(&[b"abc"]),
        10,
        Precondition::None,
        None,
    ))
    .await;
    assert!(
        matches!(result, Err(RemoteError::Local(ref m)) if m.contains("3 of 10")),
        "{result:?}"
    );
}

#[tokio::test]
async fn mkcol_move_delete() {
    let locked = r#"<?xml version="1.0"?><d:error xmlns:d="DAV:"><d:activelock>
<d:owner><d:href>carol</d:href></d:owner></d:activelock></d:error>"#;
    let (url, server) = serve(vec![
        reply("201 Created", &[], b""),
        reply("201 Created", &[], b""),
        reply("204 No Content", &[], b""),
        reply(
            "423 Locked",
            &[("Content-Type", "application/xml")],
            locked.as_bytes(),
        ),
        reply("409 Conflict", &[], b""),
    ])
    .await;
    let dav = dav(&url);
    within(dav.mkdir(&path(&["new dir"]))).await.unwrap();
    within(dav.rename(&path(&["a"]), &path(&["new dir", "b#c"]), false))
        .await
        .unwrap();
    let tag = ETag {
        value: "x".into(),
        weak: false,
    };
    within(dav.delete(&path(&["a"]), Precondition::IfMatch(tag)))
        .await
        .unwrap();
    let locked = within(dav.delete(&path(&["b"]), Precondition::None)).await;
    assert_eq!(locked, Err(RemoteError::Locked(Some("carol".into()))));
    let conflict = within(dav.mkdir(&path(&["x", "y"]))).await;
    assert_eq!(conflict, Err(RemoteError::Status(409)));

    let seen = server.await.unwrap();
    assert_eq!(seen[0].line, "MKCOL /dav/new%20dir HTTP/1.1");
    assert_eq!(seen[1].line, "MOVE /dav/a HTTP/1.1");
    let host = url.trim_end_matches("/dav");
    assert_eq!(
        seen[1].header("destination"),
        Some(format!("{host}/dav/new%20dir/b%23c").as_str())
    );
    assert_eq!(seen[1].header("overwrite"), Some("F"));
    assert_eq!(seen[2].line, "DELETE /dav/a HTTP/1.1");
    assert_eq!(seen[2].header("if-match"), Some("\"x\""));
    assert_eq!(seen[3].header("if-match"), None);
}

#[tokio::test]
async fn malformed_and_unexpected_replies() {
    let (url, server) = serve(vec![
        reply("207 Multi-Status", &[], b"<html>oops"),
        reply("200 OK", &[], b"<html><body>login page</body></html>"),
        reply("204 No Content", &[], b""),
        reply("500 Internal Server Error", &[], b""),
    ])
    .await;
    let dav = dav(&url);
    for _ in 0..2 {
        let r = within(dav.list(&RemotePath::root())).await;
        assert!(matches!(r, Err(RemoteError::Malformed(_))), "{r:?}");
    }
    assert_eq!(
        within(dav.list(&RemotePath::root())).await.err(),
        Some(RemoteError::Status(204))
    );
    assert_eq!(
        within(dav.list(&RemotePath::root())).await.err(),
        Some(RemoteError::Status(500))
    );
    server.await.unwrap();
}

#[test]
fn config_and_description_hide_credentials() {
    let mut config =
        WebDavConfig::new("https://bob:hunter2@files.example.com/remote.php/dav/files/bob");
    config.password = Some("s3cret".into());
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("s3cret") && !debug.contains("hunter2"),
        "{debug}"
    );
    assert!(debug.contains("<redacted>"), "{debug}");
    assert_eq!(config.connect_timeout, Duration::from_secs(5));
    assert_eq!(config.request_timeout, Duration::from_secs(30));
    let dav = WebDav::new(config).unwrap();
    assert_eq!(
        dav.describe(),
        "https://files.example.com/remote.php/dav/files/bob/"
    );

    assert!(matches!(
        WebDav::new(WebDavConfig::new("not a url")),
        Err(RemoteError::Local(_))
    ));
    assert!(matches!(
        WebDav::new(WebDavConfig::new("ftp://h/")),
        Err(RemoteError::Local(_))
    ));
    assert!(matches!(
        WebDav::new(WebDavConfig::new("http://h/?x=1")),
        Err(RemoteError::Local(_))
    ));
    assert_eq!(
        super::redact_userinfo("http://u:p@h:1/a@b"),
        "http://<redacted>@h:1/a@b"
    );
    assert_eq!(super::redact_userinfo("http://h/a@b"), "http://h/a@b");
    for (url, shown) in [
        ("https://bob@H/dav/", "https://<redacted>@h/dav/"),
        ("http://:pw@h/", "http://<redacted>@h/"),
        (
            "http://u:p%40ss@h/x?q=a@b#c",
            "http://<redacted>@h/x?q=a@b#c",
        ),
        (" http://u:p@h ", "http://<redacted>@h/"),
        ("http://u:p@h:99999/", "<invalid URL>"),
        ("no url u:p@h", "<invalid URL>"),
        ("file://u:p@h/x", "<invalid URL>"),
    ] {
        assert_eq!(super::redact_userinfo(url), shown, "{url}");
    }
}

#[tokio::test]
async fn credentials_are_checked_without_use_and_swapped_at_runtime() {
    let root = r#"<D:multistatus xmlns:D="DAV:"><D:response><D:href>/dav/</D:href><D:propstat>
<D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop>
<D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response></D:multistatus>"#;
    let (url, server) = serve(vec![
        reply("401 Unauthorized", &[], b""),
        reply("207 Multi-Status", &[], root.as_bytes()),
        reply("207 Multi-Status", &[], root.as_bytes()),
    ])
    .await;
    let dav = dav(&url);
    let refused = within(dav.check_credentials(&Credentials::Bearer("tok1".into()))).await;
    assert_eq!(refused.err(), Some(RemoteError::Auth(401)));
    assert_eq!(
        dav.credentials().user(),
        Some("alice"),
        "a check swaps nothing"
    );
    let bob = Credentials::Basic {
        user: "bob".into(),
        password: Some("pw2".into()),
    };
    assert!(within(dav.check_credentials(&bob)).await.unwrap().is_dir);
    assert_eq!(dav.credentials().user(), Some("alice"));
    dav.set_credentials(Credentials::Bearer("tok2".into()));
    assert_eq!(dav.credentials().kind(), "bearer");
    assert!(within(dav.stat(&RemotePath::root())).await.unwrap().is_dir);
    let shown = format!("{:?} {:?}", dav.credentials(), bob);
    assert!(!shown.contains("tok2") && !shown.contains("pw2"), "{shown}");

    let seen = server.await.unwrap();
    assert_eq!(seen[0].line, "PROPFIND /dav/ HTTP/1.1");
    assert_eq!(seen[0].header("depth"), Some("0"));
    assert_eq!(seen[0].header("authorization"), Some("Bearer tok1"));
    assert_eq!(seen[1].header("authorization"), Some("Basic Ym9iOnB3Mg=="));
    assert_eq!(seen[2].header("authorization"), Some("Bearer tok2"));
}

#[test]
fn a_bearer_token_and_a_user_exclude_each_other() {
    let mut config = WebDavConfig::new("http://h/dav/");
    config.bearer_token = Some("tok".into());
    let debug = format!("{config:?}");
    assert!(!debug.contains("tok\""), "{debug}");
    assert_eq!(
        WebDav::new(config.clone()).unwrap().credentials().kind(),
        "bearer"
    );
    config.user = Some("alice".into());
    assert!(matches!(WebDav::new(config), Err(RemoteError::Local(_))));
}

/// A listing reply of `n` files, about 300 bytes each.
fn big_listing(n: usize) -> String {
    let mut s = String::from(
        r#"<?xml version="1.0" encoding="utf-8"?><D:multistatus xmlns:D="DAV:">
<D:response><D:href>/dav/big/</D:href><D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"#,
    );
    for i in 0..n {
        s.push_str(&format!(
            "<D:response><D:href>/dav/big/file-{i:06}.txt</D:href><D:propstat><D:prop><D:resourcetype/><D:getcontentlength>{i}</D:getcontentlength><D:getetag>\"e{i}\"</D:getetag></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>\n"
        ));
    }
    s.push_str("</D:multistatus>");
    s
}

#[tokio::test]
async fn a_large_listing_is_parsed_as_it_arrives() {
    let body = big_listing(5000);
    assert!(body.len() > 1 << 20, "spans many reads");
    let ms = [("Content-Type", "application/xml")];
    let (url, server) = serve(vec![reply("207 Multi-Status", &ms, body.as_bytes())]).await;
    let listing = within(dav(&url).list(&path(&["big"]))).await.unwrap();
    assert!(listing.complete);
    assert_eq!(listing.children.len(), 5000);
    assert_eq!(listing.children[4321].name, "file-004321.txt");
    assert_eq!(listing.children[4321].size, 4321);
    server.await.unwrap();
}

#[tokio::test]
async fn list_each_hands_over_children_as_parsed_and_stops_on_the_sinks_error() {
    let body = big_listing(3000);
    let ms = [("Content-Type", "application/xml")];
    let (url, server) = serve(vec![reply("207 Multi-Status", &ms, body.as_bytes())]).await;
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = got.clone();
    let head = within(dav(&url).list_each(
        &path(&["big"]),
        Box::new(move |c| {
            sink.lock().unwrap().push(c.name);
            Ok(())
        }),
    ))
    .await
    .unwrap();
    assert!(head.complete && head.dir.is_dir);
    assert_eq!(head.children, 3000);
    assert_eq!(got.lock().unwrap()[2999], "file-002999.txt");
    server.await.unwrap();

    // The store failing mid-listing fails the listing with its error.
    let (url, server) = serve(vec![reply("207 Multi-Status", &ms, body.as_bytes())]).await;
    let mut n = 0;
    let r = within(dav(&url).list_each(
        &path(&["big"]),
        Box::new(move |_| {
            n += 1;
            if n == 1000 {
                return Err(RemoteError::Local("disk full".into()));
            }
            Ok(())
        }),
    ))
    .await;
    assert!(
        matches!(&r, Err(RemoteError::Local(m)) if m == "disk full"),
        "{r:?}"
    );
    let _ = server.await;
}

#[tokio::test]
async fn a_listing_cut_short_is_an_error_never_a_shorter_listing() {
    // The document happens to be complete, but the body is shorter than announced.
    let body = big_listing(50);
    let length = (body.len() + 100).to_string();
    let headers = [
        ("Content-Type", "application/xml"),
        ("Content-Length", length.as_str()),
    ];
    let (url, server) = serve(vec![reply("207 Multi-Status", &headers, body.as_bytes())]).await;
    let r = within(dav(&url).list(&path(&["big"]))).await;
    assert!(r.is_err(), "a short reply was taken: {r:?}");
    server.await.unwrap();

    // Announced larger than any listing is accepted: refused before reading.
    let headers = [
        ("Content-Type", "application/xml"),
        ("Content-Length", "1073741824"),
    ];
    let (url, _server) = serve(vec![reply("207 Multi-Status", &headers, b"<D:multistatus")]).await;
    match within(dav(&url).list(&path(&["big"]))).await {
        Err(RemoteError::Malformed(m)) => assert!(m.contains("larger than"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_listing_that_stalls_fails_after_the_timeout_and_a_slow_one_does_not() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = big_listing(2000);
    let server = tokio::spawn(async move {
        // First: half the body, then nothing (the connection stays open).
        let (mut sock, _) = listener.accept().await.unwrap();
        read_request(&mut sock).await;
        let head = format!(
            "HTTP/1.1 207 Multi-Status\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        sock.write_all(head.as_bytes()).await.unwrap();
        sock.write_all(&body.as_bytes()[..body.len() / 2])
            .await
            .unwrap();
        let stalled = sock;
        // Then: the whole body in pieces, each pause shorter than the timeout, the whole
        // longer than it.
        let (mut sock, _) = listener.accept().await.unwrap();
        read_request(&mut sock).await;
        sock.write_all(head.as_bytes()).await.unwrap();
        for piece in body.as_bytes().chunks(body.len() / 6 + 1) {
            tokio::time::sleep(Duration::from_millis(400)).await;
            sock.write_all(piece).await.unwrap();
        }
        sock.shutdown().await.ok();
        drop(stalled);
    });
    let mut config = WebDavConfig::new(format!("http://{addr}/dav"));
    config.request_timeout = Duration::from_secs(1);
    let dav = WebDav::new(config).unwrap();
    match within(dav.list(&path(&["big"]))).await {
        Err(RemoteError::Transfer(m)) => assert!(m.contains("stalled"), "{m}"),
        other => panic!("expected a stall, got {other:?}"),
    }
    let listing = within(dav.list(&path(&["big"]))).await.unwrap();
    assert_eq!(listing.children.len(), 2000);
    server.await.unwrap();
}

#[test]
fn an_endless_element_is_refused() {
    let long = "x".repeat(100 << 10);
    let body = format!(
        r#"<D:multistatus xmlns:D="DAV:"><D:response><D:href>/dav/big/{long}</D:href></D:response></D:multistatus>"#
    );
    match super::propfind::parse_listing(
        body.as_bytes(),
        &super::href::Base::parse("http://h/dav/"),
        &path(&["big"]),
    ) {
        Err(RemoteError::Malformed(m)) => assert!(m.contains("longer than"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}
