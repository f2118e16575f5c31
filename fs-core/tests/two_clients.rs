//! Issue 19: two clients of one folder. Two drives (separate metadata stores and caches)
//! over one [`MemRemote`] each run a few hundred random operations on the same names
//! (create, overwrite, append, rename, delete, folder moves), uploading and polling as they
//! go, so their changes cross; servers that enforce preconditions and servers that do not
//! (nginx-like: no ETags, preconditions ignored) are both tried, each with fixed seeds.
//!
//! After both sides have settled, these must hold:
//! - every version a completed `close()` produced is on the server under a visible name,
//!   unless some client overwrote or deleted it after seeing it (its own writer, or the
//!   other client once the version had reached it);
//! - no `.edrive-` name is on the server;
//! - nothing is left pending with a problem (keep-both settles every conflict);
//! - both drives show exactly the server's tree.

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edrive_fs_core::error::FsError;
use edrive_fs_core::remote::memory::MemRemote;
use edrive_fs_core::{Drive, ROOT_INO};
use harness::*;

/// A small deterministic generator (xorshift64*): no dependency for it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick(&mut self, items: &[&'static str]) -> &'static str {
        items[self.below(items.len() as u64) as usize]
    }
}

const FOLDERS: [&str; 3] = ["", "d0", "d1"];
const FILES: [&str; 4] = ["f0.txt", "f1.txt", "f2.txt", "f3.txt"];

/// What the run did, for the invariant.
#[derive(Default)]
struct Record {
    /// Every content a completed close produced.
    written: BTreeSet<Vec<u8>>,
    /// Contents some client overwrote or deleted after seeing them.
    destroyed: BTreeSet<Vec<u8>>,
    /// What each step did, for the failure message.
    trace: Vec<String>,
}

/// The inode at `path` as `drive` sees it now.
async fn find(drive: &Drive, path: &str) -> Result<u64, FsError> {
    let mut ino = ROOT_INO;
    for name in path.split('/').filter(|n| !n.is_empty()) {
        ino = drive.lookup(ino, name).await?.ino;
    }
    Ok(ino)
}

fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

/// What `drive` shows at `path`: `Ok(None)` if nothing, `Ok(Some(content))` for a file
/// read whole, `Err(())` for anything else (a folder, or a read that failed: an operation
/// on it would destroy a version the test could not see).
async fn content(drive: &Drive, path: &str) -> Result<Option<Vec<u8>>, ()> {
    let ino = match find(drive, path).await {
        Ok(ino) => ino,
        Err(FsError::NotFound) => return Ok(None),
        Err(_) => return Err(()),
    };
    let fh = drive.open(ino, false, false).await.map_err(|_| ())?;
    let mut out = Vec::new();
    loop {
        match drive.read(fh, out.len() as u64, 1 << 16).await {
            Ok(chunk) if chunk.is_empty() => break,
            Ok(chunk) => out.extend_from_slice(&chunk),
            Err(_) => {
                let _ = drive.release(fh);
                return Err(());
            }
        }
    }
    let _ = drive.release(fh);
    Ok(Some(out))
}

/// Writes `f(old)` as the whole of `path`, where `old` is the content the write replaces
/// (read through the same handle, so it is exactly what the write destroys), or creates
/// `path` with `f(None)`. Returns what was replaced; `Err` if nothing was written.
async fn write_over(
    drive: &Drive,
    path: &str,
    f: impl FnOnce(Option<&[u8]>) -> Option<Vec<u8>>,
) -> Result<(Option<Vec<u8>>, Vec<u8>), FsError> {
    let (dir, name) = split(path);
    let dir = find(drive, dir).await?;
    let (ino, fh, old) = match drive.lookup(dir, name).await {
        Ok(a) if a.kind == edrive_fs_core::Kind::Dir => return Err(FsError::IsDir),
        Ok(a) => {
            let fh = drive.open(a.ino, true, false).await?;
            let mut old = Vec::new();
            loop {
                match drive.read(fh, old.len() as u64, 1 << 16).await {
                    Ok(chunk) if chunk.is_empty() => break,
                    Ok(chunk) => old.extend_from_slice(&chunk),
                    Err(e) => {
                        let _ = drive.release(fh);
                        return Err(e);
                    }
                }
            }
            (a.ino, fh, Some(old))
        }
        Err(FsError::NotFound) => {
            let (attr, fh) = drive.create(dir, name, 0o644).await?;
            (attr.ino, fh, None)
        }
        Err(e) => return Err(e),
    };
    let Some(data) = f(old.as_deref()) else {
        let _ = drive.release(fh);
        return Err(FsError::Invalid("nothing to write"));
    };
    // The open file's own inode: the name may stand for another file by now.
    let truncated = drive
        .setattr(
            ino,
            edrive_fs_core::drive::SetAttr {
                size: Some(0),
                mtime: None,
                atime: None,
                mode: None,
            },
        )
        .await
        .map(drop);
    let written = truncated.and_then(|()| drive.write(fh, 0, &data).map(drop));
    let flushed = drive.flush(fh);
    let released = drive.release(fh);
    written?;
    flushed?;
    released?;
    Ok((old, data))
}

/// One random operation of client `side` (0 or 1), number `seq`.
async fn step(drive: &Drive, side: usize, seq: usize, rng: &mut Rng, rec: &mut Record) {
    let folder = rng.pick(&FOLDERS);
    fn file(folder: &str, name: &str) -> String {
        if folder.is_empty() {
            name.to_string()
        } else {
            format!("{folder}/{name}")
        }
    }
    let path = file(folder, rng.pick(&FILES));
    // Each version a size of its own (1000 × (seq + 1) + 500 × side bytes, appends
    // included): without ETags a version is told by its time (whole seconds) and size, and
    // two versions of one file written in the same second with the same size look alike
    // (README, "Servers"): outside what the client can see.
    let size = 1000 * (seq + 1) + 500 * side;
    let pad = |mut v: Vec<u8>| {
        v.resize(size.max(v.len()), b'.');
        v
    };
    let line = format!("client {side} version {seq}\n").into_bytes();
    let fresh = pad(line.clone());
    match rng.below(10) {
        // Create or overwrite.
        0..=3 => {
            let written = write_over(drive, &path, |_| Some(fresh.clone())).await;
            rec.trace.push(format!(
                "{seq} c{side} write {path} ({}): {:?}",
                label(&fresh),
                written.as_ref().map(|(old, _)| old.as_deref().map(label))
            ));
            if let Ok((old, new)) = written {
                rec.destroyed.extend(old);
                rec.written.insert(new);
            }
        }
        // Append (as an editor saves: the whole file again).
        4 | 5 => {
            let written = write_over(drive, &path, |old| {
                old.map(|o| {
                    let kept = o.trim_ascii_end();
                    let kept =
                        &kept[..kept.len() - kept.iter().rev().take_while(|b| **b == b'.').count()];
                    pad([kept, b"\n", &line[..]].concat())
                })
            })
            .await;
            rec.trace.push(format!(
                "{seq} c{side} append {path}: {:?}",
                written.as_ref().map(|(old, _)| old.as_deref().map(label))
            ));
            if let Ok((old, new)) = written {
                rec.destroyed.extend(old);
                rec.written.insert(new);
            }
        }
        // Rename within or across folders, never over another file (that case has tests
        // of its own; here what it destroys could not be told exactly).
        6 | 7 => {
            let to = file(rng.pick(&FOLDERS), rng.pick(&FILES));
            if to == path {
                return;
            }
            let (from_dir, from_name) = split(&path);
            let (to_dir, to_name) = split(&to);
            let (Ok(a), Ok(b)) = (find(drive, from_dir).await, find(drive, to_dir).await) else {
                return;
            };
            if drive.rename(a, from_name, b, to_name, true).await.is_ok() {
                rec.trace
                    .push(format!("{seq} c{side} rename {path} -> {to}"));
            }
        }
        // Delete.
        8 => {
            let (dir, name) = split(&path);
            // A fresh listing first, so the unlink below does not list again between
            // the read and the deletion.
            if let Ok(d) = find(drive, dir).await {
                let _ = drive.list_dir(d).await;
            }
            let Ok(before) = content(drive, &path).await else {
                return;
            };
            if let Ok(d) = find(drive, dir).await {
                if drive.unlink(d, name).await.is_ok() {
                    rec.trace.push(format!(
                        "{seq} c{side} delete {path} with {:?}",
                        before.as_deref().map(label)
                    ));
                    rec.destroyed.extend(before);
                }
            }
        }
        // Let the write-back and the poller catch up.
        _ => {
            rec.trace.push(format!("{seq} c{side} sync+poll"));
            drive.request_sync();
            tokio::time::sleep(Duration::from_millis(rng.below(30))).await;
            drive.poll_once(Duration::ZERO).await;
        }
    }
}

/// A version's content, short: its lines without the padding, and its size.
fn label(c: &[u8]) -> String {
    let text = String::from_utf8_lossy(c).replace('.', "");
    format!(
        "[{} | {} bytes]",
        text.trim_end().replace('\n', " + "),
        c.len()
    )
}

/// Every file `drive` shows, with its content (listed and read through the drive).
async fn drive_tree(drive: &Drive) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(ROOT_INO, String::new())];
    while let Some((ino, prefix)) = stack.pop() {
        let Ok(children) = drive.list_dir(ino).await else {
            continue;
        };
        for c in children {
            if c.name == "." || c.name == ".." {
                continue;
            }
            let path = if prefix.is_empty() {
                c.name.clone()
            } else {
                format!("{prefix}/{}", c.name)
            };
            if c.attr.kind == edrive_fs_core::Kind::Dir {
                stack.push((c.attr.ino, path));
            } else if let Ok(Some(data)) = content(drive, &path).await {
                out.insert(path, data);
            }
        }
    }
    out
}

/// Both clients upload and poll until a whole round changes nothing.
async fn settle(a: &Harness, b: &Harness, server: &MemRemote) {
    let start = Instant::now();
    let mut last = None;
    loop {
        for h in [a, b] {
            h.sync().await;
            h.drive.poll_once(Duration::ZERO).await;
        }
        let now = server.server_tree();
        let idle = [a, b].iter().all(|h| h.drive.is_synced());
        if idle && last.as_ref() == Some(&now) {
            return;
        }
        last = Some(now);
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the two clients never settled"
        );
    }
}

async fn run(seed: u64, ops: usize, nginx_like: bool) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("EDRIVE_LOG").unwrap_or_else(|_| "off".into()))
        .with_ansi(false)
        .try_init();
    let server = Arc::new(MemRemote::new());
    if nginx_like {
        server.set_enforce_preconditions(false);
        server.set_send_etags(false);
    }
    for f in ["d0", "d1"] {
        server.server_mkdir(f).unwrap();
    }
    server.server_put("f0.txt", &b"seed f0\n"[..]).unwrap();
    server
        .server_put("d0/f1.txt", &b"seed d0/f1\n"[..])
        .unwrap();
    let a = Harness::new(server.clone(), Duration::from_millis(20)).await;
    let b = Harness::new(server.clone(), Duration::from_millis(20)).await;
    let mut rec = Record::default();
    rec.written.insert(b"seed f0\n".to_vec());
    rec.written.insert(b"seed d0/f1\n".to_vec());
    let mut rng = Rng(seed | 1);
    for seq in 0..2 * ops {
        let side = rng.below(2) as usize;
        let h = if side == 0 { &a } else { &b };
        step(&h.drive, side, seq, &mut rng, &mut rec).await;
        if rng.below(4) == 0 {
            tokio::time::sleep(Duration::from_millis(rng.below(10))).await;
        }
    }
    settle(&a, &b, &server).await;

    for (name, h) in [("A", &a), ("B", &b)] {
        let problems = h.drive.problems(20).unwrap();
        assert!(
            problems.is_empty(),
            "seed {seed}: {name} has changes that do not move: {problems:?}\ntrace:\n{}",
            rec.trace.join("\n")
        );
    }
    let tree = server.server_tree();
    let stray: Vec<&String> = tree.keys().filter(|k| k.contains(".edrive-")).collect();
    assert!(
        stray.is_empty(),
        "seed {seed}: work names left on the server: {stray:?}"
    );
    let on_server: BTreeSet<&Vec<u8>> = tree.values().collect();
    let lost: Vec<String> = rec
        .written
        .iter()
        .filter(|c| !rec.destroyed.contains(*c) && !on_server.contains(c))
        .map(|c| label(c))
        .collect();
    assert!(
        lost.is_empty(),
        "seed {seed} (nginx-like: {nginx_like}): versions lost: {lost:?}\nserver: {}\ntrace:\n{}",
        tree.iter()
            .map(|(p, c)| format!("{p} = {}", label(c)))
            .collect::<Vec<_>>()
            .join(", "),
        rec.trace.join("\n")
    );
    for (name, h) in [("A", &a), ("B", &b)] {
        let seen = drive_tree(&h.drive).await;
        assert_eq!(
            seen,
            tree,
            "seed {seed}: {name} does not show the server's tree:\n{name}: {}\nserver: {}",
            show(&seen),
            show(&tree)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_random_operations_lose_nothing() {
    for seed in [1, 2, 3] {
        run(
            seed,
            std::env::var("OPS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(200),
            false,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_random_operations_lose_nothing_without_preconditions_or_etags() {
    let ops = std::env::var("OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let seeds: Vec<u64> = match std::env::var("SEEDS") {
        Ok(v) => v.split(',').filter_map(|s| s.parse().ok()).collect(),
        Err(_) => vec![4, 5, 6],
    };
    for seed in seeds {
        run(seed, ops, true).await;
    }
}
