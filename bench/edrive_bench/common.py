"""Helpers every part of the bench uses: running commands, waiting, timing, peak RSS."""

import argparse
import datetime
import io
import json
import os
import platform
import random
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
APACHE_BIN = "/usr/sbin/apache2"
MODULE_DIR = "/usr/lib/apache2/modules"
PACKAGES = {  # binary -> Debian package
    APACHE_BIN: "apache2",
    "rclone": "rclone",
    "mount.davfs": "davfs2",
    "fio": "fio",
    "curl": "curl",
    "fusermount3": "fuse3",
}
CLIENTS = ["edrive", "rclone", "davfs2"]
MIB = 1 << 20
# Row 1c: the server sends every response at this many MiB/s at most, as servers and links
# that cap each connection do, and the file it reads. (Apache's mod_ratelimit does not
# slow ranged replies, so this row uses `edrive serve --rate-limit` on the same data.)
CAP_MIB = 32
CAPPED_MIB = 256

T0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", flush=True)


class Timeout(Exception):
    pass


class Failed(Exception):
    pass


# Called when an operation times out, before its process is killed: a process waiting on
# a FUSE request cannot die until the request ends, so the client measured (its daemon)
# is killed first. Set by Bench.client_measure around each client operation.
ON_TIMEOUT = []


def run(cmd, timeout=120, check=True, capture=True, **kw):
    """Runs cmd (list); raises Timeout / Failed. Returns CompletedProcess."""
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                         stderr=subprocess.PIPE if capture else subprocess.DEVNULL,
                         text=True, **kw)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for f in ON_TIMEOUT:
            f()
        p.kill()
        p.communicate()
        raise Timeout(f"timeout after {timeout}s: {' '.join(cmd)[:120]}")
    p = subprocess.CompletedProcess(cmd, p.returncode, out, err)
    if check and p.returncode != 0:
        err = (p.stderr or "").strip().splitlines()[-3:] if capture else []
        raise Failed(f"{' '.join(cmd)[:120]} exited {p.returncode}: {' | '.join(err)}")
    return p


def settle():
    """Writes every dirty page to disk (sync): what an earlier phase (or the data
    generation) wrote must not throttle the cache writes of the clients measured next."""
    os.sync()


def timed(cmd, timeout, **kw):
    t = time.perf_counter()
    run(cmd, timeout=timeout, **kw)
    return time.perf_counter() - t


def sh(cmd, timeout=30):
    try:
        return subprocess.run(cmd, shell=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True).stdout.strip()
    except Exception as e:  # noqa: BLE001 - only used for informational output
        return f"({e})"


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def discard(path, trash):
    """Removes `path` without freeing many inodes now: files of 1 MiB and more are deleted,
    the rest is moved into `trash` (deleted at the end of the run). This VM's ext4 has no
    journal, and then the inode allocator skips every inode freed in the last minutes
    (`recently_deleted`): deleting one repetition's 40,000 small files made every
    client's untar in the next repetition slower than in the one before."""
    if not os.path.lexists(path):
        return
    if os.path.isdir(path) and not os.path.islink(path):
        for root, _, files in os.walk(path):
            for f in files:
                fp = os.path.join(root, f)
                try:
                    if os.lstat(fp).st_size >= MIB:
                        os.remove(fp)
                except OSError:
                    pass
    elif os.lstat(path).st_size >= MIB:
        os.remove(path)
        return
    os.makedirs(trash, exist_ok=True)
    os.rename(path, os.path.join(trash, f"{len(os.listdir(trash))}-{os.path.basename(path)}"))


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == path:
                return True
    return False


def wait_for(pred, timeout, step=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return
        if time.monotonic() >= deadline:
            raise Timeout(f"timeout after {timeout:.0f}s waiting for {what}")
        time.sleep(step)


# ---------------------------------------------------------------------------------------------
# Peak RSS of a process: reset VmHWM (clear_refs 5), sample VmRSS, read VmHWM at the end.

def status_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class RssProbe:
    def __init__(self, pid):
        self.pid = pid
        self.peak_kb = 0
        self._stop = threading.Event()
        if pid:
            try:
                with open(f"/proc/{pid}/clear_refs", "w") as f:
                    f.write("5\n")  # resets VmHWM to the current RSS
            except OSError:
                pass
            self._t = threading.Thread(target=self._loop, daemon=True)
            self._t.start()

    def _loop(self):
        while not self._stop.is_set():
            v = status_kb(self.pid, "VmRSS")
            if v:
                self.peak_kb = max(self.peak_kb, v)
            self._stop.wait(0.02)

    def stop(self):
        """Peak RSS in MiB (max of the sampled VmRSS and the kernel's VmHWM)."""
        if not self.pid:
            return None
        self._stop.set()
        self._t.join()
        hwm = status_kb(self.pid, "VmHWM") or 0
        return max(self.peak_kb, hwm) / 1024.0
