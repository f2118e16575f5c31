use std::sync::Weak;

use super::*;

fn p(s: &str) -> RemotePath {
    RemotePath::from_parts(s.split('/').filter(|x| !x.is_empty())).unwrap()
}

fn body(data: &'static [u8]) -> ByteStream {
    Box::pin(futures_util::stream::iter(vec![Ok(Bytes::from_static(
        data,
    ))]))
}

async fn put(
    r: &dyn Remote,
    path: &str,
    data: &'static [u8],
    pre: Precondition,
) -> Result<Option<ETag>, RemoteError> {
    r.put(&p(path), body(data), data.len() as u64, pre, None)
        .await
}

async fn read(
    r: &dyn Remote,
    path: &str,
    range: Option<Range<u64>>,
) -> Result<Vec<u8>, RemoteError> {
    let dl = r.read(&p(path), range).await?;
    let mut out = Vec::new();
    let mut b = dl.body;
    while let Some(c) = b.next().await {
        out.extend_from_slice(&c?);
    }
    assert_eq!(dl.len, Some(out.len() as u64));
    Ok(out)
}

#[tokio::test]
async fn preconditions_enforced() {
    let m = MemRemote::new();
    let t1 = put(&m, "f", b"one", Precondition::IfNoneExists)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        put(&m, "f", b"two", Precondition::IfNoneExists).await,
        Err(RemoteError::PreconditionFailed)
    );
    let t2 = put(&m, "f", b"two", Precondition::IfMatch(t1.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(t1, t2, "every write gets a new tag");
    assert_eq!(
        put(&m, "f", b"three", Precondition::IfMatch(t1.clone())).await,
        Err(RemoteError::PreconditionFailed)
    );
    assert_eq!(
        put(&m, "g", b"x", Precondition::IfMatch(t2.clone())).await,
        Err(RemoteError::PreconditionFailed),
        "If-Match on nothing"
    );
    assert_eq!(
        m.delete(&p("f"), Precondition::IfMatch(t1)).await,
        Err(RemoteError::PreconditionFailed)
    );
    assert_eq!(m.server_read("f").as_deref(), Some(&b"two"[..]));
    m.delete(&p("f"), Precondition::IfMatch(t2)).await.unwrap();
    assert_eq!(m.server_read("f"), None);
    assert_eq!(
        m.delete(&p("f"), Precondition::None).await,
        Err(RemoteError::NotFound)
    );
}

#[tokio::test]
async fn preconditions_ignored() {
    let m = MemRemote::new();
    m.set_enforce_preconditions(false);
    let t1 = put(&m, "f", b"one", Precondition::None)
        .await
        .unwrap()
        .unwrap();
    m.server_put("f", &b"theirs"[..]).unwrap();
    // A stale If-Match and If-None-Match: * both just write.
    put(&m, "f", b"mine", Precondition::IfMatch(t1.clone()))
        .await
        .unwrap();
    assert_eq!(m.server_read("f").as_deref(), Some(&b"mine"[..]));
    put(&m, "f", b"again", Precondition::IfNoneExists)
        .await
        .unwrap();
    assert_eq!(m.server_read("f").as_deref(), Some(&b"again"[..]));
    m.delete(&p("f"), Precondition::IfMatch(t1)).await.unwrap();
    assert!(m.server_tree().is_empty());
}

#[tokio::test]
async fn etags_off_and_weak() {
    let m = MemRemote::new();
    m.set_send_etags(false);
    assert_eq!(put(&m, "f", b"x", Precondition::None).await, Ok(None));
    assert_eq!(m.stat(&p("f")).await.unwrap().etag, None);
    assert_eq!(m.read(&p("f"), None).await.unwrap().etag, None);
    let l = m.list(&RemotePath::root()).await.unwrap();
    assert!(l.complete);
    assert_eq!(l.dir.etag, None);
    assert_eq!(l.children[0].etag, None);

    m.set_send_etags(true);
    m.set_weak_etags(true);
    let t = m.stat(&p("f")).await.unwrap().etag.unwrap();
    assert!(t.weak);
    // If-Match compares strongly: a weak tag never matches, even the current one.
    assert_eq!(
        put(&m, "f", b"y", Precondition::IfMatch(t)).await,
        Err(RemoteError::PreconditionFailed)
    );
    m.set_weak_etags(false);
    let t = m.stat(&p("f")).await.unwrap().etag.unwrap();
    assert!(!t.weak);
    put(&m, "f", b"y", Precondition::IfMatch(t)).await.unwrap();
}

#[tokio::test]
async fn folders_move_whole_and_delete_recursively() {
    let m = MemRemote::new();
    assert_eq!(m.mkdir(&p("a/b")).await, Err(RemoteError::Status(409)));
    m.mkdir(&p("a")).await.unwrap();
    assert_eq!(m.mkdir(&p("a")).await, Err(RemoteError::Status(405)));
    m.mkdir(&p("a/b")).await.unwrap();
    put(&m, "a/b/f", b"f", Precondition::None).await.unwrap();
    put(&m, "a/g", b"g", Precondition::None).await.unwrap();
    let tag = m.stat(&p("a/b/f")).await.unwrap().etag;
    // A sibling whose name sorts between `a` and `a/…` stays put.
    m.server_put("a!", &b"other"[..]).unwrap();

    m.rename(&p("a"), &p("z/a"), false).await.unwrap_err();
    m.mkdir(&p("z")).await.unwrap();
    m.rename(&p("a"), &p("z/a"), false).await.unwrap();
    let tree: Vec<String> = m.server_tree().into_keys().collect();
    assert_eq!(tree, ["a!", "z/a/b/f", "z/a/g"]);
    assert_eq!(
        m.server_folders().into_iter().collect::<Vec<_>>(),
        ["z", "z/a", "z/a/b"]
    );
    assert_eq!(
        m.stat(&p("z/a/b/f")).await.unwrap().etag,
        tag,
        "a move keeps tags"
    );
    assert_eq!(
        m.rename(&p("z"), &p("z/a/q"), false).await,
        Err(RemoteError::Auth(403))
    );

    // Overwrite: refused without the flag, replaces (folder and all) with it.
    m.server_mkdir("y").unwrap();
    assert_eq!(
        m.rename(&p("z/a"), &p("y"), false).await,
        Err(RemoteError::PreconditionFailed)
    );
    m.server_put("y/old", &b"old"[..]).unwrap();
    m.rename(&p("z/a"), &p("y"), true).await.unwrap();
    let tree: Vec<String> = m.server_tree().into_keys().collect();
    assert_eq!(tree, ["a!", "y/b/f", "y/g"]);

    m.delete(&p("y"), Precondition::None).await.unwrap();
    let tree: Vec<String> = m.server_tree().into_keys().collect();
    assert_eq!(tree, ["a!"]);
    assert_eq!(m.server_folders().into_iter().collect::<Vec<_>>(), ["z"]);
}

#[tokio::test]
async fn listing_and_stat() {
    let m = MemRemote::new();
    m.server_put("d/x", &b"12345"[..]).unwrap();
    m.server_mkdir("d/sub").unwrap();
    m.server_put("d/sub/deep", &b"no"[..]).unwrap();
    let l = m.list(&p("d")).await.unwrap();
    assert_eq!(l.dir.name, "");
    assert!(l.dir.is_dir && l.complete);
    let kids: Vec<(&str, bool, u64)> = l
        .children
        .iter()
        .map(|c| (c.name.as_str(), c.is_dir, c.size))
        .collect();
    assert_eq!(kids, [("sub", true, 0), ("x", false, 5)]);
    let s = m.stat(&p("d/x")).await.unwrap();
    assert_eq!((s.name.as_str(), s.size), ("x", 5));
    assert_eq!(m.stat(&p("d/nope")).await, Err(RemoteError::NotFound));
    assert_eq!(m.list(&p("nope")).await, Err(RemoteError::NotFound));
    // A folder's tag changes when its children do.
    let before = m.stat(&p("d")).await.unwrap().etag;
    m.server_delete("d/x").unwrap();
    assert_ne!(m.stat(&p("d")).await.unwrap().etag, before);
}

#[tokio::test]
async fn ranges() {
    let m = MemRemote::new();
    m.server_put("f", &b"0123456789"[..]).unwrap();
    assert_eq!(read(&m, "f", None).await.unwrap(), b"0123456789");
    assert_eq!(read(&m, "f", Some(2..5)).await.unwrap(), b"234");
    assert_eq!(read(&m, "f", Some(8..100)).await.unwrap(), b"89");
    assert_eq!(read(&m, "f", Some(3..3)).await.unwrap(), b"");
    assert_eq!(
        read(&m, "f", Some(10..12)).await,
        Err(RemoteError::Status(416))
    );
    let big = vec![7u8; 3 * READ_CHUNK + 5];
    m.server_put("big", big.clone()).unwrap();
    assert_eq!(read(&m, "big", None).await.unwrap(), big);
    assert_eq!(
        read(&m, "big", Some(1..READ_CHUNK as u64 * 2))
            .await
            .unwrap()
            .len(),
        2 * READ_CHUNK - 1
    );
    assert_eq!(
        m.read(&p("nope"), None).await.err(),
        Some(RemoteError::NotFound)
    );
}

#[tokio::test]
async fn put_checks_length_and_parent() {
    let m = MemRemote::new();
    let short = m
        .put(&p("f"), body(b"abc"), 5, Precondition::None, None)
        .await;
    assert!(matches!(short, Err(RemoteError::Local(_))), "{short:?}");
    let long = m
        .put(&p("f"), body(b"abcdef"), 5, Precondition::None, None)
        .await;
    assert!(matches!(long, Err(RemoteError::Local(_))), "{long:?}");
    assert!(
        m.server_tree().is_empty(),
        "nothing of a bad upload is stored"
    );
    assert_eq!(
        put(&m, "d/f", b"x", Precondition::None).await,
        Err(RemoteError::Status(409))
    );
    m.server_mkdir("d").unwrap();
    assert_eq!(
        put(&m, "d", b"x", Precondition::None).await,
        Err(RemoteError::Status(405))
    );
    put(&m, "d/f", b"x", Precondition::None).await.unwrap();
    assert_eq!(m.server_read("d/f").as_deref(), Some(&b"x"[..]));
}

#[tokio::test]
async fn log_and_hook() {
    let m = Arc::new(MemRemote::new());
    let weak: Weak<MemRemote> = Arc::downgrade(&m);
    // Another user writes the file right before the third call.
    m.set_hook(Box::new(move |call| {
        if call.seq == 2 {
            if let Some(m) = weak.upgrade() {
                m.server_put("f", &b"theirs"[..]).unwrap();
            }
        }
    }));
    let t = put(&*m, "f", b"mine", Precondition::IfNoneExists)
        .await
        .unwrap()
        .unwrap();
    m.stat(&p("f")).await.unwrap();
    assert_eq!(
        put(&*m, "f", b"mine 2", Precondition::IfMatch(t.clone())).await,
        Err(RemoteError::PreconditionFailed)
    );
    m.rename(&p("f"), &p("g"), false).await.unwrap();
    assert_eq!(
        m.log_lines(),
        [
            "PUT /f If-None-Match *".to_string(),
            "PROPFIND0 /f".into(),
            format!("PUT /f If-Match {}", t.to_header()),
            "MOVE /f -> /g".into(),
        ]
    );
    assert_eq!(m.calls(), 4);
    m.clear_log();
    m.clear_hook();
    assert!(m.log().is_empty());
    assert_eq!(m.server_read("g").as_deref(), Some(&b"theirs"[..]));
}

#[tokio::test]
async fn faults() {
    let m = Arc::new(MemRemote::new());
    m.server_put("f", &b"0123456789"[..]).unwrap();
    let f = FaultyRemote::new(m.clone());
    f.fail_nth(1, RemoteError::Unreachable("down".into()));
    f.stat(&p("f")).await.unwrap();
    assert_eq!(
        f.stat(&p("f")).await,
        Err(RemoteError::Unreachable("down".into()))
    );
    f.stat(&p("f")).await.unwrap();
    assert_eq!(m.calls(), 2, "the failed call never reached the server");

    // A lost reply: the server did it.
    f.inject(
        CallFilter::kind(CallKind::Put).at(p("g")),
        Fault::FailAfter(RemoteError::Transfer("reset".into())),
        1,
    );
    assert!(put(&f, "h", b"h", Precondition::None).await.is_ok());
    assert!(put(&f, "g", b"g", Precondition::None).await.is_err());
    assert_eq!(m.server_read("g").as_deref(), Some(&b"g"[..]));

    // Cut bodies: a read ends with an error, a write leaves a prefix on the server.
    f.inject(CallFilter::kind(CallKind::Read), Fault::CutBody(4), 1);
    assert_eq!(
        read(&f, "f", None).await,
        Err(RemoteError::ShortBody {
            expected: 10,
            got: 4
        })
    );
    assert_eq!(read(&f, "f", None).await.unwrap(), b"0123456789");
    f.inject(CallFilter::kind(CallKind::Put), Fault::CutBody(2), 1);
    assert!(matches!(
        put(&f, "f", b"abcdef", Precondition::None).await,
        Err(RemoteError::Transfer(_))
    ));
    assert_eq!(m.server_read("f").as_deref(), Some(&b"ab"[..]));

    // Delays (under paused time this would be instant; a short real one here).
    f.inject(
        CallFilter::any(),
        Fault::Delay(Duration::from_millis(30)),
        1,
    );
    let t = std::time::Instant::now();
    f.stat(&p("f")).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(30));
    assert_eq!(f.calls(), 9);
}
