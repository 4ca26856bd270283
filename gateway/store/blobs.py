"""A content-addressed blob store on the filesystem: package bodies and attachments, by SHA-256.

Layout: ``<root>/<sha[:2]>/<sha>``; in-flight writes live in ``<root>/.tmp/`` (same filesystem, so the
final ``rename`` is atomic). The durability recipe, in order: write the temp file, ``fsync`` it,
``rename`` it into place, ``fsync`` the shard folder (and the root when the shard was new). A blob that
exists under its name is therefore complete, and a crash leaves at most a stray temp file, which
:meth:`BlobStore.sweep_temp` removes. A failed or aborted write removes its temp file at once.

Writing the same content twice is harmless: the second rename finds the blob present and drops its temp.
Blobs are written *before* the database transaction that refers to them commits; a blob whose
transaction then fails is unreferenced and can be collected later, which is safe, while the opposite
order could commit a row pointing at nothing.

Nothing here blocks the event loop: file I/O and hashing run in a thread (``hashlib`` releases the GIL on
large buffers), and :class:`BlobWriter` batches small writes into ~1 MiB chunks so a stream of 64 KiB
parts does not pay a thread hop per part.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import re
import tempfile
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from gateway.errors import PackageError

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
FLUSH_BYTES = 1024 * 1024
READ_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class BlobInfo:
    """What a finished write produced."""

    sha256: str
    size: int


def _check_sha(sha256: str) -> str:
    if not _SHA256.match(sha256):
        raise ValueError(f"not a lower-case hex SHA-256: {sha256!r}")
    return sha256


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """Blobs under one root folder. Cheap to create; holds no open files."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.tmp = self.root / ".tmp"

    def path_of(self, sha256: str) -> Path:
        """Where the blob lives (for ``FileResponse``/``sendfile``); it may not exist."""
        sha256 = _check_sha(sha256)
        return self.root / sha256[:2] / sha256

    async def exists(self, sha256: str) -> bool:
        return await asyncio.to_thread(self.path_of(sha256).is_file)

    def writer(self, *, expected_sha256: str | None = None, expected_size: int | None = None) -> BlobWriter:
        """A streaming writer; use as ``async with store.writer() as w: await w.write(...)``.

        With ``expected_sha256``/``expected_size`` (from a signed manifest), :meth:`BlobWriter.close`
        refuses content that does not match (``edxml.attachment_digest``) and keeps nothing.
        """
        return BlobWriter(self, expected_sha256=expected_sha256, expected_size=expected_size)

    async def put(self, data: bytes) -> BlobInfo:
        """Store ``data`` whole (small bodies); the same as one write and close."""
        async with self.writer() as writer:
            await writer.write(data)
        assert writer.info is not None
        return writer.info

    def publish_sync(self, source: Path, sha256: str, *, synced: bool = False) -> bool:
        """Move a file holding the blob ``sha256`` into place durably: fsync it (unless ``synced``), rename
        it, fsync the folder. The file is consumed. True if this call created the blob (False: the same
        content was already stored)."""
        final = self.path_of(sha256)
        if final.is_file():
            source.unlink(missing_ok=True)
            return False
        if not synced:
            fd = os.open(source, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        new_shard = not final.parent.is_dir()
        final.parent.mkdir(parents=True, exist_ok=True)
        if new_shard:
            _fsync_dir(self.root)
        os.replace(source, final)
        _fsync_dir(final.parent)
        return True

    async def adopt(self, path: str | os.PathLike[str], sha256: str) -> bool:
        """Publish a file the caller already wrote and hashed (a body streamed to disk while hashed) as
        the blob ``sha256``, without copying it: fsync, rename into place, fsync the folder. The file is
        consumed. Returns True if this call created the blob (False: the same content was stored).

        The file must be on the blob store's filesystem (``data_dir``); otherwise it is copied through a
        :class:`BlobWriter`, which checks the SHA-256 the caller claims.
        """
        sha256 = _check_sha(sha256)
        source = Path(path)
        try:
            return await asyncio.to_thread(self.publish_sync, source, sha256)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
        existed = await self.exists(sha256)
        async with self.writer(expected_sha256=sha256) as writer:
            handle: BinaryIO = await asyncio.to_thread(open, source, "rb")
            try:
                while chunk := await asyncio.to_thread(handle.read, READ_CHUNK):
                    await writer.write(chunk)
            finally:
                await asyncio.to_thread(handle.close)
        source.unlink(missing_ok=True)
        return not existed

    async def read(self, sha256: str) -> bytes:
        """The whole blob (small ones only: receipts, status messages, small packages)."""
        return await asyncio.to_thread(self.path_of(sha256).read_bytes)

    async def stream(self, sha256: str, *, chunk_size: int = READ_CHUNK) -> AsyncIterator[bytes]:
        """The blob in chunks, each read in a thread."""
        handle: BinaryIO = await asyncio.to_thread(open, self.path_of(sha256), "rb")
        try:
            while True:
                chunk = await asyncio.to_thread(handle.read, chunk_size)
                if not chunk:
                    return
                yield chunk
        finally:
            await asyncio.to_thread(handle.close)

    async def delete(self, sha256: str) -> bool:
        """Remove a blob (garbage collection of unreferenced blobs); True if it existed."""

        def _delete() -> bool:
            path = self.path_of(sha256)
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            _fsync_dir(path.parent)
            return True

        return await asyncio.to_thread(_delete)

    async def sweep_temp(self, *, older_than_s: float = 3600.0) -> int:
        """Remove temp files left by a crash (older than ``older_than_s``); returns how many."""

        def _sweep() -> int:
            if not self.tmp.is_dir():
                return 0
            cutoff = time.time() - older_than_s
            removed = 0
            for entry in self.tmp.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    if entry.stat().st_mtime < cutoff:
                        entry.unlink()
                        removed += 1
            return removed

        return await asyncio.to_thread(_sweep)

    def iter_shas(self) -> Iterable[str]:
        """Every stored blob's SHA-256 (synchronous; for offline garbage collection and checks)."""
        for shard in sorted(self.root.glob("[0-9a-f][0-9a-f]")):
            for entry in sorted(shard.iterdir()):
                if _SHA256.match(entry.name):
                    yield entry.name


class BlobWriter:
    """Streams bytes into a temp file while hashing them; :meth:`close` publishes the blob atomically.

    The sink interface the multipart reader needs: ``await write(chunk)``, ``await close() -> BlobInfo``,
    ``await abort()``. As an async context manager it closes on success and aborts on an exception.
    """

    def __init__(
        self, store: BlobStore, *, expected_sha256: str | None = None, expected_size: int | None = None
    ) -> None:
        self._store = store
        self._expected_sha256 = _check_sha(expected_sha256) if expected_sha256 else None
        self._expected_size = expected_size
        self._hash = hashlib.sha256()
        self._size = 0
        self._buffer = bytearray()
        self._file: BinaryIO | None = None
        self._tmp_path: Path | None = None
        self._done = False
        self.info: BlobInfo | None = None

    @property
    def size(self) -> int:
        """Bytes accepted so far (lets a caller enforce a size limit while streaming)."""
        return self._size + len(self._buffer)

    def _open(self) -> None:
        self._store.tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self._store.tmp, prefix="blob-")
        self._file = os.fdopen(fd, "wb")
        self._tmp_path = Path(name)

    def _flush_sync(self, data: bytes | bytearray) -> None:
        if self._file is None:
            self._open()
        assert self._file is not None
        self._hash.update(data)
        self._file.write(data)
        self._size += len(data)

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._done:
            raise ValueError("write to a closed blob writer")
        self._buffer += data
        if len(self._buffer) >= FLUSH_BYTES:
            chunk, self._buffer = bytes(self._buffer), bytearray()
            try:
                await asyncio.to_thread(self._flush_sync, chunk)
            except BaseException:
                await self.abort()
                raise

    def _finish_sync(self, tail: bytes) -> BlobInfo:
        self._flush_sync(tail)
        assert self._file is not None
        assert self._tmp_path is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        sha = self._hash.hexdigest()
        if (self._expected_sha256 and sha != self._expected_sha256) or (
            self._expected_size is not None and self._size != self._expected_size
        ):
            self._tmp_path.unlink(missing_ok=True)
            raise PackageError(
                "edxml.attachment_digest",
                f"received {self._size} bytes with SHA-256 {sha}; the manifest says "
                f"{self._expected_size} bytes with SHA-256 {self._expected_sha256}",
            )
        self._store.publish_sync(self._tmp_path, sha, synced=True)  # dropped if the content is stored
        return BlobInfo(sha256=sha, size=self._size)

    async def close(self) -> BlobInfo:
        """Publish the blob (durably) and return its SHA-256 and size. Idempotent."""
        if self.info is not None:
            return self.info
        if self._done:
            raise ValueError("the blob writer was aborted")
        self._done = True
        tail, self._buffer = bytes(self._buffer), bytearray()
        try:
            self.info = await asyncio.to_thread(self._finish_sync, tail)
        except BaseException:
            await asyncio.to_thread(self._discard_sync)
            raise
        return self.info

    def _discard_sync(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()
        if self._tmp_path is not None:
            self._tmp_path.unlink(missing_ok=True)

    async def abort(self) -> None:
        """Drop everything written so far; nothing is published."""
        self._done = True
        self._buffer = bytearray()
        if self.info is None:
            await asyncio.to_thread(self._discard_sync)

    async def __aenter__(self) -> BlobWriter:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            await self.close()
        else:
            await self.abort()
