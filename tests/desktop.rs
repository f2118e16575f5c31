//! The file managers browse the drive without downloading it (issue 20): the real Thunar
//! (with tumbler, XFCE's thumbnailer service) and the real Nautilus (whose thumbnailers
//! run through bwrap) open a mounted folder of photos, PDFs and videos in a headless
//! session (Xvfb + a session bus), scroll through it, and the server sees no GET; the
//! thumbnailers were refused, which `edrive status` counts. Then a person opens one
//! photo, and the next view of the folder has its thumbnail (the failure the thumbnailer
//! recorded is cleared once the content is local). Screenshots are kept in
//! `target/test-artifacts/desktop/`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::desktop::Desktop;
use common::mount::{Mount, MountOpts};
use common::server::EmbeddedServer;
use common::user::{edrive_for_others, require_tools, Namespace, TestUser, UserMount};
use common::*;

const PHOTOS: usize = 40;
const PDFS: usize = 10;
const VIDEOS: usize = 3;

/// A one-page PDF saying `text`, with a correct cross-reference table.
fn pdf(text: &str) -> Vec<u8> {
    let stream = format!("BT /F1 24 Tf 40 100 Td ({text}) Tj ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 4 0 R \
         /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_string(),
        format!(
            "<< /Length {} >>\nstream\n{stream}\nendstream",
            stream.len()
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_string(),
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("run a generator");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// 40 photos of 1600×1200 (~300 KB each: four different pictures, each under ten
/// names), 10 PDFs and 3 short videos in `dir`.
fn make_media(dir: &Path) {
    std::fs::create_dir_all(dir).expect("media folder");
    let bases: Vec<_> = (0..4)
        .map(|i| {
            let p = dir.join(format!(".base-{i}.jpg"));
            run_ok(
                Command::new("convert")
                    .args(["-size", "1600x1200", "plasma:fractal", "-quality", "85"])
                    .arg(&p),
            );
            p
        })
        .collect();
    for i in 0..PHOTOS {
        std::fs::copy(&bases[i % 4], dir.join(format!("photo-{:02}.jpg", i + 1))).expect("copy");
    }
    for b in bases {
        std::fs::remove_file(b).expect("remove base");
    }
    for i in 0..PDFS {
        std::fs::write(
            dir.join(format!("doc-{:02}.pdf", i + 1)),
            pdf(&format!("Document {}", i + 1)),
        )
        .expect("pdf");
    }
    for i in 0..VIDEOS {
        run_ok(
            Command::new("ffmpeg")
                .args(["-loglevel", "error", "-f", "lavfi", "-i"])
                .arg("testsrc=duration=2:size=320x240:rate=10")
                .args(["-c:v", "mpeg4", "-y"])
                .arg(dir.join(format!("clip-{}.mp4", i + 1))),
        );
    }
}

/// The thumbnail spec's file name for `file` (MD5 of its URI; these test paths need no
/// escaping).
fn thumb_name(file: &Path) -> String {
    let uri = format!("file://{}", file.display());
    assert!(!uri.contains(' '), "test paths need no URI escaping");
    let out = Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(uri.as_bytes())?;
            c.wait_with_output()
        })
        .expect("md5sum");
    let hex = String::from_utf8_lossy(&out.stdout);
    format!("{}.png", hex.split_whitespace().next().expect("a digest"))
}

/// Thumbnails of `file` in `thumbs` (`~/.cache/thumbnails`): made (any size) and failed.
fn thumbs_of(thumbs: &Path, file: &Path) -> (bool, bool) {
    let name = thumb_name(file);
    let made = ["normal", "large", "x-large", "xx-large"]
        .iter()
        .any(|s| thumbs.join(s).join(&name).exists());
    let failed = std::fs::read_dir(thumbs.join("fail"))
        .map(|d| d.flatten().any(|app| app.path().join(&name).exists()))
        .unwrap_or(false);
    (made, failed)
}

/// Every file under the mount's media folder is still online-only.
fn all_online_only(m: &Mount) {
    for e in std::fs::read_dir(m.join("media"))
        .expect("list media")
        .flatten()
    {
        let state = xattr(&e.path(), "user.edrive.state");
        assert_eq!(state, "online-only", "{} changed state", e.path().display());
    }
}

fn refused(m: &Mount) -> serde_json::Value {
    m.status_json()["background_reads_refused"].clone()
}

/// Opens the folder in Thunar, scrolls to the end, waits (≤ 90 s) until `done` says the
/// thumbnailers did their part, screenshot.
fn browse_thunar(d: &mut Desktop, dir: &Path, shot: &str, done: impl FnMut() -> bool) {
    d.spawn("thunar", &[dir.to_str().expect("UTF-8")]);
    let w = d.expect_window("Thunar", "thunar", Duration::from_secs(60));
    d.run("xdotool", &["windowsize", &w, "1260", "1000"]);
    d.run("xdotool", &["windowactivate", "--sync", &w]);
    for _ in 0..6 {
        d.run("xdotool", &["key", "--window", &w, "Page_Down"]);
        std::thread::sleep(Duration::from_millis(500));
    }
    // tumbler works through what was shown (slowly on a loaded machine).
    wait_until(Duration::from_secs(90), done);
    std::thread::sleep(Duration::from_secs(2));
    d.screenshot(shot);
    d.run("thunar", &["--quit"]);
    d.stop_apps();
}

/// Opens the folder in Nautilus, scrolls with the wheel, waits (≤ 90 s) until `done` says
/// its thumbnailers did their part, screenshot.
fn browse_nautilus(d: &mut Desktop, dir: &Path, shot: &str, done: impl FnMut() -> bool) {
    d.spawn("nautilus", &["--new-window", dir.to_str().expect("UTF-8")]);
    let w = d.expect_window("nautilus", "nautilus", Duration::from_secs(60));
    d.run("xdotool", &["windowsize", &w, "1260", "1000"]);
    std::thread::sleep(Duration::from_secs(6));
    d.run("xdotool", &["mousemove", "--window", &w, "500", "300"]);
    for _ in 0..3 {
        d.run(
            "xdotool",
            &["click", "--repeat", "8", "--delay", "100", "5"],
        );
        std::thread::sleep(Duration::from_millis(700));
    }
    wait_until(Duration::from_secs(90), done);
    std::thread::sleep(Duration::from_secs(2));
    d.screenshot(shot);
    d.run("nautilus", &["--quit"]);
    d.stop_apps();
}

#[test]
fn file_managers_browse_without_downloading() {
    require_fuse();
    let root = tempdir();
    make_media(&root.path().join("media"));
    let mut server = EmbeddedServer::start(root.path(), None);
    let m = Mount::new(&server.url(), MountOpts::default());
    let media = m.join("media");
    let thumbs = m.xdg_cache_home().join("thumbnails");
    server.reset_requests();
    {
        let mut d = Desktop::start("desktop", &m.xdg_cache_home());

        // Looking is not reading: no GET, no state change, thumbnailers refused.
        let asked = |program: &str| {
            let r = refused(&m);
            r["by_program"][program].as_u64().unwrap_or(0)
        };
        browse_thunar(&mut d, &media, "1-thunar-browsed", || asked("tumblerd") > 0);
        // Nautilus asks for every photo, shown or not.
        browse_nautilus(&mut d, &media, "2-nautilus-browsed", || {
            asked("gdk-pixbuf-thumbnailer") >= PHOTOS as u64
        });
        let gets: Vec<_> = server
            .requests()
            .into_iter()
            .filter(|(method, _, _)| method == "GET")
            .collect();
        assert!(gets.is_empty(), "browsing downloaded: {gets:?}");
        all_online_only(&m);
        assert_eq!(m.status_json()["hydrated_files"], 0);
        let r = refused(&m);
        let by = &r["by_program"];
        // Both file managers' thumbnailers did try (else this test proves nothing).
        assert!(
            by["tumblerd"].as_u64().unwrap_or(0) > 0,
            "tumbler never asked: {r}"
        );
        assert!(
            by["gdk-pixbuf-thumbnailer"].as_u64().unwrap_or(0) > 0,
            "Nautilus's thumbnailer never asked: {r}"
        );
        let human = m.edrive_ok(&["status"]);
        assert!(
            human.contains(&format!("refused {} download(s)", r["total"])),
            "{human}"
        );

        // A person opens one photo: downloaded, and the failure GNOME's thumbnail factory
        // recorded for it is cleared once it is local.
        let photo = media.join("photo-07.jpg");
        let (_, failed) = thumbs_of(&thumbs, &photo);
        assert!(
            failed,
            "Nautilus recorded no failed thumbnail for the photo"
        );
        let content = std::fs::read(&photo).expect("read the photo");
        assert_eq!(
            content,
            std::fs::read(root.path().join("media/photo-07.jpg")).expect("server copy")
        );
        assert!(
            wait_until(Duration::from_secs(15), || !thumbs_of(&thumbs, &photo).1),
            "the failed thumbnail stays recorded"
        );
        assert_eq!(xattr(&photo, "user.edrive.state"), "hydrated");

        // The next view of the folder shows its thumbnail, in both file managers; the
        // other files stay online-only.
        std::fs::remove_dir_all(thumbs.join("normal")).ok();
        std::fs::remove_dir_all(thumbs.join("large")).ok();
        d.spawn(
            "nautilus",
            &["--new-window", media.to_str().expect("UTF-8")],
        );
        if let Some(w) = d.window("nautilus", Duration::from_secs(40)) {
            d.run("xdotool", &["windowsize", &w, "1260", "1000"]);
        }
        let made = wait_until(Duration::from_secs(60), || thumbs_of(&thumbs, &photo).0);
        std::thread::sleep(Duration::from_secs(2));
        d.screenshot("3-nautilus-after-open");
        assert!(
            made,
            "Nautilus made no thumbnail of the photo once it was local"
        );
        d.run("nautilus", &["--quit"]);
        d.stop_apps();
        std::fs::remove_dir_all(thumbs.join("normal")).ok();
        std::fs::remove_dir_all(thumbs.join("large")).ok();
        browse_thunar(&mut d, &media, "4-thunar-after-open", || {
            thumbs_of(&thumbs, &photo).0
        });
        assert!(
            thumbs_of(&thumbs, &photo).0,
            "tumbler made no thumbnail of the photo once it was local"
        );
        let gets: Vec<_> = server
            .requests()
            .into_iter()
            .filter(|(method, path, _)| method == "GET" && !path.ends_with("photo-07.jpg"))
            .collect();
        assert!(gets.is_empty(), "other files were downloaded: {gets:?}");
    }
    m.unmount();
}

/// The same browsing as a normal user (no root, no passthrough): the user mounts in a
/// private mount namespace with a 0666 copy of `/dev/fuse` (see tests/unprivileged.rs),
/// and the whole desktop session (bus, Thunar, tumbler, Nautilus) runs as that user in
/// that namespace.
#[test]
fn a_normal_user_browses_without_downloading() {
    require_tools();
    let user = TestUser::create();
    let tmp = tempdir();
    make_media(&tmp.path().join("share/media"));
    let mut server = EmbeddedServer::start(&tmp.path().join("share"), None);
    let edrive = edrive_for_others(tmp.path());
    let (home, userdir, mnt, cache_home) = (
        tmp.path().join("home"),
        tmp.path().join("tmp"),
        tmp.path().join("mnt"),
        tmp.path().join("xdg-cache"),
    );
    for d in [&home, &userdir, &mnt, &cache_home] {
        std::fs::create_dir(d).expect("mkdir");
        std::os::unix::fs::chown(d, Some(user.uid), Some(user.gid)).expect("chown");
    }
    let env = vec![
        ("HOME", home.display().to_string()),
        ("TMPDIR", userdir.display().to_string()),
        ("XDG_CACHE_HOME", cache_home.display().to_string()),
        (
            "PATH",
            "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".to_string(),
        ),
    ];
    let ns = Namespace::new(0o666);
    let mut m = UserMount {
        ns: &ns,
        user: &user,
        env,
        edrive,
        mountpoint: mnt.clone(),
        pid: None,
    };
    let mp = mnt.display().to_string();
    let out = m.edrive(&["mount", &server.url(), &mp]);
    assert!(out.status.success(), "mount as {} failed", user.name);
    let status = |m: &UserMount| -> serde_json::Value {
        let out = m.edrive(&["status", &mp, "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    m.pid = status(&m)["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok());
    server.reset_requests();
    let media = mnt.join("media");
    {
        let mut d = Desktop::start_as(
            "desktop-user",
            &cache_home,
            ns.wrapper(&user),
            Some((user.uid, user.gid)),
        );
        let asked = |program: &str| {
            status(&m)["background_reads_refused"]["by_program"][program]
                .as_u64()
                .unwrap_or(0)
        };
        browse_thunar(&mut d, &media, "1-thunar-browsed", || asked("tumblerd") > 0);
        browse_nautilus(&mut d, &media, "2-nautilus-browsed", || {
            asked("gdk-pixbuf-thumbnailer") >= PHOTOS as u64
        });
        let gets: Vec<_> = server
            .requests()
            .into_iter()
            .filter(|(method, _, _)| method == "GET")
            .collect();
        assert!(gets.is_empty(), "browsing downloaded: {gets:?}");
        let s = status(&m);
        assert_eq!(s["hydrated_files"], 0, "{s}");
        assert!(asked("tumblerd") > 0, "tumbler never asked: {s}");
        assert!(
            asked("gdk-pixbuf-thumbnailer") > 0,
            "Nautilus's thumbnailer never asked: {s}"
        );
    }
}
