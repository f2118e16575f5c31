//! Issue 2 acceptance, bad input: an unreachable or silent server, a wrong password, hostile
//! names, malformed XML and short bodies each get a clear error, and nothing escapes the
//! mount or is cached as complete.

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// The daemon's own log file (where `status --json` says it is).
fn daemon_log(m: &Mount) -> String {
    let s = m.status_json();
    let path = s["log_file"]
        .as_str()
        .expect("status names the log file")
        .to_string();
    std::fs::read_to_string(path).unwrap()
}

fn state_of(path: &Path) -> String {
    let out = std::process::Command::new("getfattr")
        .args(["--only-values", "-n", "user.edrive.state"])
        .arg(path)
        .output()
        .expect("getfattr (package attr) is needed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "expected a one-line message, got:\n{stderr}"
    );
    lines[0]
}

#[test]
fn unreachable_server_fails_fast_with_one_line() {
    let port = free_port();
    let started = Instant::now();
    let err = Mount::try_new(&format!("http://127.0.0.1:{port}/"), MountOpts::default())
        .err()
        .expect("mounting a closed port must fail");
    let line = one_line(&err.1);
    assert!(line.contains("cannot reach server"), "{line}");
    assert!(!err.0.success());
    // A bound for "no hang", far above the expected few milliseconds.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn silent_server_fails_within_bound_with_one_line() {
    // Accepts TCP connections (the kernel backlog does) but never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let started = Instant::now();
    let err = Mount::try_new(&format!("http://127.0.0.1:{port}/"), MountOpts::default())
        .err()
        .expect("mounting a silent server must fail");
    let line = one_line(&err.1);
    assert!(line.contains("did not answer"), "{line}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    drop(listener);
}

#[test]
fn wrong_password_says_authentication_failed() {
    let data = tempdir();
    std::fs::write(data.path().join("secret.txt"), b"s3cret").unwrap();
    let server = EmbeddedServer::start(data.path(), Some(("alice", "right-pass")));
    let err = Mount::try_new(
        &server.url(),
        MountOpts::default().auth("alice", "wrong-pass"),
    )
    .err()
    .expect("a wrong password must fail");
    let line = one_line(&err.1);
    assert!(line.contains("authentication failed"), "{line}");
    assert!(
        !line.contains("wrong-pass"),
        "the password must not be echoed: {line}"
    );

    let m = Mount::new(
        &server.url(),
        MountOpts::default().auth("alice", "right-pass"),
    );
    assert_eq!(std::fs::read(m.join("secret.txt")).unwrap(), b"s3cret");
    m.unmount();
}

#[test]
fn wrong_password_on_apache_says_authentication_failed() {
    let data = tempdir();
    std::fs::write(data.path().join("a.txt"), b"apache").unwrap();
    let server = ApacheServer::start(data.path(), Some(("bob", "pw1")));
    let err = Mount::try_new(&server.url(), MountOpts::default().auth("bob", "nope"))
        .err()
        .expect("a wrong password must fail");
    assert!(
        one_line(&err.1).contains("authentication failed"),
        "{}",
        err.1
    );
    let m = Mount::new(&server.url(), MountOpts::default().auth("bob", "pw1"));
    assert_eq!(std::fs::read(m.join("a.txt")).unwrap(), b"apache");
    m.unmount();
}

/// A root listing full of hostile names, one folder with broken XML, one good folder, and
/// files whose bodies are short or slow.
fn hostile_server() -> HostileServer {
    let root = multistatus(&[
        DavEntry::dir("/"),
        DavEntry::dir("/./"),
        DavEntry::dir("/../"),
        DavEntry::file("/a%2Fb", 3, "s1"),
        DavEntry::file("/nul%00x", 3, "s2"),
        DavEntry::file("/dup", 4, "d1"),
        DavEntry::file("/dup", 5, "d2"),
        DavEntry::file("/good.txt", 4, "g1"),
        DavEntry::file("/short.bin", 1000, "sh1"),
        DavEntry::file("/slow.bin", 4, "sl1"),
        DavEntry::file("/http://evil/x", 1, "e1"),
        DavEntry::dir("/bad/"),
        DavEntry::dir("/ok/"),
    ]);
    HostileServer::builder()
        .propfind("/", 207, root)
        .propfind(
            "/bad/",
            207,
            "<D:multistatus xmlns:D=\"DAV:\"><D:response><D:href>/bad/</D:hr",
        )
        .propfind(
            "/ok/",
            207,
            multistatus(&[DavEntry::dir("/ok/"), DavEntry::file("/ok/x", 2, "x")]),
        )
        .file("/good.txt", b"good".to_vec(), "g1")
        .file("/dup", b"dup1".to_vec(), "d1")
        .file("/ok/x", b"xx".to_vec(), "x")
        .get(
            "/short.bin",
            Canned::short_body(1000, vec![7u8; 500]).header("ETag", "\"sh1\""),
        )
        .get(
            "/slow.bin",
            Canned::file(b"slow".to_vec(), "sl1").delay(Duration::from_secs(8)),
        )
        .build()
}

#[test]
fn hostile_names_are_skipped_and_nothing_escapes() {
    let server = hostile_server();
    let m = Mount::new(&server.url(), MountOpts::default());
    let listed = names(m.path());
    let want: BTreeSet<String> = ["bad", "dup", "good.txt", "ok", "short.bin", "slow.bin"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(listed, want);
    assert_eq!(std::fs::read(m.join("good.txt")).unwrap(), b"good");
    assert_eq!(
        std::fs::read(m.join("dup")).unwrap(),
        b"dup1",
        "the first duplicate wins"
    );
    assert!(!m.path().parent().unwrap().join("b").exists());
    let log = daemon_log(&m);
    for needle in [
        "a%2Fb",
        "nul%00x",
        "duplicate name",
        "not a direct child",
        ". or ..",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains("WARN") && l.contains(needle)),
            "the skipped entry {needle:?} is logged:\n{log}"
        );
    }
    m.unmount();
}

#[test]
fn malformed_xml_is_eio_for_that_folder_only() {
    let server = hostile_server();
    let m = Mount::new(&server.url(), MountOpts::default());
    let err = std::fs::read_dir(m.join("bad"))
        .and_then(|mut d| d.next().transpose())
        .err();
    let err = err.expect("listing a folder with malformed XML must fail");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    let log = daemon_log(&m);
    assert!(
        log.contains("malformed"),
        "a log line names the problem:\n{log}"
    );
    // The mount keeps working.
    assert_eq!(names(&m.join("ok")), BTreeSet::from(["x".to_string()]));
    assert_eq!(std::fs::read(m.join("ok/x")).unwrap(), b"xx");
    m.unmount();
}

#[test]
fn short_body_is_eio_and_never_cached_as_complete() {
    let server = hostile_server();
    let m = Mount::new(&server.url(), MountOpts::default());
    for attempt in 0..2 {
        let mut buf = Vec::new();
        let err = std::fs::File::open(m.join("short.bin"))
            .and_then(|mut f| f.read_to_end(&mut buf))
            .err()
            .unwrap_or_else(|| panic!("attempt {attempt}: a short body must not read as complete"));
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    }
    let s = m.status_json();
    assert_eq!(s["hydrated_files"].as_u64(), Some(0), "{s}");
    assert!(
        server.count_requests("GET") >= 2,
        "each attempt asked the server again"
    );

    // Once the server sends the whole body, the file reads completely.
    server.set_route("GET", "/short.bin", Canned::file(vec![7u8; 1000], "sh1"));
    assert_eq!(std::fs::read(m.join("short.bin")).unwrap(), vec![7u8; 1000]);
    m.unmount();
}

#[test]
fn a_slow_download_does_not_block_other_work() {
    let server = hostile_server();
    let m = Mount::new(&server.url(), MountOpts::default());
    let slow_path = m.join("slow.bin");
    let slow = std::thread::spawn(move || std::fs::read(slow_path));
    // Wait until the slow download is under way, then work elsewhere in the mount.
    let slow_file = m.join("slow.bin");
    assert!(wait_until(Duration::from_secs(5), || state_of(&slow_file) == "partial"));
    assert_eq!(names(&m.join("ok")), BTreeSet::from(["x".to_string()]));
    assert_eq!(std::fs::read(m.join("good.txt")).unwrap(), b"good");
    assert!(
        !slow.is_finished(),
        "other work finished while the slow download still ran"
    );
    assert_eq!(slow.join().unwrap().unwrap(), b"slow");
    m.unmount();
}

#[test]
fn closing_the_last_reader_cancels_the_download() {
    let server = hostile_server();
    let m = Mount::new(&server.url(), MountOpts::default());
    let slow_file = m.join("slow.bin");
    let f = std::fs::File::open(&slow_file).unwrap();
    assert!(wait_until(Duration::from_secs(5), || state_of(&slow_file) == "partial"));
    assert_eq!(m.status_json()["downloads"].as_u64(), Some(1));
    drop(f);
    assert!(
        wait_until(Duration::from_secs(5), || m.status_json()["downloads"]
            .as_u64()
            == Some(0)),
        "the download kept running for nobody: {}",
        m.status_json()
    );
    // Outlast the server's 8 s delay: a download still running would now have finished
    // and been cached.
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(
        state_of(&slow_file),
        "online-only",
        "the cancelled download was cached"
    );
    assert_eq!(m.status_json()["cache"]["used_bytes"].as_u64(), Some(0));
    assert_eq!(m.status_json()["hydrated_files"].as_u64(), Some(0));
    m.unmount();
}

#[test]
fn credentials_in_the_url_never_show() {
    let data = tempdir();
    std::fs::write(data.path().join("a.txt"), b"a").unwrap();
    let server = EmbeddedServer::start(data.path(), Some(("carol", "url-s3cret")));
    let url = server.url().replace("http://", "http://carol:url-s3cret@");
    let m = Mount::new(&url, MountOpts::default());
    assert_eq!(std::fs::read(m.join("a.txt")).unwrap(), b"a");
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        !mounts.contains("url-s3cret"),
        "/proc/mounts shows the password"
    );
    let status = m.status_json().to_string();
    assert!(
        !status.contains("url-s3cret"),
        "status shows the password: {status}"
    );
    assert!(
        !daemon_log(&m).contains("url-s3cret"),
        "the log shows the password"
    );
    let pid = m.pid().expect("daemon pid");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    for (what, bytes) in [("command line", cmdline), ("environment", environ)] {
        assert!(
            !String::from_utf8_lossy(&bytes).contains("url-s3cret"),
            "the daemon's {what} holds the password"
        );
    }
    m.unmount();
}

/// The daemon's peak resident memory so far (`VmHWM`), in MiB.
fn peak_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status:\n{status}"));
    kib >> 10
}

/// Lists `dir`, expecting the listing to fail with `EIO`.
fn assert_listing_eio(dir: &Path) {
    let err = std::fs::read_dir(dir)
        .and_then(|mut d| d.next().transpose())
        .err()
        .unwrap_or_else(|| panic!("listing {} must fail", dir.display()));
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EIO),
        "{}: {err}",
        dir.display()
    );
}

/// A multistatus whose folder response has a `D:displayname` of `len` bytes (sent as
/// they stream, never held by the test).
fn huge_displayname(folder: &str, len: u64) -> Canned {
    let head = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:multistatus xmlns:D=\"DAV:\">\
         <D:response><D:href>{folder}</D:href><D:propstat><D:prop>\
         <D:resourcetype><D:collection/></D:resourcetype><D:displayname>"
    );
    let tail = "</D:displayname></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>\
                </D:response></D:multistatus>\n";
    Canned::multistatus(format!("{head}{tail}")).fill(head.len(), b"x", len)
}

#[test]
fn replies_of_any_size_or_shape_are_read_in_bounded_memory() {
    const LIMIT_MIB: u64 = 64;
    let root = multistatus(&[
        DavEntry::dir("/"),
        DavEntry::dir("/big/"),
        DavEntry::dir("/deep/"),
        DavEntry::dir("/bomb/"),
        DavEntry::dir("/many/"),
        DavEntry::file("/good.txt", 4, "g1"),
    ]);
    let deep_head = "<?xml version=\"1.0\"?><D:multistatus xmlns:D=\"DAV:\"><D:response>";
    let bomb = concat!(
        "<?xml version=\"1.0\"?><!DOCTYPE D:multistatus [",
        "<!ENTITY a \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\">",
        "<!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">",
        "<!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">",
        "<!ENTITY d \"&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;\">",
        "<!ENTITY e \"&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;\">",
        "<!ENTITY f \"&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;\">",
        "]><D:multistatus xmlns:D=\"DAV:\"><D:response><D:href>/bomb/</D:href>",
        "<D:propstat><D:prop><D:displayname>&f;&f;&f;&f;</D:displayname></D:prop>",
        "</D:propstat></D:response></D:multistatus>"
    );
    let mut many = vec![DavEntry::dir("/many/")];
    many.extend(
        (0..200_000).map(|i| DavEntry::file(&format!("/many/f{i:06}"), i, &format!("m{i}"))),
    );
    let server = HostileServer::builder()
        .propfind("/", 207, root.clone())
        .route("PROPFIND", "/big/", huge_displayname("/big/", 200 << 20))
        .route(
            "PROPFIND",
            "/deep/",
            Canned::multistatus(deep_head).fill(deep_head.len(), b"<x>", 1 << 20),
        )
        .propfind("/bomb/", 207, bomb)
        .propfind("/many/", 207, multistatus(&many))
        .file("/good.txt", b"good".to_vec(), "g1")
        .build();
    drop(many);
    let m = Mount::new(&server.url(), MountOpts::default().dir_cache_ttl("1s"));
    let pid = m.pid().expect("daemon pid");
    let want = names(m.path());
    assert_eq!(want.len(), 5, "{want:?}");

    // A 200 MB text is refused as it streams in: EIO for that folder, nothing else hurt.
    assert_listing_eio(&m.join("big"));
    let peak = peak_mib(pid);
    assert!(
        peak < LIMIT_MIB,
        "peak {peak} MiB after a 200 MB displayname"
    );
    assert!(daemon_log(&m).contains("longer than 64 KiB"));

    // The same in a folder listed before: the last listing stays, nothing is removed.
    // 60 MB: under the most a Depth 0 reply may have, so `login` (a PROPFIND Depth 0 of
    // the root) reads it too, and refuses it.
    server.set_route("PROPFIND", "/", huge_displayname("/", 60 << 20));
    let (status, _, err) = m.edrive_with_password(&["login", "--user", "someone"], "pw");
    assert!(!status.success(), "login took a reply it cannot read");
    assert!(err.contains("longer than 64 KiB"), "{err}");
    let peak = peak_mib(pid);
    assert!(
        peak < LIMIT_MIB,
        "peak {peak} MiB after a Depth 0 reply of 60 MB"
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(names(m.path()), want);
    assert!(
        daemon_log(&m).contains("serving the last known listing"),
        "the root was listed again (and failed)"
    );
    let peak = peak_mib(pid);
    assert!(
        peak < LIMIT_MIB,
        "peak {peak} MiB after relisting with a 200 MB displayname"
    );

    // Nesting without end, and an entity bomb.
    assert_listing_eio(&m.join("deep"));
    assert_listing_eio(&m.join("bomb"));
    let log = daemon_log(&m);
    assert!(log.contains("nested deeper than"), "{log}");
    assert!(log.contains("undefined entity"), "{log}");

    // 200,000 entries are fine, in bounded memory too.
    let listed = std::fs::read_dir(m.join("many")).unwrap().count();
    assert_eq!(listed, 200_000);
    let peak = peak_mib(pid);
    assert!(
        peak < LIMIT_MIB,
        "peak {peak} MiB after listing 200,000 entries"
    );

    // The mount still works.
    assert_eq!(std::fs::read(m.join("good.txt")).unwrap(), b"good");
    m.unmount();
}

#[test]
fn hrefs_to_another_server_or_with_a_query_are_skipped() {
    let server = HostileServer::builder()
        .file("/same.txt", b"same".to_vec(), "s1")
        .file("/keep.txt", b"keep".to_vec(), "k1")
        .build();
    let own = format!("http://127.0.0.1:{}", server.port());
    let listing = |hostile: bool, keep: bool| {
        let mut entries = vec![
            DavEntry::dir(&format!("{own}/")),
            DavEntry::file(&format!("{own}/same.txt"), 4, "s1"),
        ];
        if keep {
            entries.push(DavEntry::file("/keep.txt", 4, "k1"));
        }
        if hostile {
            entries.extend([
                DavEntry::file("http://evil.invalid/evil.txt", 4, "e1"),
                DavEntry::file(
                    &format!("https://127.0.0.1:{}/tls.txt", server.port()),
                    4,
                    "t1",
                ),
                DavEntry::file("/?q=1", 1, "q1"),
                DavEntry::file("/page.txt?q=1", 1, "q2"),
                DavEntry::file("/frag.txt#top", 1, "f1"),
            ]);
        }
        Canned::multistatus(multistatus(&entries))
    };
    server.set_route("PROPFIND", "/", listing(true, true));
    let m = Mount::new(&server.url(), MountOpts::default().dir_cache_ttl("1s"));
    let want: BTreeSet<String> = ["keep.txt", "same.txt"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names(m.path()), want);
    assert_eq!(std::fs::read(m.join("same.txt")).unwrap(), b"same");
    assert!(!m.join("evil.txt").exists());
    assert!(!m.join("?q=1").exists());
    let log = daemon_log(&m);
    for needle in ["evil.invalid", "tls.txt", "?q=1", "frag.txt#top"] {
        assert!(
            log.lines()
                .any(|l| l.contains("WARN") && l.contains(needle)),
            "the skipped href {needle:?} is logged:\n{log}"
        );
    }

    // A listing that skipped something proves no deletion: keep.txt stays.
    server.set_route("PROPFIND", "/", listing(true, false));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(names(m.path()), want);
    // A listing without them does.
    server.set_route("PROPFIND", "/", listing(false, false));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(names(m.path()), BTreeSet::from(["same.txt".to_string()]));
    m.unmount();
}

/// One `D:response` of a file with the properties' texts as given (not checked).
fn raw_file(href: &str, size: &str, etag: &str, date: &str) -> String {
    format!(
        "<D:response><D:href>{href}</D:href><D:propstat><D:prop><D:resourcetype/>\
         <D:getcontentlength>{size}</D:getcontentlength><D:getetag>{etag}</D:getetag>\
         <D:getlastmodified>{date}</D:getlastmodified></D:prop>\
         <D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"
    )
}

/// The body of the last PUT to `path`.
fn last_put(server: &HostileServer, path: &str) -> Option<Vec<u8>> {
    server
        .recorded()
        .into_iter()
        .rev()
        .find(|r| r.method == "PUT" && r.path == path)
        .map(|r| r.body)
}

#[test]
fn unparseable_sizes_times_and_etags_are_unknown_never_zero_or_now() {
    const DATE: &str = "Mon, 01 Jan 2024 00:00:00 GMT";
    let data: Vec<u8> = (0..100u8).map(|i| b'a' + i % 26).collect();
    let sizes = ["-5", "abc", "1e30", "-9223372036854775809", "1.5e3", ""];
    let mut xml = String::from(
        "<?xml version=\"1.0\"?><D:multistatus xmlns:D=\"DAV:\"><D:response><D:href>/</D:href>\
         <D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop>\
         <D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>",
    );
    let mut builder = HostileServer::builder();
    for (i, size) in sizes.iter().enumerate() {
        xml.push_str(&raw_file(
            &format!("/s{i}.bin"),
            size,
            &format!("\"s{i}\""),
            DATE,
        ));
        builder = builder.file(&format!("/s{i}.bin"), data.clone(), &format!("s{i}"));
    }
    // Times that are garbage, or that no file can have.
    for (name, date) in [
        ("garbage-date.txt", "yesterday at noon"),
        ("far-date.txt", "Sat, 01 Jan 2800 00:00:00 GMT"),
    ] {
        xml.push_str(&raw_file(
            &format!("/{name}"),
            "100",
            &format!("\"{name}\""),
            date,
        ));
        builder = builder.file(&format!("/{name}"), data.clone(), name);
    }
    // Tags that cannot be sent back in an If-Match.
    for (name, etag) in [
        ("tag-space.txt", "\"a b\""),
        ("tag-newline.txt", "\"a&#10;b\""),
    ] {
        xml.push_str(&raw_file(&format!("/{name}"), "100", etag, DATE));
        builder = builder.file(&format!("/{name}"), data.clone(), "served");
    }
    xml.push_str("</D:multistatus>");
    for name in ["s1.bin", "s4.bin", "tag-space.txt", "tag-newline.txt"] {
        builder = builder.route(
            "PUT",
            &format!("/{name}"),
            Canned::new(201).header("ETag", &format!("\"put-{name}\"")),
        );
    }
    let server = builder.propfind("/", 207, xml).build();
    // The canned server cannot be probed (nor take a staged upload): its PUTs are
    // trusted to be conditional, so each append is one PUT whose body is checked below.
    let m = Mount::new(
        &server.url(),
        MountOpts::default().arg("--conditional-writes=trust"),
    );
    assert_eq!(names(m.path()).len(), sizes.len() + 4);

    // Appending to a file whose size is unknown, before anything else touched it: the
    // server keeps its 100 bytes, followed by the new ones.
    for name in ["s1.bin", "s4.bin"] {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(m.join(name))
            .unwrap();
        std::io::Write::write_all(&mut f, b"APPENDED\n").unwrap();
    }
    m.edrive_ok(&["sync"]);
    let mut want = data.clone();
    want.extend_from_slice(b"APPENDED\n");
    for name in ["s1.bin", "s4.bin"] {
        let put = last_put(&server, &format!("/{name}")).expect("the append was uploaded");
        assert_eq!(
            String::from_utf8_lossy(&put),
            String::from_utf8_lossy(&want),
            "{name}: the upload must hold the server's bytes and the appended ones"
        );
        assert_eq!(std::fs::read(m.join(name)).unwrap(), want, "{name}");
    }

    // Reading one reads it to its real end; then stat shows the real size.
    for (i, size) in sizes.iter().enumerate() {
        let path = m.join(&format!("s{i}.bin"));
        if i == 1 || i == 4 {
            continue;
        }
        assert_eq!(std::fs::read(&path).unwrap(), data, "size {size:?}");
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            100,
            "size {size:?}"
        );
        assert_eq!(state_of(&path), "hydrated", "size {size:?}");
    }

    // An unknown time is shown as unknown (the epoch), never as now or a wrapped date.
    for name in ["garbage-date.txt", "far-date.txt"] {
        let mtime = std::fs::metadata(m.join(name)).unwrap().modified().unwrap();
        assert_eq!(mtime, std::time::UNIX_EPOCH, "{name}");
        assert_eq!(std::fs::read(m.join(name)).unwrap(), data, "{name}");
    }

    // A tag that cannot be a header is unknown: the file reads, and an edit uploads
    // (unconditionally, as for a server without tags) instead of failing for good.
    for name in ["tag-space.txt", "tag-newline.txt"] {
        assert_eq!(std::fs::read(m.join(name)).unwrap(), data, "{name}");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(m.join(name))
            .unwrap();
        std::io::Write::write_all(&mut f, b"APPENDED\n").unwrap();
    }
    m.edrive_ok(&["sync"]);
    for name in ["tag-space.txt", "tag-newline.txt"] {
        let put = server
            .recorded()
            .into_iter()
            .rev()
            .find(|r| r.method == "PUT" && r.path == format!("/{name}"))
            .unwrap_or_else(|| panic!("{name} was uploaded"));
        assert_eq!(put.body, want, "{name}");
        assert_eq!(put.header("if-match"), None, "{name}");
    }
    m.unmount();
}

/// Issue 18, point 7: a server that answers a PUT with 201 but then does not have the
/// file. The upload counts as refused (state `error`, named by `edrive sync`), the local
/// copy stays, and the next listing, which lacks the file, does not take it for a deletion.
#[test]
fn a_put_answered_201_that_stored_nothing_is_a_refused_upload() {
    let server = HostileServer::builder()
        .propfind("/", 207, multistatus_xml(&[("/", true, 0, "root")]))
        .route("PUT", "/new.txt", Canned::new(201))
        .build();
    let m = Mount::new(
        &server.url(),
        MountOpts::default()
            .arg("--conditional-writes=trust")
            .arg("--upload-delay=0s")
            .dir_cache_ttl("1s"),
    );
    std::fs::write(m.join("new.txt"), b"precious\n").unwrap();
    let (status, _out, err) = m.edrive(&["sync"]);
    assert!(!status.success(), "sync must say the upload did not stick");
    assert!(
        err.contains("new.txt") && err.contains("does not have the file"),
        "{err}"
    );
    assert!(server.count_requests("PUT") >= 1);
    // A relisting lacks the file: it stays, with its content and the error state.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(names(m.path()).contains("new.txt"));
    assert_eq!(std::fs::read(m.join("new.txt")).unwrap(), b"precious\n");
    assert_eq!(state_of(&m.join("new.txt")), "error");
}

#[test]
fn names_that_are_not_utf8_get_eilseq_in_every_operation() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let data = tempdir();
    std::fs::write(data.path().join("ok.txt"), b"ok").unwrap();
    let server = EmbeddedServer::start(data.path(), None);
    let m = Mount::new(&server.url(), MountOpts::default());
    let bad = m.path().join(OsStr::from_bytes(b"caf\xe9.txt"));
    let eilseq = |r: std::io::Result<()>, what: &str| {
        let e = r.expect_err(what);
        assert_eq!(e.raw_os_error(), Some(libc::EILSEQ), "{what}: {e}");
    };
    eilseq(std::fs::metadata(&bad).map(drop), "stat");
    eilseq(std::fs::write(&bad, b"x"), "create");
    eilseq(std::fs::create_dir(&bad), "mkdir");
    eilseq(std::fs::remove_file(&bad), "unlink");
    eilseq(std::fs::remove_dir(&bad), "rmdir");
    eilseq(std::fs::rename(m.join("ok.txt"), &bad), "rename to");
    eilseq(std::fs::rename(&bad, m.join("x.txt")), "rename from");
    // Nothing was made, locally or on the server, and the good file is untouched.
    assert_eq!(
        names(m.path()),
        ["ok.txt".to_string()].into_iter().collect::<BTreeSet<_>>()
    );
    assert_eq!(std::fs::read(m.join("ok.txt")).unwrap(), b"ok");
    m.unmount();
}
