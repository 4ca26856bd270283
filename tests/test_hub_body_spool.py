"""The upload spool (``gateway.hub.body``) against the page cache and the disk, in process.

What the hub relies on: a large body the hub will not read back (a multipart package, whose parts the
parser saw as they arrived) leaves the page cache as it is synced, so the next upload is written into
pages just freed; a body the hub reads back (a single-file package, verified from its file) stays cached;
and a failed ``fdatasync`` fails the request and leaves no file, since the error would not be reported
to the fsync before the rename into the blob store.
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hub_helpers import resident_pages

from gateway.hub import body

SIZE = 3 * body.BATCH  # three batches, so three syncs; at or past DIRECT_MIN
DATA = os.urandom(1 << 20) * (SIZE >> 20)
SPOOLS = web.AppKey("spools", list)

pytestmark = pytest.mark.skipif(not body.UNCACHE, reason="posix_fadvise is not available here")


def spool_app(tmp_dir: Path) -> web.Application:
    """``POST /?reread=0|1``: receive the body as the hub does; answer its digest and keep the spool."""

    async def handler(request: web.Request) -> web.Response:
        try:
            spool = await body.receive(
                request,
                limit=SIZE,
                tmp_dir=tmp_dir,
                spool_threshold=1 << 20,
                reread=request.query["reread"] == "1",
            )
        except OSError as exc:
            return web.Response(status=507, text=f"{type(exc).__name__}: {exc}")
        request.app[SPOOLS].append(spool)
        return web.Response(text=spool.sha256)

    app = web.Application(middlewares=[body.close_after_direct_read])
    app[SPOOLS] = []
    app.router.add_post("/", handler)
    return app


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    client = TestClient(TestServer(spool_app(tmp_path / "tmp")))
    await client.start_server()
    try:
        yield client
    finally:
        for spool in client.app[SPOOLS]:
            spool.discard()
        await client.close()


def chunks() -> Iterator[bytes]:
    for i in range(0, SIZE, 1 << 20):
        yield DATA[i : i + (1 << 20)]


async def post(client: TestClient, *, reread: bool, chunked: bool) -> tuple[int, str]:
    """With a Content-Length the body takes the direct read; chunked, aiohttp's own path."""
    if chunked:

        async def gen() -> AsyncIterator[bytes]:
            for chunk in chunks():
                yield chunk

        response = await client.post(f"/?reread={int(reread)}", data=gen())
    else:
        response = await client.post(
            f"/?reread={int(reread)}", data=DATA, headers={"Content-Length": str(SIZE)}
        )
    return response.status, await response.text()


SYNCED = 2 * body.BATCH
"""At least this much of the body is synced by the time it is received, on either path (a sync follows
each batch of at least 4 MiB; the last one may be smaller and is synced when the blob is stored)."""


@pytest.mark.parametrize("chunked", [False, True], ids=["direct", "chunked"])
async def test_a_body_not_read_back_leaves_the_page_cache_and_stays_whole_on_disk(
    client: TestClient, chunked: bool
) -> None:
    status, digest = await post(client, reread=False, chunked=chunked)
    assert (status, digest) == (200, hashlib.sha256(DATA).hexdigest())
    spool = client.app[SPOOLS][-1]
    assert spool.path is not None
    assert resident_pages(spool.path, SYNCED) == 0
    assert spool.path.read_bytes() == DATA


@pytest.mark.parametrize("chunked", [False, True], ids=["direct", "chunked"])
async def test_a_body_read_back_stays_in_the_page_cache(client: TestClient, chunked: bool) -> None:
    status, _ = await post(client, reread=True, chunked=chunked)
    assert status == 200
    spool = client.app[SPOOLS][-1]
    assert spool.path is not None
    assert resident_pages(spool.path, SYNCED) == SYNCED // mmap.PAGESIZE


async def test_a_failed_sync_fails_the_request_and_leaves_no_file(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def failing_fdatasync(fd: int) -> None:
        calls.append(fd)
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(body.os, "fdatasync", failing_fdatasync)
    status, text = await post(client, reread=False, chunked=False)
    assert calls, "no sync was attempted"
    assert (status, text) == (507, "OSError: [Errno 5] Input/output error")
    assert client.app[SPOOLS] == []
    assert list((tmp_path / "tmp").glob("*")) == []
