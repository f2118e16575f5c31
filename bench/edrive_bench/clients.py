"""The three clients: edrive, rclone mount, davfs2. Each mount gets a fresh cache dir, so a
fresh mount is a cold client."""

from .common import *  # noqa: F401,F403 (the helpers and standard modules)


class Client:
    name = "?"

    def __init__(self, bench):
        self.b = bench
        self.mnt = os.path.join(bench.work, "mnt", self.name)
        os.makedirs(self.mnt, exist_ok=True)
        self.seq = 0
        self.cache = None
        self.broken = None  # reason, when it could not be mounted this phase

    def fresh_cache(self):
        self.seq += 1
        self.cache = os.path.join(self.b.work, "cache", f"{self.name}-{self.seq}")
        os.makedirs(self.cache)
        os.chmod(self.cache, 0o700)
        return self.cache

    def drop_cache_dir(self):
        if self.cache and os.path.isdir(self.cache):
            discard(self.cache, self.b.trash)

    def path(self, rel):
        return os.path.join(self.mnt, rel)

    def mount(self):
        raise NotImplementedError

    def unmount(self):
        raise NotImplementedError

    def pid(self):
        raise NotImplementedError

    def wait_uploaded(self, check, timeout):
        """Waits until check() (the server's data dir has it all) holds."""
        wait_for(check, timeout, step=0.1, what=f"{self.name} upload")

    def force_unmount(self):
        if is_mounted(self.mnt):
            run(["umount", "-l", self.mnt], check=False, timeout=30)
        if is_mounted(self.mnt):
            run(["fusermount3", "-u", "-z", self.mnt], check=False, timeout=30)


class Edrive(Client):
    name = "edrive"
    _pid = None

    def mount(self):
        self.fresh_cache()
        run([self.b.edrive, "mount", self.b.mount_url, self.mnt, "--cache-dir", self.cache,
             "--cache-size", "8G"], timeout=60)
        self._pid = None

    def pid(self):
        if not self._pid:
            out = run([self.b.edrive, "status", self.mnt, "--json"], timeout=30).stdout
            self._pid = int(json.loads(out)["pid"])
        return self._pid

    def wait_uploaded(self, check, timeout):
        run([self.b.edrive, "sync", self.mnt], timeout=timeout)
        # `edrive sync` returns once the server has it; confirm on the server's disk.
        wait_for(check, 10, step=0.05, what="edrive upload on the server after sync")

    def unmount(self):
        pid = None
        try:
            pid = self.pid()
        except Exception:  # noqa: BLE001
            pass
        try:
            if is_mounted(self.mnt):
                run([self.b.edrive, "unmount", self.mnt], timeout=300)
        except (Timeout, Failed) as e:
            log(f"edrive unmount: {e}; forcing")
            run([self.b.edrive, "unmount", self.mnt, "--force"], timeout=60, check=False)
            self.force_unmount()
        if pid:
            kill_wait(pid)
        if self.cache and os.path.exists(os.path.join(self.cache, "edrive.log")):
            shutil.copy(os.path.join(self.cache, "edrive.log"),
                        os.path.join(self.b.work, "logs", f"edrive-{self.seq}.log"))
        self.drop_cache_dir()

    def version(self):
        v = sh(f"{self.b.edrive} --version")
        rev = sh(f"git -C {REPO} rev-parse --short HEAD")
        dirty = sh(f"git -C {REPO} status --porcelain -- . ':!bench' | wc -l")
        return f"{v} (git {rev}{', +' + dirty + ' uncommitted files' if dirty != '0' else ''}, release build)"


def kill_wait(pid, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Rclone(Client):
    name = "rclone"
    proc = None

    def mount(self):
        self.fresh_cache()
        logf = open(os.path.join(self.b.work, "logs", f"rclone-{self.seq}.log"), "w")
        conf = os.path.join(self.b.work, "rclone.conf")
        open(conf, "a").close()
        self.proc = subprocess.Popen(
            ["rclone", "mount", ":webdav:", self.mnt, "--webdav-url", self.b.mount_url,
             "--webdav-vendor", "other", "--vfs-cache-mode", "full", "--cache-dir", self.cache,
             "--vfs-write-back", "0s", "--config", conf, "--log-level", "NOTICE"],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True)
        self.b.children.append(self.proc)
        try:
            wait_for(lambda: is_mounted(self.mnt) or self.proc.poll() is not None, 30,
                     what="rclone mount")
        except Timeout:
            self.unmount()
            raise
        if self.proc.poll() is not None:
            raise Failed(f"rclone mount exited {self.proc.returncode}: "
                         + sh(f"tail -3 {logf.name}"))

    def pid(self):
        return self.proc.pid if self.proc else None

    def unmount(self):
        if is_mounted(self.mnt):
            run(["fusermount3", "-u", self.mnt], check=False, timeout=60)
        if self.proc:
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.force_unmount()
        self.drop_cache_dir()

    def version(self):
        return sh("rclone version | head -1")


class Davfs2(Client):
    name = "davfs2"
    _pid = None

    def mount(self):
        self.fresh_cache()
        # A daemon killed after a timeout leaves its PID file, and mount.davfs then refuses
        # the mount point.
        pid_file = "/var/run/mount.davfs/" + self.mnt.strip("/").replace("/", "-") + ".pid"
        if os.path.exists(pid_file) and not is_mounted(self.mnt):
            os.remove(pid_file)
        # mount.davfs runs as user davfs2 and insists on root:davfs2 0775 for a root mount.
        shutil.chown(self.cache, "root", "davfs2")
        os.chmod(self.cache, 0o775)
        conf = os.path.join(self.b.work, f"davfs2-{self.seq}.conf")
        secrets = os.path.join(self.b.work, "davfs2.secrets")
        with open(secrets, "w") as f:
            # The server needs no credentials; an entry keeps mount.davfs from asking.
            f.write(f'{self.mnt} "bench" "bench"\n')
        os.chmod(secrets, 0o600)
        with open(conf, "w") as f:
            f.write(f"buf_size 64\n"          # needed on kernels >= 6.x (and faster)
                    f"cache_dir {self.cache}\n"
                    f"cache_size 8192\n"      # MiB: room for the 1 GiB file (default 50)
                    f"secrets {secrets}\n"
                    f"delay_upload 0\n"       # upload on close, like `edrive sync`
                    f"use_locks 0\n"          # no LOCK/UNLOCK round trips
                    f"ask_auth 0\n")
        os.chmod(conf, 0o600)
        run(["mount", "-t", "davfs", self.b.mount_url, self.mnt, "-o", f"conf={conf}"],
            timeout=60)
        self._pid = None

    def pid(self):
        if not self._pid:
            for d in os.listdir("/proc"):
                if not d.isdigit():
                    continue
                try:
                    with open(f"/proc/{d}/cmdline", "rb") as f:
                        argv = f.read().split(b"\0")
                except OSError:
                    continue
                if argv and argv[0].endswith(b"mount.davfs") and self.mnt.encode() in argv:
                    self._pid = int(d)
                    break
        return self._pid

    def unmount(self):
        pid = self.pid()
        if is_mounted(self.mnt):
            try:
                run(["umount", self.mnt], timeout=300)
            except (Timeout, Failed) as e:
                log(f"davfs2 umount: {e}; forcing")
                self.force_unmount()
        if pid:
            kill_wait(pid, 60)
        self.drop_cache_dir()

    def version(self):
        return sh("mount.davfs -V 2>&1 | head -1")
