//! S3 mounts on a real distributed SeaweedFS cluster (3 masters, 3 volume servers with
//! replication 002, filer + S3 gateway; see tests/common/seaweedfs.rs), every result
//! checked with an independent S3 client (boto3). One cluster for the whole file (it
//! takes ~10 s to start on 2 cores), each scenario in a bucket of its own.

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use common::home::{drive_row, files_containing, list_json, Home};
use common::seaweedfs::{Cluster, ACCESS_KEY, SECRET_KEY};
use common::*;

fn opts(c: &Cluster) -> MountOpts {
    opts_at(&c.endpoint())
}

/// Mount options for the store at `endpoint`, credentials in the environment.
fn opts_at(endpoint: &str) -> MountOpts {
    MountOpts::default()
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .arg(&format!("--endpoint={endpoint}"))
        .arg("--upload-delay=100ms")
}

/// GETs and HEADs of objects (not listings) in `bucket` among `reqs`.
fn object_reads(reqs: &[(String, String, u16)], bucket: &str) -> usize {
    let prefix = format!("/{bucket}/");
    reqs.iter()
        .filter(|(m, p, _)| {
            (m == "GET" || m == "HEAD") && p.len() > prefix.len() && p.starts_with(&prefix)
        })
        .count()
}

/// key → sha256 of every object in `bucket`, as boto3 sees them.
fn bucket_hashes(c: &Cluster, bucket: &str) -> std::collections::BTreeMap<String, String> {
    let out = c.boto(&format!(
        "p = s3.get_paginator('list_objects_v2')\n\
         for page in p.paginate(Bucket='{bucket}'):\n\
         \x20   for o in page.get('Contents', []):\n\
         \x20       body = s3.get_object(Bucket='{bucket}', Key=o['Key'])['Body'].read()\n\
         \x20       print(o['Key'] + '\\t' + hashlib.sha256(body).hexdigest())\n"
    ));
    out.lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, h)| (k.to_string(), h.to_string()))
        .collect()
}

fn sha(data: &[u8]) -> String {
    sha256_bytes(data)
}

#[test]
fn s3_on_a_seaweedfs_cluster() {
    require_fuse();
    let mut c = Cluster::start();
    a_named_s3_drive(&mut c);
    let big_sha = listing_and_reads(&mut c);
    writes_of_every_kind(&mut c);
    conflict_keeps_both(&mut c);
    pins_and_offline(&mut c);
    multipart_resumes_after_sigkill(&mut c);
    abandoned_uploads_are_aborted(&mut c);
    a_store_ignoring_preconditions_loses_no_edit(&mut c);
    reads_with_a_volume_server_down(&mut c, &big_sha);
}

/// Listing costs no GetObject; reads are exact, the 200 MiB object included.
fn listing_and_reads(c: &mut Cluster) -> String {
    let out = c.boto(
        "import random, concurrent.futures as cf\n\
         s3.create_bucket(Bucket='reads')\n\
         def put(i):\n\
         \x20   s3.put_object(Bucket='reads', Key='many/f%04d.txt' % i, Body=b'file %d\\n' % i)\n\
         with cf.ThreadPoolExecutor(16) as ex:\n\
         \x20   list(ex.map(put, range(1100)))\n\
         s3.put_object(Bucket='reads', Key='docs/a.txt', Body=b'alpha\\n')\n\
         s3.put_object(Bucket='reads', Key='empty/', Body=b'')\n\
         s3.put_object(Bucket='reads', Key='dup', Body=b'file named dup\\n')\n\
         s3.put_object(Bucket='reads', Key='dup/inner.txt', Body=b'inner\\n')\n\
         data = random.Random(7).randbytes(200 << 20)\n\
         s3.put_object(Bucket='reads', Key='big.bin', Body=data)\n\
         print(hashlib.sha256(data).hexdigest())\n\
         print(hashlib.sha256(data[123456789:123456789 + 4096]).hexdigest())\n",
    );
    let mut lines = out.lines();
    let big_sha = lines.next().expect("sha").to_string();
    let slice_sha = lines.next().expect("slice sha").to_string();

    let m = Mount::new("s3://reads", opts(c));
    c.reset_requests();
    let tree = walk(m.path());
    let many = tree.keys().filter(|k| k.starts_with("many/")).count();
    assert_eq!(many, 1100, "every key of a paginated prefix listed");
    assert_eq!(tree.get("big.bin").map(|e| e.1), Some(200 << 20));
    assert_eq!(
        tree.get("empty").map(|e| e.0),
        Some(true),
        "marker is a folder"
    );
    assert_eq!(
        tree.get("dup").map(|e| e.0),
        Some(false),
        "a key that is also a prefix: the file is kept"
    );
    let reqs = c.requests();
    let reads = object_reads(&reqs, "reads");
    eprintln!(
        "listing {} entries: {} requests, {reads} GetObject/HeadObject",
        tree.len(),
        reqs.len()
    );
    assert_eq!(reads, 0, "listing read no object: {reqs:?}");

    // A range first: only it moves.
    let mut f = fs::File::open(m.join("big.bin")).expect("open big");
    f.seek(SeekFrom::Start(123_456_789)).expect("seek");
    let mut buf = vec![0u8; 4096];
    f.read_exact(&mut buf).expect("read range");
    assert_eq!(sha(&buf), slice_sha, "4 KiB in the middle");
    drop(f);
    assert_eq!(fs::read(m.join("docs/a.txt")).expect("a"), b"alpha\n");
    assert_eq!(
        fs::read(m.join("many/f0042.txt")).expect("f42"),
        b"file 42\n"
    );
    assert_eq!(fs::read(m.join("dup")).expect("dup"), b"file named dup\n");
    assert_eq!(sha256_file(&m.join("big.bin")), big_sha, "200 MiB exact");
    m.unmount();
    big_sha
}

/// Create, edit, rename file and folder, delete, mkdir, rmdir, a multipart-sized file:
/// the bucket as boto3 lists it afterwards.
fn writes_of_every_kind(c: &mut Cluster) {
    c.boto(
        "s3.create_bucket(Bucket='writes')\n\
         s3.put_object(Bucket='writes', Key='dir/one.txt', Body=b'one\\n')\n\
         s3.put_object(Bucket='writes', Key='dir/sub/two.txt', Body=b'two\\n')\n\
         s3.put_object(Bucket='writes', Key='old.txt', Body=b'old\\n')\n",
    );
    let m = Mount::new("s3://writes", opts(c));
    let large = pseudo_random_bytes(22, 40 << 20);
    fs::write(m.join("new.txt"), b"created\n").expect("create");
    let mut old = fs::read(m.join("old.txt")).expect("read old");
    old.extend_from_slice(b"edited\n");
    fs::write(m.join("old.txt"), &old).expect("edit");
    fs::rename(m.join("dir/one.txt"), m.join("dir/uno.txt")).expect("rename file");
    fs::rename(m.join("dir"), m.join("folder")).expect("rename folder");
    fs::remove_file(m.join("folder/sub/two.txt")).expect("delete");
    fs::create_dir(m.join("made")).expect("mkdir");
    fs::create_dir(m.join("gone")).expect("mkdir gone");
    fs::write(m.join("large.bin"), &large).expect("large");
    let out = m.edrive_ok(&["sync"]);
    fs::remove_dir(m.join("gone")).expect("rmdir");
    let out2 = m.edrive_ok(&["sync"]);
    eprintln!("sync: {out}{out2}");

    let got = bucket_hashes(c, "writes");
    let want: std::collections::BTreeMap<String, String> = [
        ("new.txt", sha(b"created\n")),
        ("old.txt", sha(&old)),
        ("folder/uno.txt", sha(b"one\n")),
        ("folder/sub/", sha(b"")),
        ("made/", sha(b"")),
        ("large.bin", sha(&large)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(got, want, "the bucket after every kind of write");

    // The time is kept as rclone keeps it.
    let local = fs::metadata(m.join("new.txt"))
        .and_then(|md| md.modified())
        .expect("mtime")
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let stored: f64 = c
        .boto("print(s3.head_object(Bucket='writes', Key='new.txt')['Metadata']['mtime'])")
        .trim()
        .parse()
        .expect("x-amz-meta-mtime is seconds");
    assert!(
        (local - stored).abs() < 1e-3,
        "local {local}, stored {stored}"
    );
    m.unmount();
}

/// A file changed in the bucket and here: both versions end up in the bucket.
fn conflict_keeps_both(c: &mut Cluster) {
    c.boto(
        "s3.create_bucket(Bucket='conflict')\n\
         s3.put_object(Bucket='conflict', Key='c.txt', Body=b'version 1\\n')\n",
    );
    let m = Mount::new(
        "s3://conflict",
        opts(c).arg("--poll-interval=0").dir_cache_ttl("1h"),
    );
    assert_eq!(fs::read(m.join("c.txt")).expect("read"), b"version 1\n");
    c.boto("s3.put_object(Bucket='conflict', Key='c.txt', Body=b'server edit\\n')");
    fs::write(m.join("c.txt"), b"local edit\n").expect("local edit");
    let _ = m.edrive(&["sync"]);
    let got = bucket_hashes(c, "conflict");
    assert_eq!(got.get("c.txt"), Some(&sha(b"server edit\n")), "{got:?}");
    let copies: Vec<_> = got
        .iter()
        .filter(|(k, h)| k.starts_with("c (conflict ") && **h == sha(b"local edit\n"))
        .collect();
    assert_eq!(copies.len(), 1, "the local version kept beside it: {got:?}");
    m.unmount();
}

/// A pinned folder reads with the store unreachable.
fn pins_and_offline(c: &mut Cluster) {
    c.boto(
        "s3.create_bucket(Bucket='pins')\n\
         s3.put_object(Bucket='pins', Key='trip/plan.txt', Body=b'plan\\n')\n\
         s3.put_object(Bucket='pins', Key='trip/maps/city.map', Body=bytes(range(256)) * 4096)\n\
         s3.put_object(Bucket='pins', Key='other.txt', Body=b'other\\n')\n",
    );
    let m = Mount::new("s3://pins", opts(c));
    let trip = m.join("trip").display().to_string();
    let (st, out, err) = m.edrive_plain(&["pin", &trip]);
    assert!(st.success(), "{out}{err}");
    assert!(out.contains("2 of 2 file(s) local"), "{out}");
    c.stop_s3();
    assert_eq!(
        fs::read(m.join("trip/plan.txt")).expect("offline"),
        b"plan\n"
    );
    let map: Vec<u8> = (0..4096).flat_map(|_| 0..=255u8).collect();
    assert_eq!(
        fs::read(m.join("trip/maps/city.map")).expect("offline"),
        map
    );
    assert!(
        fs::read(m.join("other.txt")).is_err(),
        "never read, store down"
    );
    c.restart_s3();
    assert!(
        wait_until(Duration::from_secs(60), || fs::read(m.join("other.txt"))
            .is_ok()),
        "back online"
    );
    m.unmount();
}

/// The parts of `cache`'s journaled multipart upload(s).
fn journaled_parts(cache: &Path) -> usize {
    let Ok(dir) = fs::read_dir(cache.join("s3-uploads")) else {
        return 0;
    };
    dir.flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            // Not a `.tmp` a kill left half-saved: the journal is the renamed `.json`.
            name.starts_with("upload-") && name.ends_with(".json")
        })
        .filter_map(|e| fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .map(|v| v["parts"].as_object().map(|p| p.len()).unwrap_or(0))
        .sum()
}

/// SIGKILL in the middle of a multipart upload: the next mount sends only the missing
/// parts and the object ends byte-exact; no upload of ours is left open.
fn multipart_resumes_after_sigkill(c: &mut Cluster) {
    c.boto("s3.create_bucket(Bucket='resume')");
    let cache = tempdir();
    let data = pseudo_random_bytes(5, 160 << 20);
    let parts = 20; // 8 MiB each
    let m = Mount::new("s3://resume", opts(c).cache_dir(cache.path()));
    fs::write(m.join("big.bin"), &data).expect("write");
    assert!(
        wait_until(Duration::from_secs(300), || journaled_parts(cache.path())
            >= 3),
        "the upload journaled three parts"
    );
    m.signal(libc::SIGKILL);
    let pid = m.pid().expect("pid");
    assert!(wait_until(Duration::from_secs(10), || !pid_alive(pid)));
    drop(m);
    let done = journaled_parts(cache.path());
    assert!(
        done >= 3 && done < parts,
        "killed mid-upload: {done} parts done"
    );
    c.reset_requests();

    let m = Mount::new("s3://resume", opts(c).cache_dir(cache.path()));
    m.edrive_ok(&["sync"]);
    let part_puts: Vec<u16> = c
        .requests()
        .into_iter()
        .filter(|(meth, p, _)| meth == "PUT" && p == "/resume/big.bin")
        .map(|(_, _, status)| status)
        .collect();
    let puts = part_puts.iter().filter(|s| **s == 200).count();
    eprintln!(
        "resumed: {done} parts kept, {puts} parts stored after the restart (of {parts}); \
         part PUTs answered {part_puts:?}"
    );
    if puts != parts - done {
        let log = read_from(&cache.path().join("edrive.log"), 0);
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| {
                l.contains("part")
                    || l.contains("writeback")
                    || l.contains("upload")
                    || l.contains("WARN")
            })
            .collect();
        eprintln!("daemon log:\n{}", lines.join("\n"));
    }
    assert_eq!(
        puts,
        parts - done,
        "only the missing parts were stored again"
    );
    let got = bucket_hashes(c, "resume");
    assert_eq!(got.get("big.bin"), Some(&sha(&data)), "byte-exact");
    let open = c.boto("print(len(s3.list_multipart_uploads(Bucket='resume').get('Uploads', [])))");
    assert_eq!(open.trim(), "0", "no multipart upload left open");
    assert_eq!(journaled_parts(cache.path()), 0, "journal cleared");
    m.unmount();
}

/// A multipart upload of ours journaled a week ago and never continued (its file went
/// before it could be) is aborted when the next mount starts, and forgotten.
fn abandoned_uploads_are_aborted(c: &mut Cluster) {
    let id = c.boto(
        "s3.create_bucket(Bucket='orphans')\n\
         u = s3.create_multipart_upload(Bucket='orphans', Key='gone.bin')['UploadId']\n\
         s3.upload_part(Bucket='orphans', Key='gone.bin', UploadId=u, PartNumber=1, Body=b'x' * (5 << 20))\n\
         print(u, end='')\n",
    );
    let cache = tempdir();
    let journal = cache.path().join("s3-uploads");
    fs::create_dir_all(&journal).expect("mkdir");
    let file = journal.join("upload-0123456789abcdef.json");
    let record = serde_json::json!({
        "key": "gone.bin", "upload_id": id, "len": 20 << 20, "part_size": 8 << 20,
        "parts": {},
    });
    fs::write(&file, record.to_string()).expect("journal");
    let week_ago = std::time::SystemTime::now() - Duration::from_secs(8 * 24 * 3600);
    fs::File::options()
        .write(true)
        .open(&file)
        .and_then(|f| f.set_modified(week_ago))
        .expect("age the journal");
    let open = "print(len(s3.list_multipart_uploads(Bucket='orphans').get('Uploads', [])))";
    assert_eq!(c.boto(open).trim(), "1");
    let m = Mount::new("s3://orphans", opts(c).cache_dir(cache.path()));
    assert_eq!(c.boto(open).trim(), "0", "the abandoned upload was aborted");
    assert!(!file.exists(), "and forgotten");
    m.unmount();
}

/// Runs `edrive ARGS` in `home` with the cluster's access key and `secret` in the
/// environment (and no other AWS setting of the caller's).
fn edrive_aws(
    home: &Home,
    secret: &str,
    args: &[&str],
) -> (std::process::ExitStatus, String, String) {
    let mut cmd = home.command(edrive_bin());
    for k in [
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_CONFIG_FILE",
    ] {
        cmd.env_remove(k);
    }
    cmd.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .args(args);
    common::home::run(cmd, &home.path(""))
}

/// A named S3 drive: `edrive add` with a wrong secret or a missing bucket fails with the
/// reason on one line and writes nothing; with the right keys it keeps the URL and the S3
/// options (no key: those stay the AWS environment's), `mount NAME` reaches the store
/// through the kept `--endpoint` alone, a file written there is in the bucket after
/// `unmount NAME`, and `remove NAME` forgets the drive.
fn a_named_s3_drive(c: &mut Cluster) {
    c.boto("s3.create_bucket(Bucket='named')");
    let mut home = Home::new();
    let mp = home.mountpoint("bucket-mnt");
    let mp_s = mp.display().to_string();
    let endpoint = format!("--endpoint={}", c.endpoint());
    let add = ["add", "photos", "s3://named/trip", &mp_s, &endpoint];
    let nothing_written = |home: &Home| {
        assert!(
            !home.path("cfg/edrive").exists(),
            "nothing written: {:?}",
            fs::read_dir(home.path("cfg/edrive")).map(|d| d.count())
        );
    };

    let (st, out, err) = edrive_aws(&home, "not-the-secret", &add);
    eprintln!("add with a wrong secret: {}", err.trim());
    assert!(!st.success(), "a wrong secret is refused: {out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("refused access") && err.contains("nothing was saved"),
        "{err}"
    );
    nothing_written(&home);

    let missing = ["add", "photos", "s3://no-such-bucket", &mp_s, &endpoint];
    let (st, out, err) = edrive_aws(&home, SECRET_KEY, &missing);
    eprintln!("add of a missing bucket: {}", err.trim());
    assert!(!st.success(), "a missing bucket is refused: {out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("not found") && err.contains("nothing was saved"),
        "{err}"
    );
    nothing_written(&home);

    let (st, out, err) = edrive_aws(
        &home,
        SECRET_KEY,
        &[
            &add[..],
            &["--path-style", "--region=us-east-1", "--upload-delay=100ms"],
        ]
        .concat(),
    );
    assert!(st.success(), "add: {out}{err}");
    let text = home.config_text();
    eprintln!("config.toml:\n{text}");
    assert!(
        text.contains(&format!("endpoint = \"{}\"", c.endpoint())),
        "{text}"
    );
    assert!(text.contains("path_style = true"), "{text}");
    assert!(text.contains("region = \"us-east-1\""), "{text}");
    assert!(!text.contains(ACCESS_KEY), "no key in config.toml: {text}");
    assert!(
        files_containing(home.dir.path(), SECRET_KEY).is_empty(),
        "the secret is stored nowhere"
    );
    assert!(!home.path("cfg/edrive/credentials").exists());

    // Only the AWS keys in the environment: the endpoint is the drive's.
    let (st, out, err) = edrive_aws(&home, SECRET_KEY, &["mount", "photos"]);
    assert!(st.success(), "mount photos: {out}{err}");
    assert!(is_mounted(&mp), "mounted at {mp_s}");
    let row = drive_row(&list_json(&home), "photos");
    assert_eq!(row["mounted"], true, "{row}");
    assert_eq!(row["url"], "s3://named/trip", "{row}");
    fs::write(mp.join("note.txt"), b"written through a named drive\n").expect("write");
    let (st, out, err) = edrive_aws(&home, SECRET_KEY, &["unmount", "photos"]);
    assert!(st.success(), "unmount photos: {out}{err}");
    assert!(!is_mounted(&mp), "unmounted");
    let got = bucket_hashes(c, "named");
    assert_eq!(
        got.get("trip/note.txt"),
        Some(&sha(b"written through a named drive\n")),
        "uploaded before the unmount returned: {got:?}"
    );

    let (st, out, err) = edrive_aws(&home, SECRET_KEY, &["remove", "photos"]);
    assert!(st.success(), "remove photos: {out}{err}");
    assert!(
        !home.config_text().contains("photos"),
        "{}",
        home.config_text()
    );
}

/// The same store behind a proxy that drops `If-Match` / `If-None-Match`: the probe finds
/// them not enforced, the client checks each write itself, and a concurrent edit made in
/// the bucket is kept beside the local one, never overwritten.
fn a_store_ignoring_preconditions_loses_no_edit(c: &mut Cluster) {
    c.boto(
        "s3.create_bucket(Bucket='ignores')\n\
         s3.put_object(Bucket='ignores', Key='c.txt', Body=b'version 1\\n')\n",
    );
    let proxy = common::strip_proxy::StripProxy::start(c.s3_port());
    let m = Mount::new(
        "s3://ignores",
        opts_at(&proxy.endpoint())
            .arg("--poll-interval=0")
            .dir_cache_ttl("1h"),
    );
    m.edrive_ok(&["sync"]);
    let status = m.edrive_ok(&["status"]);
    assert!(status.contains("If-Match no"), "{status}");
    assert!(!status.contains("checked by: server"), "{status}");
    assert!(proxy.stripped() > 0);
    assert_eq!(fs::read(m.join("c.txt")).expect("read"), b"version 1\n");
    c.boto("s3.put_object(Bucket='ignores', Key='c.txt', Body=b'server edit\\n')");
    fs::write(m.join("c.txt"), b"local edit\n").expect("local edit");
    fs::write(m.join("new.txt"), b"new\n").expect("new file");
    let _ = m.edrive(&["sync"]);
    let got = bucket_hashes(c, "ignores");
    assert_eq!(got.get("c.txt"), Some(&sha(b"server edit\n")), "{got:?}");
    assert_eq!(got.get("new.txt"), Some(&sha(b"new\n")), "{got:?}");
    let copies = got
        .iter()
        .filter(|(k, h)| k.starts_with("c (conflict ") && **h == sha(b"local edit\n"))
        .count();
    assert_eq!(copies, 1, "the local version kept beside it: {got:?}");
    assert!(
        !got.keys().any(|k| k.contains(".edrive-")),
        "no staging file left: {got:?}"
    );
    m.unmount();
}

/// With one of the three volume servers killed, reads go on (also of content not
/// cached); a write the degraded store refuses stays pending, is no conflict, and goes up
/// once the volume server is back.
fn reads_with_a_volume_server_down(c: &mut Cluster, big_sha: &str) {
    let m = Mount::new("s3://reads", opts(c));
    // The write-back's probe of the store done while it is whole.
    m.edrive_ok(&["sync"]);
    c.kill_volume(1);
    assert_eq!(fs::read(m.join("docs/a.txt")).expect("a"), b"alpha\n");
    assert_eq!(
        fs::read(m.join("many/f0999.txt")).expect("f999"),
        b"file 999\n"
    );
    assert_eq!(
        sha256_file(&m.join("big.bin")),
        big_sha,
        "200 MiB exact, degraded"
    );
    fs::write(m.join("degraded.txt"), b"written while degraded\n").expect("write");
    std::thread::sleep(Duration::from_secs(2));
    let st = m.status_json();
    assert_eq!(st["sync"]["pending"].as_u64(), Some(1), "pending: {st}");
    let (_, conflicts, _) = m.edrive(&["conflicts", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&conflicts).expect("json");
    assert_eq!(
        v["conflicts"].as_array().map(Vec::len),
        Some(0),
        "{conflicts}"
    );
    c.restart_volume(1);
    m.edrive_ok(&["sync"]);
    let got = c.boto(
        "print(s3.get_object(Bucket='reads', Key='degraded.txt')['Body'].read().decode(), end='')",
    );
    assert_eq!(got, "written while degraded\n");
    m.unmount();
}
