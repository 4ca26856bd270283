"""Receiving a request body: streamed, hashed while it arrives, size-limited before and while reading.

A body is never read whole into memory with ``await request.read()``. Small bodies (the common 10 KB
package) stay in memory because a temporary file would cost more than the verification; past
``spool_threshold`` the bytes go to a temporary file in the blob store's ``tmp`` folder, written and hashed
in a thread (``hashlib`` and file writes release the GIL) so that the event loop keeps serving.

Every exit path that does not hand the spool over removes its file: a rejected request leaves nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.errors import InputError, InputTooLarge, RequestError, RequestTimeout

BATCH = 4 << 20
"""Bytes gathered from the socket before one hand-off to the writer threads. The chunks are handed over
as they came (a list, never joined: no copy in the event loop), and one batch is hashed and written while
the next one arrives."""

ChunkSink = Callable[[bytes], None]
"""Receives each batch of raw body bytes in the writer thread (the multipart parser plugs in here)."""


@dataclass(kw_only=True)
class Spool:
    """The received body: its SHA-256 and size, and either the bytes or a temporary file holding them."""

    sha256: str
    size: int
    data: bytes | None = None
    path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()

    def discard(self) -> None:
        """Remove the temporary file, if any (idempotent)."""
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


def check_declared_length(request: web.Request, limit: int) -> None:
    """Refuse before reading a byte when ``Content-Length`` already says the body is too large."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise InputTooLarge(
            "input.too_large", f"the body is {declared} bytes; the limit is {limit}", limit=limit
        )


SPOOL_PREFIX, SPOOL_SUFFIX = "in-", ".part"


def sweep_spool(tmp_dir: Path, *, older_than_s: float = 3600.0) -> int:
    """Remove upload spool files a killed hub left behind; returns how many.

    Several hub processes may share ``tmp_dir``: a live upload writes its file continuously, so only
    files untouched for ``older_than_s`` are taken as orphans. Nothing acknowledged lives here: a body is
    moved into the blob store before its receipt is sent.
    """
    if not tmp_dir.is_dir():
        return 0
    cutoff = time.time() - older_than_s
    removed = 0
    for entry in tmp_dir.glob(f"{SPOOL_PREFIX}*{SPOOL_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            if entry.stat().st_mtime < cutoff:
                entry.unlink()
                removed += 1
    return removed


class _Writer:
    """Hash and (once spilled) write, in one worker thread at a time; ``sink`` sees every byte too."""

    def __init__(self, tmp_dir: Path, sink: ChunkSink | None) -> None:
        self.hasher = hashlib.sha256()
        self.tmp_dir = tmp_dir
        self.sink = sink
        self.fh: Any = None
        self.path: Path | None = None
        self.unsynced = 0
        self.syncs: list[asyncio.Future[None]] = []

    def open(self) -> None:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=SPOOL_PREFIX, suffix=SPOOL_SUFFIX, dir=self.tmp_dir)
        self.path = Path(name)
        self.fh = os.fdopen(fd, "wb", buffering=0)

    def write(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self.hasher.update(chunk)
            if self.fh is not None:
                self.fh.write(chunk)
                self.unsynced += len(chunk)

    def feed(self, chunks: list[bytes]) -> None:
        assert self.sink is not None
        for chunk in chunks:
            self.sink(chunk)

    def sync(self) -> None:
        """Flush written pages to disk (run beside the writer, so write-back overlaps the upload)."""
        if self.fh is not None:
            with contextlib.suppress(OSError, ValueError):
                os.fdatasync(self.fh.fileno())

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


SYNC_EVERY = 4 << 20
"""Bytes written between two background ``fdatasync`` calls: the blob must be on disk before the hub
acknowledges it, and syncing as the body arrives keeps that final sync short. With 16 MiB, the sync left
after the last byte took 13–16 ms of a 100 MB upload's 260 ms; with 4 MiB, 4–6 ms."""


async def _hand_off(loop: asyncio.AbstractEventLoop, writer: _Writer, batch: list[bytes]) -> None:
    """Hash+write and the sink run side by side in two threads (both release the GIL for big buffers)."""
    if writer.sink is None:
        await loop.run_in_executor(None, writer.write, batch)
    else:
        await asyncio.gather(
            loop.run_in_executor(None, writer.write, batch), loop.run_in_executor(None, writer.feed, batch)
        )
    if writer.unsynced >= SYNC_EVERY:
        writer.unsynced = 0
        writer.syncs = [f for f in writer.syncs if not f.done()]
        writer.syncs.append(loop.run_in_executor(None, writer.sync))


async def receive(
    request: web.Request,
    *,
    limit: int,
    tmp_dir: Path,
    spool_threshold: int = 1 << 20,
    sink: ChunkSink | None = None,
    keep_file: bool = True,
    read_timeout: float | None = 60.0,
) -> Spool:
    """Stream the body of ``request``; raise ``input.too_large`` (413) the moment it passes ``limit``.

    ``sink`` (run in a worker thread, in order) also receives every byte, e.g. a multipart push parser.
    With ``keep_file=False`` the raw body is hashed and handed to ``sink`` but never written (the sink
    stores what matters). ``read_timeout``: the longest wait for the next chunk (slow-client defence).
    """
    check_declared_length(request, limit)
    writer = _Writer(tmp_dir, sink)
    loop = asyncio.get_running_loop()
    memory: list[bytes] = []
    batch: list[bytes] = []
    batched = 0
    inflight: asyncio.Future[None] | None = None
    size = 0
    spilled = False
    try:
        while True:
            try:
                # asyncio.timeout, not wait_for: no task per chunk (a 100 MB body comes in ~1,000 chunks)
                async with asyncio.timeout(read_timeout):
                    chunk = await request.content.readany()
            except TimeoutError as exc:
                raise RequestTimeout("request.timeout", "the body stopped arriving") from exc
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                raise RequestError("request.bad", "the connection closed before the body ended") from exc
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise InputTooLarge(
                    "input.too_large", f"the body passed the limit of {limit} bytes", limit=limit
                )
            if not spilled and sink is None and size <= spool_threshold:
                memory.append(chunk)
                continue
            if not spilled:
                spilled = True
                if keep_file:
                    await loop.run_in_executor(None, writer.open)
                batch, batched = memory, size - len(chunk)
                memory = []
            batch.append(chunk)
            batched += len(chunk)
            if batched >= BATCH:
                if inflight is not None:
                    await inflight  # in order, and at most one batch waiting besides the one arriving
                inflight = asyncio.ensure_future(_hand_off(loop, writer, batch))
                batch, batched = [], 0
        if not spilled:
            data = b"".join(memory)
            if not data:
                raise InputError("input.empty", "the request has no body")
            return Spool(sha256=hashlib.sha256(data).hexdigest(), size=size, data=data)
        if inflight is not None:
            await inflight
            inflight = None
        if batch:
            await _hand_off(loop, writer, batch)
        if writer.syncs:
            await asyncio.gather(*writer.syncs)
        await loop.run_in_executor(None, writer.close)
        if size == 0:
            raise InputError("input.empty", "the request has no body")
        return Spool(sha256=writer.hasher.hexdigest(), size=size, path=writer.path)
    except BaseException:
        if inflight is not None:  # let the threads finish with the file before it is removed
            await asyncio.gather(inflight, return_exceptions=True)
        if writer.syncs:
            await asyncio.gather(*writer.syncs, return_exceptions=True)
        writer.close()
        if writer.path is not None:
            with contextlib.suppress(FileNotFoundError):
                writer.path.unlink()
        raise
