"""The verification pool (:mod:`gateway.hub.pool`): answers, errors, spreading, a dying worker, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.errors import Conflict
from gateway.hub.pool import RemoteTraceback, VerifyPool, WorkerDied

# Run in the workers (module level: they cross the process boundary by name).


def _pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def _echo(value: object) -> object:
    return value


def _raise_conflict() -> None:
    raise Conflict("conflict.document_id", "taken", document_id="X", ids=[1, 2])


def _divide(a: int, b: int) -> float:
    return a / b


def _unpicklable() -> object:
    return lambda: None


class _OddError(Exception):
    """Pickles, but does not unpickle (its constructor wants two arguments)."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a}/{b}")


def _raise_odd() -> None:
    raise _OddError("x", "y")


def _broken_initializer() -> None:
    raise RuntimeError("no signing key")


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@contextlib.asynccontextmanager
async def _started(size: int) -> AsyncIterator[VerifyPool]:
    """A started pool of ``size`` workers, closed on the way out (``pool`` stays usable to check that)."""
    pool = VerifyPool(size)
    await pool.start()
    try:
        yield pool
    finally:
        await pool.close()


async def _until(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_answers_and_errors_come_back_as_raised() -> None:
    """Results, a GatewayError whole (code, detail, extra) and a bug with the worker's traceback."""

    async def main() -> None:
        async with _started(1) as pool:
            assert await pool.run(_echo, {"a": b"\x00" * 3_000_000}) == {"a": b"\x00" * 3_000_000}
            with pytest.raises(Conflict) as info:
                await pool.run(_raise_conflict)
            assert (info.value.code, info.value.detail, info.value.extra, info.value.status) == (
                "conflict.document_id",
                "taken",
                {"document_id": "X", "ids": [1, 2]},
                409,
            )
            with pytest.raises(ZeroDivisionError) as bug:
                await pool.run(_divide, 1, 0)
            assert isinstance(bug.value.__cause__, RemoteTraceback)
            assert "_divide" in bug.value.__cause__.text
            with pytest.raises(RuntimeError, match="could not be pickled"):
                await pool.run(_unpicklable)
            with pytest.raises(RuntimeError, match="did not unpickle"):
                await pool.run(_raise_odd)
            assert await pool.run(_echo, 7) == 7  # the worker is still in step after each failure

    asyncio.run(main())


def test_jobs_are_spread_over_the_workers_and_close_stops_them() -> None:
    async def main() -> None:
        async with _started(2) as pool:
            workers = pool.pids
            assert len(set(workers)) == 2
            assert all(_alive(p) for p in workers)
            used = await asyncio.gather(*(pool.run(_pid_after, 0.05) for _ in range(8)))
            assert sorted(set(used)) == sorted(workers)
            assert sorted(used.count(p) for p in workers) == [4, 4]
        assert not any(_alive(p) for p in workers)
        with pytest.raises(WorkerDied, match="shut down"):
            await pool.run(_echo, 1)

    asyncio.run(main())


def test_a_killed_worker_fails_only_its_jobs_and_is_replaced() -> None:
    """SIGKILL a worker holding jobs: those fail with WorkerDied, the other worker's succeed, a new worker
    takes the dead one's place (the dead one is reaped), and every later job is answered."""

    async def main() -> None:
        async with _started(2) as pool:
            victim, survivor = pool.pids
            jobs = [asyncio.ensure_future(pool.run(_pid_after, 0.5)) for _ in range(4)]
            await asyncio.sleep(0.2)
            os.kill(victim, signal.SIGKILL)
            outcomes = await asyncio.gather(*jobs, return_exceptions=True)
            died = [o for o in outcomes if isinstance(o, WorkerDied)]
            assert len(died) == 2, outcomes
            assert [o for o in outcomes if not isinstance(o, BaseException)] == [survivor, survivor]
            await _until(lambda: len(pool.pids) == 2)
            assert victim not in pool.pids
            assert not _alive(victim)
            await _until(lambda: not Path(f"/proc/{victim}").exists())  # reaped: no zombie left
            used = await asyncio.gather(*(pool.run(_pid_after, 0.02) for _ in range(6)))
            assert set(used) == set(pool.pids)

    asyncio.run(main())


def test_a_request_that_goes_away_does_not_shift_the_answers() -> None:
    """A cancelled job still runs; its answer is dropped and the next job gets its own answer."""

    async def main() -> None:
        async with _started(1) as pool:
            slow = asyncio.ensure_future(pool.run(_pid_after, 0.3))
            await asyncio.sleep(0.05)
            slow.cancel()
            assert await pool.run(_echo, "mine") == "mine"

    asyncio.run(main())


def test_a_worker_that_cannot_start_fails_the_start() -> None:
    async def main() -> None:
        pool = VerifyPool(1, initializer=_broken_initializer)
        try:
            with pytest.raises(WorkerDied):
                await asyncio.wait_for(pool.start(warm=os.getpid), 60)
        finally:
            await asyncio.wait_for(pool.close(), 30)

    asyncio.run(main())
