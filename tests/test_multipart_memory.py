"""Constant memory: a 64 MB attachment streams through the reader with a bounded Python heap."""

from __future__ import annotations

import hashlib
import os
import tracemalloc

from gateway.edxml.multipart import DiscardSink, MultipartReader, multipart_content_type

BOUNDARY = "edxml-mem-0123456789abcdef0123456789ab"
CT = multipart_content_type(BOUNDARY)
DASH = b"--" + BOUNDARY.encode()
PART = 64 * 1024 * 1024
CHUNK = 1 << 20


def test_64_mb_part_in_constant_memory():
    block = os.urandom(CHUNK)
    assert DASH not in block
    head = (
        DASH
        + b"\r\nContent-Type: application/edxml+xml\r\nContent-ID: <edxml>\r\n\r\n<edXML/>\r\n"
        + DASH
        + b"\r\nContent-ID: <big>\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    tail = b"\r\n" + DASH + b"--\r\n"
    expected = hashlib.sha256()
    reader = MultipartReader(CT, sink_factory=DiscardSink)
    tracemalloc.start()
    try:
        reader.feed(head)
        # Odd-sized chunks make the delimiter search straddle chunk edges all the way through.
        view = memoryview(block)
        sent = 0
        while sent < PART:
            n = min(CHUNK - 7, PART - sent)
            piece = view[sent % 7 : sent % 7 + n]
            expected.update(piece)
            reader.feed(piece)
            sent += n
        reader.feed(tail)
        result = reader.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    (part,) = result.parts
    assert part.size == PART
    assert part.sha256 == expected.hexdigest()
    # A feed copies at most one chunk (+ a tail shorter than the delimiter): a few MiB, never the part.
    assert peak < 3 * CHUNK, peak


def test_a_chunk_after_a_held_back_tail_is_read_in_place():
    """A chunk ending in what might begin a delimiter (a CR) leaves that tail held back; the next chunk is
    then searched where it lies, not copied behind the tail (a 4 MiB copy per such chunk, every chunk for
    a body with a repeating pattern)."""
    chunk = bytearray(os.urandom(4 << 20))
    chunk[-3] = 0x0D
    assert DASH not in chunk
    head = (
        DASH
        + b"\r\nContent-Type: application/edxml+xml\r\nContent-ID: <edxml>\r\n\r\n<edXML/>\r\n"
        + DASH
        + b"\r\nContent-ID: <big>\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    reader = MultipartReader(CT, sink_factory=DiscardSink)
    reader.feed(head)
    reader.feed(chunk)
    peaks = []
    for _ in range(3):
        tracemalloc.start()
        try:
            reader.feed(chunk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        peaks.append(peak)
    reader.feed(b"\r\n" + DASH + b"--\r\n")
    (part,) = reader.close().parts
    assert part.size == 4 * len(chunk)
    assert part.sha256 == hashlib.sha256(bytes(chunk) * 4).hexdigest()
    assert max(peaks) < 64 * 1024, peaks
