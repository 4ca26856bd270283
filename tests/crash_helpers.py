"""Helpers for the crash tests: a hub process that can be SIGKILLed and restarted, agency nodes driven
in-process (the real :class:`gateway.node.node.Node`, whose outbox retries are what make "eventually
delivered" hold) with their hub calls counted while in flight, and the checks run against the hub's
database and the nodes' stores.

"Acknowledged" means what a node relies on: an outbox row the node marked ``sent``, which it does only
after the hub answered 200/202 with a receipt whose hub signature verifies and that quotes the SHA-256 and
size of the bytes sent (``Node.check_receipt``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from hub_helpers import HubProcess, kill_session
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.node.client import HubUnavailable
from gateway.node.compose import Dispatch, FileSpec
from gateway.node.config import load_node_settings
from gateway.node.node import Node

REPO = Path(__file__).resolve().parents[1]


# --- the hub, killable ------------------------------------------------------------------------------


STANDBY = """
import sys
import gateway.hub.app, gateway.hub.server, gateway.hub.worker, gateway.store  # the slow part, done early
sys.stdin.readline()
sys.exit(gateway.hub.server.main(sys.argv[1:]))
"""
"""A hub process that has done its imports and waits for a line on stdin before it runs
``gateway.hub.server.main``: everything a restart does with the data (schema check, WAL recovery, temp
sweep, pool start) still happens after the kill, only the 2 s of imports are paid while the previous hub
serves. A restart then takes about as long as the verification pool's start."""
SPARES = 2
"""Spare processes importing ahead (one is often still importing when the next kill comes)."""


class KillableHub(HubProcess):
    """The hub (``gateway.hub.server``, one worker) in its own session, so a SIGKILL takes its verification
    pool down with it, as a machine crash would; :meth:`kill` then :meth:`restart` keep config and log."""

    def __init__(self, config_file: Path) -> None:
        self.config_file = config_file
        self.log = config_file.with_suffix(".log")
        self.kills = 0
        self.starts: list[float] = []
        self._fh = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        self._spares: list[subprocess.Popen[bytes]] = []
        self.proc = self._spare()
        self._go()

    def _spare(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-c", STANDBY, "--config", str(self.config_file), "--workers", "1"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._fh,
            cwd=REPO,
            start_new_session=True,
        )

    def _go(self) -> None:
        t0 = time.monotonic()
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.strip() == b"ready":
                self.starts.append(time.monotonic() - t0)
                while len(self._spares) < SPARES:  # they import while this one serves
                    self._spares.append(self._spare())
                return
            if not line and self.proc.poll() is not None:
                break
        self.kill()
        raise RuntimeError(f"the hub did not start; see {self.log}:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the hub and everything in its session (its process pool), then reap it."""
        if self.proc.poll() is None:
            self.kills += 1
        kill_session(self.proc)

    def restart(self) -> None:
        assert self.proc.poll() is not None, "restart() after kill()"
        self.proc = self._spares.pop(0)
        self._go()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        for spare in self._spares:
            kill_session(spare)
        self._spares.clear()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                kill_session(self.proc)
        kill_session(self.proc)
        if not self._fh.closed:
            self._fh.close()


# --- what is in flight ------------------------------------------------------------------------------


@dataclass
class InFlight:
    """Hub calls under way, by kind, across all nodes; the killer reads it to aim and to report."""

    ops: dict[int, tuple[str, str, int]] = field(default_factory=dict)
    started: Counter[str] = field(default_factory=Counter)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _next: int = 0

    def now(self) -> list[tuple[str, str, int]]:
        return sorted(self.ops.values())

    def kinds(self) -> set[str]:
        return {k for k, _, _ in self.ops.values()}

    @contextlib.asynccontextmanager
    async def track(self, kind: str, who: str, size: int = 0) -> AsyncIterator[None]:
        self._next += 1
        key = self._next
        self.ops[key] = (kind, who, size)
        self.started[kind] += 1
        self.changed.set()
        try:
            yield
        finally:
            self.ops.pop(key, None)

    async def wait_for(self, predicate: Callable[[list[tuple[str, str, int]]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.now()):
                return True
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), max(0.0, deadline - time.monotonic()))
        return predicate(self.now())


def instrument(node: Node, flight: InFlight) -> None:
    """Count the node's hub calls while they run (the node calls ``self.client.<method>``)."""
    client = node.client
    who = node.organ_id

    def wrap(name: str, kind: Callable[..., tuple[str, int]]) -> None:
        original = getattr(client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            k, size = kind(*args, **kwargs)
            async with flight.track(k, who, size):
                return await original(*args, **kwargs)

        setattr(client, name, call)

    def package_kind(data: bytes, content_type: str) -> tuple[str, int]:
        return ("upload-multipart" if content_type.startswith("multipart/") else "upload-single", len(data))

    wrap("post_package", package_kind)
    wrap("post_status", lambda data: ("status-post", len(data)))
    wrap("inbox", lambda **kw: ("inbox-pull", 0))
    wrap("ack", lambda ids, **kw: ("inbox-ack", len(ids)))
    wrap("package", lambda pid: ("package-fetch", 0))


# --- nodes ------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def open_node(config: Path) -> AsyncIterator[Node]:
    async with Node.open(load_node_settings(config)) as node:
        yield node


def dispatch(sender: str, recipients: tuple[str, ...], rng: random.Random, *, big: bool = False) -> Dispatch:
    """A dispatch of varied size: mostly none or a few KB, sometimes tens or hundreds of KB, or (``big``)
    a 2–5 MB attachment that the node sends multipart."""
    roll = rng.random()
    if big:
        size = rng.randint(2 * 1024 * 1024, 5 * 1024 * 1024)
    elif roll < 0.35:
        size = 0
    elif roll < 0.8:
        size = rng.randint(200, 20_000)
    else:
        size = rng.randint(50_000, 400_000)
    files = (FileSpec(name="van-ban.pdf", data=b"%PDF-1.4\n" + rng.randbytes(size)),) if size else ()
    number = str(rng.randrange(10**8, 10**9))
    return Dispatch(
        sender=sender,
        recipients=recipients,
        number=number,
        notation="UBND-VP",
        subject=f"Văn bản thử nghiệm sập nguồn {number}",
        files=files,
    )


async def retrying(action: Callable[[], Awaitable[Any]], *, until: float) -> Any:
    """``action()`` again while the hub is unavailable (restarting), until the monotonic ``until``."""
    while True:
        try:
            return await action()
        except HubUnavailable:
            if time.monotonic() > until:
                raise
            await asyncio.sleep(0.2)


# --- the hub's database -----------------------------------------------------------------------------


async def hub_rows(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(sa.text(sql), params)).all()]
    finally:
        await engine.dispose()


async def hub_state(url: str) -> dict[str, Any]:
    """What the checks need from the hub's tables, in one connection."""
    engine = create_async_engine(url)
    queries = {
        "packages": "SELECT sha256, sender_organ_id, document_id, blob_sha256, size FROM package",
        "recipients": "SELECT p.sha256, r.organ_id FROM package_recipient r"
        " JOIN package p ON p.id = r.package_id",
        "exchanges": "SELECT p.sha256, e.recipient_organ_id, e.state, e.id FROM exchange e"
        " JOIN package p ON p.id = e.package_id",
        "messages": "SELECT id, sha256, code, actor_organ_id, document_id FROM status_message",
        "events": "SELECT e.exchange_id, e.message_id, e.code, e.outcome, e.actor_organ_id"
        " FROM status_event e",
        "inbox": "SELECT i.id, i.organ_id, i.kind, p.sha256, i.status_message_id, i.acked_at"
        " FROM inbox_item i LEFT JOIN package p ON p.id = i.package_id",
        "attachments": "SELECT sha256 FROM package_attachment",
        "bodies": "SELECT p.sha256, b.data FROM package_body b JOIN package p ON p.id = b.package_id",
    }
    try:
        async with engine.connect() as conn:
            return {k: [tuple(r) for r in (await conn.execute(sa.text(q))).all()] for k, q in queries.items()}
    finally:
        await engine.dispose()


# --- the nodes' stores (read directly: the node may be a killed process) ----------------------------


def node_rows(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    db = data_dir / "node.db"
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return [tuple(r) for r in conn.execute(sql).fetchall()]
    except sqlite3.OperationalError as exc:  # the schema is not there yet (a node killed at start)
        if "no such table" in str(exc):
            return []
        raise
    finally:
        conn.close()


def node_count(data_dir: Path, sql: str) -> int:
    rows = node_rows(data_dir, sql)
    return int(rows[0][0]) if rows else 0


# --- files ------------------------------------------------------------------------------------------


def torn_blobs(root: Path) -> list[str]:
    """Blob files whose content does not hash to their name (a torn write made visible)."""
    bad = []
    for shard in sorted(root.glob("[0-9a-f][0-9a-f]")):
        for path in sorted(p for p in shard.rglob("*") if p.is_file()):
            digest = hashlib.sha256()
            with open(path, "rb") as fh:
                for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    digest.update(chunk)
            if digest.hexdigest() != path.name:
                bad.append(str(path.relative_to(root)))
    return bad


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def drop_folders(drop: Path) -> list[str]:
    return (
        sorted(d.name for d in drop.iterdir() if d.is_dir() and not d.name.startswith("."))
        if drop.is_dir()
        else []
    )
