//! `mount.edrive`: the helper mount(8) runs for an fstab line of type `edrive`
//! (`URL /mnt/drive edrive user=alice,credentials=/etc/edrive/alice,cache_size=20G,_netdev,nofail 0 0`).
//! The same binary, called by that name (a link): `mount.edrive SPEC DIR [-sfnvrw] [-o
//! OPTIONS] [-t TYPE]`.
//!
//! Each `-o` option `key=value` is the mount option `--key value` (`_` for `-`), each
//! plain `key` the flag `--key`; `credentials=FILE` is `--password-file FILE`; `ro` is
//! `--read-only`. What mount(8), systemd and other tools read themselves (`_netdev`,
//! `nofail`, `noauto`, `x-systemd.*`, …) is ignored; anything else is an error.

use std::ffi::OsString;

use anyhow::{anyhow, bail};
use clap::Parser;

use crate::cli::{Cli, Command};

/// Options for mount(8), systemd, the kernel defaults or other tools: not edrive's.
const IGNORED: &[&str] = &[
    "_netdev",
    "nofail",
    "noauto",
    "auto",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "defaults",
    "rw",
    "exec",
    "noexec",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "atime",
    "noatime",
    "relatime",
    "strictatime",
    "nodiratime",
    "async",
    "sync",
    "loud",
    "silent",
];

/// Option prefixes ignored the same way.
const IGNORED_PREFIXES: &[&str] = &["x-", "comment=", "helper="];

/// Options that are not kept as given.
fn renamed(key: &str) -> Option<&'static str> {
    match key {
        "credentials" | "password_file" => Some("password-file"),
        "ro" | "read_only" => Some("read-only"),
        _ => None,
    }
}

/// Whether the program was called as the mount helper.
pub fn called_as_helper() -> bool {
    std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .is_some_and(|n| n == "mount.edrive" || n.starts_with("mount.fuse.edrive"))
}

/// The `edrive mount` command line of a helper call (`args` without the program name);
/// `None` for `-f` (fake: do nothing).
pub fn to_mount_argv(args: &[OsString]) -> anyhow::Result<Option<Vec<OsString>>> {
    let mut positional = Vec::new();
    let mut options: Vec<String> = Vec::new();
    let mut fake = false;
    let mut sloppy = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        match s.as_ref() {
            "-o" => {
                let o = it.next().ok_or_else(|| anyhow!("-o needs options"))?;
                options.extend(split_options(&o.to_string_lossy()));
            }
            "-t" | "-N" => {
                it.next();
            }
            "-f" => fake = true,
            "-s" => sloppy = true,
            "-r" => options.push("ro".into()),
            "-n" | "-v" | "-w" | "-i" => {}
            _ if s.starts_with("-o") => options.extend(split_options(&s[2..])),
            _ if s.starts_with('-') && s.len() > 1 => bail!("unknown argument '{s}'"),
            _ => positional.push(a.clone()),
        }
    }
    let [spec, dir] = positional.as_slice() else {
        bail!("usage: mount.edrive URL MOUNTPOINT [-o OPTIONS]");
    };
    let known: Vec<String> = mount_flags();
    let mut argv: Vec<OsString> = vec!["edrive".into(), "mount".into(), spec.clone(), dir.clone()];
    for o in options {
        let (key, value) = match o.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (o.clone(), None),
        };
        if (value.is_none() && IGNORED.contains(&key.as_str()))
            || IGNORED_PREFIXES.iter().any(|p| o.starts_with(p))
        {
            continue;
        }
        let flag = renamed(&key)
            .map(str::to_string)
            .unwrap_or_else(|| key.replace('_', "-"));
        if !known.contains(&flag) {
            if sloppy {
                continue;
            }
            bail!("unknown option '{o}' (see man edrive-mount; x-* options are ignored)");
        }
        match value {
            Some(v) => argv.push(format!("--{flag}={v}").into()),
            None => argv.push(format!("--{flag}").into()),
        }
    }
    Ok((!fake).then_some(argv))
}

/// Splits `a,b=c,d` (a value may not hold a comma).
fn split_options(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|o| !o.is_empty())
        .map(str::to_string)
        .collect()
}

/// The long options of `edrive mount` a fstab line may give.
fn mount_flags() -> Vec<String> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let Some(mount) = cmd.find_subcommand("mount") else {
        return Vec::new();
    };
    mount
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| a.get_long().map(str::to_string))
        .filter(|l| !matches!(l.as_str(), "foreground" | "all" | "help"))
        .collect()
}

/// Runs the helper: mounts in the background and returns once the mount is usable, as
/// mount(8) expects. Exit status 32 (mount failure) on an error.
pub fn run() -> std::process::ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    // Run by mount(8), as root, at boot: no desktop keyring; the secret comes from
    // `credentials=FILE`.
    std::env::set_var("EDRIVE_KEYRING", "off");
    // The same cache folder by hand and at boot (when HOME may be unset and /tmp a
    // tmpfs): /var/cache/edrive for root, unless cache_dir= says otherwise.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 && std::env::var_os("XDG_CACHE_HOME").is_none() {
        std::env::set_var("XDG_CACHE_HOME", "/var/cache");
    }
    let result = to_mount_argv(&args).and_then(|argv| {
        let Some(argv) = argv else {
            return Ok(());
        };
        let cli = Cli::try_parse_from(argv).map_err(|e| {
            let text = e.render().to_string();
            anyhow!(
                "{}",
                text.lines()
                    .next()
                    .unwrap_or("bad options")
                    .trim_start_matches("error: ")
            )
        })?;
        match cli.command {
            Command::Mount(m) => crate::daemon::run(m),
            _ => bail!("not a mount"),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mount.edrive: {e:#}");
            std::process::ExitCode::from(32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &[&str]) -> anyhow::Result<Option<Vec<String>>> {
        let a: Vec<OsString> = line.iter().map(OsString::from).collect();
        to_mount_argv(&a).map(|o| {
            o.map(|v| {
                v.into_iter()
                    .map(|s| s.to_string_lossy().into_owned())
                    .collect()
            })
        })
    }

    #[test]
    fn fstab_options_map_to_mount_options() {
        let got = argv(&[
            "http://h/dav/",
            "/mnt/x",
            "-o",
            "rw,user=alice,credentials=/etc/edrive/alice,cache_size=20G,_netdev,nofail,x-systemd.automount,ro,uid=1000,umask=077,allow_other",
            "-n",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            got,
            [
                "edrive",
                "mount",
                "http://h/dav/",
                "/mnt/x",
                "--user=alice",
                "--password-file=/etc/edrive/alice",
                "--cache-size=20G",
                "--read-only",
                "--uid=1000",
                "--umask=077",
                "--allow-other",
            ]
        );
        let e = argv(&["u", "/m", "-o", "cache_sise=1G"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown option 'cache_sise=1G'"), "{e}");
        assert!(argv(&["u", "/m", "-s", "-o", "bogus"]).unwrap().is_some());
        assert!(argv(&["u", "/m", "-f"]).unwrap().is_none());
        assert!(argv(&["u"]).is_err());
        assert!(argv(&["u", "/m", "-o", "foreground"]).is_err());
    }
}
