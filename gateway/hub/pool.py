"""The verification pool: worker processes fed straight from the event loop, one socket each.

lxml holds the GIL, so verification needs processes (DESIGN §8). ``ProcessPoolExecutor`` moves every job
through two helper threads of the hub process (a queue manager and a queue feeder) and wakes the event
loop from a third; under load those threads fought the event loop and the SQLite writer thread for the
GIL and the cores, at about 0.3 ms of the hub process per package. Here the event loop writes the pickled
job to the worker's socket and reads the pickled result back as ordinary I/O: no thread, no lock.

A worker answers its jobs in the order it got them, so each result pairs with the oldest future of that
worker. A job goes to the worker with the fewest jobs outstanding. A worker that dies (the OOM killer, a
crash in a C library) fails only the jobs it held, with :class:`WorkerDied`, and is replaced at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import multiprocessing
import pickle
import signal
import socket
import struct
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

log = logging.getLogger("gateway.hub.pool")

T = TypeVar("T")
_HEADER = struct.Struct("!Q")
JOIN_SECONDS = 10.0
"""How long :meth:`VerifyPool.close` lets a worker finish the job it is on before it is killed."""
RESPAWN_PAUSE_SECONDS = 1.0
"""A worker that died before answering anything (a broken initializer) is replaced only after this pause,
so a fault that kills every new worker does not become a busy loop."""


class WorkerDied(RuntimeError):
    """The worker process running this job exited before answering (the request fails with a bare 500)."""


class RemoteTraceback(Exception):
    """The traceback of an unexpected exception in a worker, attached as its ``__cause__``."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


# --- the worker process ----------------------------------------------------------------------------
def _recv_exact(sock: socket.socket, size: int) -> bytearray | None:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            return None
        got += n
    return buf


def _answer(job: bytes | bytearray) -> bytes:
    try:
        fn, args = pickle.loads(job)
        outcome: tuple[bool, Any, str | None] = (True, fn(*args), None)
    except Exception as exc:
        outcome = (False, exc, traceback.format_exc())
    try:
        return pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # an unpicklable result or exception must still answer the job
        text = outcome[2] or ""
        failure = RuntimeError(f"the worker's answer could not be pickled: {exc!r}")
        return pickle.dumps((False, failure, text), protocol=pickle.HIGHEST_PROTOCOL)


def _serve(sock: socket.socket, initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]) -> None:
    """A worker's life: run jobs from the socket until the hub closes it (end of file) or goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the hub, which then stops its workers
    if initializer is not None:
        initializer(*initargs)
    with sock:
        while True:
            head = _recv_exact(sock, _HEADER.size)
            if head is None:
                return
            payload = _recv_exact(sock, _HEADER.unpack(head)[0])
            if payload is None:
                return
            answer = _answer(payload)
            try:
                sock.sendall(_HEADER.pack(len(answer)) + answer)
            except OSError:  # the hub closed the pool while this job ran
                return


# --- the hub side ----------------------------------------------------------------------------------
@dataclass(eq=False)
class _Worker:
    process: Any
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    pending: collections.deque[asyncio.Future[Any]] = field(default_factory=collections.deque)
    answered: int = 0
    reading: asyncio.Task[None] | None = None


class VerifyPool:
    """``size`` spawned worker processes, each running ``initializer(*initargs)`` once at start."""

    def __init__(
        self,
        size: int,
        *,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
        context: Any = None,
    ) -> None:
        self.size = max(1, size)
        self._initializer = initializer
        self._initargs = initargs
        self._context = context or multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._available = asyncio.Event()
        self._closing = False
        self._spawning: set[asyncio.Task[None]] = set()

    @property
    def pids(self) -> list[int]:
        """The worker processes' ids (for tests and operators)."""
        return [w.process.pid for w in self._workers]

    async def start(self, warm: Callable[[], Any] | None = None) -> None:
        """Spawn the workers; with ``warm``, return only once each has run it (its imports done), so that
        the first requests do not wait for a worker to start. A worker that fails to start raises here."""
        for _ in range(self.size):
            await self._spawn()
        if warm is not None:
            await asyncio.gather(*(self.run(warm) for _ in range(self.size)))

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker; its exception, if any, is raised here as it was raised there.

        ``fn`` must be a module-level function and ``args`` picklable (they cross a process boundary).
        """
        payload = pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)
        while not self._workers:
            if self._closing:
                raise WorkerDied("the verification pool is shut down")
            self._available.clear()
            await self._available.wait()
        worker = min(self._workers, key=lambda w: len(w.pending))
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        worker.pending.append(future)
        worker.writer.write(_HEADER.pack(len(payload)) + payload)
        return await future

    async def _spawn(self) -> None:
        parent, child = socket.socketpair()
        try:
            process = self._context.Process(
                target=_serve,
                args=(child, self._initializer, self._initargs),
                daemon=True,
                name="gateway-verify",
            )
            await asyncio.to_thread(process.start)
        finally:
            child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent, limit=1 << 20)
        worker = _Worker(process=process, reader=reader, writer=writer)
        worker.reading = asyncio.create_task(self._read(worker), name="verify-pool-reader")
        self._workers.append(worker)
        self._available.set()

    async def _read(self, worker: _Worker) -> None:
        """Answers of one worker, in order, to its futures; at end of file the worker is gone."""
        try:
            while True:
                head = await worker.reader.readexactly(_HEADER.size)
                payload = await worker.reader.readexactly(_HEADER.unpack(head)[0])
                future = worker.pending.popleft()
                worker.answered += 1
                if future.done():  # the request went away (cancelled) while its job ran
                    continue
                try:
                    ok, value, text = pickle.loads(payload)
                except Exception as exc:  # e.g. an exception class that does not unpickle
                    ok, value, text = (
                        False,
                        RuntimeError(f"the worker's answer did not unpickle: {exc!r}"),
                        None,
                    )
                if ok:
                    future.set_result(value)
                else:
                    if text is not None and value.__cause__ is None:
                        value.__cause__ = RemoteTraceback(text)
                    future.set_exception(value)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._lost(worker)

    def _lost(self, worker: _Worker) -> None:
        if worker in self._workers:
            self._workers.remove(worker)
        worker.writer.close()
        reason = "the verification pool is shut down"
        if not self._closing:
            reason = "a verification worker died while it held this job"
            task = asyncio.create_task(self._replace(worker, len(worker.pending)))
            self._spawning.add(task)
            task.add_done_callback(self._spawning.discard)
        while worker.pending:
            future = worker.pending.popleft()
            if not future.done():
                future.set_exception(WorkerDied(reason))

    async def _replace(self, dead: _Worker, jobs: int) -> None:
        await asyncio.to_thread(dead.process.join, JOIN_SECONDS)  # reap it: no zombie
        log.error(
            "verification worker %s died (exit code %s) holding %d job(s); starting a new one",
            dead.process.pid,
            dead.process.exitcode,
            jobs,
        )
        if dead.answered == 0:
            await asyncio.sleep(RESPAWN_PAUSE_SECONDS)
        if not self._closing:
            try:
                await self._spawn()
            except Exception:
                log.exception("could not start a verification worker")

    async def close(self) -> None:
        """Stop the workers: each finishes the job it is on (up to :data:`JOIN_SECONDS`), then exits."""
        self._closing = True
        self._available.set()
        for task in list(self._spawning):
            task.cancel()
        workers = list(self._workers)
        for worker in workers:
            worker.writer.close()  # end of file: the worker leaves its loop
        for worker in workers:
            await asyncio.to_thread(worker.process.join, JOIN_SECONDS)
            if worker.process.is_alive():
                worker.process.kill()
                await asyncio.to_thread(worker.process.join)
            if worker.reading is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await worker.reading
