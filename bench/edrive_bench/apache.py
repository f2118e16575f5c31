"""Apache httpd with mod_dav, own ServerRoot, configured from the template the tests use
(tests/common/apache.conf.in)."""

from .common import *  # noqa: F401,F403 (the helpers and standard modules)

APACHE_CONF = os.path.join(REPO, "tests", "common", "apache.conf.in")



def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Apache:
    def __init__(self, root_dir, data_dir):
        self.dir = root_dir
        self.data = data_dir
        self.proc = None
        self.port = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/dav/"

    def start(self):
        for sub in ["run", "logs", "lock", "htdocs"]:
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        with open(os.path.join(self.dir, "mime.types"), "w") as f:
            f.write("text/plain txt\napplication/octet-stream bin\n")
        as_www = os.geteuid() == 0
        if as_www:
            run(["chown", "-R", "www-data:www-data", self.dir, self.data])
        last = ""
        for _ in range(3):
            self.port = free_port()
            self._write_config(as_www)
            console = open(os.path.join(self.dir, "logs/console.log"), "w")
            env = {k: v for k, v in os.environ.items() if not k.startswith("APACHE_")}
            self.proc = subprocess.Popen(
                [APACHE_BIN, "-f", os.path.join(self.dir, "httpd.conf"), "-DFOREGROUND"],
                stdin=subprocess.DEVNULL, stdout=console, stderr=console, env=env,
                start_new_session=True)
            try:
                wait_for(self._probe, 10, what="apache")
                return
            except Timeout:
                self.stop()
                last = open(os.path.join(self.dir, "logs/console.log")).read()
                last += sh(f"tail -5 {self.dir}/logs/error.log")
        raise Failed(f"apache did not start: {last}")

    def _probe(self):
        if self.proc.poll() is not None:
            raise Failed("apache exited: " + open(os.path.join(self.dir, "logs/console.log")).read())
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"HEAD / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                return s.recv(16).startswith(b"HTTP/")
        except OSError:
            return False

    def _write_config(self, as_www):
        # The template tests/common/apache.rs fills too; the bench's own tuning (more
        # workers, long timeouts, sendfile) and an access log it can count requests in.
        t, d = self.dir, self.data
        tuning = "\n".join([
            "StartServers 2", "ServerLimit 4", "ThreadsPerChild 25", "MaxRequestWorkers 100",
            "MinSpareThreads 10", "MaxSpareThreads 100", "ThreadLimit 25",
            "KeepAlive On", "MaxKeepAliveRequests 0", "KeepAliveTimeout 30", "Timeout 600",
            "LimitRequestBody 0", "EnableSendfile On"])
        with open(APACHE_CONF) as f:
            c = f.read()
        for key, value in [("@ROOT@", t), ("@DATA@", d), ("@PORT@", str(self.port)),
                           ("@MODULES@", MODULE_DIR),
                           ("@USER@", "User www-data\nGroup www-data" if as_www else ""),
                           ("@TUNING@", tuning), ("@LOG_FORMAT@", "%>s %m %U %B %D"),
                           ("@ACCESS@", "  Require all granted")]:
            c = c.replace(key, value)
        with open(os.path.join(t, "httpd.conf"), "w") as f:
            f.write(c)

    def chown_data(self):
        if os.geteuid() == 0:
            run(["chown", "-R", "www-data:www-data", self.data])

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.proc = None

    def version(self):
        return sh(f"{APACHE_BIN} -v | head -1")
