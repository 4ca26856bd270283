"""The content-addressed blob store: atomic publication, dedupe, digest checks, no partial blobs."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from gateway.errors import PackageError
from gateway.store.blobs import FLUSH_BYTES, BlobStore


def files_under(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def test_put_read_and_layout(tmp_path):
    store = BlobStore(tmp_path)
    info = await store.put(b"hello")
    digest = hashlib.sha256(b"hello").hexdigest()
    assert (info.sha256, info.size) == (digest, 5)
    assert store.path_of(digest) == tmp_path / digest[:2] / digest
    assert await store.read(digest) == b"hello"
    assert await store.exists(digest)
    assert files_under(tmp_path) == [f"{digest[:2]}/{digest}"]


async def test_streaming_write_in_many_chunks(tmp_path):
    store = BlobStore(tmp_path)
    chunk = os.urandom(64 * 1024)
    expected = hashlib.sha256()
    async with store.writer() as writer:
        for _ in range(40):  # 2.5 MiB: several thread flushes
            await writer.write(chunk)
            expected.update(chunk)
        assert writer.size == 40 * len(chunk)
    assert writer.info.sha256 == expected.hexdigest()
    assert writer.info.size == 40 * len(chunk)
    streamed = b"".join([part async for part in store.stream(writer.info.sha256, chunk_size=100_000)])
    assert hashlib.sha256(streamed).hexdigest() == expected.hexdigest()


async def test_same_content_twice_is_one_blob(tmp_path):
    store = BlobStore(tmp_path)
    first = await store.put(b"x" * 10)
    second = await store.put(b"x" * 10)
    assert first == second
    assert len(files_under(tmp_path)) == 1


async def test_failed_write_leaves_no_partial_blob(tmp_path):
    store = BlobStore(tmp_path)

    class Boom(Exception):
        pass

    async def failing_upload() -> None:
        async with store.writer() as writer:
            await writer.write(b"a" * (FLUSH_BYTES + 10))  # some bytes are already on disk
            raise Boom

    with pytest.raises(Boom):
        await failing_upload()
    assert files_under(tmp_path) == []
    assert list(store.iter_shas()) == []


async def test_digest_mismatch_is_refused_and_kept_nowhere(tmp_path):
    store = BlobStore(tmp_path)
    writer = store.writer(expected_sha256=hashlib.sha256(b"right").hexdigest(), expected_size=5)
    await writer.write(b"wrong")
    with pytest.raises(PackageError) as info:
        await writer.close()
    assert info.value.code == "edxml.attachment_digest"
    assert files_under(tmp_path) == []
    ok = store.writer(expected_sha256=hashlib.sha256(b"right").hexdigest(), expected_size=5)
    await ok.write(b"right")
    assert (await ok.close()).size == 5


async def test_abort_and_close_are_final(tmp_path):
    store = BlobStore(tmp_path)
    writer = store.writer()
    await writer.write(b"data")
    await writer.abort()
    with pytest.raises(ValueError, match="closed"):
        await writer.write(b"more")
    assert files_under(tmp_path) == []


async def test_sweep_removes_stale_temp_files_only(tmp_path):
    store = BlobStore(tmp_path)
    store.tmp.mkdir(parents=True)
    stale, fresh = store.tmp / "blob-old", store.tmp / "blob-new"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    assert await store.sweep_temp(older_than_s=3600) == 1
    assert not stale.exists()
    assert fresh.exists()


async def test_delete(tmp_path):
    store = BlobStore(tmp_path)
    info = await store.put(b"gone")
    assert await store.delete(info.sha256)
    assert not await store.delete(info.sha256)


def test_bad_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="SHA-256"):
        BlobStore(tmp_path).path_of("../../etc/passwd")


def test_a_published_file_is_moved_into_place_once(tmp_path):
    store = BlobStore(tmp_path)
    digest = hashlib.sha256(b"body").hexdigest()
    store.tmp.mkdir(parents=True)
    staged = store.tmp / "staged"
    staged.write_bytes(b"body")
    assert store.publish_sync(staged, digest) is True
    assert not staged.exists()
    again = store.tmp / "again"
    again.write_bytes(b"body")
    assert store.publish_sync(again, digest, synced=True) is False  # the same content: the copy is dropped
    assert not again.exists()
    assert files_under(tmp_path) == [f"{digest[:2]}/{digest}"]
    assert store.path_of(digest).read_bytes() == b"body"
