"""The run: data, server, mounts, and the phases (read, capped, meta, write) that fill the
results table."""

from .common import *  # noqa: F401,F403 (the helpers and standard modules)
from .apache import Apache, free_port  # noqa: F401
from .clients import Davfs2, Edrive, Rclone, kill_wait  # noqa: F401
from .report import HUGE_LS_RUNS, write_report


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = None
        self.apache = None
        self.clients = []
        self.children = []
        self.results = {}   # row key -> subject -> list of values or error strings
        self.notes = []
        self.started = datetime.datetime.now(datetime.timezone.utc)
        self.apache_version = ""
        self.reps_done = 0
        self.timed_out = set()
        self.rss = {"rss_read": {}, "rss_write": {}, "rss_ls": {}, "rss_ls_huge": {}}
        self.requests = {}

    # -- bookkeeping --------------------------------------------------------------------------
    def record(self, row, subject, value):
        self.results.setdefault(row, {}).setdefault(subject, []).append(value)
        v = f"{value:.3f}" if isinstance(value, float) else value
        log(f"  {row:<14} {subject:<8} {v}")

    def access_log_size(self):
        try:
            return os.path.getsize(os.path.join(self.apache.dir, "logs", "access.log"))
        except (OSError, AttributeError):
            return 0

    def note_requests(self, row, subject, mark):
        """In the first repetition, counts the HTTP requests each subject made per row."""
        if self.reps_done > 0 or self.apache is None:
            return
        time.sleep(0.2)  # Apache logs after the response went out
        counts = {}
        with open(os.path.join(self.apache.dir, "logs", "access.log")) as f:
            f.seek(mark)
            for line in f:
                parts = line.split()
                if len(parts) >= 2:
                    counts[parts[1]] = counts.get(parts[1], 0) + 1
        self.requests[(row, subject)] = counts

    def measure(self, row, subject, fn):
        mark = self.access_log_size()
        try:
            self.record(row, subject, fn())
        except Timeout as e:
            self.record(row, subject, "timeout")
            self.notes.append(f"{row}/{subject}: {e}")
            return False
        except (Failed, OSError, ValueError, KeyError) as e:
            self.record(row, subject, "error")
            self.notes.append(f"{row}/{subject}: {e}")
            return False
        finally:
            self.note_requests(row, subject, mark)
        return True

    # -- setup --------------------------------------------------------------------------------
    def install(self):
        missing = sorted({pkg for b, pkg in PACKAGES.items() if not shutil.which(b) and not os.path.exists(b)})
        if not missing:
            log("all tools present")
            return
        log(f"installing {' '.join(missing)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "update"], timeout=600, env=env)
        run(["apt-get", "install", "-y", "--no-install-recommends", *missing], timeout=900, env=env)

    def build(self):
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
        self.edrive = os.path.join(target, "release", "edrive")
        if self.args.no_build:
            if not os.path.exists(self.edrive):
                raise Failed(f"{self.edrive} missing (drop --no-build)")
            return
        log(f"cargo build --release (CARGO_TARGET_DIR={target})")
        run(["nice", "-n", "10", "cargo", "build", "--release", "--bin", "edrive"],
            cwd=REPO, timeout=3600)

    def make_data(self):
        a = self.args
        self.work = tempfile.mkdtemp(prefix="edrive-bench-", dir=a.workdir)
        os.chmod(self.work, 0o755)
        for d in ["data", "src", "logs", "cache", "mnt", "apache"]:
            os.makedirs(os.path.join(self.work, d))
        self.data = os.path.join(self.work, "data")
        self.trash = os.path.join(self.work, "trash")  # see discard()
        self.big = os.path.join(self.data, "big.bin")
        self.size = a.size_mib * MIB
        log(f"generating data in {self.work}: {a.size_mib} MiB random file, {a.files} small files")
        run(["sh", "-c", f"head -c {self.size} /dev/urandom > {self.big}"], timeout=600)
        self.mid = os.path.join(self.data, "mid.bin")
        run(["sh", "-c", f"head -c {CAPPED_MIB * MIB} /dev/urandom > {self.mid}"], timeout=600)
        self.src = os.path.join(self.work, "src", "up.bin")
        run(["sh", "-c", f"head -c {self.size} /dev/urandom > {self.src}"], timeout=600)
        small = os.path.join(self.data, "small")
        os.makedirs(small)
        rnd = random.Random(7)
        for i in range(a.files):
            with open(os.path.join(small, f"f{i:05d}.txt"), "wb") as f:
                f.write(rnd.randbytes(rnd.randint(100, 4096)))
        # The upload set: `files` files of exactly 4 KiB, as a tarball and as loose files (for curl).
        # A folder of `huge` empty files: memory must not grow with a folder's size.
        huge = os.path.join(self.data, "huge")
        os.makedirs(huge)
        for i in range(a.huge):
            os.close(os.open(os.path.join(huge, f"h{i:06d}.txt"), os.O_CREAT | os.O_WRONLY, 0o644))
        self.up_dir = os.path.join(self.work, "src", "small")
        os.makedirs(self.up_dir)
        self.tar = os.path.join(self.work, "src", "small.tar")
        with tarfile.open(self.tar, "w") as tar:
            for i in range(a.files):
                data = rnd.randbytes(4096)
                name = f"f{i:05d}.bin"
                with open(os.path.join(self.up_dir, name), "wb") as f:
                    f.write(data)
                ti = tarfile.TarInfo(name)
                ti.size = len(data)
                ti.mtime = int(time.time())
                ti.mode = 0o644
                tar.addfile(ti, io.BytesIO(data))

    def start_server(self):
        self.apache = Apache(os.path.join(self.work, "apache"), self.data)
        self.apache.start()
        self.mount_url = self.apache.url
        self.apache_version = self.apache.version()
        log(f"apache on {self.apache.url}")

    def cleanup(self):
        for c in self.clients:
            try:
                c.unmount()
            except Exception as e:  # noqa: BLE001
                log(f"cleanup {c.name}: {e}")
                c.force_unmount()
        for p in self.children:
            if p.poll() is None:
                p.kill()
        if self.apache:
            self.apache.stop()
        if self.work and not self.args.keep:
            for c in self.clients:
                if is_mounted(c.mnt):
                    log(f"{c.mnt} still mounted; leaving {self.work}")
                    return
            shutil.rmtree(self.work, ignore_errors=True)

    # -- phases -------------------------------------------------------------------------------
    def mount_all(self):
        for c in self.active:
            c.broken = None
            try:
                c.mount()
            except (Timeout, Failed) as e:
                c.broken = str(e)
                self.notes.append(f"{c.name}: mount failed: {e}")
                log(f"{c.name}: mount failed: {e}")
                try:
                    c.unmount()
                except Exception:  # noqa: BLE001
                    c.force_unmount()

    def unmount_all(self):
        for c in self.active:
            try:
                c.unmount()
            except Exception as e:  # noqa: BLE001
                self.notes.append(f"{c.name}: unmount: {e}")
                c.force_unmount()

    def order(self, subjects, rep):
        k = rep % len(subjects)
        return subjects[k:] + subjects[:k]

    def subjects(self, limit, rep):
        return self.order([limit] + [c for c in self.active], rep)

    def client_measure(self, row, c, fn):
        if c.broken:
            self.record(row, c.name, "error")
            return
        if (row, c.name) in self.timed_out:
            # Timed out in an earlier repetition: not retried (keeps the run in its budget).
            self.record(row, c.name, "timeout")
            return

        def stop_client():
            try:
                pid = c.pid()
            except Exception:  # noqa: BLE001 - nothing to kill then
                pid = None
            if pid:
                log(f"  {c.name}: operation timed out; killing its daemon ({pid}) to end it")
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        ON_TIMEOUT.append(stop_client)
        try:
            ok = self.measure(row, c.name, fn)
        finally:
            ON_TIMEOUT.remove(stop_client)
        if not ok:
            # A timeout may leave the mount wedged: take it out of this phase.
            c.broken = f"{row} failed"
            if self.results[row][c.name][-1] == "timeout":
                self.timed_out.add((row, c.name))

    def dd_read(self, path, timeout):
        t = timed(["dd", f"if={path}", "of=/dev/null", "bs=1M"], timeout)
        return self.size / MIB / t

    def phase_read(self, rep):
        a = self.args
        log(f"rep {rep + 1}: reads")
        settle()  # no earlier phase's dirty pages in this one's numbers
        run(["cat", self.big], timeout=120, capture=False)  # server's copy in the page cache
        self.mount_all()
        url = self.apache.url + "big.bin"
        # 1. cold sequential read (fresh client cache), curl straight from Apache as the limit;
        #    8a. peak RSS of the client during it.
        for s in self.subjects("curl", rep):
            if s == "curl":
                self.measure("cold_read", "limit", lambda: self.size / MIB / timed(
                    ["curl", "-sS", "-f", "-o", "/dev/null", url], a.timeout))
                # For reference: the same into a file on the clients' disk, as a client
                # that keeps what it reads must (deleted at once: no dirty pages left).
                copy = os.path.join(self.work, "curl-copy.bin")
                try:
                    self.measure("cold_store", "limit", lambda: self.size / MIB / timed(
                        ["curl", "-sS", "-f", "-o", copy, url], a.timeout))
                finally:
                    if os.path.exists(copy):
                        os.remove(copy)
                continue

            def cold(c=s):
                os.stat(c.path("big.bin"))  # listing of the root, untimed
                probe = RssProbe(c.pid())
                try:
                    return self.dd_read(c.path("big.bin"), a.timeout)
                finally:
                    self.rss["rss_read"].setdefault(c.name, []).append(probe.stop())
            self.client_measure("cold_read", s, cold)
        # 3. warm sequential read, page cache hot on both sides (the second read of the file).
        for s in self.subjects("native", rep):
            if s == "native":
                self.measure("warm_read", "limit", lambda: self.dd_read(self.big, a.timeout))
            else:
                self.client_measure("warm_read", s, lambda c=s: self.dd_read(c.path("big.bin"), a.timeout))
        # 4. warm 4 KiB random reads, fio psync, page cache not invalidated for either.
        for s in self.subjects("native", rep):
            if s == "native":
                self.measure("warm_rand", "limit", lambda: self.fio(self.big))
            else:
                self.client_measure("warm_rand", s, lambda c=s: self.fio(c.path("big.bin")))
        # 3b. warm read after drop_caches (from the client's on-disk cache; native from disk).
        for s in self.subjects("native", rep):
            drop_caches()
            if s == "native":
                self.measure("warm_read_dc", "limit", lambda: self.dd_read(self.big, a.timeout))
            else:
                self.client_measure("warm_read_dc", s, lambda c=s: self.dd_read(c.path("big.bin"), a.timeout))
        self.unmount_all()

    def start_capped_server(self):
        """`edrive serve` on the data dir, every GET body sent at CAP_MIB MiB/s at most."""
        port = free_port()
        logf = open(os.path.join(self.work, "logs", "capped-serve.log"), "a")
        proc = subprocess.Popen(
            [self.edrive, "serve", self.data, "--addr", f"127.0.0.1:{port}",
             "--rate-limit", f"{CAP_MIB}M"],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True)
        self.children.append(proc)

        def up():
            if proc.poll() is not None:
                raise Failed(f"edrive serve exited {proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(up, 20, what="edrive serve")
        return proc, f"http://127.0.0.1:{port}/"

    def phase_capped(self, rep):
        """1c. cold sequential read of a 256 MiB file from a server that sends each response
        at CAP_MIB MiB/s at most; limit: curl (one connection)."""
        a = self.args
        log(f"rep {rep + 1}: capped reads")
        settle()
        run(["cat", self.mid], timeout=120, capture=False)
        server, self.mount_url = self.start_capped_server()
        try:
            self.mount_all()
            url = self.mount_url + "mid.bin"
            size = CAPPED_MIB * MIB
            for s in self.subjects("curl", rep):
                if s == "curl":
                    self.measure("capped_read", "limit", lambda: size / MIB / timed(
                        ["curl", "-sS", "-f", "-o", "/dev/null", url], a.timeout))
                    continue

                def cold(c=s):
                    os.stat(c.path("mid.bin"))  # listing of the root, untimed
                    t = timed(["dd", f"if={c.path('mid.bin')}", "of=/dev/null", "bs=1M"],
                              a.timeout)
                    return size / MIB / t
                self.client_measure("capped_read", s, cold)
            self.unmount_all()
        finally:
            self.mount_url = self.apache.url
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()

    def fio(self, path):
        a = self.args
        out = run(["fio", "--name=randread", f"--filename={path}", "--readonly",
                   "--rw=randread", "--bs=4k", "--ioengine=psync", "--invalidate=0",
                   "--time_based", f"--runtime={a.fio_runtime}", "--numjobs=1",
                   "--output-format=json"], timeout=a.fio_runtime + 120).stdout
        j = json.loads(out[out.index("{"):])
        return float(j["jobs"][0]["read"]["iops"])

    def phase_meta(self, rep):
        a = self.args
        log(f"rep {rep + 1}: first bytes and listings")
        settle()  # no earlier phase's dirty pages in this one's numbers
        self.mount_all()
        url = self.apache.url + "big.bin"
        # 2. time to the first 4 KiB of a cold 1 GiB file (open + read 4096 after an untimed stat).
        for s in self.subjects("curl", rep):
            if s == "curl":
                def first_curl():
                    out = run(["curl", "-sS", "-f", "-o", "/dev/null", "-r", "0-4095",
                               "-w", "%{time_total}", url], timeout=a.timeout).stdout
                    return float(out) * 1000
                self.measure("first4k", "limit", first_curl)
                continue

            def first(c=s):
                p = c.path("big.bin")
                os.stat(p)
                out = run([sys.executable, "-c", FIRST_BYTES, p], timeout=a.timeout).stdout
                return float(out) * 1000
            self.client_measure("first4k", s, first)
        # 5. ls -l of the folder of small files: cold (first listing since the mount), then warm.
        #    Limits: a PROPFIND Depth 1 straight from Apache (cold), ls -l on ext4 (warm).
        small_url = self.apache.url + "small/"
        for s in self.subjects("limit", rep):
            if s == "limit":
                self.measure("ls_cold", "limit", lambda: 1000 * timed(
                    ["curl", "-sS", "-f", "-o", "/dev/null", "-X", "PROPFIND", "-H", "Depth: 1",
                     small_url], a.timeout))
                ls_native = lambda: 1000 * timed(  # noqa: E731
                    ["ls", "-l", os.path.join(self.data, "small")], a.timeout, capture=False)
                ls_native()  # warm the dentries
                self.measure("ls_warm", "limit", ls_native)
                if a.huge > 0:
                    self.measure("ls_huge", "limit", lambda: 1000 * timed(
                        ["curl", "-sS", "-f", "-o", "/dev/null", "-X", "PROPFIND", "-H",
                         "Depth: 1", self.apache.url + "huge/"], a.timeout))
                continue
            ls = lambda c=s: 1000 * timed(["ls", "-l", c.path("small")], a.timeout,  # noqa: E731
                                          capture=False)

            def ls_cold(c=s):
                # 8c. peak RSS of the client during it.
                probe = RssProbe(c.pid())
                try:
                    return ls(c)
                finally:
                    self.rss["rss_ls"].setdefault(c.name, []).append(probe.stop())
            self.client_measure("ls_cold", s, ls_cold)
            self.client_measure("ls_warm", s, ls)

            def ls_huge(c=s):
                # 8d. peak RSS during HUGE_LS_RUNS `ls -l` of the huge folder (the first cold);
                #     the row's time is the first (cold) listing's.
                probe = RssProbe(c.pid())
                try:
                    first = 1000 * timed(["ls", "-l", c.path("huge")], a.timeout, capture=False)
                    for _ in range(HUGE_LS_RUNS - 1):
                        run(["ls", "-l", c.path("huge")], timeout=a.timeout, capture=False)
                    return first
                finally:
                    self.rss["rss_ls_huge"].setdefault(c.name, []).append(probe.stop())
            if a.huge > 0:
                self.client_measure("ls_huge", s, ls_huge)
        self.unmount_all()

    def server_has_file(self, rel, size):
        def check():
            try:
                return os.stat(os.path.join(self.data, rel)).st_size == size
            except OSError:
                return False
        return check

    def server_has_files(self, rel, n):
        d = os.path.join(self.data, rel)

        def count():
            try:
                return sum(1 for e in os.scandir(d)
                           if e.name.endswith(".bin") and e.stat().st_size == 4096)
            except OSError:
                return 0

        def check():
            return count() >= n
        check.count = count
        return check

    def phase_write(self, rep):
        a = self.args
        log(f"rep {rep + 1}: writes")
        settle()  # no earlier phase's dirty pages in this one's numbers
        run(["cat", self.src], timeout=120, capture=False)  # the source in the page cache
        self.mount_all()
        # 6. write 1 GiB and close, until it is on the server; curl -T as the limit.
        #    8b. peak RSS of the client meanwhile.
        for s in self.subjects("curl", rep):
            name = f"up-{rep}-{s if s == 'curl' else s.name}.bin"
            if s == "curl":
                def put():
                    t = timed(["curl", "-sS", "-f", "-T", self.src, self.apache.url + name],
                              a.timeout)
                    wait_for(self.server_has_file(name, self.size), 10, what="curl upload")
                    return self.size / MIB / t
                self.measure("write", "limit", put)
                continue

            def write(c=s, name=name):
                probe = RssProbe(c.pid())
                try:
                    t = time.perf_counter()
                    run(["dd", f"if={self.src}", f"of={c.path(name)}", "bs=1M"], timeout=a.timeout)
                    c.wait_uploaded(self.server_has_file(name, self.size), a.timeout)
                    return self.size / MIB / (time.perf_counter() - t)
                finally:
                    self.rss["rss_write"].setdefault(c.name, []).append(probe.stop())
            self.client_measure("write", s, write)
        # 7. untar `files` files of 4 KiB, until all are on the server; curl -T of the same
        #    loose files over one connection (MKCOL first) as the limit.
        for s in self.subjects("curl", rep):
            folder = f"w-{rep}-{s if s == 'curl' else s.name}"
            if s == "curl":
                def put_many():
                    t = time.perf_counter()
                    run(["curl", "-sS", "-f", "-X", "MKCOL", self.apache.url + folder + "/"],
                        timeout=60)
                    glob = os.path.join(self.up_dir, f"f[00000-{a.files - 1:05d}].bin")
                    run(["curl", "-sS", "-f", "-T", glob, self.apache.url + folder + "/",
                         "-o", "/dev/null"], timeout=a.timeout)
                    wait_for(self.server_has_files(folder, a.files), 10, what="curl uploads")
                    return time.perf_counter() - t
                self.measure("small_write", "limit", put_many)
                continue

            def untar(c=s, folder=folder):
                t = time.perf_counter()
                check = self.server_has_files(folder, a.files)
                try:
                    os.mkdir(c.path(folder))
                    run(["tar", "-xf", self.tar, "-C", c.path(folder)], timeout=a.timeout)
                    log(f"  {c.name}: tar returned after {time.perf_counter() - t:.1f} s")
                    c.wait_uploaded(check, max(1, a.timeout - (time.perf_counter() - t)))
                except Timeout as e:
                    raise Timeout(f"{e}; {check.count()} of {a.files} files on the server "
                                  f"after {time.perf_counter() - t:.0f} s")
                return time.perf_counter() - t
            self.client_measure("small_write", s, untar)
        self.unmount_all()
        # Leave the server as it was for the next repetition.
        for e in os.listdir(self.data):
            if e.startswith("up-") or e.startswith("w-"):
                p = os.path.join(self.data, e)
                discard(p, self.trash)

    # -- main ---------------------------------------------------------------------------------
    def main(self):
        a = self.args
        self.install()
        self.build()
        self.make_data()
        self.start_server()
        self.clients = [{"edrive": Edrive, "rclone": Rclone, "davfs2": Davfs2}[n](self)
                        for n in a.clients]
        self.active = self.clients
        phases = [p for p in ["read", "capped", "meta", "write"] if p in a.phases]
        done = 0
        for rep in range(a.reps):
            if rep > 0 and time.monotonic() - T0 > a.budget * 60:
                self.notes.append(f"time budget of {a.budget} min reached: {rep} repetitions "
                                  f"instead of {a.reps}")
                log(self.notes[-1])
                break
            for p in phases:
                getattr(self, f"phase_{p}")(rep)
            done += 1
            self.reps_done = done
        self.report()


FIRST_BYTES = """
import os, sys, time
t = time.perf_counter()
fd = os.open(sys.argv[1], os.O_RDONLY)
n = len(os.read(fd, 4096))
d = time.perf_counter() - t
os.close(fd)
assert n == 4096, n
print(d)
"""

# ---------------------------------------------------------------------------------------------
Bench.report = write_report
