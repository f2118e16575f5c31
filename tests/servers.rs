//! Proves the test harness itself: the embedded server, the private Apache, nginx,
//! lighttpd, WsgiDAV and rclone, the hostile server, the demo tree and the tree helpers. No
//! FUSE needed.

mod common;

#[path = "../src/demo_tree.rs"]
mod demo_tree;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;

fn method(m: &str) -> Method {
    Method::from_bytes(m.as_bytes()).unwrap()
}

/// A small tree: 2 levels × 2 folders × 3 files.
fn small_tree() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempdir();
    let root = tmp.path().join("data");
    make_tree(&root, &TreeSpec::default());
    (tmp, root)
}

#[test]
fn embedded_server_lists_serves_and_counts() {
    let (_tmp, root) = small_tree();
    let srv = EmbeddedServer::start(&root, None);
    assert!(srv.url().starts_with("http://127.0.0.1:"));
    assert!(srv.url().ends_with('/'));

    let (status, body) = propfind(&srv.url(), "1", None);
    assert_eq!(status, 207, "{body}");
    assert!(body.contains("file%200.bin"), "{body}");
    assert!(body.contains("dir%200/"), "{body}");
    assert!(
        !body.contains("dir%200/file"),
        "Depth 1 must not recurse: {body}"
    );
    assert_eq!(srv.count_requests("PROPFIND"), 1);

    let c = client();
    let resp = c.get(srv.url_of("file%201.bin")).send().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers().get("etag").is_some());
    assert!(resp.headers().get("last-modified").is_some());
    assert_eq!(resp.headers()["content-length"], "1000");
    let bytes = resp.bytes().unwrap();
    assert_eq!(
        bytes.as_ref(),
        std::fs::read(root.join("file 1.bin")).unwrap()
    );
    assert_eq!(srv.count_requests("GET"), 1);
    assert!(srv
        .requests()
        .contains(&("GET".into(), "/file%201.bin".into(), 200)));

    // Range requests.
    let resp = c
        .get(srv.url_of("dir%200/file%202.bin"))
        .header("Range", "bytes=10-19")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 206);
    let part = resp.bytes().unwrap();
    let full = std::fs::read(root.join("dir 0/file 2.bin")).unwrap();
    assert_eq!(part.as_ref(), &full[10..20]);
    assert_eq!(srv.count_requests("GET"), 2);

    let resp = c.get(srv.url_of("missing")).send().unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert!(srv
        .requests()
        .contains(&("GET".into(), "/missing".into(), 404)));
}

#[test]
fn embedded_server_writes_and_locks() {
    let (_tmp, root) = small_tree();
    let srv = EmbeddedServer::start(&root, None);
    let c = client();

    let r = c
        .put(srv.url_of("new%20file.txt"))
        .body("hello")
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(std::fs::read(root.join("new file.txt")).unwrap(), b"hello");

    let r = c
        .request(method("MKCOL"), srv.url_of("made"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert!(root.join("made").is_dir());

    let r = c
        .request(method("MOVE"), srv.url_of("new%20file.txt"))
        .header("Destination", srv.url_of("made/moved.txt"))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert!(root.join("made/moved.txt").is_file());
    assert!(!root.join("new file.txt").exists());

    let r = c
        .request(method("COPY"), srv.url_of("made/moved.txt"))
        .header("Destination", srv.url_of("copy.txt"))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(std::fs::read(root.join("copy.txt")).unwrap(), b"hello");

    let lock_body = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
        <D:lockinfo xmlns:D=\"DAV:\"><D:lockscope><D:exclusive/></D:lockscope>\
        <D:locktype><D:write/></D:locktype><D:owner>test</D:owner></D:lockinfo>";
    let r = c
        .request(method("LOCK"), srv.url_of("copy.txt"))
        .header("Timeout", "Second-60")
        .body(lock_body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let token = r.headers()["lock-token"].to_str().unwrap().to_string();
    // Locked: a PUT without the token fails.
    let r = c.put(srv.url_of("copy.txt")).body("x").send().unwrap();
    assert_eq!(r.status().as_u16(), 423);
    let r = c
        .request(method("UNLOCK"), srv.url_of("copy.txt"))
        .header("Lock-Token", &token)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);

    let r = c.delete(srv.url_of("copy.txt")).send().unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert!(!root.join("copy.txt").exists());

    for m in ["PUT", "MKCOL", "MOVE", "COPY", "LOCK", "UNLOCK", "DELETE"] {
        assert!(srv.count_requests(m) >= 1, "{m} not logged");
    }
}

#[test]
fn embedded_server_requires_auth() {
    let (_tmp, root) = small_tree();
    let srv = EmbeddedServer::start(&root, Some(("alice", "s3cret:pw")));
    let r = client().get(srv.url()).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"edrive\"");
    let (status, _) = propfind(&srv.url(), "1", None);
    assert_eq!(status, 401);
    let (status, _) = propfind(&srv.url(), "1", Some(("alice", "wrong")));
    assert_eq!(status, 401);
    let (status, _) = propfind(&srv.url(), "1", Some(("bob", "s3cret:pw")));
    assert_eq!(status, 401);
    let (status, body) = propfind(&srv.url(), "1", Some(("alice", "s3cret:pw")));
    assert_eq!(status, 207, "{body}");
    let statuses: Vec<u16> = srv.requests().iter().map(|r| r.2).collect();
    assert_eq!(statuses, vec![401, 401, 401, 401, 207]);
}

#[test]
fn embedded_server_restarts_on_same_port() {
    let (_tmp, root) = small_tree();
    let mut srv = EmbeddedServer::start(&root, None);
    let port = srv.port();
    assert_eq!(propfind(&srv.url(), "0", None).0, 207);
    srv.stop();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    srv.restart();
    assert_eq!(srv.port(), port);
    assert_eq!(propfind(&srv.url(), "0", None).0, 207);
    assert_eq!(srv.count_requests("PROPFIND"), 2);
    srv.reset_requests();
    assert_eq!(srv.count_requests("PROPFIND"), 0);
}

#[test]
fn serve_exits_cleanly_on_sigterm_and_rejects_missing_dir() {
    let tmp = tempdir();
    let mut child = Command::new(edrive_bin())
        .args(["serve"])
        .arg(tmp.path())
        .args(["--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 1];
    while !line.ends_with('\n') {
        assert_eq!(out.read(&mut buf).unwrap(), 1, "no listening line");
        line.push(buf[0] as char);
    }
    assert!(
        line.starts_with("edrive serve: listening on http://127.0.0.1:"),
        "{line}"
    );
    assert!(line.trim_end().ends_with('/'), "{line}");
    signal_pid(child.id(), libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "serve ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");

    let missing = tmp.path().join("does-not-exist");
    let out = Command::new(edrive_bin())
        .arg("serve")
        .arg(&missing)
        .args(["--addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does-not-exist"), "{err}");
}

#[test]
fn apache_serves_dav_with_auth_and_counts() {
    let (_tmp, root) = small_tree();
    let apache = ApacheServer::start(&root, Some(("alice", "pw")));
    assert!(apache.url().ends_with("/dav/"), "{}", apache.url());
    let auth = Some(("alice", "pw"));

    let (status, _) = propfind(&apache.url(), "1", None);
    assert_eq!(status, 401);
    let (status, _) = propfind(&apache.url(), "1", Some(("alice", "bad")));
    assert_eq!(status, 401);
    let (status, body) = propfind(&apache.url(), "1", auth);
    assert_eq!(status, 207, "{body}");
    assert!(body.contains("/dav/file%200.bin"), "{body}");
    assert!(body.contains("/dav/dir%200/"), "{body}");

    let c = client();
    let r = c
        .get(apache.url_of("file%201.bin"))
        .basic_auth("alice", Some("pw"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers().get("etag").is_some());
    assert_eq!(
        r.bytes().unwrap().as_ref(),
        std::fs::read(root.join("file 1.bin")).unwrap()
    );
    assert_eq!(apache.count_requests("GET"), 1);
    assert_eq!(apache.count_requests("PROPFIND"), 3);
    assert!(apache
        .requests()
        .contains(&("GET".into(), "/dav/file%201.bin".into(), 200)));

    // PUT proves the data dir is writable by the server's user.
    let r = c
        .put(apache.url_of("dir%200/uploaded.txt"))
        .basic_auth("alice", Some("pw"))
        .body("from the test")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", apache.error_log());
    assert_eq!(
        std::fs::read(root.join("dir 0/uploaded.txt")).unwrap(),
        b"from the test"
    );
    let r = c
        .request(method("MKCOL"), apache.url_of("newdir"))
        .basic_auth("alice", Some("pw"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let r = c
        .delete(apache.url_of("dir%200/uploaded.txt"))
        .basic_auth("alice", Some("pw"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert!(!root.join("dir 0/uploaded.txt").exists());
}

#[test]
fn apache_without_auth_restarts_and_resets() {
    let (_tmp, root) = small_tree();
    let mut apache = ApacheServer::start(&root, None);
    let (status, body) = propfind(&apache.url(), "1", None);
    assert_eq!(status, 207, "{body}");
    // Files the test adds later become writable over DAV after chown_data.
    std::fs::write(root.join("later.txt"), "x").unwrap();
    apache.chown_data();
    let r = client()
        .put(apache.url_of("later.txt"))
        .body("y")
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let port = apache.port();
    apache.restart();
    assert_eq!(apache.port(), port);
    apache.reset_requests();
    let r = client().get(apache.url_of("later.txt")).send().unwrap();
    assert_eq!(r.text().unwrap(), "y");
    assert_eq!(
        apache.requests(),
        vec![("GET".to_string(), "/dav/later.txt".to_string(), 200)]
    );
    apache.stop();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn hostile_server_answers_as_told() {
    let listing = multistatus_xml(&[
        ("/", true, 0, ""),
        ("/.", false, 1, "e1"),
        ("/..", true, 0, ""),
        ("/a%2Fb", false, 3, "e2"),
        ("/nul%00x", false, 3, "e3"),
        ("/dup", false, 3, "e4"),
        ("/dup", false, 5, "e5"),
        ("/good.txt", false, 11, "e6"),
        ("/sub/", true, 0, "d1"),
    ]);
    let mut srv = HostileServer::builder()
        .propfind("/", 207, listing.clone())
        .propfind("/sub/", 207, "<D:multistatus xmlns:D=\"DAV:\"><D:response>")
        .file("/good.txt", "hello world", "e6")
        .get("/short.bin", Canned::short_body(1000, vec![7u8; 100]))
        .build();

    let (status, body) = propfind(&srv.url(), "1", None);
    assert_eq!(status, 207);
    assert_eq!(body, listing);
    for needle in [
        "<D:href>/.</D:href>",
        "<D:href>/..</D:href>",
        "/a%2Fb",
        "/nul%00x",
        "<D:collection/>",
        "<D:getcontentlength>11</D:getcontentlength>",
        "<D:getetag>\"e6\"</D:getetag>",
    ] {
        assert!(body.contains(needle), "{needle} missing in {body}");
    }
    assert_eq!(body.matches("<D:href>/dup</D:href>").count(), 2);
    let (status, body) = propfind(&srv.url_of("sub/"), "1", None);
    assert_eq!(status, 207);
    assert!(!body.contains("</D:multistatus>"));

    let c = client();
    let r = c.get(srv.url_of("good.txt")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["etag"], "\"e6\"");
    assert_eq!(r.text().unwrap(), "hello world");
    let r = c
        .get(srv.url_of("good.txt"))
        .header("Range", "bytes=6-")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 6-10/11");
    assert_eq!(r.text().unwrap(), "world");
    assert_eq!(c.get(srv.url_of("nope")).send().unwrap().status(), 404);

    // The short body: headers promise 1000 bytes, 100 arrive, then EOF.
    let mut s = TcpStream::connect(("127.0.0.1", srv.port())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /short.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&raw[..split]);
    assert!(head.contains("Content-Length: 1000"), "{head}");
    assert_eq!(raw.len() - split, 100);
    // A real client sees an error.
    let r = c.get(srv.url_of("short.bin")).send().unwrap();
    assert!(r.bytes().is_err());

    assert_eq!(srv.count_requests("PROPFIND"), 2);
    assert_eq!(srv.count_requests("GET"), 5);
    assert!(srv
        .requests()
        .contains(&("GET".into(), "/nope".into(), 404)));
    let rec = srv.recorded();
    let ranged = rec.iter().find(|r| r.status == 206).unwrap();
    assert_eq!(ranged.header("Range"), Some("bytes=6-"));
    assert!(rec[0].body.starts_with(b"<?xml"));

    // Routes can change while running.
    srv.set_route("GET", "/good.txt", Canned::new(503));
    assert_eq!(c.get(srv.url_of("good.txt")).send().unwrap().status(), 503);
    srv.reset_requests();
    assert!(srv.requests().is_empty());
}

#[test]
fn tree_helpers_are_deterministic() {
    let tmp = tempdir();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let spec = TreeSpec {
        depth: 3,
        dirs_per_dir: 2,
        files_per_dir: 2,
        sizes: vec![0, 1, 4096, 70_000],
        seed: 42,
    };
    let files = make_tree(&a, &spec);
    assert_eq!(files.len(), 2 * (1 + 2 + 4 + 8));
    assert_eq!(make_tree(&b, &spec), files);
    let (wa, wb) = (walk(&a), walk(&b));
    assert_eq!(wa.len(), files.len() + 2 + 4 + 8);
    let strip = |w: &std::collections::BTreeMap<String, (bool, u64, i64)>| {
        w.iter()
            .map(|(k, v)| (k.clone(), v.0, v.1))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&wa), strip(&wb));
    assert_eq!(wa["dir 0/dir 1/file 1.bin"].1, 70_000);
    assert!(wa["dir 0/dir 1"].0);
    for f in &files {
        assert_eq!(sha256_file(&a.join(f)), sha256_file(&b.join(f)));
    }
    assert_eq!(
        sha256_file(&a.join("file 0.bin")),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        sha256_bytes(&pseudo_random_bytes(7, 100)),
        sha256_bytes(&pseudo_random_bytes(7, 100))
    );
    assert_ne!(pseudo_random_bytes(7, 100), pseudo_random_bytes(8, 100));
}

#[test]
fn embedded_server_serves_the_demo_tree() {
    let tmp = tempdir();
    let root = tmp.path().join("demo");
    let n = demo_tree::generate_demo_tree(&root).unwrap();
    assert!(n >= 200, "{n}");
    let srv = EmbeddedServer::start(&root, None);
    let (status, body) = propfind(&srv.url(), "1", None);
    assert_eq!(status, 207);
    assert!(body.contains("README.txt"), "{body}");
    assert!(body.contains("Caf%C3%A9/"), "{body}");
    assert!(body.contains("%E6%97%A5%E6%9C%AC%E8%AA%9E/"), "{body}");
    let readme = client()
        .get(srv.url_of("README.txt"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(readme.contains("edrive demo"));
    let big = client()
        .get(srv.url_of("Archive/big%20file%205MiB.bin"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(big.len(), 5 << 20);
    assert_eq!(srv.count_requests("GET"), 2);
}

/// Proves a server the harness runs with a [`DaemonServer`]: the WebDAV methods edrive uses
/// work on its data folder (also on files the test wrote there itself, after `chown_data`),
/// `requests()` logs them (with statuses when `logs_status`), and dropping it stops it.
fn daemon_serves_dav(start: fn(&std::path::Path) -> DaemonServer, logs_status: bool) {
    let (_tmp, root) = small_tree();
    let mut srv = start(&root);
    let port = srv.port();
    assert_eq!(srv.url(), format!("http://127.0.0.1:{port}/"));
    assert!(srv.requests().is_empty(), "{:?}", srv.requests());
    let c = client();
    let ok = |r: reqwest::blocking::Response, what: &str| {
        assert!(r.status().is_success(), "{what}: {}", r.status());
    };

    let (status, body) = propfind(&srv.url(), "1", None);
    assert_eq!(status, 207, "{body}");
    assert!(body.contains("file%200.bin"), "{body}");
    let r = c.get(srv.url_of("file%201.bin")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.bytes().unwrap().as_ref(),
        std::fs::read(root.join("file 1.bin")).unwrap()
    );
    let r = c
        .put(srv.url_of("dir%200/uploaded.txt"))
        .body("from the test")
        .send()
        .unwrap();
    ok(r, "PUT");
    assert_eq!(
        std::fs::read(root.join("dir 0/uploaded.txt")).unwrap(),
        b"from the test"
    );
    ok(
        c.request(method("MKCOL"), srv.url_of("new%20dir/"))
            .send()
            .unwrap(),
        "MKCOL",
    );
    assert!(root.join("new dir").is_dir());
    ok(
        c.request(method("COPY"), srv.url_of("dir%200/uploaded.txt"))
            .header("Destination", srv.url_of("new%20dir/copy.txt"))
            .send()
            .unwrap(),
        "COPY",
    );
    ok(
        c.request(method("MOVE"), srv.url_of("new%20dir/copy.txt"))
            .header("Destination", srv.url_of("moved.txt"))
            .send()
            .unwrap(),
        "MOVE",
    );
    assert_eq!(
        std::fs::read(root.join("moved.txt")).unwrap(),
        b"from the test"
    );
    ok(c.delete(srv.url_of("moved.txt")).send().unwrap(), "DELETE");
    assert!(!root.join("moved.txt").exists());
    // A file the test writes itself can be replaced over WebDAV.
    std::fs::create_dir(root.join("by test")).unwrap();
    std::fs::write(root.join("by test/x.txt"), "x").unwrap();
    srv.chown_data();
    ok(
        c.put(srv.url_of("by%20test/x.txt"))
            .body("y")
            .send()
            .unwrap(),
        "PUT over the test's file",
    );
    ok(
        c.delete(srv.url_of("by%20test/")).send().unwrap(),
        "DELETE the test's folder",
    );
    assert!(!root.join("by test").exists());

    for m in ["PROPFIND", "GET", "PUT", "MKCOL", "COPY", "MOVE", "DELETE"] {
        assert!(
            srv.count_requests(m) >= 1,
            "{m} not logged: {:?}",
            srv.requests()
        );
    }
    let get = srv
        .requests()
        .into_iter()
        .find(|(m, _, _)| m == "GET")
        .unwrap();
    assert_eq!(get.1.replace("%20", " "), "/file 1.bin");
    assert_eq!(get.2, if logs_status { 200 } else { 0 });
    srv.reset_requests();
    assert!(srv.requests().is_empty(), "{:?}", srv.requests());
    let r = c.get(srv.url_of("missing")).send().unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let want_status = if logs_status { 404 } else { 0 };
    assert_eq!(
        srv.requests(),
        vec![("GET".to_string(), "/missing".to_string(), want_status)]
    );
    drop(srv);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still listening after drop"
    );
}

#[test]
fn nginx_serves_dav_and_logs_requests() {
    daemon_serves_dav(nginx::start, true);
}

#[test]
fn lighttpd_serves_dav_and_logs_requests() {
    daemon_serves_dav(lighttpd::start, true);
}

#[test]
fn wsgidav_serves_dav_and_logs_requests() {
    daemon_serves_dav(wsgidav::start, true);
}

#[test]
fn rclone_serves_dav_and_logs_requests() {
    daemon_serves_dav(rclone::start, false);
}
