#!/usr/bin/env python3
"""Fuzz target for the package parser and verifier (atheris / libFuzzer): ``make fuzz`` runs it.

One input drives one of the pure-core entry points the hub feeds with untrusted bytes; the first byte
chooses which (and, for multipart, how the body is cut into chunks):

====  ===========================================================================================
mode  what
====  ===========================================================================================
0     :func:`gateway.edxml.parse.parse` (hardened parse + model)
1     :func:`gateway.verification.inspect_package` without a trust store (signature, model, fields)
2     :func:`gateway.verification.inspect_package` with the seeds' trust store
3     :class:`gateway.edxml.multipart.MultipartReader` with the seeds' Content-Type, then the parts
      checked by :func:`match_parts` and the edXML part verified with them (the hub's multipart path)
4     the same with the Content-Type taken from the input's first line (content-type parsing too)
5     :func:`gateway.edxml.multipart.to_multipart` and :func:`to_single_file` (the carriage converters)
====  ===========================================================================================

The property: only :class:`gateway.errors.GatewayError` may escape. Any other exception is a crash
(a traceback a hub user would turn into a 500). Seeds: ``fuzz/seeds`` (``fuzz/make_seeds.py``).
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from gateway.edxml.multipart import (
        MemorySink,
        match_parts,
        read_multipart_bytes,
        to_multipart,
        to_single_file,
    )
    from gateway.edxml.parse import parse
    from gateway.errors import GatewayError
    from gateway.trust.store import TrustStore
    from gateway.verification import inspect_package

HERE = Path(__file__).resolve().parent
CONTENT_TYPE = (
    'multipart/related; type="application/edxml+xml"; boundary="edxml-fuzz-0123456789"; start="<edxml>"'
)
TRUST = TrustStore.load(HERE / "trust")
AT = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
CHUNKS = (1, 2, 3, 7, 64, 1 << 16)


def _multipart(body: bytes, content_type: str, chunk_size: int) -> None:
    result = read_multipart_bytes(body, content_type, sink_factory=MemorySink, chunk_size=chunk_size)
    inspection = inspect_package(result.edxml, trust=None)
    message = inspection.unverified_message
    manifest = getattr(message, "manifest", ())
    digests = match_parts(manifest, result.parts)
    inspect_package(result.edxml, trust=TRUST, at=AT, attachments=digests)
    parts = {p.content_id: p.handle.data for p in result.parts}
    to_single_file(result.edxml, parts)


def _convert(data: bytes) -> None:
    content_type, chunks = to_multipart(data, boundary="edxml-fuzz-0123456789")
    body = b"".join(chunks)
    result = read_multipart_bytes(body, content_type, sink_factory=MemorySink)
    to_single_file(result.edxml, {p.content_id: p.handle.data for p in result.parts})


def test_one_input(raw: bytes) -> None:
    if not raw:
        return
    mode, data = raw[0] % 6, raw[1:]
    try:
        if mode == 0:
            parse(data)
        elif mode == 1:
            inspect_package(data, trust=None, at=AT)
        elif mode == 2:
            inspect_package(data, trust=TRUST, at=AT)
        elif mode == 3:
            _multipart(data, CONTENT_TYPE, CHUNKS[raw[0] // 6 % len(CHUNKS)])
        elif mode == 4:
            head, _, body = data.partition(b"\n")
            _multipart(body, head.decode("latin-1"), CHUNKS[raw[0] // 6 % len(CHUNKS)])
        else:
            _convert(data)
    except GatewayError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
