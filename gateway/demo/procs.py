"""The demo's child processes: started, awaited until ready, and always stopped — also on Ctrl-C.

Children stay in the demo's process group, so a Ctrl-C in the terminal reaches them too (the hub and the
nodes stop cleanly on SIGINT) and :meth:`Children.stop_all` then waits for them. On Linux each child also
asks the kernel for SIGTERM should the demo itself die without cleaning up (``PR_SET_PDEATHSIG``), so a
killed demo leaves no orphan serving a port.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

PR_SET_PDEATHSIG = 1

CLI = "import sys; sys.argv[0] = 'gateway'; from gateway.cli import main; main()"
"""Runs the ``gateway`` command with the interpreter of the demo (the venv's), whatever the PATH."""


class DemoError(RuntimeError):
    """A step of the demo did not turn out as the script says (the message names the step and the log).

    Not a :class:`~gateway.errors.GatewayError`: nothing a user sent was wrong; the demo itself failed.
    """


def gateway_argv(*args: str) -> list[str]:
    return [sys.executable, "-c", CLI, *args]


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive SIGTERM when the demo dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    libc = ctypes.CDLL(libc_name, use_errno=True)
    parent = os.getpid()

    def prepare() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the demo died between fork and prctl
            os._exit(1)

    return prepare


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    _log_file: IO[bytes]

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Children:
    """Every long-running process the demo started, by name."""

    def __init__(
        self,
        log_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_last: Sequence[str] = (),
    ) -> None:
        self.log_dir = log_dir
        self.stop_last = frozenset(stop_last)
        self.env = dict(env or os.environ)
        self.cwd = cwd
        self._children: dict[str, Child] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._children and self._children[name].running

    def __getitem__(self, name: str) -> Child:
        return self._children[name]

    @property
    def pids(self) -> list[int]:
        return [c.proc.pid for c in self._children.values() if c.running]

    def start(self, name: str, argv: Sequence[str], *, ready: bytes = b"ready", timeout: float = 60) -> Child:
        """Start ``argv`` and wait for the line ``ready`` on its stdout (stderr goes to ``<name>.log``)."""
        return self.start_all({name: argv}, ready=ready, timeout=timeout)[name]

    def start_all(
        self, commands: Mapping[str, Sequence[str]], *, ready: bytes = b"ready", timeout: float = 60
    ) -> dict[str, Child]:
        """Start several processes at once, then wait until each has said ``ready`` (they start in
        parallel: an interpreter start costs about a second here).

        Only from the main thread: the kernel's parent-death signal fires when the *thread* that started
        the child ends, so a child started from a worker thread would be stopped with it.
        """
        if threading.current_thread() is not threading.main_thread():
            raise DemoError(f"{', '.join(commands)} must be started from the main thread")
        started: dict[str, Child] = {}
        try:
            for name, argv in commands.items():
                started[name] = self._spawn(name, argv)
            for child in started.values():
                self._await_ready(child, ready, timeout)
        except BaseException:
            for name in started:
                self.stop(name)
            raise
        for child in started.values():
            threading.Thread(
                target=self._drain, args=(child,), daemon=True, name=f"drain-{child.name}"
            ).start()
        return started

    def _spawn(self, name: str, argv: Sequence[str]) -> Child:
        if name in self:
            raise DemoError(f"{name} is already running")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        log_file = open(log, "ab")  # noqa: SIM115 - closed in stop()
        proc = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=log_file,
            stdin=subprocess.DEVNULL,
            env=self.env,
            cwd=self.cwd,
            preexec_fn=_die_with_parent(),
        )
        child = Child(name=name, proc=proc, log=log, _log_file=log_file)
        self._children[name] = child
        return child

    @staticmethod
    def _await_ready(child: Child, ready: bytes, timeout: float) -> None:
        assert child.proc.stdout is not None
        fd = child.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        buffer = b""
        while time.monotonic() < deadline:
            readable, _, _ = select.select([fd], [], [], 0.2)
            if readable:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                buffer += chunk
                if any(line.strip() == ready for line in buffer.splitlines()):
                    return
            elif child.proc.poll() is not None:
                break
        raise DemoError(f"{child.name} did not start (see {child.log}):\n{child.tail()}")

    @staticmethod
    def _drain(child: Child) -> None:
        """Keep reading the child's stdout so it never blocks on a full pipe."""
        assert child.proc.stdout is not None
        with contextlib.suppress(OSError, ValueError):
            while child.proc.stdout.read(4096):
                pass

    def signal(self, name: str, signum: int) -> None:
        child = self._children[name]
        if child.running:
            child.proc.send_signal(signum)

    def stop(self, name: str, *, timeout: float = 20) -> None:
        """SIGTERM, wait, then SIGKILL: the process is gone when this returns."""
        child = self._children.pop(name, None)
        if child is None:
            return
        if child.proc.poll() is None:
            child.proc.terminate()
            try:
                child.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
        with contextlib.suppress(OSError):
            if child.proc.stdout is not None:
                child.proc.stdout.close()
        child._log_file.close()

    def stop_all(self) -> int:
        """Stop every child, all at once, except those named ``stop_last`` (the hub the nodes talk to),
        which are stopped after; returns how many were still running."""
        running = [n for n, c in self._children.items() if c.running]
        groups = (
            [n for n in self._children if n not in self.stop_last],
            [n for n in self._children if n in self.stop_last],
        )
        for group in groups:
            for name in group:
                if self._children[name].running:
                    self._children[name].proc.terminate()
            for name in group:
                self.stop(name)
        return len(running)

    def wait_any(self) -> Child | None:
        """Block until a child exits (``--serve``); returns it, or None when there is nothing to wait for."""
        while self._children:
            for child in self._children.values():
                if not child.running:
                    return child
            time.sleep(0.5)
        return None


def run_cli(
    *args: str,
    env: Mapping[str, str],
    cwd: Path | None = None,
    stdin: str | None = None,
    timeout: float = 120,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run one ``gateway`` command to completion (its output is returned, not shown)."""
    proc = subprocess.run(
        gateway_argv(*args),
        input=stdin,
        capture_output=True,
        text=True,
        env=dict(env),
        cwd=cwd,
        timeout=timeout,
        preexec_fn=_die_with_parent(),
    )
    if check and proc.returncode != 0:
        raise DemoError(f"`gateway {' '.join(args)}` exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return proc
