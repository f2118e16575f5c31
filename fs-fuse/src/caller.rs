//! Which program sends a request: the caller's executable, first arguments and parents,
//! read from /proc, classified by the mount's [`ReaderPolicy`].
//!
//! The kernel gives each request the calling thread's id. Thumbnailers often run as
//! helpers (GNOME runs them through `bwrap`; indexers run extractors), so the parents
//! count too. Verdicts are cached per thread and its start time (ids are reused).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use edrive_fs_core::readers::{Opener, ReaderPolicy};

/// How many parents are looked at above the caller.
const MAX_PARENTS: usize = 6;
/// Most verdicts kept.
const MAX_CACHED: usize = 4096;

/// The mount's policy and its cache of verdicts.
pub(crate) struct Callers {
    policy: Arc<ReaderPolicy>,
    verdicts: Mutex<HashMap<u32, (u64, Opener)>>,
}

impl Callers {
    pub(crate) fn new(policy: Arc<ReaderPolicy>) -> Callers {
        Callers {
            policy,
            verdicts: Mutex::new(HashMap::new()),
        }
    }

    /// Who thread `pid` is: a background reader if it or a parent matches the policy.
    /// A caller that cannot be looked at (gone, or in another pid namespace) is a person.
    pub(crate) fn opener(&self, pid: u32) -> Opener {
        if self.policy.is_empty() || pid == 0 {
            return Opener::Person;
        }
        let Some(me) = Proc::read(pid) else {
            return Opener::Person;
        };
        let mut cache = self.verdicts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((start, verdict)) = cache.get(&pid) {
            if *start == me.start {
                return verdict.clone();
            }
        }
        drop(cache);
        let verdict = self.classify(me);
        cache = self.verdicts.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(pid, (verdict.1, verdict.0.clone()));
        verdict.0
    }

    /// The verdict for `me` and its start time.
    fn classify(&self, me: Proc) -> (Opener, u64) {
        let start = me.start;
        let mut p = Some(me);
        for _ in 0..=MAX_PARENTS {
            let Some(cur) = p else { break };
            if let Some(name) = self.policy.matching(cur.names.iter().map(String::as_str)) {
                return (Opener::Background(name.to_string()), start);
            }
            if cur.ppid <= 1 {
                break;
            }
            p = Proc::read(cur.ppid);
        }
        (Opener::Person, start)
    }
}

/// What /proc says of one task.
struct Proc {
    /// Base names: of the executable, of argv[0] and argv[1] (an interpreter's script, a
    /// worker's plugin), else the task's name.
    names: Vec<String>,
    ppid: u32,
    /// Start time in clock ticks after boot (tells a reused id apart).
    start: u64,
}

impl Proc {
    fn read(pid: u32) -> Option<Proc> {
        let dir = Path::new("/proc").join(pid.to_string());
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        let (comm, ppid, start) = parse_stat(&stat)?;
        let mut names = Vec::with_capacity(3);
        if let Ok(exe) = std::fs::read_link(dir.join("exe")) {
            let exe = exe.to_string_lossy();
            names.push(base_name(exe.trim_end_matches(" (deleted)")).to_string());
        }
        if let Ok(cmdline) = std::fs::read(dir.join("cmdline")) {
            for arg in cmdline.split(|b| *b == 0).take(2) {
                let arg = String::from_utf8_lossy(arg);
                let name = base_name(&arg);
                if !name.is_empty() && !names.iter().any(|n| n == name) {
                    names.push(name.to_string());
                }
            }
        }
        if names.is_empty() {
            names.push(comm);
        }
        Some(Proc { names, ppid, start })
    }
}

/// `comm`, the parent's id and the start time from a `/proc/PID/stat` line. The name is
/// in parentheses and may hold anything, spaces and parentheses included.
fn parse_stat(stat: &str) -> Option<(String, u32, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    // After the name: state (field 3), ppid (4), …, starttime (22).
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let ppid = rest.get(1)?.parse().ok()?;
    let start = rest.get(19)?.parse().ok()?;
    Some((comm, ppid, start))
}

fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines() {
        let line = "4242 (a (b) c) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1000 100";
        assert_eq!(parse_stat(line), Some(("a (b) c".into(), 17, 987654)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(base_name("/usr/bin/tumblerd"), "tumblerd");
        assert_eq!(base_name("cat"), "cat");
    }

    #[test]
    fn this_process_is_a_person_unless_listed() {
        let pid = std::process::id();
        let people = Callers::new(Arc::new(ReaderPolicy::default()));
        assert_eq!(people.opener(pid), Opener::Person);
        // The test binary's own name, refused: this thread is a background reader.
        let exe = std::env::current_exe().expect("test binary path");
        let name = exe.file_name().expect("name").to_string_lossy().to_string();
        let policy = ReaderPolicy::new(std::slice::from_ref(&name), &[]);
        let me = Callers::new(Arc::new(policy));
        assert_eq!(me.opener(pid), Opener::Background(name));
        // Its children are too: `sh` started by it is judged by its parent.
        let child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep");
        assert!(matches!(me.opener(child.id()), Opener::Background(_)));
        assert_eq!(people.opener(child.id()), Opener::Person);
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
    }
}
