//! The Debian package (issue 24): `cargo deb` builds it (from the test build's binary, the
//! dev profile, to save CI time); unpacked into a scratch root with `dpkg-deb -x` it holds
//! the binary, `mount.edrive`, the man pages, bash/zsh/fish completions, the systemd user
//! unit, README and copyright, depends on fuse3; lintian finds no error; `man -l` renders
//! the page; the unpacked binary runs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn require(program: &str, how: &str) {
    assert!(
        find_in_path(program).is_some(),
        "{program} is needed ({how}; scripts/test installs it)"
    );
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn debian_package_builds_installs_and_passes_lintian() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let has_cargo_deb = Command::new(&cargo)
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_cargo_deb,
        "cargo-deb is needed (cargo install cargo-deb --locked; scripts/test installs it)"
    );
    require("dpkg-deb", "apt-get install dpkg");
    require("lintian", "apt-get install lintian");
    require("man", "apt-get install man-db");

    // The test build's binary and, beside it, what generate-assets makes: the paths
    // Cargo.toml's [package.metadata.deb] names through target/release/.
    let bin = PathBuf::from(edrive_bin());
    let assets = bin.parent().expect("binary folder").join("deb-assets");
    run_ok(
        Command::new(&bin)
            .arg("generate-assets")
            .arg(&assets)
            .env_remove("EDRIVE_LOG"),
    );
    // Debian ships man pages gzipped (scripts/build-deb does the same).
    let pages: Vec<PathBuf> = std::fs::read_dir(&assets)
        .expect("deb-assets")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "1"))
        .collect();
    assert!(pages.len() > 10, "too few man pages: {pages:?}");
    run_ok(Command::new("gzip").arg("-9nf").args(&pages));
    let scratch = tempdir();
    let deb = scratch.path().join("edrive.deb");
    run_ok(
        Command::new(&cargo)
            .args(["deb", "--no-build", "--fast", "--profile", "dev"])
            .arg("--manifest-path")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .arg("--output")
            .arg(&deb),
    );

    let info = run_ok(Command::new("dpkg-deb").arg("--field").arg(&deb));
    assert!(info.contains("Package: edrive"), "{info}");
    let depends = info
        .lines()
        .find(|l| l.starts_with("Depends:"))
        .unwrap_or_default();
    assert!(depends.contains("fuse3"), "{info}");

    let root = scratch.path().join("root");
    run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let has = |rel: &str| root.join(rel).symlink_metadata().is_ok();
    for rel in [
        "usr/bin/edrive",
        "usr/share/man/man1/edrive.1.gz",
        "usr/share/man/man1/edrive-mount.1.gz",
        "usr/share/man/man1/edrive-add.1.gz",
        "usr/share/bash-completion/completions/edrive",
        "usr/share/zsh/vendor-completions/_edrive",
        "usr/share/fish/vendor_completions.d/edrive.fish",
        "usr/lib/systemd/user/edrive@.service",
        "usr/share/doc/edrive/copyright",
    ] {
        assert!(has(rel), "the package lacks {rel}");
    }
    assert!(
        has("usr/share/doc/edrive/README.md") || has("usr/share/doc/edrive/README.md.gz"),
        "the package lacks the README"
    );
    let helper = root.join("usr/sbin/mount.edrive");
    assert_eq!(
        std::fs::read_link(&helper).ok(),
        Some(PathBuf::from("../bin/edrive")),
        "mount.edrive is not a link to the binary"
    );
    let unit = std::fs::read_to_string(root.join("usr/lib/systemd/user/edrive@.service"))
        .unwrap_or_default();
    assert!(
        unit.contains("ExecStart=/usr/bin/edrive mount %i --foreground")
            && unit.contains("Type=notify"),
        "{unit}"
    );
    let bash = std::fs::read_to_string(root.join("usr/share/bash-completion/completions/edrive"))
        .unwrap_or_default();
    assert!(
        bash.contains("edrive") && bash.contains("complete"),
        "bash completion"
    );

    let version = run_ok(Command::new(root.join("usr/bin/edrive")).arg("--version"));
    assert!(version.starts_with("edrive "), "{version}");
    let page = run_ok(
        Command::new("man")
            .arg("-l")
            .arg(root.join("usr/share/man/man1/edrive-mount.1.gz"))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80"),
    );
    assert!(
        page.contains("edrive-mount") && page.contains("--read-only"),
        "{page}"
    );

    // lintian exits non-zero on any error; its tags are shown when it fails.
    let out = Command::new("lintian")
        .args(["--tag-display-limit", "0", "--fail-on", "error"])
        .arg(&deb)
        .output()
        .expect("cannot run lintian");
    let tags = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !tags.lines().any(|l| l.starts_with("E:")),
        "lintian found errors:\n{tags}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
