use std::time::{Duration, UNIX_EPOCH};

use super::*;

fn base() -> Base {
    Base::parse("http://h/dav/")
}

/// [`super::parse_stat`] of a whole body.
fn parse_stat(body: &[u8], base: &Base, path: &RemotePath) -> Result<RemoteEntry, RemoteError> {
    super::parse_stat(body, base, path)
}

fn path(parts: &[&str]) -> RemotePath {
    RemotePath::from_parts(parts.iter().copied()).unwrap()
}

fn names(l: &Listing) -> Vec<&str> {
    l.children.iter().map(|c| c.name.as_str()).collect()
}

fn etag(v: &str, weak: bool) -> Option<ETag> {
    Some(ETag {
        value: v.into(),
        weak,
    })
}

/// 1994-11-06 08:49:37 UTC.
fn t0() -> Option<SystemTime> {
    Some(UNIX_EPOCH + Duration::from_secs(784111777))
}

/// Wraps responses in a `D:` multistatus.
fn ms(responses: &str) -> Vec<u8> {
    format!(r#"<?xml version="1.0" encoding="utf-8"?><D:multistatus xmlns:D="DAV:">{responses}</D:multistatus>"#)
        .into_bytes()
}

fn file(href: &str) -> String {
    format!(
        "<D:response><D:href>{href}</D:href><D:propstat><D:prop><D:resourcetype/>\
         <D:getcontentlength>1</D:getcontentlength></D:prop>\
         <D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"
    )
}

fn folder(href: &str) -> String {
    format!(
        "<D:response><D:href>{href}</D:href><D:propstat><D:prop>\
         <D:resourcetype><D:collection/></D:resourcetype></D:prop>\
         <D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"
    )
}

#[test]
fn apache_mod_dav() {
    let body = br#"<?xml version="1.0" encoding="utf-8"?>
<D:multistatus xmlns:D="DAV:" xmlns:ns0="DAV:">
<D:response xmlns:lp1="DAV:" xmlns:lp2="http://apache.org/dav/props/">
<D:href>/dav/docs/</D:href>
<D:propstat>
<D:prop>
<lp1:resourcetype><D:collection/></lp1:resourcetype>
<lp1:getlastmodified>Sun, 06 Nov 1994 08:49:37 GMT</lp1:getlastmodified>
<lp1:getetag>"1000-5e2b7c3a1d2c0"</lp1:getetag>
</D:prop>
<D:status>HTTP/1.1 200 OK</D:status>
</D:propstat>
<D:propstat>
<D:prop>
<lp1:getcontentlength/>
</D:prop>
<D:status>HTTP/1.1 404 Not Found</D:status>
</D:propstat>
</D:response>
<D:response xmlns:lp1="DAV:" xmlns:lp2="http://apache.org/dav/props/">
<D:href>/dav/docs/report%202024.pdf</D:href>
<D:propstat>
<D:prop>
<lp1:resourcetype/>
<lp1:getcontentlength>123456</lp1:getcontentlength>
<lp1:getlastmodified>Sun, 06 Nov 1994 08:49:37 GMT</lp1:getlastmodified>
<lp1:getetag>W/"1e240-5e2b7c3a1d2c0"</lp1:getetag>
</D:prop>
<D:status>HTTP/1.1 200 OK</D:status>
</D:propstat>
</D:response>
<D:response xmlns:lp1="DAV:">
<D:href>/dav/docs/sub/</D:href>
<D:propstat>
<D:prop><lp1:resourcetype><D:collection/></lp1:resourcetype></D:prop>
<D:status>HTTP/1.1 200 OK</D:status>
</D:propstat>
</D:response>
</D:multistatus>
"#;
    let l = parse_listing(body, &base(), &path(&["docs"])).unwrap();
    assert_eq!(
        l.dir,
        RemoteEntry {
            access: None,
            name: String::new(),
            is_dir: true,
            size: 0,
            size_known: true,
            mtime: t0(),
            etag: etag("1000-5e2b7c3a1d2c0", false),
        }
    );
    assert_eq!(
        l.children,
        vec![
            RemoteEntry {
                access: None,
                name: "report 2024.pdf".into(),
                is_dir: false,
                size: 123456,
                size_known: true,
                mtime: t0(),
                etag: etag("1e240-5e2b7c3a1d2c0", true),
            },
            RemoteEntry {
                access: None,
                name: "sub".into(),
                is_dir: true,
                size: 0,
                size_known: true,
                mtime: None,
                etag: None
            },
        ]
    );
}

#[test]
fn what_the_user_may_do() {
    let body = br#"<?xml version="1.0"?>
<d:multistatus xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns">
 <d:response>
  <d:href>/s/</d:href>
  <d:propstat><d:prop><d:resourcetype><d:collection/></d:resourcetype>
   <d:current-user-privilege-set><d:privilege><d:read/></d:privilege>
<d:privilege><d:bind/></d:privilege></d:current-user-privilege-set>
  </d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>
 </d:response>
 <d:response>
  <d:href>/s/nc-ro.txt</d:href>
  <d:propstat><d:prop><d:resourcetype/><oc:permissions>RGDNV</oc:permissions>
   <d:current-user-privilege-set><d:privilege><d:all/></d:privilege></d:current-user-privilege-set>
  </d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>
 </d:response>
 <d:response>
  <d:href>/s/nc-rw/</d:href>
  <d:propstat><d:prop><d:resourcetype><d:collection/></d:resourcetype>
   <oc:permissions> RGDNVCK </oc:permissions></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>
 </d:response>
 <d:response>
  <d:href>/s/dav-ro.txt</d:href>
  <d:propstat><d:prop><d:resourcetype/>
   <d:current-user-privilege-set><d:privilege><d:read/></d:privilege></d:current-user-privilege-set>
  </d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>
 </d:response>
 <d:response>
  <d:href>/s/unsaid.txt</d:href>
  <d:propstat><d:prop><d:resourcetype/></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>
  <d:propstat><d:prop><d:current-user-privilege-set/><oc:permissions/></d:prop>
   <d:status>HTTP/1.1 404 Not Found</d:status></d:propstat>
 </d:response>
 <d:response>
  <d:href>/s/garbled.txt</d:href>
  <d:propstat><d:prop><d:resourcetype/>
   <d:current-user-privilege-set><d:privilege><x:write xmlns:x="urn:x"/></d:privilege>
<d:write/>oops</d:current-user-privilege-set>
  </d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>
 </d:response>
</d:multistatus>"#;
    let base = Base::parse("http://h/s/");
    let l = parse_listing(body, &base, &RemotePath::root()).unwrap();
    let access = |c: bool, r: bool| {
        Some(Access {
            change: c,
            remove: r,
        })
    };
    assert_eq!(l.dir.access, access(true, true));
    let by_name: Vec<(&str, Option<Access>)> = l
        .children
        .iter()
        .map(|c| (c.name.as_str(), c.access))
        .collect();
    assert_eq!(
        by_name,
        [
            ("nc-ro.txt", access(false, true)),
            ("nc-rw", access(true, true)),
            ("dav-ro.txt", access(false, false)),
            ("unsaid.txt", None),
            // Only privileges inside `privilege`, in the DAV: namespace, count.
            ("garbled.txt", access(false, false)),
        ]
    );
}

#[test]
fn nextcloud() {
    let body = br#"<?xml version="1.0"?>
<d:multistatus xmlns:d="DAV:" xmlns:s="http://sabredav.org/ns" xmlns:oc="http://owncloud.org/ns" xmlns:nc="http://nextcloud.org/ns">
 <d:response>
  <d:href>/remote.php/dav/files/alice/</d:href>
  <d:propstat>
   <d:prop>
<d:resourcetype><d:collection/></d:resourcetype>
<d:getlastmodified>Sun, 06 Nov 1994 08:49:37 GMT</d:getlastmodified>
<d:getetag>&quot;65f1a2b3c4d5e&quot;</d:getetag>
   </d:prop>
   <d:status>HTTP/1.1 200 OK</d:status>
  </d:propstat>
  <d:propstat>
   <d:prop><d:getcontentlength/></d:prop>
   <d:status>HTTP/1.1 404 Not Found</d:status>
  </d:propstat>
 </d:response>
 <d:response>
  <d:href>/remote.php/dav/files/alice/Photos%20%26%20Videos/</d:href>
  <d:propstat>
   <d:prop>
<d:resourcetype><d:collection/></d:resourcetype>
<d:getetag>"65f1a2b3c4d5f"</d:getetag>
<oc:size>2048</oc:size>
   </d:prop>
   <d:status>HTTP/1.1 200 OK</d:status>
  </d:propstat>
 </d:response>
 <d:response>
  <d:href>/remote.php/dav/files/alice/Caf%c3%a9.md</d:href>
  <d:propstat>
   <d:prop>
<d:resourcetype/>
<d:getcontentlength>42</d:getcontentlength>
<d:getlastmodified>Sun, 06 Nov 1994 08:49:37 GMT</d:getlastmodified>
<d:getetag>"a1b2"</d:getetag>
<nc:has-preview>false</nc:has-preview>
   </d:prop>
   <d:status>HTTP/1.1 200 OK</d:status>
  </d:propstat>
 </d:response>
</d:multistatus>"#;
    let base = Base::parse("https://cloud.example.com/remote.php/dav/files/alice/");
    let l = parse_listing(body, &base, &RemotePath::root()).unwrap();
    assert!(l.dir.is_dir);
    assert_eq!(l.dir.etag, etag("65f1a2b3c4d5e", false));
    assert_eq!(names(&l), ["Photos & Videos", "Café.md"]);
    assert_eq!(l.children[0].size, 0);
    assert_eq!(l.children[1].size, 42);
    assert_eq!(l.children[1].etag, etag("a1b2", false));
    assert_eq!(l.children[1].mtime, t0());
}

#[test]
fn iis_default_namespace_and_absolute_urls() {
    let base = || Base::parse("http://files.example.com:8080/dav/");
    let body = br#"<?xml version="1.0" encoding="utf-8"?>
<multistatus xmlns="DAV:"><response><href>http://files.example.com:8080/dav/</href>
<propstat><status>HTTP/1.1 200 OK</status><prop><resourcetype><collection/></resourcetype>
<getlastmodified>Sun, 06 Nov 1994 08:49:37 GMT</getlastmodified></prop></propstat></response>
<response><href>http://files.example.com:8080/dav/notes.txt</href><propstat><status>HTTP/1.1 200 OK</status>
<prop><resourcetype/><getcontentlength>7</getcontentlength><getetag>abc123</getetag>
<getlastmodified>not a date</getlastmodified></prop></propstat></response></multistatus>"#;
    let l = parse_listing(body, &base(), &RemotePath::root()).unwrap();
    assert!(l.dir.is_dir);
    assert_eq!(l.dir.mtime, t0());
    assert_eq!(
        l.children,
        vec![RemoteEntry {
            access: None,
            name: "notes.txt".into(),
            is_dir: false,
            size: 7,
            size_known: true,
            mtime: None,
            etag: etag("abc123", false),
        }]
    );
}

#[test]
fn ns0_prefix_and_foreign_namespace_lookalikes() {
    // `x:getetag` is not DAV:getetag; `ns0:` is just another prefix for DAV:.
    let body = br#"<ns0:multistatus xmlns:ns0="DAV:" xmlns:x="urn:other">
<ns0:response><ns0:href>/dav/</ns0:href><ns0:propstat><ns0:prop>
<ns0:resourcetype><ns0:collection/></ns0:resourcetype></ns0:prop>
<ns0:status>HTTP/1.1 200 OK</ns0:status></ns0:propstat></ns0:response>
<ns0:response><ns0:href>/dav/f</ns0:href><ns0:propstat><ns0:prop>
<x:getetag>"fake"</x:getetag><x:resourcetype><x:collection/></x:resourcetype>
<ns0:getcontentlength>5</ns0:getcontentlength></ns0:prop>
<ns0:status>HTTP/1.1 200 OK</ns0:status></ns0:propstat></ns0:response>
</ns0:multistatus>"#;
    let l = parse_listing(body, &base(), &RemotePath::root()).unwrap();
    assert_eq!(
        l.children,
        vec![RemoteEntry {
            access: None,
            name: "f".into(),
            is_dir: false,
            size: 5,
            size_known: true,
            mtime: None,
            etag: None
        }]
    );
}

#[test]
fn encoded_and_raw_hrefs() {
    let body = ms(&[
        folder("/dav/a%20b"),
        file("/dav/a%20b/sp%20ace"),
        file("/dav/a%20b/hash%23tag"),
        file("/dav/a%20b/100%25"),
        file("/dav/a%20b/%C3%A9t%C3%A9"),
        file("/dav/a b/raw space/"),
        file("/dav/a%20b/amp&amp;er"),
        file("http://h/dav/a%20b/%E6%97%A5%E6%9C%AC"),
    ]
    .concat());
    let l = parse_listing(&body, &base(), &path(&["a b"])).unwrap();
    assert!(l.dir.is_dir);
    assert_eq!(
        names(&l),
        [
            "sp ace",
            "hash#tag",
            "100%",
            "été",
            "raw space",
            "amp&er",
            "日本"
        ]
    );
    assert!(l.children.iter().all(|c| c.size == 1 && !c.is_dir));
}

#[test]
fn only_successful_propstats_count() {
    let body = ms(r#"<D:response><D:href>/dav/f</D:href>
<D:propstat><D:prop><D:getcontentlength>999</D:getcontentlength>
<D:resourcetype><D:collection/></D:resourcetype><D:getetag>"bad"</D:getetag></D:prop>
<D:status>HTTP/1.1 404 Not Found</D:status></D:propstat>
<D:propstat><D:prop><D:getcontentlength>10</D:getcontentlength><D:resourcetype/></D:prop>
<D:status>HTTP/1.1 200 OK</D:status></D:propstat>
<D:propstat><D:prop><D:getetag>"worse"</D:getetag></D:prop>
<D:status>HTTP/1.1 403 Forbidden</D:status></D:propstat></D:response>"#);
    let e = parse_stat(&body, &base(), &path(&["f"])).unwrap();
    assert_eq!(
        e,
        RemoteEntry {
            access: None,
            name: "f".into(),
            is_dir: false,
            size: 10,
            size_known: true,
            mtime: None,
            etag: None
        }
    );
}

#[test]
fn hostile_names_are_skipped() {
    let body = ms(&[
        folder("/dav/d/"),
        file("/dav/d/a%2Fb"),
        file("/dav/d/nul%00"),
        file("/dav/d/.."),
        file("/dav/d/%2E"),
        file("/dav/d//"),
        file("/etc/passwd"),
        file("/dav/d/x/y"),
        file("/dav/other"),
        file("/dav/d/bad%zz"),
        file("/dav/d/bad%FF"),
        file("/dav/d/ok"),
        folder("/dav/d/ok/"),
        file(&format!("/dav/d/{}", "x".repeat(300))),
        "<D:response><D:propstat><D:prop/></D:propstat></D:response>".to_string(),
        file("/dav/d/ok2"),
    ]
    .concat());
    let l = parse_listing(&body, &base(), &path(&["d"])).unwrap();
    assert_eq!(names(&l), ["ok", "ok2"]);
    // The first occurrence wins.
    assert!(!l.children[0].is_dir);
}

#[test]
fn hrefs_to_another_server_or_with_a_query_are_skipped_and_prove_nothing() {
    let body = ms(&[
        folder("http://h/dav/d/"),
        file("http://evil.invalid/dav/d/evil.txt"),
        file("https://h/dav/d/other-scheme"),
        file("http://h:8080/dav/d/other-port"),
        file("//evil.invalid/dav/d/no-scheme"),
        file("/dav/d/?q=1"),
        file("/dav/d/x?q=1"),
        file("/dav/d/y#frag"),
        file("http://H:80/dav/d/same-server"),
        file("/dav/d/q%3F1%23"),
    ]
    .concat());
    let l = parse_listing(&body, &base(), &path(&["d"])).unwrap();
    assert!(l.dir.is_dir);
    assert_eq!(names(&l), ["same-server", "q?1#"]);
    assert!(
        !l.complete,
        "a listing that skipped an entry proves no deletion"
    );
    // Without them, the same listing vouches for every child.
    let body = ms(&[folder("/dav/d/"), file("http://h/dav/d/same-server")].concat());
    assert!(
        parse_listing(&body, &base(), &path(&["d"]))
            .unwrap()
            .complete
    );

    // A Depth 0 reply whose only response is elsewhere describes nothing.
    for href in ["http://evil.invalid/dav/f", "/dav/f?q=1", "/dav/f#x"] {
        assert!(
            matches!(
                parse_stat(&ms(&file(href)), &base(), &path(&["f"])),
                Err(RemoteError::Malformed(_))
            ),
            "{href}"
        );
    }
    let both = ms(&[file("http://evil.invalid/dav/f"), file("http://h/dav/f")].concat());
    assert_eq!(
        parse_stat(&both, &base(), &path(&["f"])).map(|e| e.size),
        Ok(1)
    );
}

#[test]
fn a_size_that_is_no_length_is_unknown() {
    let entry = |size: &str| {
        let body = ms(&format!(
            "<D:response><D:href>/dav/f</D:href><D:propstat><D:prop><D:resourcetype/>\
             <D:getcontentlength>{size}</D:getcontentlength></D:prop>\
             <D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"
        ));
        let e = parse_stat(&body, &base(), &path(&["f"])).unwrap();
        (e.size_known.then_some(e.size), e.size)
    };
    for garbage in [
        "-5",
        "abc",
        "1e30",
        "-9223372036854775809",
        "1.5e3",
        "+5",
        "0x10",
        "9223372036854775808",
        "18446744073709551616",
        "",
        " ",
    ] {
        assert_eq!(entry(garbage), (None, 0), "{garbage:?}");
    }
    assert_eq!(entry(" 100\n"), (Some(100), 100));
    assert_eq!(entry("0"), (Some(0), 0));
    assert_eq!(
        entry("9223372036854775807"),
        (Some(i64::MAX as u64), i64::MAX as u64)
    );
    // No size at all is unknown too; a folder's is 0.
    let body = String::from_utf8(ms(&file("/dav/f")))
        .unwrap()
        .replace("<D:getcontentlength>1</D:getcontentlength>", "");
    let e = parse_stat(body.as_bytes(), &base(), &path(&["f"])).unwrap();
    assert!(!e.size_known && !e.is_dir && e.size == 0);
    let e = parse_stat(&ms(&folder("/dav/d/")), &base(), &path(&["d"])).unwrap();
    assert!(e.is_dir && e.size_known && e.size == 0);
}

#[test]
fn duplicate_folder_entry_keeps_the_first() {
    let body = ms(&[folder("/dav/d/"), file("/dav/d"), file("/dav/d/x")].concat());
    let l = parse_listing(&body, &base(), &path(&["d"])).unwrap();
    assert!(l.dir.is_dir);
    assert_eq!(names(&l), ["x"]);
}

#[test]
fn missing_folder_is_synthesized() {
    let body = ms(&[file("/dav/d/x"), file("/dav/d/y")].concat());
    let l = parse_listing(&body, &base(), &path(&["d"])).unwrap();
    assert_eq!(
        l.dir,
        RemoteEntry {
            access: None,
            name: String::new(),
            is_dir: true,
            size: 0,
            size_known: true,
            mtime: None,
            etag: None
        }
    );
    assert_eq!(names(&l), ["x", "y"]);
    assert!(
        !l.complete,
        "a listing without its folder proves no deletion"
    );
    let empty = parse_listing(&ms(""), &base(), &path(&["d"])).unwrap();
    assert!(empty.dir.is_dir && empty.children.is_empty() && !empty.complete);
}

#[test]
fn response_level_status() {
    let gone = "<D:response><D:href>/dav/d/gone</D:href>\
                <D:status>HTTP/1.1 404 Not Found</D:status></D:response>";
    let body = ms(&[folder("/dav/d/"), gone.to_string(), file("/dav/d/x")].concat());
    let l = parse_listing(&body, &base(), &path(&["d"])).unwrap();
    assert_eq!(names(&l), ["x"]);
    let gone = ms("<D:response><D:href>/dav/f</D:href>\
                   <D:status>HTTP/1.1 404 Not Found</D:status></D:response>");
    assert_eq!(
        parse_stat(&gone, &base(), &path(&["f"])),
        Err(RemoteError::NotFound)
    );
}

#[test]
fn malformed_documents() {
    let bad: [&[u8]; 8] = [
        b"",
        b"   ",
        b"<D:multistatus xmlns:D=\"DAV:\"><D:response>",
        b"<D:multistatus xmlns:D=\"DAV:\"></D:response></D:multistatus>",
        b"<multistatus><response/></multistatus>",
        b"<D:propfind xmlns:D=\"DAV:\"/>",
        b"<html><body>Login</body></html>",
        b"<D:multistatus xmlns:D=\"DAV:\"><D:href>&bogus;</D:href></D:multistatus>",
    ];
    for body in bad {
        let r = parse_listing(body, &base(), &RemotePath::root());
        assert!(
            matches!(r, Err(RemoteError::Malformed(_))),
            "{:?} gave {r:?}",
            String::from_utf8_lossy(body)
        );
    }
    let latin1 = b"<D:multistatus xmlns:D=\"DAV:\"><D:href>/dav/\xe9</D:href></D:multistatus>";
    assert!(matches!(
        parse_stat(latin1, &base(), &RemotePath::root()),
        Err(RemoteError::Malformed(_))
    ));
}

#[test]
fn stat_matches_href_or_single_response() {
    // Depth 0 on a folder without trailing slash; the server answers with one.
    let body = ms(&folder("/dav/a%20b/"));
    let e = parse_stat(&body, &base(), &path(&["a b"])).unwrap();
    assert_eq!(
        e,
        RemoteEntry {
            access: None,
            name: "a b".into(),
            is_dir: true,
            size: 0,
            size_known: true,
            mtime: None,
            etag: None
        }
    );
    // A single response with an unexpected href still describes the requested path.
    let e = parse_stat(&ms(&file("/elsewhere/x")), &base(), &path(&["f"])).unwrap();
    assert_eq!(e.name, "f");
    assert_eq!(e.size, 1);
    // Several responses, none of them the path.
    let two = ms(&[file("/dav/x"), file("/dav/y")].concat());
    assert!(matches!(
        parse_stat(&two, &base(), &path(&["f"])),
        Err(RemoteError::Malformed(_))
    ));
    // The root.
    let root = ms(&[file("/dav/x"), folder("/dav")].concat());
    let e = parse_stat(&root, &base(), &RemotePath::root()).unwrap();
    assert!(e.is_dir);
    assert_eq!(e.name, "");
}

#[test]
fn cdata_bom_comments_and_char_refs() {
    let body = "\u{feff}<?xml version=\"1.0\"?><!-- hi --><D:multistatus xmlns:D=\"DAV:\">\
        <D:response><D:href><![CDATA[/dav/c&d]]></D:href><D:propstat><D:prop>\
        <D:getetag>&#34;x&#x79;&#34;</D:getetag><D:getcontentlength> 12 </D:getcontentlength>\
        </D:prop></D:propstat></D:response></D:multistatus>";
    let e = parse_stat(body.as_bytes(), &base(), &path(&["c&d"])).unwrap();
    assert_eq!(
        e,
        RemoteEntry {
            access: None,
            name: "c&d".into(),
            is_dir: false,
            size: 12,
            size_known: true,
            mtime: None,
            etag: etag("xy", false)
        }
    );
}

#[test]
fn request_body_is_well_formed() {
    let mut props = Vec::new();
    super::super::xml::walk(REQUEST_BODY.as_bytes(), |_, node| {
        if let Node::Open(tag) = node {
            props.push(tag);
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(
        props,
        [
            T::Other,
            T::Prop,
            T::ResourceType,
            T::ContentLength,
            T::LastModified,
            T::GetEtag,
            T::PrivilegeSet,
            T::OcPermissions
        ]
    );
}

#[test]
fn quota_body_is_well_formed() {
    let mut props = Vec::new();
    super::super::xml::walk(QUOTA_BODY.as_bytes(), |_, node| {
        if let Node::Open(tag) = node {
            props.push(tag);
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(props, [T::Other, T::Prop, T::QuotaAvailable, T::QuotaUsed]);
}

#[test]
fn quota_of_wsgidav_nextcloud_and_servers_without() {
    let base = Base::parse("http://h/dav/");
    let root = RemotePath::root();
    let quota = |body: &[u8]| parse_quota(body, &base, &root);
    // WsgiDAV: the disk it serves from.
    let wsgidav = br#"<?xml version="1.0" encoding="utf-8" ?>
<ns0:multistatus xmlns:ns0="DAV:"><ns0:response><ns0:href>/dav/</ns0:href><ns0:propstat>
<ns0:prop><ns0:quota-available-bytes>44611354624</ns0:quota-available-bytes>
<ns0:quota-used-bytes>52961394688</ns0:quota-used-bytes></ns0:prop>
<ns0:status>HTTP/1.1 200 OK</ns0:status></ns0:propstat></ns0:response></ns0:multistatus>"#;
    assert_eq!(
        quota(wsgidav).unwrap(),
        Some(Quota {
            available: 44_611_354_624,
            used: Some(52_961_394_688)
        })
    );
    // Nextcloud: a user's quota; -3 is "unlimited", -2 "not computed".
    let nextcloud = |available: &str| {
        ms(&format!(
            "<D:response><D:href>/dav/</D:href><D:propstat><D:prop>\
             <D:quota-available-bytes>{available}</D:quota-available-bytes>\
             <D:quota-used-bytes>1024</D:quota-used-bytes></D:prop>\
             <D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"
        ))
    };
    assert_eq!(
        quota(&nextcloud("4096")).unwrap(),
        Some(Quota {
            available: 4096,
            used: Some(1024)
        })
    );
    for unknown in ["-3", "-2", "", "lots", "1e30"] {
        assert_eq!(quota(&nextcloud(unknown)).unwrap(), None, "{unknown:?}");
    }
    // Apache: the properties it does not have, in a 404 propstat; the embedded
    // server: left out.
    let apache = ms("<D:response><D:href>/dav/</D:href><D:propstat><D:prop>\
         <D:quota-available-bytes/><D:quota-used-bytes/></D:prop>\
         <D:status>HTTP/1.1 404 Not Found</D:status></D:propstat></D:response>");
    assert_eq!(quota(&apache).unwrap(), None);
    assert_eq!(
        quota(&ms("<D:response><D:href>/dav/</D:href></D:response>")).unwrap(),
        None
    );
    // Only available: used is unknown.
    let available_only = ms("<D:response><D:href>/dav/</D:href><D:propstat><D:prop>\
         <D:quota-available-bytes>10</D:quota-available-bytes></D:prop></D:propstat>\
         </D:response>");
    assert_eq!(
        quota(&available_only).unwrap(),
        Some(Quota {
            available: 10,
            used: None
        })
    );
}
