"""The scale-out topology of ``docker/compose.yaml`` as plain processes (DESIGN §6): ``gateway hub serve``
processes on their own ports sharing one PostgreSQL database and one blob folder, and nginx from Debian in
front in stream mode (layer 4), so TLS passes through and every hub still sees the client certificate.

Used by ``tests/test_scale_out.py`` and ``bench/scale_out.py``. nginx runs as a non-daemon with its own
``-p`` prefix and ``-c`` config in a tmp folder (pid and logs there too), loading the stream module by
absolute path; nothing under ``/etc/nginx`` is read or written.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from hub_helpers import child_pids, kill_session

REPO = Path(__file__).resolve().parents[1]
NGINX = os.environ.get("GATEWAY_TEST_NGINX", "/usr/sbin/nginx")
STREAM_MODULE = os.environ.get("GATEWAY_TEST_NGINX_STREAM", "/usr/lib/nginx/modules/ngx_stream_module.so")


class Unavailable(RuntimeError):
    """nginx or its stream module is missing (the test skips on a laptop, fails under CI=true)."""


def nginx_paths() -> tuple[str, str]:
    """The nginx binary and the stream module, or :class:`Unavailable` saying what is missing."""
    binary = NGINX if os.path.isabs(NGINX) else shutil.which(NGINX)
    if not binary or not os.access(binary, os.X_OK):
        raise Unavailable(f"nginx not found at {NGINX} (apt-get install nginx)")
    if not os.path.isfile(STREAM_MODULE):
        raise Unavailable(f"the nginx stream module is missing: {STREAM_MODULE} (libnginx-mod-stream)")
    return binary, STREAM_MODULE


def wait_listening(port: int, *, timeout: float = 20.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


NGINX_CONF = """\
# Written by tests/scale_helpers.py: docker/nginx.conf with local upstreams.
load_module {module};
{user}daemon off;
master_process on;
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}

stream {{
    log_format upstreams '$upstream_addr $status $bytes_received $bytes_sent';
    access_log {prefix}/access.log upstreams;
    upstream lgsp_hubs {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        proxy_pass lgsp_hubs;
        proxy_connect_timeout 1s;
        proxy_next_upstream on;
        proxy_timeout 10m;
    }}
}}
"""


class Nginx:
    """nginx in stream mode passing TLS through to ``upstreams`` (ports on 127.0.0.1), on ``port``."""

    def __init__(
        self, prefix: Path, port: int, upstreams: list[int], *, workers: int | str = 1, fail_timeout: int = 2
    ) -> None:
        binary, module = nginx_paths()
        prefix.mkdir(parents=True, exist_ok=True)
        self.prefix, self.port = prefix, port
        servers = "\n".join(
            f"        server 127.0.0.1:{p} max_fails=1 fail_timeout={fail_timeout}s;" for p in upstreams
        )
        # As root the workers would switch to "nobody"; keep them as the user who started the test.
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(
            NGINX_CONF.format(
                module=module, user=user, workers=workers, prefix=prefix, servers=servers, port=port
            )
        )
        cmd = [binary, "-p", str(prefix), "-c", str(self.conf), "-e", str(prefix / "error.log")]
        check = subprocess.run([*cmd, "-t"], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t refused {self.conf}:\n{check.stderr}")
        self._log = open(prefix / "stderr.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=self._log, start_new_session=True)
        try:
            wait_listening(port)
        except OSError:
            self.stop()
            raise RuntimeError(f"nginx did not listen on {port}:\n{self.error_log()}") from None

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def upstreams_used(self) -> list[str]:
        """The upstream address of every finished session (the access log is written when one ends)."""
        path = self.prefix / "access.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [line.split()[0] for line in lines if line.strip()]

    def pids(self) -> list[int]:
        """The master and its workers (for CPU accounting)."""
        return [self.proc.pid, *child_pids(self.proc.pid)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # fast shutdown: closes connections
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


def gateway_command() -> list[str]:
    """``gateway`` as installed next to this interpreter (the venv's console script), else its entry point."""
    script = Path(sys.executable).with_name("gateway")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from gateway.cli import main; sys.argv[0] = 'gateway'; main()"]


STANDBY = """
import sys
import gateway.cli, gateway.hub.app, gateway.hub.server, gateway.hub.worker, gateway.store  # the slow part
sys.stdin.readline()
sys.argv = ["gateway", *sys.argv[1:]]
gateway.cli.main()
"""
"""``gateway hub serve …`` (the CLI's entry point, with these arguments) in a process that has done its
imports first and waits for a line on stdin: a restart after a kill then pays the start of the hub (schema
check, pool, TLS), not the seconds of imports on a loaded 2-core machine."""


class HubServe:
    """``gateway hub serve --config FILE --workers N`` in its own session, so :meth:`kill` (SIGKILL to the
    session) takes its verification pool down with it, as a crash of the machine would. With ``standby``,
    a spare process imports ahead while this one serves, and :meth:`start` after a kill hands over to it."""

    def __init__(
        self, config_file: Path, *, workers: int = 1, name: str = "hub", standby: bool = False
    ) -> None:
        self.config_file, self.workers, self.name, self.standby = config_file, workers, name, standby
        self.log = config_file.with_suffix(".log")
        self.kills = 0
        self.start_seconds: list[float] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self._spare: subprocess.Popen[bytes] | None = None

    @classmethod
    def start_all(cls, hubs: list[HubServe], timeout: float = 60.0) -> None:
        """Start ``hubs`` at once (on an empty database they take turns migrating it) and wait for all."""
        for hub in hubs:
            hub.spawn()
        for hub in hubs:
            hub.wait_ready(timeout)

    def _popen(self, standby: bool) -> subprocess.Popen[bytes]:
        args = ["hub", "serve", "--config", str(self.config_file), "--workers", str(self.workers)]
        command = [sys.executable, "-c", STANDBY, *args] if standby else [*gateway_command(), *args]
        with open(self.log, "ab") as log:
            return subprocess.Popen(
                command,
                stdin=subprocess.PIPE if standby else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=REPO,
                start_new_session=True,
            )

    def start(self, timeout: float = 60.0) -> None:
        self.spawn()
        self.wait_ready(timeout)

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start without waiting (:meth:`wait_ready` then), so several hubs start at once."""
        self._t0 = time.monotonic()
        if self._spare is not None:
            self.proc, self._spare = self._spare, None
            assert self.proc.stdin is not None
            self.proc.stdin.write(b"go\n")
            self.proc.stdin.close()
        else:
            self.proc = self._popen(standby=False)
        return self.proc

    def wait_ready(self, timeout: float = 60.0) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.strip() == b"ready":
                self.start_seconds.append(time.monotonic() - self._t0)
                if self.standby and self._spare is None:
                    self._spare = self._popen(standby=True)
                return
            if not line and self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"{self.name} did not start; see {self.log}:\n{self.log.read_text()[-3000:]}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pids(self) -> list[int]:
        """The hub process and its descendants (workers, verification pool)."""
        if self.proc is None:
            return []
        out, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo += child_pids(pid)
        return out

    def kill(self) -> None:
        """SIGKILL the hub and everything in its session, and reap it."""
        assert self.proc is not None
        kill_session(self.proc)
        self.kills += 1

    def stop(self) -> None:
        if self._spare is not None:
            kill_session(self._spare)
            self._spare = None
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(20)
        kill_session(self.proc)
