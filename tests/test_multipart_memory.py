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
