"""Receiving a request body: streamed, hashed while it arrives, size-limited before and while reading.

A body is never read whole into memory with ``await request.read()``. Small bodies (the common 10 KB
package) stay in memory because a temporary file would cost more than the verification; past
``spool_threshold`` the bytes go to a temporary file in the blob store's ``tmp`` folder, written and hashed
in a thread (``hashlib`` and file writes release the GIL) so that the event loop keeps serving.

A body declared at least :data:`DIRECT_MIN` bytes long is read past aiohttp (:func:`_receive_direct`): the
connection's reads are taken over by a buffered protocol, so that TLS decrypts straight into 4 MiB
buffers handed to the threads as they fill. aiohttp's path for the same bytes allocates and joins the
decrypted records, copies them again in the HTTP parser and queues them: on a 100 MB upload, about 50 ms of
the event loop's 125–193 ms. The connection is closed after the response (its HTTP parser never saw
the body), which costs one TLS handshake next to the transfer of at least 4 MiB.

Every exit path that does not hand the spool over removes its file: a rejected request leaves nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import mmap
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.errors import InputError, InputTooLarge, RequestError, RequestTimeout

BATCH = 4 << 20
"""Bytes gathered from the socket before one hand-off to the writer threads. The chunks are handed over
as they came (a list, never joined: no copy in the event loop), and one batch is hashed and written while
the next one arrives."""

Chunk = bytes | bytearray | memoryview
ChunkSink = Callable[[Chunk], None]
"""Receives each piece of raw body bytes in a writer thread (the multipart parser plugs in here). A
large body's pieces are reused buffers: the sink must copy what it keeps beyond the call."""


@dataclass(kw_only=True)
class Spool:
    """The received body: its SHA-256 and size, and either the bytes or a temporary file holding them."""

    sha256: str
    size: int
    data: bytes | None = None
    path: Path | None = None

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

    def __init__(self, tmp_dir: Path, sink: ChunkSink | None, *, uncache: bool = False) -> None:
        self.hasher = hashlib.sha256()
        self.tmp_dir = tmp_dir
        self.sink = sink
        self.uncache = uncache
        self.fh: Any = None
        self.path: Path | None = None
        self.unsynced = 0
        self.written = 0  # bytes whose write returned (read by sync in another thread)
        self.uncached = 0
        self.syncs: list[asyncio.Future[None]] = []

    def open(self) -> None:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=SPOOL_PREFIX, suffix=SPOOL_SUFFIX, dir=self.tmp_dir)
        self.path = Path(name)
        self.fh = os.fdopen(fd, "wb", buffering=0)

    def write(self, chunks: Sequence[Chunk]) -> None:
        for chunk in chunks:
            self.hasher.update(chunk)
            if self.fh is not None:
                self.fh.write(chunk)
                self.unsynced += len(chunk)
                self.written += len(chunk)

    def feed(self, chunks: Sequence[Chunk]) -> None:
        assert self.sink is not None
        for chunk in chunks:
            self.sink(chunk)

    def sync(self) -> None:
        """Flush written pages to disk (run beside the writer, so write-back overlaps the upload); with
        ``uncache``, then drop them from the page cache (see :data:`UNCACHE`)."""
        if self.fh is None:
            return
        upto = self.written  # before the sync: every byte below it is on disk once fdatasync returns
        fd = self.fh.fileno()
        # A failure is raised, not ignored: the error is reported once per file, so the fsync before
        # the rename into the blob store would not see it again.
        os.fdatasync(fd)
        if self.uncache and upto > self.uncached:
            with contextlib.suppress(OSError):  # only advice: the bytes are on disk either way
                os.posix_fadvise(fd, self.uncached, upto - self.uncached, os.POSIX_FADV_DONTNEED)
            # the kernel keeps a page the range ends inside: the next range starts at that page
            self.uncached = max(self.uncached, upto - upto % mmap.PAGESIZE)

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


SYNC_EVERY = 4 << 20
"""Bytes written between two background ``fdatasync`` calls: the blob must be on disk before the hub
acknowledges it, and syncing as the body arrives keeps that final sync short. With 16 MiB, the sync left
after the last byte took 13–16 ms of a 100 MB upload's 260 ms; with 4 MiB, 4–6 ms."""

UNCACHE = hasattr(os, "posix_fadvise")
"""Whether a body nobody reads back right away (``receive(..., reread=False)``) leaves the page cache as it
is synced. Every page written into the cache needs a free page; when the cache keeps every blob, each
upload is copied into memory not touched for a long time, and on this project's 2-core machines that
copy cost a 100 MB upload about 100 ms of CPU more than a copy into pages just released. Dropped, the
synced pages go back to the free lists and the next batches are written into them: the hub's CPU for a
100 MB multipart upload went from 330–420 to 300–330 ms. A stored blob is read again, if at all, when a
recipient fetches it, as any blob older than the cache is: from disk."""


async def _finish(
    loop: asyncio.AbstractEventLoop, writer: _Writer, inflight: asyncio.Future[None] | None
) -> None:
    """The last batch hashed and written, the file synced and closed: the body may be acknowledged."""
    if inflight is not None:
        await inflight
    if writer.syncs:
        await asyncio.gather(*writer.syncs)
    await loop.run_in_executor(None, writer.close)


async def _abandon(writer: _Writer, inflight: asyncio.Future[None] | None) -> None:
    """A body that will not be kept: let the threads finish with the file, then remove it."""
    if inflight is not None:
        await asyncio.gather(inflight, return_exceptions=True)
    if writer.syncs:
        await asyncio.gather(*writer.syncs, return_exceptions=True)
    writer.close()
    if writer.path is not None:
        with contextlib.suppress(FileNotFoundError):
            writer.path.unlink()


async def _hand_off(loop: asyncio.AbstractEventLoop, writer: _Writer, batch: Sequence[Chunk]) -> None:
    """Hash+write and the sink run side by side in two threads (both release the GIL for big buffers)."""
    if writer.sink is None:
        await loop.run_in_executor(None, writer.write, batch)
    else:
        await asyncio.gather(
            loop.run_in_executor(None, writer.write, batch), loop.run_in_executor(None, writer.feed, batch)
        )
    if writer.unsynced >= SYNC_EVERY:
        writer.unsynced = 0
        running = []
        for sync in writer.syncs:
            if not sync.done():
                running.append(sync)
            else:
                sync.result()  # a sync that failed fails the request now
        writer.syncs = [*running, loop.run_in_executor(None, writer.sync)]


async def _next_hand_off(
    loop: asyncio.AbstractEventLoop,
    writer: _Writer,
    inflight: asyncio.Future[None] | None,
    batch: Sequence[Chunk],
) -> asyncio.Future[None]:
    """Hand ``batch`` to the threads once the batch before it (``inflight``) is done: in order, and at most
    one batch in the threads while the next one arrives."""
    if inflight is not None:
        await inflight
    return asyncio.ensure_future(_hand_off(loop, writer, batch))


async def receive(
    request: web.Request,
    *,
    limit: int,
    tmp_dir: Path,
    spool_threshold: int = 1 << 20,
    sink: ChunkSink | None = None,
    keep_file: bool = True,
    reread: bool = True,
    read_timeout: float | None = 60.0,
) -> Spool:
    """Stream the body of ``request``; raise ``input.too_large`` (413) the moment it passes ``limit``.

    ``sink`` (run in a worker thread, in order) also receives every byte, e.g. a multipart push parser.
    With ``keep_file=False`` the raw body is hashed and handed to ``sink`` but never written (the sink
    stores what matters). ``reread=False``: the spooled file is not read back before it is stored (the
    sink saw every byte), so its synced pages leave the page cache (:data:`UNCACHE`).
    ``read_timeout``: the longest wait for the next chunk (slow-client defence).
    """
    check_declared_length(request, limit)
    writer = _Writer(tmp_dir, sink, uncache=UNCACHE and not reread)
    if _direct_eligible(request, spool_threshold if sink is None else 0):
        return await _receive_direct(request, writer, keep_file=keep_file, read_timeout=read_timeout)
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
                inflight = await _next_hand_off(loop, writer, inflight, batch)
                batch, batched = [], 0
        if not spilled:
            data = b"".join(memory)
            if not data:
                raise InputError("input.empty", "the request has no body")
            return Spool(sha256=hashlib.sha256(data).hexdigest(), size=size, data=data)
        if batch:
            inflight = await _next_hand_off(loop, writer, inflight, batch)
        await _finish(loop, writer, inflight)
        if size == 0:
            raise InputError("input.empty", "the request has no body")
        return Spool(sha256=writer.hasher.hexdigest(), size=size, path=writer.path)
    except BaseException:
        await _abandon(writer, inflight)
        raise


# --- large bodies, read past aiohttp ----------------------------------------------------------------
CLOSE_AFTER = web.RequestKey("close_after", bool)
"""Request key: the body was read past aiohttp's parser, so the connection must close after the response
(:func:`close_after_direct_read`), whatever the response is."""


@web.middleware
async def close_after_direct_read(request: web.Request, handler: Any) -> web.StreamResponse:
    response: web.StreamResponse = await handler(request)
    if request.get(CLOSE_AFTER):
        response.force_close()
    return response


DIRECT_MIN = BATCH
"""Bodies declared at least this long (and above the in-memory threshold) take :func:`_receive_direct`."""
POOL_KEEP = 4
"""Batch buffers kept for the next large body (16 MiB): a fresh 4 MiB buffer is a new mapping of zeroed
pages, faulted in as it fills."""
_pool: list[bytearray] = []


def _buffer() -> bytearray:
    return _pool.pop() if _pool else bytearray(BATCH)


def _release(buf: bytearray, _done: object = None) -> None:
    if len(_pool) < POOL_KEEP:
        _pool.append(buf)


def _direct_eligible(request: web.Request, in_memory_max: int) -> bool:
    """A plain body of known length, large enough, on a transport whose protocol can be swapped."""
    length = request.content_length
    if length is None or length < max(DIRECT_MIN, in_memory_max + 1):
        return False
    if request.headers.get("Content-Encoding", "identity").lower() != "identity":
        return False  # aiohttp would decode it: the bytes hashed must be the same either way
    transport = request.transport
    return transport is not None and hasattr(transport, "set_protocol") and not transport.is_closing()


class _DirectReader(asyncio.BufferedProtocol):
    """The connection's protocol for the rest of one body: decrypted bytes land in batch buffers, each full
    one (or the last) goes to :attr:`batches`. Reading pauses while two batches wait for the threads.

    Everything else is passed to aiohttp's protocol (``old``): write flow control, end of file and loss of
    the connection, so that aiohttp still finishes the request and closes the connection as usual. Bytes
    past the declared length are not a request anyone will answer (the connection closes after the
    response): they are dropped.
    """

    def __init__(self, old: Any, transport: Any, remaining: int, loop: asyncio.AbstractEventLoop) -> None:
        self.old = old
        self.transport = transport
        self.remaining = remaining
        self.loop = loop
        self.batches: asyncio.Queue[tuple[bytearray, int] | BaseException | None] = asyncio.Queue()
        self.buf: bytearray | None = None
        self.filled = 0
        self.paused = False
        self.progress = loop.time()
        self._scratch: bytearray | None = None

    # asyncio.BufferedProtocol
    def get_buffer(self, sizehint: int) -> memoryview:
        if self.remaining <= 0:
            if self._scratch is None:
                self._scratch = bytearray(1 << 16)
            return memoryview(self._scratch)
        if self.buf is None:
            self.buf, self.filled = _buffer(), 0
        end = self.filled + min(BATCH - self.filled, self.remaining)
        return memoryview(self.buf)[self.filled : end]

    def buffer_updated(self, nbytes: int) -> None:
        if self.remaining <= 0:
            return  # past the body: see the class docstring
        self.progress = self.loop.time()
        self.filled += nbytes
        self.remaining -= nbytes
        if self.filled < BATCH and self.remaining > 0:
            return
        assert self.buf is not None
        self.batches.put_nowait((self.buf, self.filled))
        self.buf = None
        if self.remaining == 0:
            self.batches.put_nowait(None)
        elif self.batches.qsize() >= 2 and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        self._cut("the client ended the connection inside the body")
        return self.old.eof_received()  # type: ignore[no-any-return]

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cut("the connection closed before the body ended")
        self.old.connection_lost(exc)

    def pause_writing(self) -> None:
        self.old.pause_writing()

    def resume_writing(self) -> None:
        self.old.resume_writing()

    # the reading coroutine's side
    def _cut(self, why: str) -> None:
        if self.remaining > 0:
            self.remaining = 0
            self.batches.put_nowait(ConnectionResetError(why))

    def took(self) -> None:
        """A batch was taken: resume reading if it was paused for the threads."""
        if self.paused and self.batches.qsize() < 2:
            self.paused = False
            self.progress = self.loop.time()  # the pause was ours, not a slow client
            self.transport.resume_reading()

    async def next(self, read_timeout: float | None) -> tuple[bytearray, int] | BaseException | None:
        """The next batch; ``request.timeout`` only when no byte came for ``read_timeout`` (a slow client
        may take longer than that to fill a batch)."""
        while True:
            try:
                async with asyncio.timeout(read_timeout):
                    item = await self.batches.get()
            except TimeoutError as exc:
                if self.loop.time() - self.progress >= read_timeout:  # type: ignore[operator]
                    raise RequestTimeout("request.timeout", "the body stopped arriving") from exc
                continue
            self.took()
            return item


async def _receive_direct(
    request: web.Request, writer: _Writer, *, keep_file: bool, read_timeout: float | None
) -> Spool:
    """:func:`receive` for a large body of known length (see the module's docstring)."""
    size, transport = request.content_length, request.transport
    assert size is not None
    assert transport is not None
    loop = asyncio.get_running_loop()
    try:
        head = request.content.read_nowait(-1)  # what aiohttp's parser already passed on
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        raise RequestError("request.bad", "the connection closed before the body ended") from exc
    reader = _DirectReader(transport.get_protocol(), transport, size - len(head), loop)
    if reader.remaining > 0:
        request[CLOSE_AFTER] = True  # aiohttp's parser will not see the end of this body
        transport.set_protocol(reader)
        if not transport.is_reading():
            transport.resume_reading()
    else:
        reader.batches.put_nowait(None)
    inflight: asyncio.Future[None] | None = None
    try:
        if keep_file:
            await loop.run_in_executor(None, writer.open)
        if head:
            inflight = await _next_hand_off(loop, writer, inflight, [head])
        while (item := await reader.next(read_timeout)) is not None:
            if isinstance(item, BaseException):
                raise RequestError("request.bad", str(item)) from item
            buf, n = item
            piece = buf if n == len(buf) else memoryview(buf)[:n]  # a bytearray is parsed in place
            inflight = await _next_hand_off(loop, writer, inflight, [piece])
            inflight.add_done_callback(partial(_release, buf))
        await _finish(loop, writer, inflight)
        return Spool(sha256=writer.hasher.hexdigest(), size=size, path=writer.path)
    except BaseException:
        await _abandon(writer, inflight)
        raise
    finally:
        # aiohttp must not wait for the rest of this body after the response (it would never come to it):
        # the connection closes instead (close_after_direct_read).
        request.content.feed_eof()
