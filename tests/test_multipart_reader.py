"""The multipart carriage form: writer → reader round trips, chunking, and every malformed body's code."""

from __future__ import annotations

import email
import email.policy
import hashlib
import io
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.edxml.model import ManifestReference
from gateway.edxml.multipart import (
    DiscardSink,
    MemorySink,
    MultipartReader,
    MultipartResult,
    iter_multipart,
    multipart_content_type,
    normalize_content_id,
    parse_content_type,
    read_multipart,
    read_multipart_bytes,
)
from gateway.errors import GatewayError

BOUNDARY = "edxml-test-0123456789abcdef0123456789abcdef"
DASH = b"--" + BOUNDARY.encode()
DELIM = b"\r\n" + DASH
CT = multipart_content_type(BOUNDARY)
EDXML = b'<?xml version="1.0" encoding="UTF-8"?>\n<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016"/>'


def ref(cid: str, data: bytes, content_type: str | None = "application/pdf") -> ManifestReference:
    return ManifestReference(
        content_id=f"cid:{cid}",
        content_type=content_type,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def write(attachments: list[tuple[str, bytes]], *, edxml: bytes = EDXML, chunk_size: int = 1 << 20) -> bytes:
    ct, body = iter_multipart(
        edxml, [(ref(c, d), d) for c, d in attachments], boundary=BOUNDARY, chunk_size=chunk_size
    )
    assert ct == CT
    return b"".join(body)


def feed_in(body: bytes, sizes: list[int], **kw) -> MultipartResult[MemorySink]:
    reader = MultipartReader(CT, sink_factory=MemorySink, **kw)
    pos, i = 0, 0
    while pos < len(body):
        n = sizes[i % len(sizes)]
        reader.feed(body[pos : pos + n])
        pos += n
        i += 1
    return reader.close()


def summary(result: MultipartResult[MemorySink]) -> tuple:
    return result.edxml, [
        (p.content_id, p.content_type, p.size, p.sha256, p.handle.data) for p in result.parts
    ]


def code_of(body: bytes, content_type: str = CT, **kw) -> str:
    with pytest.raises(GatewayError) as info:
        read_multipart_bytes(body, content_type, sink_factory=MemorySink, **kw)
    return info.value.code


def part(headers: str, data: bytes) -> bytes:
    return DELIM + b"\r\n" + headers.encode() + b"\r\n\r\n" + data


START = DASH + b"\r\nContent-Type: application/edxml+xml\r\nContent-ID: <edxml>\r\n\r\n" + EDXML
END = DELIM + b"--\r\n"


# --- round trips ---------------------------------------------------------------------------------

# Fragments that look like the delimiter without being it: the reader must keep them as content
# even when a chunk boundary cuts them.
_NEAR = [DELIM[:k] for k in range(1, len(DELIM))] + [DELIM[:-1] + b"X", b"\r\n--", b"\r\r\n--", b"--"]
_content = st.lists(st.one_of(st.binary(max_size=40), st.sampled_from(_NEAR)), max_size=12).map(b"".join)
_attachments = st.lists(
    st.tuples(st.from_regex(r"[A-Za-z0-9._@-]{1,12}", fullmatch=True), _content), max_size=5
)
_chunkings = st.lists(st.integers(min_value=1, max_value=97), min_size=1, max_size=20)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(attachments=_attachments, sizes=_chunkings, writer_chunk=st.integers(min_value=1, max_value=64))
def test_round_trip_any_chunking(attachments, sizes, writer_chunk):
    ids = [c for c, _ in attachments]
    assume(len(set(ids)) == len(ids) and "edxml" not in ids)
    assume(all(DASH not in d for _, d in attachments))
    body = write(attachments, chunk_size=writer_chunk)
    whole = read_multipart_bytes(body, CT, sink_factory=MemorySink, chunk_size=len(body))
    assert whole.edxml == EDXML
    assert [(p.content_id, p.handle.data) for p in whole.parts] == attachments
    for p, (_, data) in zip(whole.parts, attachments, strict=True):
        assert p.size == len(data)
        assert p.sha256 == hashlib.sha256(data).hexdigest()
        assert p.content_type == "application/pdf"
        assert p.handle.closed
    assert summary(feed_in(body, sizes)) == summary(whole)


def test_every_split_of_the_delimiter():
    """Cut the body in two at every offset: a delimiter split anywhere is still found."""
    attachments = [("a", b"x" * 50 + DELIM[:-1]), ("b", b""), ("c", DELIM[:5] + b"y")]
    body = write(attachments)
    expected = summary(read_multipart_bytes(body, CT, sink_factory=MemorySink))
    for cut in range(len(body) + 1):
        reader = MultipartReader(CT, sink_factory=MemorySink)
        reader.feed(body[:cut])
        reader.feed(body[cut:])
        assert summary(reader.close()) == expected, cut


def test_one_byte_at_a_time():
    body = write([("a", bytes(range(256)) * 3), ("b", b"\r\n" * 40)])
    assert summary(feed_in(body, [1])) == summary(read_multipart_bytes(body, CT, sink_factory=MemorySink))


def test_writer_streams_files_and_edxml_only_body():
    data = bytes(range(256)) * 1000
    ct, chunks = iter_multipart(EDXML, [(ref("f", data), io.BytesIO(data))], chunk_size=4096)
    body = list(chunks)
    assert max(len(c) for c in body) <= max(4096, len(EDXML))
    result = read_multipart_bytes(b"".join(body), ct, sink_factory=MemorySink)
    assert result.parts[0].handle.data == data
    ct, chunks = iter_multipart(EDXML, [])
    assert read_multipart_bytes(b"".join(chunks), ct, sink_factory=MemorySink).parts == ()


def test_random_boundaries_differ_and_are_declared():
    a, _ = iter_multipart(EDXML, [])
    b, _ = iter_multipart(EDXML, [])
    assert a != b
    media, params = parse_content_type(a)
    assert media == "multipart/related"
    assert params["type"] == "application/edxml+xml"
    assert params["start"] == "<edxml>"
    assert len(params["boundary"]) >= 32


def test_writer_refuses_what_it_cannot_write():
    with pytest.raises(ValueError, match="edXML part"):
        iter_multipart(EDXML + DASH, [], boundary=BOUNDARY)
    _, body = iter_multipart(EDXML, [(ref("a", b"1" + DASH), b"1" + DASH)], boundary=BOUNDARY)
    with pytest.raises(ValueError, match="boundary occurs"):
        b"".join(body)
    _, body = iter_multipart(EDXML, [(ref("a", b"12345"), b"1234")])
    with pytest.raises(ValueError, match="manifest says 5"):
        b"".join(body)
    with pytest.raises(ValueError, match="Content-ID"):
        iter_multipart(EDXML, [(ref("a b\r\nX-Evil: 1", b""), b"")])
    with pytest.raises(ValueError, match="twice"):
        iter_multipart(EDXML, [(ref("a", b""), b""), (ref("a", b""), b"")])
    with pytest.raises(ValueError, match="boundary"):
        iter_multipart(EDXML, [], boundary="x" * 71)


def test_header_injection_through_content_type_is_neutralised():
    evil = ManifestReference(content_id="cid:a", content_type="text/plain\r\nX-Evil: 1", size=1, sha256=None)
    _, body = iter_multipart(EDXML, [(evil, b"1")])
    data = b"".join(body)
    assert b"X-Evil" not in data
    assert b"Content-Type: application/octet-stream" in data


def test_content_id_normalisation():
    assert normalize_content_id("cid:209") == "209"
    assert normalize_content_id("CID:209") == "209"
    assert normalize_content_id(" <209> ") == "209"
    assert normalize_content_id("<cid:209>") == "209"
    assert normalize_content_id("Abc@x") == "Abc@x"


# --- interoperability with independent implementations ---------------------------------------------


def test_reads_what_the_stdlib_email_package_writes():
    # The email package rewrites line ends inside payloads, so the payloads here have none.
    edxml = EDXML.replace(b"\n", b" ")
    msg = MIMEMultipart("related", boundary=BOUNDARY, type="application/edxml+xml", start="<edxml>")
    root = MIMEApplication(edxml, "edxml+xml", _encoder=lambda m: None)
    root["Content-ID"] = "<edxml>"
    msg.attach(root)
    data = bytes(b for b in range(256) if b not in b"\r\n") * 10
    att = MIMEApplication(data, "pdf", _encoder=lambda m: None)
    att["Content-ID"] = "<a1>"
    att["Content-Transfer-Encoding"] = "binary"
    msg.attach(att)
    raw = msg.as_bytes(policy=email.policy.HTTP)
    headers, _, body = raw.partition(b"\r\n\r\n")
    content_type = email.message_from_bytes(headers + b"\r\n\r\n", policy=email.policy.HTTP)["Content-Type"]
    result = read_multipart_bytes(body, str(content_type), sink_factory=MemorySink, chunk_size=7)
    assert result.edxml == edxml
    assert [(p.content_id, p.content_type, p.handle.data) for p in result.parts] == [
        ("a1", "application/pdf", data)
    ]


def test_stdlib_email_package_reads_what_we_write():
    data = bytes(range(256)) * 10
    ct, chunks = iter_multipart(EDXML, [(ref("a1", data), data)])
    raw = f"Content-Type: {ct}\r\nMIME-Version: 1.0\r\n\r\n".encode() + b"".join(chunks)
    msg = email.message_from_bytes(raw, policy=email.policy.HTTP)
    parts = list(msg.iter_parts())
    assert [p["Content-ID"] for p in parts] == ["<edxml>", "<a1>"]
    assert parts[0].get_payload(decode=True) == EDXML
    assert parts[1].get_payload(decode=True) == data


async def test_aiohttp_reads_what_we_write():
    from aiohttp import MultipartReader as AioReader
    from aiohttp import StreamReader
    from aiohttp.base_protocol import BaseProtocol

    data = bytes(range(256)) * 100
    ct, chunks = iter_multipart(EDXML, [(ref("a1", data), data)])
    import asyncio

    protocol = BaseProtocol(asyncio.get_running_loop())
    stream = StreamReader(protocol, 2**16, loop=asyncio.get_running_loop())
    stream.feed_data(b"".join(chunks))
    stream.feed_eof()
    reader = AioReader({"Content-Type": ct}, stream)
    got = []
    while (p := await reader.next()) is not None:
        got.append((p.headers["Content-ID"], await p.read()))
    assert got == [("<edxml>", EDXML), ("<a1>", data)]


# --- async wrapper -------------------------------------------------------------------------------


@pytest.mark.parametrize("offload", [True, False])
async def test_read_multipart_async(offload):
    body = write([("a", b"A" * 10_000), ("b", b"B")])

    async def stream():
        for i in range(0, len(body), 333):
            yield body[i : i + 333]

    result = await read_multipart(stream(), CT, sink_factory=MemorySink, offload=offload, coalesce=1000)
    assert [(p.content_id, p.handle.data) for p in result.parts] == [("a", b"A" * 10_000), ("b", b"B")]


async def test_read_multipart_async_aborts_sinks_when_the_stream_fails():
    made: list[RecordingSink] = []

    def factory(cid: str, ctype: str) -> RecordingSink:
        made.append(RecordingSink())
        return made[-1]

    body = write([("a", b"A" * 100)])

    async def stream():
        yield body[: len(body) - 20]
        raise ConnectionResetError

    with pytest.raises(ConnectionResetError):
        await read_multipart(stream(), CT, sink_factory=factory, coalesce=16)
    assert [s.aborted for s in made] == [True]


# --- malformed bodies, each with its code --------------------------------------------------------


class RecordingSink:
    def __init__(self) -> None:
        self.closed = False
        self.aborted = False

    def write(self, data: memoryview) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


GOOD = START + part("Content-ID: <a>\r\nContent-Type: application/pdf", b"AAA") + END


def test_good_body_is_accepted_with_blank_preamble_and_epilogue():
    assert read_multipart_bytes(GOOD, CT, sink_factory=MemorySink).parts[0].handle.data == b"AAA"
    body = b"\r\n\r\n" + GOOD + b"\r\n \r\n"
    assert read_multipart_bytes(body, CT, sink_factory=MemorySink).parts[0].handle.data == b"AAA"
    # transport padding after a delimiter, parameters in any order, a token boundary
    padded = GOOD.replace(DASH + b"\r\n", DASH + b" \t\r\n")
    ct = f"Multipart/Related; boundary={BOUNDARY}; type=application/edxml+xml"
    assert read_multipart_bytes(padded, ct, sink_factory=MemorySink).parts[0].handle.data == b"AAA"


@pytest.mark.parametrize(
    ("content_type", "code", "status"),
    [
        ("application/xml", "multipart.content_type", 415),
        ("multipart/form-data; boundary=abc", "multipart.content_type", 415),
        ('multipart/related; type="text/html"; boundary=abc', "multipart.content_type", 415),
        ("multipart/related; boundary=a; boundary=b", "multipart.content_type", 415),
        ("not a content type", "multipart.content_type", 415),
        ('multipart/related; type="application/edxml+xml"', "multipart.boundary", 400),
        ('multipart/related; boundary=""', "multipart.boundary", 400),
        (f'multipart/related; boundary="{"x" * 71}"', "multipart.boundary", 400),
        ('multipart/related; boundary="ends with space "', "multipart.boundary", 400),
        ('multipart/related; boundary="semi;colon"', "multipart.boundary", 400),
    ],
)
def test_bad_content_type(content_type, code, status):
    with pytest.raises(GatewayError) as info:
        MultipartReader(content_type, sink_factory=MemorySink)
    assert (info.value.code, info.value.status) == (code, status)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "input.empty"),
        (b"hello\r\n" + GOOD, "multipart.preamble"),
        (b" " * 2000 + GOOD, "multipart.preamble"),
        (GOOD + b"trailing junk", "multipart.preamble"),
        (GOOD + b"\r\n" * 1000, "multipart.preamble"),
        (START + DELIM + b"X\r\nContent-ID: <a>\r\n\r\nA" + END, "multipart.malformed"),
        (DASH + b"--\r\n", "multipart.start_missing"),
        (START + part("Content-ID <a>", b"A") + END, "multipart.malformed"),
        (START + part(" folded: first", b"A") + END, "multipart.malformed"),
        (
            START + part("Content-ID: <\xff>", b"A").replace("\xff".encode(), b"\xff") + END,
            "multipart.malformed",
        ),
        (START + part("Content-ID: <a>\r\nX-Big: " + "x" * 9000, b"A") + END, "multipart.headers_too_large"),
        (START + DELIM + b"\r\nContent-ID: <a>" + b"x" * 9000, "multipart.headers_too_large"),
        (GOOD[:-10], "multipart.truncated"),
        (START, "multipart.truncated"),
        (START + part("Content-ID: <a>", b"A"), "multipart.truncated"),
        (
            START + part("Content-ID: <a>", b"A") + part("Content-ID: <a>", b"B") + END,
            "multipart.duplicate_part",
        ),
        (START + part("Content-ID: <edxml>", b"A") + END, "multipart.duplicate_part"),
        (START + part("Content-Type: application/pdf", b"A") + END, "multipart.part_headers"),
        (START + part("Content-ID: <a>\r\nContent-ID: <b>", b"A") + END, "multipart.part_headers"),
        (
            START + part("Content-ID: <a>\r\nContent-Transfer-Encoding: base64", b"QQ==") + END,
            "multipart.part_headers",
        ),
        (
            DASH + b"\r\nContent-ID: <a>\r\nContent-Type: application/edxml+xml\r\n\r\nx" + END,
            "multipart.start_missing",
        ),
        (
            DASH + b"\r\nContent-ID: <edxml>\r\nContent-Type: text/xml\r\n\r\nx" + END,
            "multipart.start_missing",
        ),
        (DASH + b"\r\nContent-ID: <edxml>\r\n\r\nx" + END, "multipart.start_missing"),
    ],
)
def test_malformed_body(body, code):
    assert code_of(body) == code
    # the same verdict whatever the chunking
    assert code_of(body, chunk_size=3) == code


def test_every_truncation_is_reported():
    body = write([("a", b"A" * 30), ("b", b"")])
    for cut in range(len(body) - 2):  # the final CRLF is epilogue: optional
        expected = "input.empty" if cut == 0 else "multipart.truncated"
        assert code_of(body[:cut]) == expected, cut
    read_multipart_bytes(body[:-2], CT, sink_factory=MemorySink)


def test_limits():
    body = write([("a", b"A" * 100), ("b", b"B"), ("c", b"C")])
    assert code_of(body, max_parts=3) == "multipart.too_many_parts"
    read_multipart_bytes(body, CT, sink_factory=MemorySink, max_parts=4)
    with pytest.raises(GatewayError) as info:
        read_multipart_bytes(body, CT, sink_factory=MemorySink, max_edxml_bytes=len(EDXML) - 1)
    assert (info.value.code, info.value.status) == ("input.too_large", 413)
    read_multipart_bytes(body, CT, sink_factory=MemorySink, max_edxml_bytes=len(EDXML))
    assert code_of(body, max_part_bytes=99) == "input.too_large"
    read_multipart_bytes(body, CT, sink_factory=MemorySink, max_part_bytes=100)


def test_failure_aborts_every_sink_and_closes_the_reader():
    made: list[RecordingSink] = []

    def factory(cid: str, ctype: str) -> RecordingSink:
        made.append(RecordingSink())
        return made[-1]

    body = (
        START + part("Content-ID: <a>", b"A") + part("Content-ID: <b>", b"B") + part("Content-ID: <a>", b"")
    )
    reader = MultipartReader(CT, sink_factory=factory)
    with pytest.raises(GatewayError, match=r"multipart\.duplicate_part"):
        reader.feed(body)
    assert [(s.closed, s.aborted) for s in made] == [(True, True), (True, True)]
    with pytest.raises(RuntimeError):
        reader.feed(b"x")
    with pytest.raises(RuntimeError):
        reader.close()


def test_truncation_aborts_the_open_sink():
    made: list[RecordingSink] = []

    def factory(cid: str, ctype: str) -> RecordingSink:
        made.append(RecordingSink())
        return made[-1]

    reader = MultipartReader(CT, sink_factory=factory)
    reader.feed(START + part("Content-ID: <a>", b"A"))
    with pytest.raises(GatewayError, match=r"multipart\.truncated"):
        reader.close()
    assert made[0].aborted


def test_discard_sink_still_measures():
    data = b"z" * 12345
    result = read_multipart_bytes(write([("a", data)]), CT, sink_factory=DiscardSink)
    assert result.digests()["a"].sha256 == hashlib.sha256(data).hexdigest()
    assert result.digests()["a"].size == len(data)


def test_start_parameter_names_the_first_part():
    """RFC 2387: without ``start`` the first part is the root whatever its Content-ID; with it, they match."""
    body = write([("a", b"A")]).replace(b"Content-ID: <edxml>", b"Content-ID: <root-1>")
    bare = f'multipart/related; type="application/edxml+xml"; boundary="{BOUNDARY}"'
    for _ in range(2):  # the settings read from a Content-Type are cached: the verdicts must not change
        assert read_multipart_bytes(body, bare, sink_factory=MemorySink).edxml == EDXML
        assert read_multipart_bytes(body, bare + '; start="root-1"', sink_factory=MemorySink).edxml == EDXML
        assert read_multipart_bytes(body, bare + '; start="<cid:root-1>"', sink_factory=MemorySink).parts
        assert code_of(body) == "multipart.start_missing"  # CT says start="<edxml>"
        assert code_of(body, bare + '; start="<other>"') == "multipart.start_missing"
        assert code_of(body, "multipart/related") == "multipart.boundary"
