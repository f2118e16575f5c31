//! The write-back end to end: a real [`Drive`] (metadata store, cache, uploader) over a
//! [`MemRemote`], driven through the calls the FUSE adapter makes.
//!
//! Time is real, not tokio's paused clock: the debounce and the write-back's timers are
//! measured with `std::time::Instant`, which a paused clock does not move. A sync skips
//! the debounce, so each test still takes well under a second.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edrive_fs_core::meta::Problem;
use edrive_fs_core::remote::memory::{
    CallFilter, CallKind, Fault, FaultyRemote, MemRemote, RemoteCall,
};
use edrive_fs_core::remote::{RemoteError, RemotePath};

mod harness;
use harness::*;

#[tokio::test]
async fn new_edit_rename_delete_and_mkdir_reach_the_server() {
    let server = Arc::new(MemRemote::new());
    server.server_put("doc.txt", &b"base"[..]).unwrap();
    server.server_put("old.txt", &b"old"[..]).unwrap();
    server.server_put("gone.txt", &b"gone"[..]).unwrap();
    server.server_put("d/keep.txt", &b"keep"[..]).unwrap();
    let h = Harness::new(server, Duration::from_millis(50)).await;

    // A new file goes up by itself once the upload delay has passed.
    h.write("new.txt", b"new file").await;
    h.settle().await;
    assert_eq!(
        h.server.server_read("new.txt").as_deref(),
        Some(&b"new file"[..])
    );

    assert_eq!(h.read("doc.txt").await, b"base");
    h.write("doc.txt", b"edited here").await;
    h.rename("old.txt", "d/moved.txt").await;
    h.unlink("gone.txt").await;
    h.mkdir("folder").await;
    h.mkdir("folder/sub").await;
    h.write("folder/sub/inner.txt", b"inner").await;
    h.rename("d", "e").await;
    h.sync().await;

    assert_eq!(
        h.tree(),
        tree_of(&[
            ("doc.txt", b"edited here"),
            ("e/keep.txt", b"keep"),
            ("e/moved.txt", b"old"),
            ("folder/sub/inner.txt", b"inner"),
            ("new.txt", b"new file"),
        ]),
        "calls: {:#?}",
        h.server.log_lines()
    );
    let folders: Vec<String> = h.server.server_folders().into_iter().collect();
    assert_eq!(folders, ["e", "folder", "folder/sub"]);
    assert!(h.drive.problems(10).unwrap().is_empty());
    // The edit was sent as a conditional write over the version it was based on.
    assert!(
        h.server
            .log_lines()
            .iter()
            .any(|l| l.starts_with("PUT /doc.txt If-Match ")),
        "{:#?}",
        h.server.log_lines()
    );
}

#[tokio::test]
async fn a_file_changed_on_both_sides_keeps_both_on_an_enforcing_server() {
    let server = Arc::new(MemRemote::new());
    server.server_put("doc.txt", &b"base"[..]).unwrap();
    let h = Harness::new(server, Duration::from_secs(3600)).await;
    assert_eq!(h.read("doc.txt").await, b"base");

    h.write("doc.txt", b"local edit").await;
    h.server
        .server_put("doc.txt", &b"server edit, longer"[..])
        .unwrap();
    h.sync().await;

    let tree = h.tree();
    assert_eq!(tree.len(), 2, "{}", show(&tree));
    assert_eq!(tree["doc.txt"], b"server edit, longer", "{}", show(&tree));
    let copy = tree
        .keys()
        .find(|n| is_conflict_copy(n))
        .unwrap_or_else(|| panic!("no conflict copy: {}", show(&tree)));
    assert_eq!(tree[copy], b"local edit");
    // The drive shows the same.
    assert_eq!(h.read("doc.txt").await, b"server edit, longer");
    assert_eq!(h.read(copy).await, b"local edit");
    assert!(h.drive.problems(10).unwrap().is_empty());
}

#[tokio::test]
async fn an_upload_whose_reply_was_lost_is_not_taken_for_a_conflict() {
    let server = Arc::new(MemRemote::new());
    server.server_put("doc.txt", &b"base"[..]).unwrap();
    let faulty = Arc::new(FaultyRemote::new(server.clone()));
    let h = Harness::over(server, faulty.clone(), Duration::from_secs(3600)).await;
    assert_eq!(h.read("doc.txt").await, b"base");
    h.write("doc.txt", b"local edit").await;
    // The server stores the edit, but the reply never arrives.
    faulty.inject(
        CallFilter::kind(CallKind::Put),
        Fault::FailAfter(RemoteError::Transfer("connection reset".into())),
        1,
    );
    h.sync().await;
    assert_eq!(
        h.tree(),
        tree_of(&[("doc.txt", b"local edit")]),
        "calls: {:#?}",
        h.server.log_lines()
    );
    assert!(h.drive.problems(10).unwrap().is_empty());
}

/// A folder operation the server refuses over and over (nginx answered MKCOL without a
/// trailing slash with 409) holds up no other upload, and a sync returns naming it.
#[tokio::test]
async fn a_refused_folder_operation_does_not_hold_up_other_uploads() {
    let server = Arc::new(MemRemote::new());
    server.server_mkdir("ok").unwrap();
    let faulty = Arc::new(FaultyRemote::new(server.clone()));
    faulty.inject(
        CallFilter::kind(CallKind::Mkdir).at(RemotePath::from_parts(["blocked"]).unwrap()),
        Fault::Fail(RemoteError::Status(409)),
        usize::MAX,
    );
    let h = Harness::over(server, faulty.clone(), Duration::ZERO).await;
    h.mkdir("blocked").await;
    h.write("blocked/inner.txt", b"waits for its folder").await;
    // Planned after the refused folder: must not wait for it.
    h.write("ok/a.txt", b"a").await;
    h.write("b.txt", b"b").await;
    let start = Instant::now();
    while h.tree() != tree_of(&[("ok/a.txt", b"a"), ("b.txt", b"b")]) {
        assert!(
            start.elapsed() < SYNC_TIMEOUT,
            "unrelated uploads held up: server has {}; calls: {:#?}",
            show(&h.tree()),
            h.server.log_lines()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A sync returns (after its short patience for retries) and names what waits.
    h.drive.request_sync();
    let start = Instant::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    while h.drive.sync_progress().syncing {
        assert!(start.elapsed() < Duration::from_secs(40), "sync never ends");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let problems = h.drive.problems(10).unwrap();
    assert!(
        problems
            .iter()
            .any(|(p, why)| p == "/blocked"
                && matches!(why, Problem::Retrying(d) if d.contains("409"))),
        "{problems:?}"
    );
    assert!(h.drive.sync_progress().stuck >= 1);
}

/// Issue 19, case 2: a rename onto a name another client has just taken on the server
/// ends, with keep-both, with both files on the server under visible names and nothing
/// waiting for a person.
#[tokio::test]
async fn a_rename_onto_a_name_taken_on_the_server_keeps_both() {
    let server = Arc::new(MemRemote::new());
    server.server_put("x1.txt", &b"ours\n"[..]).unwrap();
    let h = Harness::new(server.clone(), Duration::ZERO).await;
    assert_eq!(h.read("x1.txt").await, b"ours\n");
    h.write("x1.txt", b"ours, edited before the rename\n").await;
    server.server_put("t1.txt", &b"theirs\n"[..]).unwrap();
    h.rename("x1.txt", "t1.txt").await;
    h.sync().await;
    let tree = h.tree();
    assert_eq!(
        tree.get("t1.txt").map(Vec::as_slice),
        Some(&b"theirs\n"[..]),
        "{}",
        show(&tree)
    );
    let copies: Vec<_> = tree
        .iter()
        .filter(|(n, _)| n.starts_with("t1 (conflict "))
        .collect();
    assert_eq!(copies.len(), 1, "{}", show(&tree));
    assert_eq!(copies[0].1, b"ours, edited before the rename\n");
    assert!(!tree.contains_key("x1.txt"), "{}", show(&tree));
    assert!(h.drive.problems(10).unwrap().is_empty());
}

/// Issue 19, case 1: an edit inside a folder another client deleted. The edit is kept and
/// written back again (its folder recreated), what the other client deleted next to it
/// disappears here too, and nothing else waits for it.
#[tokio::test]
async fn an_edit_inside_a_folder_deleted_elsewhere_is_written_back_and_blocks_nothing() {
    let server = Arc::new(MemRemote::new());
    server.server_put("d/f.txt", &b"f v1\n"[..]).unwrap();
    server.server_put("d/g.txt", &b"g v1\n"[..]).unwrap();
    server.server_mkdir("other").unwrap();
    let h = Harness::new(server.clone(), Duration::ZERO).await;
    assert_eq!(h.read("d/f.txt").await, b"f v1\n");
    let d = h.ino("d").await;
    h.drive.set_suspended(true, false).unwrap();
    server.server_delete("d").unwrap();
    h.write("d/f.txt", b"f v2, edited while d was deleted elsewhere\n")
        .await;
    h.drive.set_suspended(false, false).unwrap();
    h.write("other/new.txt", b"new").await;
    let start = Instant::now();
    loop {
        // The poller's round, as often as a short --poll-interval would run it.
        h.drive.poll_once(Duration::from_secs(3600)).await;
        let tree = h.tree();
        if tree
            == tree_of(&[
                ("d/f.txt", b"f v2, edited while d was deleted elsewhere\n"),
                ("other/new.txt", b"new"),
            ])
        {
            break;
        }
        assert!(
            start.elapsed() < SYNC_TIMEOUT,
            "server has {}; problems {:?}; progress {:?}; calls: {:#?}",
            show(&tree),
            h.drive.problems(10),
            h.drive.sync_progress(),
            h.server.log_lines()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let names: Vec<String> = h
        .drive
        .list_dir(d)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["f.txt"], "g.txt was deleted elsewhere");
    h.sync().await;
    assert!(h.drive.problems(10).unwrap().is_empty());
}

/// What another user does to `doc.txt` during the upload of a local edit.
#[derive(Clone, Copy, Debug)]
enum Change {
    /// Writes other content.
    Edit,
    /// Deletes it.
    Delete,
}

/// How the server treats preconditions and ETags.
#[derive(Clone, Copy, Debug)]
struct Profile {
    enforce_preconditions: bool,
    send_etags: bool,
    weak_etags: bool,
}

const ENFORCING: Profile = Profile {
    enforce_preconditions: true,
    send_etags: true,
    weak_etags: false,
};
/// Apache for a file changed within the last second: weak ETags, so If-Match never
/// matches and the client falls back to comparing tags itself.
const WEAK_ETAGS: Profile = Profile {
    enforce_preconditions: true,
    send_etags: true,
    weak_etags: true,
};
/// nginx: preconditions ignored, no ETags.
const NGINX: Profile = Profile {
    enforce_preconditions: false,
    send_etags: false,
    weak_etags: false,
};
/// Preconditions ignored, ETags sent.
const IGNORES_PRECONDITIONS: Profile = Profile {
    enforce_preconditions: false,
    send_etags: true,
    weak_etags: false,
};

const BASE: &[u8] = b"base version\n";
const LOCAL: &[u8] = b"local edit, made on this machine\n";
const THEIRS: &[u8] = b"server edit by someone else\n";

/// What happened in one run of [`race`].
struct Run {
    /// The server's files after the sync.
    tree: BTreeMap<String, Vec<u8>>,
    /// The calls made from the sync request on.
    calls: Vec<String>,
    /// The call the change was made right before, if it came.
    injected_before: Option<String>,
    /// Whether the server had the local edit as `doc.txt` when the change came.
    local_before: bool,
}

/// Edits `doc.txt` locally, then syncs; another user makes `change` right before call
/// number `k` counted from the sync request (`None`: no change).
async fn race(profile: Profile, change: Change, k: Option<u64>) -> Run {
    let server = Arc::new(MemRemote::new());
    server.set_enforce_preconditions(profile.enforce_preconditions);
    server.set_send_etags(profile.send_etags);
    server.set_weak_etags(profile.weak_etags);
    server.server_put("doc.txt", BASE).unwrap();
    // Only the sync starts the upload.
    let h = Harness::new(server.clone(), Duration::from_secs(3600)).await;
    assert_eq!(h.read("doc.txt").await, BASE);
    h.write("doc.txt", LOCAL).await;

    let armed = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let injected = Arc::new(Mutex::new(None));
    let local_before = Arc::new(AtomicBool::new(false));
    let weak = Arc::downgrade(&server);
    {
        let (armed, seen, calls, injected, local_before) = (
            armed.clone(),
            seen.clone(),
            calls.clone(),
            injected.clone(),
            local_before.clone(),
        );
        server.set_hook(Box::new(move |call: &RemoteCall| {
            if !armed.load(Ordering::SeqCst) {
                return;
            }
            let n = seen.fetch_add(1, Ordering::SeqCst);
            if Some(n) == k {
                let Some(server) = weak.upgrade() else { return };
                if server.server_read("doc.txt").as_deref() == Some(LOCAL) {
                    local_before.store(true, Ordering::SeqCst);
                }
                match change {
                    Change::Edit => server.server_put("doc.txt", THEIRS).unwrap(),
                    // Nothing to delete while the file is set aside under a staging name:
                    // the other user's DELETE finds nothing (404), as on a real server.
                    Change::Delete => match server.server_delete("doc.txt") {
                        Ok(()) | Err(RemoteError::NotFound) => {}
                        Err(e) => panic!("server-side delete failed: {e}"),
                    },
                }
                *injected.lock().unwrap() = Some(format!("#{n} {call}"));
            }
            calls.lock().unwrap().push(format!("#{n} {call}"));
        }));
    }
    armed.store(true, Ordering::SeqCst);
    h.sync().await;
    server.clear_hook();
    let calls = calls.lock().unwrap().clone();
    let injected_before = injected.lock().unwrap().clone();
    Run {
        tree: h.tree(),
        calls,
        injected_before,
        local_before: local_before.load(Ordering::SeqCst),
    }
}

/// For every call of the upload, another user changes the file right before it; after
/// the sync neither version may be lost. Panics naming every `k` that lost something.
async fn no_version_lost(profile: Profile, change: Change) {
    let dry = race(profile, change, None).await;
    assert_eq!(
        dry.tree,
        tree_of(&[("doc.txt", LOCAL)]),
        "without a concurrent change the edit is uploaded; calls: {:#?}",
        dry.calls
    );
    let n = dry.calls.len() as u64;
    assert!(n > 0, "the sync made no calls");
    let mut failures = Vec::new();
    for k in 0..n {
        let run = race(profile, change, Some(k)).await;
        let Some(before) = &run.injected_before else {
            failures.push(format!(
                "k={k}: the sync made only {} calls, the change never came; calls: {:?}",
                run.calls.len(),
                run.calls
            ));
            continue;
        };
        let has = |data: &[u8]| run.tree.values().any(|d| d == data);
        let mut lost = Vec::new();
        if matches!(change, Change::Edit) && !has(THEIRS) {
            lost.push("the server's edit");
        }
        // Once the server has the local edit as `doc.txt`, another user may replace or
        // delete it: that is theirs to do, not a loss.
        let local_ok = run
            .tree
            .iter()
            .any(|(name, d)| d == LOCAL && (name == "doc.txt" || is_conflict_copy(name)));
        if !local_ok && !run.local_before {
            lost.push("the local edit");
        }
        if !lost.is_empty() {
            failures.push(format!(
                "k={k} ({change:?} by another user right before call {before}): lost {}; \
                 server has [{}]; calls: {:?}",
                lost.join(" and "),
                show(&run.tree),
                run.calls
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{profile:?}, upload of {n} calls {:?}:\n{}",
        dry.calls,
        failures.join("\n")
    );
}

/// Control: a server that honours If-Match never loses either version.
#[tokio::test]
async fn concurrent_server_edit_is_never_lost_on_an_enforcing_server() {
    no_version_lost(ENFORCING, Change::Edit).await;
}

/// Control: a concurrent server-side delete on an enforcing server.
#[tokio::test]
async fn concurrent_server_delete_keeps_the_local_edit_on_an_enforcing_server() {
    no_version_lost(ENFORCING, Change::Delete).await;
}

/// Issue 18: a server that ignores preconditions and sends no ETags (nginx).
#[tokio::test]
async fn concurrent_server_edit_is_never_lost_without_preconditions_or_etags() {
    no_version_lost(NGINX, Change::Edit).await;
}

/// Issue 18, with a concurrent delete: the local edit must end up on the server.
#[tokio::test]
async fn concurrent_server_delete_keeps_the_local_edit_without_preconditions_or_etags() {
    no_version_lost(NGINX, Change::Delete).await;
}

/// Issue 18 on a server that sends ETags but ignores If-Match.
#[tokio::test]
async fn concurrent_server_edit_is_never_lost_when_preconditions_are_ignored() {
    no_version_lost(IGNORES_PRECONDITIONS, Change::Edit).await;
}

/// A server with weak ETags (If-Match never matches them): the client's own comparison
/// must not open a window either.
#[tokio::test]
async fn concurrent_server_edit_is_never_lost_with_weak_etags() {
    no_version_lost(WEAK_ETAGS, Change::Edit).await;
}

/// A change the server refuses (403) is listed with its reason and settled by
/// `resolve`: `UseLocal` tries it again, `UseRemote` gives it up for the server's version
/// and keeps the local bytes in the recovery folder.
#[tokio::test]
async fn a_refused_change_is_listed_and_resolvable() {
    use edrive_fs_core::drive::Choice;
    let server = Arc::new(MemRemote::new());
    server.server_put("doc.txt", &b"base"[..]).unwrap();
    let faulty = Arc::new(FaultyRemote::new(server.clone()));
    let h = Harness::over(server, faulty.clone(), Duration::ZERO).await;
    assert_eq!(h.read("doc.txt").await, b"base");
    faulty.inject(
        CallFilter::kind(CallKind::Put),
        Fault::Fail(RemoteError::Auth(403)),
        usize::MAX,
    );
    h.write("doc.txt", b"mine").await;
    h.sync().await;
    let problems = h.drive.problems(10).unwrap();
    assert!(
        problems
            .iter()
            .any(|(p, why)| p == "/doc.txt"
                && matches!(why, Problem::Forbidden(d) if d.contains("403"))),
        "{problems:?}"
    );
    let ino = h.ino("doc.txt").await;
    // Tried again: still refused, still listed.
    h.drive.resolve(ino, Choice::UseLocal).await.unwrap();
    h.sync().await;
    assert_eq!(h.drive.problems(10).unwrap().len(), 1);
    // Given up: the server's version is back, ours is kept.
    let said = h.drive.resolve(ino, Choice::UseRemote).await.unwrap();
    assert!(h.drive.problems(10).unwrap().is_empty(), "{said}");
    assert_eq!(h.read("doc.txt").await, b"base");
    let kept = said
        .split("kept at ")
        .nth(1)
        .unwrap_or_else(|| panic!("{said}"));
    assert_eq!(std::fs::read(kept.trim()).unwrap(), b"mine");
    assert_eq!(h.tree(), tree_of(&[("doc.txt", b"base")]));
}

/// Client B renames a file onto a name client A has just created on the server; B's
/// listing brings A's file in before B's MOVE runs. A's file must not be taken for one B
/// meant to replace (B never saw it): both end up on the server.
async fn rename_onto_a_name_that_arrives_before_the_move(nginx_like: bool) {
    let server = Arc::new(MemRemote::new());
    if nginx_like {
        server.set_enforce_preconditions(false);
        server.set_send_etags(false);
    }
    server
        .server_put("d0/f0.txt", &b"B's file, to be renamed\n"[..])
        .unwrap();
    let a = Harness::new(server.clone(), Duration::from_secs(3600)).await;
    let b = Harness::new(server.clone(), Duration::from_secs(3600)).await;
    assert_eq!(b.read("d0/f0.txt").await, b"B's file, to be renamed\n");
    let _ = a.drive.list_dir(edrive_fs_core::ROOT_INO).await.unwrap();
    let _ = b.drive.list_dir(edrive_fs_core::ROOT_INO).await.unwrap();
    a.write("f0.txt", b"A's new file\n").await;
    a.sync().await;
    b.rename("d0/f0.txt", "f0.txt").await;
    b.drive.poll_once(Duration::ZERO).await;
    b.sync().await;
    b.drive.poll_once(Duration::ZERO).await;
    b.sync().await;
    let tree = b.tree();
    let contents: Vec<&[u8]> = tree.values().map(Vec::as_slice).collect();
    assert!(
        contents.contains(&&b"A's new file\n"[..])
            && contents.contains(&&b"B's file, to be renamed\n"[..]),
        "server: {}",
        show(&tree)
    );
    assert!(b.drive.problems(10).unwrap().is_empty());
}

#[tokio::test]
async fn a_rename_onto_a_name_that_arrives_before_the_move_keeps_both() {
    rename_onto_a_name_that_arrives_before_the_move(false).await;
}

#[tokio::test]
async fn a_rename_onto_a_name_that_arrives_before_the_move_keeps_both_without_preconditions() {
    rename_onto_a_name_that_arrives_before_the_move(true).await;
}

/// A folder deleted here while a file in it was changed on the server: the folder's
/// DELETE must not take that file with it. What was unchanged goes; the changed file
/// (and so its folder) stays and comes back here.
async fn folder_deleted_here_while_a_file_in_it_changed_there(nginx_like: bool) {
    let server = Arc::new(MemRemote::new());
    if nginx_like {
        server.set_enforce_preconditions(false);
        server.set_send_etags(false);
    }
    server.server_put("e/h.txt", &b"base h\n"[..]).unwrap();
    server.server_put("e/i.txt", &b"base i\n"[..]).unwrap();
    server.server_put("e/sub/j.txt", &b"base j\n"[..]).unwrap();
    let h = Harness::new(server.clone(), Duration::from_secs(3600)).await;
    for f in ["e/h.txt", "e/i.txt", "e/sub/j.txt"] {
        let _ = h.read(f).await;
    }
    h.unlink("e/sub/j.txt").await;
    h.drive.rmdir(h.ino("e").await, "sub").await.unwrap();
    h.unlink("e/h.txt").await;
    h.unlink("e/i.txt").await;
    h.drive.rmdir(edrive_fs_core::ROOT_INO, "e").await.unwrap();
    server
        .server_put("e/h.txt", &b"h changed on the server, longer\n"[..])
        .unwrap();
    h.sync().await;
    assert_eq!(
        h.tree(),
        tree_of(&[("e/h.txt", b"h changed on the server, longer\n")]),
        "calls: {:#?}",
        h.server.log_lines()
    );
    h.drive.poll_once(Duration::ZERO).await;
    assert_eq!(
        h.read("e/h.txt").await,
        b"h changed on the server, longer\n"
    );
    assert!(h.drive.problems(10).unwrap().is_empty());
}

#[tokio::test]
async fn a_folder_deleted_here_keeps_a_file_changed_there() {
    folder_deleted_here_while_a_file_in_it_changed_there(false).await;
}

#[tokio::test]
async fn a_folder_deleted_here_keeps_a_file_changed_there_without_preconditions() {
    folder_deleted_here_while_a_file_in_it_changed_there(true).await;
}
