"""Large bodies read past aiohttp (``gateway.hub.body._receive_direct``), on the real hub over real mTLS.

A body declared at least 4 MiB long is read by a buffered protocol that takes over the connection for
the rest of the body; the connection then closes after the response. What a client relies on: the
package is stored byte for byte and answered as any other; a slow client that keeps sending is not cut
off, one that stops is answered 408, one that goes away leaves nothing behind; and bytes sent past the
declared length are never taken for a request.
"""

from __future__ import annotations

import hashlib
import io
import sqlite3
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hub_helpers import (
    DEPARTMENT,
    PROVINCE,
    Client,
    HubFiles,
    HubProcess,
    client_context,
    document,
    hub_config,
    raw_tls,
    request_head,
    resident_pages,
    response_head,
    sign,
    write_config_toml,
    write_hub_files,
)
from pki_fixtures import build_pki

from gateway.edxml.model import ManifestReference
from gateway.edxml.multipart import iter_multipart
from gateway.hub.body import DIRECT_MIN
from gateway.hub.config import HubConfig

READ_TIMEOUT = 1.5
ATTACHMENT = DIRECT_MIN + (2 << 20)  # 6 MiB: past the threshold, over more than one 4 MiB batch


@dataclass
class Hub:
    files: HubFiles
    config: HubConfig
    db: Path

    def packages(self) -> int:
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            return int(con.execute("SELECT count(*) FROM package").fetchone()[0])
        finally:
            con.close()

    def spool_files(self) -> list[str]:
        return sorted(p.name for p in self.config.tmp_dir.glob("*")) if self.config.tmp_dir.is_dir() else []

    def client(self, who: str = PROVINCE) -> Client:
        return Client(self.config.port, client_context(self.files, who))


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    root = tmp_path_factory.mktemp("large")
    files = write_hub_files(build_pki(), root)
    db = root / "hub.db"
    config = hub_config(files, f"sqlite+aiosqlite:///{db}", verify_processes=1, read_timeout=READ_TIMEOUT)
    process = HubProcess(write_config_toml(config, root / "hub.toml"))
    try:
        yield Hub(files, config, db)
    finally:
        process.stop()


def _package(seed: int) -> tuple[str, bytes]:
    """A signed multipart package whose one attachment is ``ATTACHMENT`` bytes: Content-Type and body."""
    data = hashlib.shake_256(seed.to_bytes(4, "big")).digest(ATTACHMENT)
    ref = ManifestReference(
        content_id="cid:big",
        content_type="application/octet-stream",
        attachment_name="big.bin",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    doc = document(recipients=(DEPARTMENT,))
    doc = type(doc)(header=doc.header, trace=doc.trace, manifest=(ref,), attachments=())
    edxml = sign(doc, build_pki().agencies[PROVINCE], reference="envelope")
    content_type, chunks = iter_multipart(edxml, [(ref, io.BytesIO(data))])
    return content_type, b"".join(chunks)


def _connect(hub: Hub) -> ssl.SSLSocket:
    return raw_tls(hub.files, hub.config.port, timeout=30)


def _read_all(sock: ssl.SSLSocket) -> bytes:
    """Everything the hub sends until it closes the connection."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLZeroReturnError):
            return data
        if not chunk:
            return data
        data += chunk


def _responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        status, headers = response_head(head)
        length = int(headers.get("content-length", "0"))
        out.append((status, headers, rest[:length]))
        data = rest[length:]
    return out


def _settled(hub: Hub) -> list[str]:
    """The spool folder once the hub has had a moment to notice a client that went away."""
    deadline = time.monotonic() + 5
    while (left := hub.spool_files()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_a_large_package_is_stored_byte_for_byte_and_the_connection_closes(hub: Hub) -> None:
    content_type, body = _package(1)
    sha = hashlib.sha256(body).hexdigest()
    before = hub.packages()
    with _connect(hub) as sock:
        sock.sendall(request_head("/v1/packages", content_type, len(body)))
        for at in range(0, len(body), 1 << 20):  # in pieces, as a client streaming a file does
            sock.sendall(body[at : at + (1 << 20)])
        [(status, headers, receipt)] = _responses(_read_all(sock))  # one answer, then the hub closes
    assert status == 202, receipt[:300]
    assert headers["connection"] == "close"
    assert headers["x-package-id"] == sha
    assert sha.encode() in receipt  # the receipt names the digest of the exact bytes received
    assert hub.packages() == before + 1
    assert hub.spool_files() == []
    # Synced as it came and, since nothing reads it back, no longer in the page cache.
    assert resident_pages(hub.config.blob_dir / sha[:2] / sha, DIRECT_MIN) == 0

    client = hub.client(DEPARTMENT)
    fetched = client.get(f"/v1/packages/{sha}")
    client.close()
    assert fetched.status == 200
    assert fetched.body == body

    # The same bytes again: the stored receipt (200), nothing new.
    client = hub.client()
    again = client.post_package(body, content_type)
    client.close()
    assert again.status == 200
    assert again.body == receipt
    assert hub.packages() == before + 1


def test_a_slow_client_that_keeps_sending_is_not_cut_off(hub: Hub) -> None:
    """Filling a 4 MiB batch may take longer than the read timeout; only a pause with no byte at all is
    a stalled client."""
    content_type, body = _package(2)
    trickle = 16 * 1024
    with _connect(hub) as sock:
        sock.sendall(request_head("/v1/packages", content_type, len(body)) + body[: DIRECT_MIN + 4096])
        at, started = DIRECT_MIN + 4096, time.monotonic()
        while time.monotonic() - started < 2.5 * READ_TIMEOUT:
            sock.sendall(body[at : at + trickle])
            at += trickle
            time.sleep(READ_TIMEOUT / 4)
        sock.sendall(body[at:])
        [(status, _, answer)] = _responses(_read_all(sock))
    assert status == 202, answer[:300]


def test_a_large_body_that_stops_arriving_times_out(hub: Hub) -> None:
    content_type, body = _package(3)
    before = hub.packages()
    with _connect(hub) as sock:
        sock.sendall(request_head("/v1/packages", content_type, len(body)) + body[: DIRECT_MIN + (1 << 20)])
        started = time.monotonic()
        [(status, headers, problem)] = _responses(_read_all(sock))
        took = time.monotonic() - started
    assert (status, b'"request.timeout"' in problem) == (408, True), problem
    assert headers["connection"] == "close"
    assert READ_TIMEOUT * 0.8 <= took < READ_TIMEOUT + 3
    assert hub.packages() == before
    assert _settled(hub) == []


def test_a_client_that_goes_away_mid_body_leaves_nothing(hub: Hub) -> None:
    content_type, body = _package(4)
    before = hub.packages()
    with _connect(hub) as sock:
        sock.sendall(request_head("/v1/packages", content_type, len(body)) + body[: DIRECT_MIN + (1 << 20)])
        time.sleep(0.3)
    assert _settled(hub) == []
    assert hub.packages() == before
    # And the hub serves the next client as usual.
    content_type, body = _package(5)
    client = hub.client()
    reply = client.post_package(body, content_type)
    client.close()
    assert reply.status == 202, reply.body[:300]


def test_bytes_past_the_declared_length_are_not_taken_for_a_request(hub: Hub) -> None:
    """A request pipelined right after a large body is not answered: the connection closes after the
    package's answer (HTTP/1.1 lets a server do so; the client sends it again on a new connection)."""
    content_type, body = _package(6)
    smuggled = b"GET /v1/inbox?wait=0 HTTP/1.1\r\nHost: hub\r\n\r\n"
    with _connect(hub) as sock:
        sock.sendall(request_head("/v1/packages", content_type, len(body)) + body + smuggled)
        answers = _responses(_read_all(sock))
    assert [(status, headers["connection"]) for status, headers, _ in answers] == [(202, "close")]
