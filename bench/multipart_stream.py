"""How close the multipart reader comes to the SHA-256 floor (DESIGN §2, §8). A measurement, not a test.

Times, over the same bytes, in the same run:

* ``sha256``: plain ``hashlib.sha256`` over the attachment, fed in the same chunks (the floor);
* ``reader``: :class:`MultipartReader` over the whole multipart body (edXML part + one attachment):
  delimiter search, bookkeeping and SHA-256 of the part, into a sink that drops the bytes.

and prints both with their ratio (target: reader ≥ 70 % of the floor). With ``--memory`` it also streams a
body of ``--size`` MB generated on the fly (nothing held whole) and reports the peak of the Python heap
(tracemalloc) and the process's maximum RSS: e.g. ``--size 1024 --memory`` for the 1 GB figure.

    .venv/bin/python bench/multipart_stream.py [--size 100] [--chunk 1048576] [--repeat 5] [--memory]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import time
import tracemalloc
from collections.abc import Iterator

from gateway.edxml.model import ManifestReference
from gateway.edxml.multipart import DiscardSink, MultipartReader, iter_multipart

MB = 1024 * 1024
EDXML = b'<?xml version="1.0" encoding="UTF-8"?>\n<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016"/>'


def make_body(size: int) -> tuple[str, bytes, bytes]:
    """A multipart body with one random attachment of ``size`` bytes; returns (content type, body, part)."""
    block = os.urandom(4 * MB)
    part = (block * (size // len(block) + 1))[:size]
    ref = ManifestReference(content_id="cid:big", content_type="application/octet-stream", size=size)
    content_type, chunks = iter_multipart(EDXML, [(ref, part)], chunk_size=4 * MB)
    return content_type, b"".join(chunks), part


def chunks_of(data: bytes, chunk: int) -> Iterator[memoryview]:
    view = memoryview(data)
    for i in range(0, len(view), chunk):
        yield view[i : i + chunk]


def time_sha256(part: bytes, chunk: int) -> tuple[float, str]:
    start = time.perf_counter()
    h = hashlib.sha256()
    for piece in chunks_of(part, chunk):
        h.update(piece)
    return time.perf_counter() - start, h.hexdigest()


def time_reader(content_type: str, body: bytes, chunk: int) -> tuple[float, str]:
    # Slices are made into bytes beforehand, as a network stream would hand them over.
    pieces = [bytes(p) for p in chunks_of(body, chunk)]
    start = time.perf_counter()
    reader = MultipartReader(content_type, sink_factory=DiscardSink)
    for piece in pieces:
        reader.feed(piece)
    result = reader.close()
    elapsed = time.perf_counter() - start
    return elapsed, result.parts[0].sha256


def throughput(args: argparse.Namespace) -> None:
    size = args.size * MB
    content_type, body, part = make_body(size)
    best_sha = best_reader = float("inf")
    for _ in range(args.repeat):
        t_sha, d_sha = time_sha256(part, args.chunk)
        t_reader, d_reader = time_reader(content_type, body, args.chunk)
        assert d_sha == d_reader, "the reader's digest differs from hashlib's"
        best_sha, best_reader = min(best_sha, t_sha), min(best_reader, t_reader)
    sha_rate = size / best_sha / MB
    reader_rate = size / best_reader / MB
    print(
        f"attachment {args.size} MB, body {len(body)} bytes, chunks of {args.chunk} B, best of {args.repeat}"
    )
    print(f"  hashlib.sha256   {sha_rate:8.0f} MB/s  ({best_sha * 1000:.1f} ms)")
    print(f"  MultipartReader  {reader_rate:8.0f} MB/s  ({best_reader * 1000:.1f} ms)")
    print(f"  ratio            {reader_rate / sha_rate:8.1%}  (target ≥ 70 %)")


def memory(args: argparse.Namespace) -> None:
    """Stream ``--size`` MB generated on the fly; the body never exists whole."""
    size = args.size * MB
    block = os.urandom(args.chunk)
    ref = ManifestReference(content_id="cid:big", content_type="application/octet-stream", size=size)

    class Repeat:
        """A file-like source of ``size`` bytes made of one block, read chunk by chunk."""

        def __init__(self) -> None:
            self.left = size

        def read(self, n: int) -> bytes:
            n = min(n, self.left, len(block))
            self.left -= n
            return block[:n]

    content_type, chunks = iter_multipart(EDXML, [(ref, Repeat())], chunk_size=args.chunk)  # type: ignore[list-item]
    reader = MultipartReader(content_type, sink_factory=DiscardSink)
    tracemalloc.start()
    start = time.perf_counter()
    for piece in chunks:
        reader.feed(piece)
    result = reader.close()
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert result.parts[0].size == size
    rate = size / elapsed / MB
    print(f"streamed {args.size} MB in {elapsed:.2f} s ({rate:.0f} MB/s; writer + reader, under tracemalloc)")
    print(f"  Python heap peak (tracemalloc) {peak / 1024:.0f} KiB; max RSS of the process {rss:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100, help="attachment size in MB (default 100)")
    parser.add_argument("--chunk", type=int, default=MB, help="feed size in bytes (default 1 MiB)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--memory", action="store_true", help="stream --size MB and report memory instead")
    args = parser.parse_args()
    if args.memory:
        memory(args)
    else:
        throughput(args)


if __name__ == "__main__":
    main()
