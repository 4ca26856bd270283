"""The multipart/related carriage form of an edXML package (DESIGN §2 "Two carriage forms").

Part 1 is the signed edXML *without* ``AttachmentEncoded``; its signature covers ``edXMLEnvelope``, whose
manifest gives every attachment's size and SHA-256 (extension namespace :data:`~gateway.edxml.model.EXT_NS`).
The following parts are the raw attachment bytes. A receiver streams each part to storage while hashing
it, so a package of any size is checked at the speed of SHA-256 in constant memory; the signature then
covers the parts through the digests. The wire format is specified in ``docs/carriage.md``.

This module is pure (stdlib, ``hashlib``; lxml and pybase64 only for the conversions): the hub adapts its
request stream to :class:`MultipartReader` (push: ``feed`` / ``close``) or to :func:`read_multipart`.

Public API:

- :func:`iter_multipart` writes the form (content type + body chunks, files streamed);
- :class:`MultipartReader`, :func:`read_multipart`, :func:`read_multipart_bytes` read it;
- :func:`match_parts` compares what was read with the signed manifest;
- :func:`to_single_file` and :func:`to_multipart` convert between the two forms without touching the
  signed envelope.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import secrets
from collections.abc import AsyncIterable, Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import BinaryIO, Generic, Protocol, TypeVar

import pybase64
from lxml import etree

from gateway.edxml.model import DS_NS, NS, AttachmentDigest, DocumentPackage, ManifestReference
from gateway.edxml.parse import parse_element
from gateway.edxml.xmlparser import DEFAULT_LIMITS, XmlLimits, parse_xml
from gateway.errors import InputError, InputTooLarge, PackageError, UnsupportedMediaType

__all__ = [
    "DEFAULT_MAX_EDXML_BYTES",
    "DEFAULT_MAX_HEADER_BYTES",
    "DEFAULT_MAX_PARTS",
    "EDXML_MEDIA_TYPE",
    "START_CONTENT_ID",
    "DiscardSink",
    "MemorySink",
    "MultipartReader",
    "MultipartResult",
    "ReceivedPart",
    "Sink",
    "iter_multipart",
    "match_parts",
    "normalize_content_id",
    "parse_content_type",
    "read_multipart",
    "read_multipart_bytes",
    "to_multipart",
    "to_single_file",
]

EDXML_MEDIA_TYPE = "application/edxml+xml"
START_CONTENT_ID = "edxml"
DEFAULT_MAX_PARTS = 1001  # the edXML part and up to 1000 attachments
DEFAULT_MAX_HEADER_BYTES = 8 * 1024
DEFAULT_MAX_EDXML_BYTES = 16 * 1024 * 1024
DEFAULT_CHUNK_SIZE = 1 << 20

# Blank text (CR, LF, SP, HT) tolerated before the first delimiter and after the closing one, and the
# transport padding tolerated after a delimiter (RFC 2046 §5.1.1). Anything else there is refused.
_MAX_BLANK = 1024
_MAX_PADDING = 256
_BLANK = b" \t\r\n"
_IDENTITY_ENCODINGS = frozenset({"binary", "8bit", "7bit"})
_PREFIX = "edXML"


# --------------------------------------------------------------------------------------------------
# Header syntax
# --------------------------------------------------------------------------------------------------

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\\r\n]|\\[^\r\n])*"'
_MEDIA_RE = re.compile(rf"[ \t]*({_TOKEN})/({_TOKEN})[ \t]*")
# Unquoted values may also hold "/": clients write type=application/edxml+xml without quotes.
_PARAM_RE = re.compile(rf";[ \t]*({_TOKEN})[ \t]*=[ \t]*({_TOKEN}(?:/{_TOKEN})?|{_QUOTED})[ \t]*")
_UNQUOTE_RE = re.compile(r"\\(.)")
_HEADER_NAME_RE = re.compile(_TOKEN)
# RFC 2046 §5.1.1: 1-70 characters from bcharsnospace plus space, not ending with a space.
_BOUNDARY_RE = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_CONTENT_ID_RE = re.compile(r"[\x21-\x3b\x3d\x3f-\x7e]+")  # visible ASCII without '<' and '>'
_CID_PREFIX_RE = re.compile(r"cid:", re.IGNORECASE)


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """Split a Content-Type value into its lower-case media type and its parameters (names lower-cased).

    Strict RFC 9110 syntax: tokens or quoted strings, no duplicate parameter. Raises ``ValueError``; the
    callers turn it into the error code that fits where the header came from. Results are cached (one
    client sends the same header again and again); each call gets its own copy of the parameters.
    """
    media, params = _parse_content_type(value)
    return media, dict(params)


@functools.lru_cache(maxsize=256)
def _parse_content_type(value: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    m = _MEDIA_RE.match(value)
    if m is None:
        raise ValueError(f"not a media type: {value!r}")
    media = f"{m.group(1)}/{m.group(2)}".lower()
    params: dict[str, str] = {}
    pos = m.end()
    while pos < len(value):
        p = _PARAM_RE.match(value, pos)
        if p is None:
            if value[pos:].strip(" \t;") == "":
                break
            raise ValueError(f"bad parameter in {value!r}")
        name, raw = p.group(1).lower(), p.group(2)
        if name in params:
            raise ValueError(f"parameter {name!r} repeated")
        params[name] = _UNQUOTE_RE.sub(r"\1", raw[1:-1]) if raw.startswith('"') else raw
        pos = p.end()
    return media, tuple(params.items())


def normalize_content_id(value: str) -> str:
    """The comparable form of a content id: no surrounding blanks, no ``<``/``>``, no ``cid:`` prefix.

    The manifest writes ``cid:209``, a part header ``Content-ID: <209>``; both normalise to ``209``.
    Nothing else is changed (content ids are compared case-sensitively).
    """
    v = value.strip()
    if len(v) >= 2 and v[0] == "<" and v[-1] == ">":
        v = v[1:-1].strip()
    if _CID_PREFIX_RE.match(v):
        v = v[4:]
    return v


def _header_content_id(content_id: str) -> str:
    cid = normalize_content_id(content_id)
    if not _CONTENT_ID_RE.fullmatch(cid):
        raise ValueError(f"content id {content_id!r} cannot be written as a Content-ID header")
    return cid


def _header_content_type(content_type: str | None) -> str:
    """The manifest's content type if it is a valid header value, else application/octet-stream.

    The signed manifest stays authoritative for the type; the part header is a courtesy to tools.
    """
    if content_type:
        try:
            content_type.encode("ascii")
            parse_content_type(content_type)
        except (UnicodeEncodeError, ValueError):
            pass
        else:
            if "\r" not in content_type and "\n" not in content_type:
                return content_type.strip()
    return "application/octet-stream"


@functools.lru_cache(maxsize=256)
def _reader_settings(content_type: str) -> tuple[bytes, str | None]:
    """The delimiter and the start part's content id a Content-Type gives a reader (it raises as
    :func:`_multipart_boundary` does). Cached like :func:`parse_content_type`: a client sends the same
    header again and again."""
    boundary = _multipart_boundary(content_type)
    start = dict(_parse_content_type(content_type)[1]).get("start")
    # RFC 2387: without "start", the first part is the root
    return b"\r\n--" + boundary.encode("ascii"), normalize_content_id(start) if start is not None else None


def _multipart_boundary(content_type: str) -> str:
    """Check the request's Content-Type and return its boundary."""
    try:
        media, params = parse_content_type(content_type)
    except ValueError as exc:
        raise UnsupportedMediaType("multipart.content_type", str(exc)) from exc
    if media != "multipart/related":
        raise UnsupportedMediaType("multipart.content_type", f"got {media}, expected multipart/related")
    root_type = params.get("type")
    if root_type is not None and root_type.lower() != EDXML_MEDIA_TYPE:
        raise UnsupportedMediaType(
            "multipart.content_type", f"type={root_type!r}, expected {EDXML_MEDIA_TYPE!r}"
        )
    boundary = params.get("boundary")
    if boundary is None:
        raise InputError("multipart.boundary", "the Content-Type has no boundary parameter")
    if not _BOUNDARY_RE.fullmatch(boundary):
        raise InputError("multipart.boundary", f"invalid boundary {boundary!r}")
    return boundary


# --------------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------------


def new_boundary() -> str:
    """A fresh random boundary (128 bits): it occurs in no attachment with overwhelming probability."""
    return "edxml-" + secrets.token_hex(16)


def multipart_content_type(boundary: str) -> str:
    """The Content-Type header of a multipart edXML package with this boundary."""
    return (
        f'multipart/related; type="{EDXML_MEDIA_TYPE}"; boundary="{boundary}"; start="<{START_CONTENT_ID}>"'
    )


def iter_multipart(
    edxml: bytes,
    attachments: Iterable[tuple[ManifestReference, BinaryIO | bytes]],
    *,
    boundary: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[str, Iterator[bytes]]:
    """Write a package in the multipart form: returns the Content-Type and an iterator of body chunks.

    ``edxml`` is the signed package without ``AttachmentEncoded``; ``attachments`` pairs each manifest
    Reference, in manifest order, with its bytes or a binary file, which is read ``chunk_size`` bytes at a
    time while the body is consumed (never whole). Headers are checked before this returns; the body
    raises ``ValueError`` if a file's length differs from the Reference's ``size`` or contains the
    delimiter (a caller-chosen boundary; a random one cannot collide in practice).
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    if boundary is None:
        boundary = new_boundary()
        while b"--" + boundary.encode() in edxml:  # pragma: no cover - 2**-128
            boundary = new_boundary()
    elif not _BOUNDARY_RE.fullmatch(boundary):
        raise ValueError(f"invalid boundary {boundary!r}")
    dash = b"--" + boundary.encode("ascii")
    if dash in edxml:
        raise ValueError("the boundary occurs in the edXML part")

    start_headers = f"Content-Type: {EDXML_MEDIA_TYPE}\r\nContent-ID: <{START_CONTENT_ID}>\r\n\r\n".encode(
        "ascii"
    )
    prepared: list[tuple[bytes, BinaryIO | bytes, int | None]] = []
    seen = {START_CONTENT_ID}
    for ref, source in attachments:
        cid = _header_content_id(ref.content_id)
        if cid in seen:
            raise ValueError(f"content id {cid!r} is used twice")
        seen.add(cid)
        headers = (
            f"Content-ID: <{cid}>\r\n"
            f"Content-Type: {_header_content_type(ref.content_type)}\r\n"
            "Content-Transfer-Encoding: binary\r\n\r\n"
        ).encode("ascii")
        prepared.append((headers, source, ref.size))

    def body() -> Iterator[bytes]:
        yield dash + b"\r\n" + start_headers
        if edxml:
            yield edxml
        for headers, source, expected in prepared:
            yield b"\r\n" + dash + b"\r\n" + headers
            size = 0
            tail = b""
            for piece in _chunks(source, chunk_size):
                # The delimiter could straddle two pieces: look at the junction, then inside the piece.
                if dash in tail + piece[: len(dash) - 1] or dash in piece:
                    raise ValueError("the boundary occurs in an attachment; choose another boundary")
                tail = piece[-(len(dash) - 1) :]
                size += len(piece)
                yield piece
            if expected is not None and size != expected:
                raise ValueError(f"attachment is {size} bytes but the manifest says {expected}")
        yield b"\r\n" + dash + b"--\r\n"

    return multipart_content_type(boundary), body()


def _chunks(source: BinaryIO | bytes, chunk_size: int) -> Iterator[bytes]:
    if isinstance(source, bytes | bytearray | memoryview):
        view = memoryview(source)
        for i in range(0, len(view), chunk_size):
            yield bytes(view[i : i + chunk_size])
        return
    while piece := source.read(chunk_size):
        yield piece


# --------------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------------


class Sink(Protocol):
    """Where one attachment part's bytes go. ``write`` gets a view that is only valid during the call.

    A sink may also have ``abort()``: if reading fails, every sink created for the body gets ``abort()``
    (open or already closed), so a temp-file sink can delete what it wrote. Without ``abort``, open sinks
    get ``close()``.
    """

    def write(self, data: memoryview, /) -> object: ...

    def close(self) -> object: ...


S = TypeVar("S", bound=Sink)


class MemorySink:
    """A sink that keeps the part in memory (tests, small packages, conversions)."""

    def __init__(self, content_id: str = "", content_type: str = "") -> None:
        self.content_id = content_id
        self.content_type = content_type
        self.closed = False
        self._buf = bytearray()

    def write(self, data: memoryview, /) -> int:
        self._buf += data
        return len(data)

    def close(self) -> None:
        self.closed = True

    @property
    def data(self) -> bytes:
        return bytes(self._buf)


class DiscardSink:
    """A sink that drops the bytes: when only the digests are wanted."""

    def __init__(self, content_id: str = "", content_type: str = "") -> None:
        self.content_id = content_id
        self.content_type = content_type

    def write(self, data: memoryview, /) -> int:
        return len(data)

    def close(self) -> None:
        pass


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedPart(Generic[S]):
    """One attachment part as received: normalised content id, header type, measured size and SHA-256.

    ``handle`` is the sink the part was written to (closed). ``content_type`` is the part header's value;
    the signed manifest's type is the authoritative one.
    """

    content_id: str
    content_type: str
    size: int
    sha256: str
    handle: S

    @property
    def digest(self) -> AttachmentDigest:
        return AttachmentDigest(content_id=self.content_id, size=self.size, sha256=self.sha256)


@dataclass(frozen=True, slots=True, kw_only=True)
class MultipartResult(Generic[S]):
    """A multipart body read to its end: the edXML part's bytes and the attachment parts, in order."""

    edxml: bytes
    parts: tuple[ReceivedPart[S], ...]

    def digests(self) -> dict[str, AttachmentDigest]:
        """Measured digests by normalised content id (not yet compared with the manifest)."""
        return {p.content_id: p.digest for p in self.parts}


class _State:
    """The reader's states, compared by identity. Plain constants, not an Enum: the reader looks a state
    up at every step, and each access to an Enum member goes through its metaclass's attribute hook."""

    PREAMBLE = "preamble"
    AFTER_DELIMITER = "after delimiter"
    HEADERS = "headers"
    BODY = "body"
    EPILOGUE = "epilogue"
    DONE = "done"
    FAILED = "failed"


class _OpenPart(Generic[S]):
    __slots__ = ("content_id", "content_type", "hasher", "sink", "size")

    def __init__(self, content_id: str, content_type: str, sink: S) -> None:
        self.content_id = content_id
        self.content_type = content_type
        self.sink = sink
        self.hasher = hashlib.sha256()
        self.size = 0


class MultipartReader(Generic[S]):
    """Push parser for the multipart form, in memory bounded by the limits whatever the body's size.

    ``feed`` chunks of any size, then ``close()`` for the result. The edXML (start) part is collected in
    memory up to ``max_edxml_bytes``; each attachment part goes to ``sink_factory(content_id,
    content_type)`` while its size and SHA-256 are computed. Between chunks only a tail shorter than the
    delimiter is kept, and the delimiter is found with ``bytes.find``, so a chunk costs one search and one
    hash update. Every failure raises a :class:`~gateway.errors.GatewayError` with its code, aborts the
    sinks (see :class:`Sink`) and leaves the reader unusable.
    """

    def __init__(
        self,
        content_type: str,
        *,
        sink_factory: Callable[[str, str], S],
        max_parts: int = DEFAULT_MAX_PARTS,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        max_edxml_bytes: int = DEFAULT_MAX_EDXML_BYTES,
        max_part_bytes: int | None = None,
    ) -> None:
        self._delim, self._start_id = _reader_settings(content_type)
        self._sink_factory = sink_factory
        self._max_parts = max_parts
        self._max_header_bytes = max_header_bytes
        self._max_edxml_bytes = max_edxml_bytes
        self._max_part_bytes = max_part_bytes
        self._state = _State.PREAMBLE
        # A virtual CRLF before the body lets the first delimiter be found like every other one.
        self._pending = b"\r\n"
        self._fed = 0
        self._blank = 0
        self._count = 0
        self._edxml: bytearray | None = None
        self._edxml_done: bytes | None = None
        self._open: _OpenPart[S] | None = None
        self._ids: set[str] = set()
        self._parts: list[ReceivedPart[S]] = []
        self._sinks: list[S] = []

    # -- public -----------------------------------------------------------------------------------

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        """Consume the next piece of the body (any size, including empty). A ``bytes`` or ``bytearray`` is
        read in place and nothing of it is kept past the call: the caller may reuse the buffer."""
        if self._state is _State.DONE or self._state is _State.FAILED:
            raise RuntimeError("the reader is closed")
        if not chunk:
            return
        data = chunk if isinstance(chunk, bytes | bytearray) else bytes(chunk)
        self._fed += len(data)
        try:
            if self._pending:
                data = self._join_pending(data)
            self._consume(data)
        except BaseException:
            self._fail()
            raise

    def close(self) -> MultipartResult[S]:
        """End of input: the result, or ``multipart.truncated`` if the closing delimiter was not seen."""
        if self._state is _State.DONE or self._state is _State.FAILED:
            raise RuntimeError("the reader is closed")
        if self._state is not _State.EPILOGUE:
            self._fail()
            if self._fed == 0:
                raise InputError("input.empty", "the multipart body is empty")
            raise InputError("multipart.truncated", f"the body ended (after {self._fed} bytes) inside a part")
        self._state = _State.DONE
        assert self._edxml_done is not None
        return MultipartResult(edxml=self._edxml_done, parts=tuple(self._parts))

    def abort(self) -> None:
        """Give up (e.g. the client went away): abort the sinks. Idempotent; a no-op after ``close()``."""
        if self._state is not _State.DONE and self._state is not _State.FAILED:
            self._fail()

    # -- the state machine --------------------------------------------------------------------------

    def _join_pending(self, data: bytes | bytearray) -> bytes | bytearray:
        """The tail held back from the last chunk, and ``data``: what :meth:`_consume` reads next.

        Inside a part the tail is shorter than a delimiter and was held only because it might begin one.
        When no delimiter starts in it, it is content: it goes out on its own and ``data`` is read in
        place. Joining the two copies the whole chunk into a new buffer: with the hub's 4 MiB chunks, a
        fresh mapping faulted in. Random content ends a chunk with a possible delimiter start (a CR among
        its last 41 bytes, for :func:`new_boundary`'s delimiter) about one time in seven; content that
        repeats in step with the chunks, every time, and the joins then cost 133 ms of CPU per 100 MiB
        where the search and hash cost 75 ms.
        """
        pending, self._pending = self._pending, b""
        state, delim = self._state, self._delim
        if (state is _State.BODY or state is _State.PREAMBLE) and len(data) >= len(delim):
            seam = pending + bytes(data[: len(delim) - 1])
            if seam.find(delim) < 0:
                self._emit(pending, 0, len(pending))
                return data
        return pending + data

    def _consume(self, data: bytes | bytearray) -> None:
        pos, end = 0, len(data)
        delim = self._delim
        while pos < end:
            state = self._state
            if state is _State.BODY or state is _State.PREAMBLE:
                at = data.find(delim, pos)
                if at < 0:
                    # Keep only what could begin a delimiter cut by the chunk boundary: from the first
                    # CR among the last len(delim) - 1 bytes.
                    cr = data.find(b"\r", max(pos, end - len(delim) + 1))
                    stop = end if cr < 0 else cr
                    self._emit(data, pos, stop)
                    self._pending = data[stop:]
                    return
                self._emit(data, pos, at)
                if state is _State.BODY:
                    self._end_part()
                pos = at + len(delim)
                self._state = _State.AFTER_DELIMITER
            elif state is _State.AFTER_DELIMITER:
                if end - pos < 2:
                    self._pending = data[pos:]
                    return
                if data[pos : pos + 2] == b"--":
                    if self._count == 0:
                        raise PackageError("multipart.start_missing", "the body has no part")
                    self._state = _State.EPILOGUE
                    self._blank = 0
                    pos += 2
                    continue
                nl = data.find(b"\r\n", pos, pos + _MAX_PADDING + 2)
                if nl < 0:
                    if end - pos > _MAX_PADDING + 1:
                        raise InputError("multipart.malformed", "a delimiter is not followed by CRLF")
                    self._pending = data[pos:]
                    return
                if data[pos:nl].strip(b" \t"):
                    raise InputError("multipart.malformed", "a delimiter line has extra characters")
                pos = nl + 2
                self._state = _State.HEADERS
            elif state is _State.HEADERS:
                if data.startswith(b"\r\n", pos):
                    block_end, next_pos = pos, pos + 2
                else:
                    block_end = data.find(b"\r\n\r\n", pos, pos + self._max_header_bytes + 4)
                    if block_end < 0:
                        if end - pos > self._max_header_bytes + 3:
                            raise InputError(
                                "multipart.headers_too_large",
                                f"a part's headers exceed {self._max_header_bytes} bytes",
                            )
                        self._pending = data[pos:]
                        return
                    next_pos = block_end + 4
                self._begin_part(bytes(data[pos:block_end]))
                pos = next_pos
            else:  # EPILOGUE
                rest = data[pos:]
                self._blank += len(rest)
                if rest.translate(None, _BLANK) or self._blank > _MAX_BLANK:
                    raise InputError("multipart.preamble", "text after the closing delimiter")
                return

    def _emit(self, data: bytes | bytearray, start: int, stop: int) -> None:
        if stop <= start:
            return
        if self._state is _State.PREAMBLE:
            self._blank += stop - start
            if data[start:stop].translate(None, _BLANK) or self._blank > _MAX_BLANK:
                raise InputError("multipart.preamble", "text before the first delimiter")
            return
        part = self._open
        if part is None:  # the edXML part, collected in memory
            assert self._edxml is not None
            if len(self._edxml) + (stop - start) > self._max_edxml_bytes:
                raise InputTooLarge(
                    "input.too_large", f"the edXML part exceeds {self._max_edxml_bytes} bytes"
                )
            self._edxml += memoryview(data)[start:stop]
            return
        part.size += stop - start
        if self._max_part_bytes is not None and part.size > self._max_part_bytes:
            raise InputTooLarge(
                "input.too_large", f"part <{part.content_id}> exceeds {self._max_part_bytes} bytes"
            )
        view = memoryview(data)[start:stop]
        part.hasher.update(view)
        part.sink.write(view)

    def _begin_part(self, block: bytes) -> None:
        headers = _parse_part_headers(block)
        self._count += 1
        if self._count > self._max_parts:
            raise InputTooLarge("multipart.too_many_parts", f"more than {self._max_parts} parts")
        raw_id = headers.get("content-id")
        content_id = normalize_content_id(raw_id) if raw_id is not None else None
        encoding = headers.get("content-transfer-encoding", "binary").strip().lower()
        if encoding not in _IDENTITY_ENCODINGS:
            raise InputError("multipart.part_headers", f"Content-Transfer-Encoding {encoding!r} is refused")
        content_type = headers.get("content-type", "application/octet-stream").strip()
        if self._count == 1:
            self._begin_start_part(content_id, content_type)
            return
        if not content_id:
            raise InputError("multipart.part_headers", f"part {self._count} has no Content-ID")
        if content_id in self._ids:
            raise InputError("multipart.duplicate_part", f"Content-ID <{content_id}> is used twice")
        self._ids.add(content_id)
        sink = self._sink_factory(content_id, content_type)
        self._sinks.append(sink)
        self._open = _OpenPart(content_id, content_type, sink)
        self._state = _State.BODY

    def _begin_start_part(self, content_id: str | None, content_type: str) -> None:
        expected = self._start_id
        if expected is not None and content_id != expected:
            raise PackageError(
                "multipart.start_missing", f"the first part is <{content_id}>, the start is <{expected}>"
            )
        try:
            media = _parse_content_type(content_type)[0]
        except ValueError:
            media = content_type
        if media != EDXML_MEDIA_TYPE:
            raise PackageError("multipart.start_missing", f"the first part is {media}, not edXML")
        if content_id:
            self._ids.add(content_id)
        self._edxml = bytearray()
        self._open = None
        self._state = _State.BODY

    def _end_part(self) -> None:
        part = self._open
        if part is None:
            assert self._edxml is not None
            self._edxml_done = bytes(self._edxml)
            self._edxml = None
            return
        self._open = None
        part.sink.close()
        self._parts.append(
            ReceivedPart(
                content_id=part.content_id,
                content_type=part.content_type,
                size=part.size,
                sha256=part.hasher.hexdigest(),
                handle=part.sink,
            )
        )

    def _fail(self) -> None:
        """Abort every sink made for this body; errors while cleaning up must not hide the cause."""
        self._state = _State.FAILED
        self._pending = b""
        self._edxml = None
        open_sink = self._open.sink if self._open is not None else None
        self._open = None
        for sink in self._sinks:
            abort = getattr(sink, "abort", None)
            try:
                if abort is not None:
                    abort()
                elif sink is open_sink:
                    sink.close()
            except Exception:
                pass  # best effort: the error that made the read fail is the one to report


def _parse_part_headers(block: bytes) -> dict[str, str]:
    """Header fields of one part (names lower-cased). Folded lines are unfolded; repeats are refused."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError("multipart.malformed", "part headers are not UTF-8") from exc
    headers: dict[str, str] = {}
    last: str | None = None
    for line in text.split("\r\n") if text else ():
        if line[:1] in (" ", "\t"):
            if last is None:
                raise InputError("multipart.malformed", "part headers begin with a continuation line")
            headers[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep or not _HEADER_NAME_RE.fullmatch(name):
            raise InputError("multipart.malformed", f"not a header line: {line[:80]!r}")
        last = name.lower()
        if last in headers:
            raise InputError("multipart.part_headers", f"header {name} is repeated")
        if "\r" in value or "\n" in value:
            raise InputError("multipart.malformed", "bare CR or LF in part headers")
        headers[last] = value.strip()
    return headers


def read_multipart_bytes(
    body: bytes,
    content_type: str,
    *,
    sink_factory: Callable[[str, str], S],
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_parts: int = DEFAULT_MAX_PARTS,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    max_edxml_bytes: int = DEFAULT_MAX_EDXML_BYTES,
    max_part_bytes: int | None = None,
) -> MultipartResult[S]:
    """Read a whole multipart body held in memory (use ``sink_factory=MemorySink`` to keep the parts)."""
    reader = MultipartReader(
        content_type,
        sink_factory=sink_factory,
        max_parts=max_parts,
        max_header_bytes=max_header_bytes,
        max_edxml_bytes=max_edxml_bytes,
        max_part_bytes=max_part_bytes,
    )
    view = memoryview(body)
    for i in range(0, len(view), chunk_size):
        reader.feed(view[i : i + chunk_size])
    return reader.close()


async def read_multipart(
    stream: AsyncIterable[bytes],
    content_type: str,
    *,
    sink_factory: Callable[[str, str], S],
    offload: bool = True,
    executor: Executor | None = None,
    coalesce: int = DEFAULT_CHUNK_SIZE,
    max_parts: int = DEFAULT_MAX_PARTS,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    max_edxml_bytes: int = DEFAULT_MAX_EDXML_BYTES,
    max_part_bytes: int | None = None,
) -> MultipartResult[S]:
    """Read a multipart body from an async byte stream (e.g. aiohttp's ``request.content.iter_chunked``).

    Hashing and sink writes are CPU and disk work: with ``offload`` (the default) small chunks are
    gathered up to ``coalesce`` bytes and each batch is fed in ``executor`` (the loop's default if None),
    so the event loop stays free; ``hashlib`` releases the GIL for large updates.
    """
    reader = MultipartReader(
        content_type,
        sink_factory=sink_factory,
        max_parts=max_parts,
        max_header_bytes=max_header_bytes,
        max_edxml_bytes=max_edxml_bytes,
        max_part_bytes=max_part_bytes,
    )
    if not offload:
        async for chunk in stream:
            reader.feed(chunk)
        return reader.close()

    loop = asyncio.get_running_loop()
    batch: list[bytes] = []
    batched = 0

    async def flush() -> None:
        nonlocal batch, batched
        data = batch[0] if len(batch) == 1 else b"".join(batch)
        batch, batched = [], 0
        await loop.run_in_executor(executor, reader.feed, data)

    try:
        async for chunk in stream:
            if not chunk:
                continue
            batch.append(chunk)
            batched += len(chunk)
            if batched >= coalesce:
                await flush()
        if batch:
            await flush()
    except BaseException:
        reader.abort()  # e.g. the client went away: the sinks are still cleaned up
        raise
    return await loop.run_in_executor(executor, reader.close)


# --------------------------------------------------------------------------------------------------
# Matching with the signed manifest
# --------------------------------------------------------------------------------------------------


class _Measured(Protocol):
    @property
    def content_id(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def sha256(self) -> str: ...


def match_parts(
    manifest: Sequence[ManifestReference], parts: Iterable[_Measured]
) -> dict[str, AttachmentDigest]:
    """Check the received parts against the signed manifest; return their digests by normalised id.

    Every part must be listed (``multipart.part_unlisted``), every listed attachment present
    (``edxml.attachment_missing``), sizes and SHA-256 equal (``edxml.attachment_digest``); a manifest
    Reference without size and SHA-256 cannot cover a part (``edxml.manifest_digest_missing``). The
    result, in manifest order, is what :func:`gateway.verification.verify_package` takes as
    ``attachments``; the manifest must come from what the signature covers.
    """
    return _match(manifest, parts, unlisted="multipart.part_unlisted")


def _match(
    manifest: Sequence[ManifestReference], parts: Iterable[_Measured], *, unlisted: str
) -> dict[str, AttachmentDigest]:
    listed: dict[str, ManifestReference] = {}
    for ref in manifest:
        cid = normalize_content_id(ref.content_id)
        if cid in listed:
            raise PackageError("edxml.attachment_duplicate", f"the manifest lists {ref.content_id!r} twice")
        if ref.size is None or ref.sha256 is None:
            raise PackageError(
                "edxml.manifest_digest_missing", f"no size and SHA-256 for {ref.content_id!r} in the manifest"
            )
        listed[cid] = ref
    measured: dict[str, AttachmentDigest] = {}
    for part in parts:
        cid = normalize_content_id(part.content_id)
        if cid in measured:
            raise InputError("multipart.duplicate_part", f"Content-ID <{cid}> is used twice")
        ref = listed.get(cid)
        if ref is None:
            raise PackageError(unlisted, f"<{cid}> is not in the manifest")
        if part.size != ref.size or part.sha256.lower() != (ref.sha256 or "").lower():
            raise PackageError(
                "edxml.attachment_digest",
                f"<{cid}>: {part.size} bytes, SHA-256 {part.sha256}; "
                f"the manifest says {ref.size} bytes, {ref.sha256}",
                content_id=cid,
            )
        measured[cid] = AttachmentDigest(content_id=cid, size=part.size, sha256=part.sha256.lower())
    missing = [ref.content_id for cid, ref in listed.items() if cid not in measured]
    if missing:
        raise PackageError("edxml.attachment_missing", f"no part for {', '.join(missing)}")
    return {cid: measured[cid] for cid in listed}


# --------------------------------------------------------------------------------------------------
# Conversions between the two forms
# --------------------------------------------------------------------------------------------------


_ROOT_TAG = f"{{{NS}}}edXML"
_ENVELOPE_TAG = f"{{{NS}}}edXMLEnvelope"
_INLINE_TAGS = frozenset({f"{{{NS}}}AttachmentEncoded", "AttachmentEncoded", "edXML:AttachmentEncoded"})
_SIGNATURE_TAG = f"{{{DS_NS}}}Signature"
_REFERENCE_PATH = f"{{{DS_NS}}}SignedInfo/{{{DS_NS}}}Reference"


def to_single_file(
    edxml: bytes, parts: Mapping[str, bytes | BinaryIO], *, limits: XmlLimits = DEFAULT_LIMITS
) -> bytes:
    """The single-file form of a multipart package: ``AttachmentEncoded`` inserted after ``edXMLEnvelope``.

    ``parts`` maps content ids (with or without ``cid:``) to the parts' bytes or files. Each part must
    match the manifest's size and SHA-256, so the result verifies whenever the multipart form did.
    ContentId, AttachmentName, Description and ContentType are copied from the (signed) manifest; the
    content is base64 (pybase64), unwrapped, as the builder writes it. The envelope element is left
    untouched: only the root's children after it change, which an envelope-reference signature does not
    cover. A whole-document signature (``Reference URI=""``) would break: ``multipart.not_envelope_signed``.
    """
    root = parse_xml(edxml, limits=limits)
    envelope = _package_envelope(root)
    if any(_is_inline(child) for child in root):
        raise PackageError(
            "edxml.unexpected_element", "the multipart edXML part already has AttachmentEncoded"
        )
    _require_envelope_reference(root, envelope)
    message = parse_element(root, attachments=())
    manifest = message.manifest if isinstance(message, DocumentPackage) else ()
    blobs: dict[str, bytes] = {}
    for key, source in parts.items():
        cid = normalize_content_id(key)
        if cid in blobs:
            raise InputError("multipart.duplicate_part", f"content id <{cid}> is given twice")
        blobs[cid] = bytes(source) if isinstance(source, bytes | bytearray | memoryview) else source.read()
    _match(
        manifest,
        [_Digest(cid, len(data), hashlib.sha256(data).hexdigest()) for cid, data in blobs.items()],
        unlisted="multipart.part_unlisted",
    )
    if not manifest:
        return edxml  # nothing to inline: the multipart edXML part is already the single file

    token = secrets.token_hex(16)
    encoded = etree.Element(f"{{{NS}}}AttachmentEncoded", nsmap={_PREFIX: NS})  # type: ignore[dict-item]
    for i, ref in enumerate(manifest):
        attachment = etree.SubElement(encoded, f"{{{NS}}}Attachment")
        for name, value in (
            ("ContentId", ref.content_id),
            ("AttachmentName", ref.attachment_name),
            ("Description", ref.description),
            ("ContentType", ref.content_type),
            ("ContentTransferEncoded", f"@{token}.{i}@"),
        ):
            if value is not None:
                etree.SubElement(attachment, f"{{{NS}}}{name}").text = value
    etree.indent(encoded, space="  ", level=1)
    encoded.tail = envelope.tail
    envelope.tail = "\n  "
    envelope.addnext(encoded)
    out = etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")
    # Splice the base64 in place of the placeholders: lxml never holds a copy of it.
    pieces: list[bytes] = []
    pos = 0
    for i, ref in enumerate(manifest):
        mark = f"@{token}.{i}@".encode()
        at = out.index(mark, pos)
        pieces += (out[pos:at], pybase64.b64encode(blobs[normalize_content_id(ref.content_id)]))
        pos = at + len(mark)
    pieces.append(out[pos:])
    return b"".join(pieces)


def to_multipart(
    single_file: bytes,
    *,
    boundary: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    limits: XmlLimits = DEFAULT_LIMITS,
) -> tuple[str, Iterator[bytes]]:
    """The multipart form of a single-file package signed by envelope reference.

    Inline attachments are decoded and checked against the manifest's size and SHA-256 (a Reference
    without them cannot cover a part: ``edxml.manifest_digest_missing``); ``AttachmentEncoded`` is
    removed and the rest re-serialised by lxml with the envelope element untouched, so its canonical
    form, hence the signature, is unchanged. Returns what :func:`iter_multipart` returns.
    """
    root = parse_xml(single_file, limits=limits)
    envelope = _package_envelope(root)
    _require_envelope_reference(root, envelope)
    message = parse_element(root)
    inline = [child for child in root if _is_inline(child)]
    if not isinstance(message, DocumentPackage):
        pairs: list[tuple[ManifestReference, BinaryIO | bytes]] = []
    else:
        measured = [
            _Digest(normalize_content_id(a.content_id), len(a.data), hashlib.sha256(a.data).hexdigest())
            for a in message.attachments
        ]
        _match(message.manifest, measured, unlisted="edxml.attachment_unlisted")
        data = {normalize_content_id(a.content_id): a.data for a in message.attachments}
        pairs = [(ref, data[normalize_content_id(ref.content_id)]) for ref in message.manifest]
    for element in inline:
        _remove_keeping_layout(element)
    edxml = etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")
    return iter_multipart(edxml, pairs, boundary=boundary, chunk_size=chunk_size)


@dataclass(frozen=True, slots=True)
class _Digest:
    content_id: str
    size: int
    sha256: str


def _is_inline(element: etree._Element) -> bool:
    return isinstance(element.tag, str) and element.tag in _INLINE_TAGS


def _package_envelope(root: etree._Element) -> etree._Element:
    if root.tag != _ROOT_TAG:
        raise PackageError("edxml.not_edxml", f"the root element is {root.tag!r}, expected edXML in {NS}")
    envelope = root.find(_ENVELOPE_TAG)
    if envelope is None:
        raise PackageError("edxml.missing_element", "edXML/edXMLEnvelope")
    return envelope


def _require_envelope_reference(root: etree._Element, envelope: etree._Element) -> None:
    """Refuse a signature whose reference is anything but ``#<envelope Id>`` (unsigned is allowed).

    Only the reference is looked at: whether the signature verifies is the verifier's question.
    """
    envelope_id = envelope.get("Id")
    for signature in root.iter(_SIGNATURE_TAG):
        for reference in signature.iterfind(_REFERENCE_PATH):
            uri = reference.get("URI")
            if not envelope_id or uri != f"#{envelope_id}":
                raise PackageError(
                    "multipart.not_envelope_signed",
                    f"the signature references {uri!r}, not the envelope; attachments cannot move",
                )


def _remove_keeping_layout(element: etree._Element) -> None:
    """Remove a child of the root; its tail (the layout after it) goes to the previous sibling."""
    parent = element.getparent()
    assert parent is not None
    previous = element.getprevious()
    if previous is not None:
        previous.tail = element.tail
    else:
        parent.text = element.tail
    parent.remove(element)
