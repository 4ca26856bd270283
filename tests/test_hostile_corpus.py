"""The hostile input corpus against the real hub: one subprocess over mutual TLS on SQLite.

For every case (``tests/hostile_cases.py``, ``tests/hostile/``) three things are checked:

1. the answer: HTTP status, ``application/problem+json`` with the expected ``code`` and ``type``;
2. nothing stored: the row count of every table of the hub's database and the files of its data folder
   are unchanged (:func:`stored`, schema-agnostic: it counts whatever tables exist), and the package id
   (the SHA-256 of the body) is unknown to the API;
3. the hub still serves: a fresh valid package is accepted right after.

Then the stateful attacks (replays, a DocumentId reused, statuses for someone else's exchange, illegal
transitions, other agencies' packages) and the transport ones (bodies over the limit refused before they
are read, streamed bodies cut off at the limit, clients that stop sending).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import select
import sqlite3
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hostile_cases import ATTACHMENT, MULTIPART, START, Case, all_cases, frame
from hub_helpers import (
    COMMUNE,
    DEPARTMENT,
    DISTRICT,
    FINANCE,
    PROVINCE,
    HubFiles,
    HubProcess,
    Reply,
    client_context,
    document,
    hub_config,
    raw_tls,
    request_head,
    response_head,
    sign,
    status,
    write_config_toml,
    write_hub_files,
)
from pki_fixtures import PkiSet, build_pki

from gateway.edxml.model import DocumentPackage
from gateway.edxml.multipart import to_multipart
from gateway.hub.config import HubConfig

MAX_BODY = 2 * 1024 * 1024
READ_TIMEOUT = 1.5
"""The test hub's ``read_timeout``: the longest wait for the next piece of a body."""
IDLE_TIMEOUT = 3.0
"""The test hub's ``idle_timeout_s``: request line and headers must be complete by then (under
``READ_TIMEOUT + 2.5``, what the slow-header test waits)."""

CASES: dict[str, Case] = {c.name: c for c in all_cases(build_pki())}


# --- the hub and one client session -----------------------------------------------------------------


class Session:
    """One aiohttp ClientSession on its own event-loop thread; each identity has its own TLS context."""

    def __init__(self, files: HubFiles, port: int) -> None:
        self.files, self.base = files, f"https://127.0.0.1:{port}"
        self.contexts: dict[str, ssl.SSLContext] = {}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="hostile-client", daemon=True)
        self.thread.start()
        self.session: aiohttp.ClientSession = self._run(self._open())

    async def _open(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def context(self, who: str) -> ssl.SSLContext:
        if who not in self.contexts:
            self.contexts[who] = client_context(self.files, who)
        return self.contexts[who]

    def request(
        self, who: str, method: str, path: str, body: bytes | None = None, content_type: str | None = None
    ) -> Reply:
        headers = {"Content-Type": content_type} if content_type is not None else {}

        async def go() -> Reply:
            async with self.session.request(
                method, self.base + path, data=body, headers=headers, ssl=self.context(who)
            ) as resp:
                return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, await resp.read())

        return self._run(go())

    def close(self) -> None:
        self._run(self.session.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Hub:
    def __init__(
        self, pki: PkiSet, files: HubFiles, config: HubConfig, db: Path, process: HubProcess
    ) -> None:
        self.pki, self.files, self.config, self.db, self.process = pki, files, config, db, process
        self.session = Session(files, config.port)

    def request(
        self, who: str, method: str, path: str, body: bytes | None = None, ctype: str | None = None
    ) -> Reply:
        return self.session.request(who, method, path, body, ctype)

    def post(self, who: str, path: str, body: bytes, ctype: str = "application/edxml+xml") -> Reply:
        return self.request(who, "POST", path, body, ctype)

    def send(
        self, doc: DocumentPackage | None = None, *, sender: str = PROVINCE
    ) -> tuple[DocumentPackage, bytes, Reply]:
        doc = doc or document(sender=sender)
        data = sign(doc, self.pki.agencies[sender])
        return doc, data, self.post(sender, "/v1/packages", data)

    def still_serving(self) -> None:
        """The next good request after an attack is accepted (and a status on it applied)."""
        doc, _, reply = self.send(document(recipients=(DEPARTMENT,)))
        assert reply.status == 202, reply.body[:300]
        arrived = sign(status(sender=DEPARTMENT, doc=doc, code="01"), self.pki.agencies[DEPARTMENT])
        assert self.post(DEPARTMENT, "/v1/status", arrived).status == 202

    def stored(self) -> dict[str, Any]:
        return stored(self.db, self.config.data_dir)

    def package_known(self, who: str, body: bytes) -> bool:
        return self.request(who, "GET", f"/v1/packages/{hashlib.sha256(body).hexdigest()}").status != 404


IGNORED_TABLES = frozenset({"alembic_version"})
IGNORED_FOLDERS = frozenset({"metrics"})
"""Prometheus counters shared between processes (a rejection counts): not stored data."""


def stored(db: Path, data_dir: Path) -> dict[str, Any]:
    """Row count of every table the hub's SQLite database has, and every file under its data folder.

    Deliberately schema-agnostic: it reads the table list from ``sqlite_master``, so it holds for the
    old ``hub_*`` tables and for ``gateway.store``'s (``package``, ``exchange``, ``status_message``,
    ``inbox_item``…) alike; "nothing stored" is equality of two snapshots.
    """
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        tables = [
            name
            for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not name.startswith("sqlite_") and name not in IGNORED_TABLES
        ]
        rows = {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in sorted(tables)}
    finally:
        con.close()
    files = sorted(
        (str(p.relative_to(data_dir)), p.stat().st_size)
        for p in data_dir.rglob("*")
        if p.is_file() and p.relative_to(data_dir).parts[0] not in IGNORED_FOLDERS
    )
    return {"rows": rows, "files": files}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    pki = build_pki()
    root = tmp_path_factory.mktemp("hostile")
    files = write_hub_files(pki, root)
    db = root / "hub.db"
    config = hub_config(
        files,
        f"sqlite+aiosqlite:///{db}",
        max_body=MAX_BODY,
        read_timeout=READ_TIMEOUT,
        idle_timeout=IDLE_TIMEOUT,  # headers that stop arriving, idle connections
    )
    process = HubProcess(write_config_toml(config, root / "hub.toml"))
    h = Hub(pki, files, config, db, process)
    try:
        h.still_serving()
        assert h.stored()["rows"], "the helper found no tables in the hub's database"
        yield h
    finally:
        h.session.close()
        process.stop()


# --- the corpus -------------------------------------------------------------------------------------


def test_the_corpus_is_large_and_covers_every_class() -> None:
    by_class = collections.Counter(c.klass for c in CASES.values())
    assert len(CASES) >= 100, by_class
    assert {
        "xml",
        "multipart",
        "attachment",
        "signature",
        "algorithm",
        "wrapping",
        "trust",
        "identity",
    } <= set(by_class)


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_case(hub: Hub, name: str) -> None:
    case = CASES[name]
    before = hub.stored()
    reply = hub.post(case.who, case.path, case.body, case.content_type)
    assert (reply.status, reply.code) == (case.status, case.code), reply.body[:500]
    problem = reply.json()
    assert problem["type"] == f"https://lgsp-gateway.vn/problems/{case.code}"
    assert problem["status"] == case.status
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert "Traceback" not in reply.body.decode("utf-8", "replace")
    assert hub.stored() == before
    if case.path == "/v1/packages":
        assert not hub.package_known(case.who if case.who in hub.pki.agencies else PROVINCE, case.body)
    hub.still_serving()


# --- replays and conflicts --------------------------------------------------------------------------


def _inbox_items(hub: Hub, agency: str, package_id: str) -> list[dict[str, Any]]:
    items = hub.request(agency, "GET", "/v1/inbox?limit=1000").json()["items"]
    return [i for i in items if i["package_id"] == package_id]


def _multipart(hub: Hub, *, padding: int = 0) -> tuple[str, bytes]:
    doc = document(recipients=(FINANCE,), attachment=ATTACHMENT if not padding else None, padding=padding)
    content_type, chunks = to_multipart(sign(doc, hub.pki.agencies[PROVINCE], reference="envelope"))
    return content_type, b"".join(chunks)


@pytest.mark.parametrize("form", ["single", "single-spooled", "multipart", "multipart-spooled"])
def test_replay_returns_the_same_receipt_and_stores_nothing(hub: Hub, form: str) -> None:
    """Same bytes again: 200, the very same receipt, no new row, file or inbox item (small and spooled)."""
    if form.startswith("single"):
        padding = 1_200_000 if form.endswith("spooled") else 0
        doc = document(recipients=(FINANCE,), padding=padding)
        body, ctype = sign(doc, hub.pki.agencies[PROVINCE]), "application/edxml+xml"
    else:
        ctype, body = _multipart(hub, padding=1_200_000 if form.endswith("spooled") else 0)
    first = hub.post(PROVINCE, "/v1/packages", body, ctype)
    assert first.status == 202, first.body[:300]
    package_id = first.headers["x-package-id"]
    before = hub.stored()
    for _ in range(3):
        again = hub.post(PROVINCE, "/v1/packages", body, ctype)
        assert (again.status, again.body, again.headers["x-package-id"]) == (200, first.body, package_id)
    assert hub.stored() == before
    assert len(_inbox_items(hub, FINANCE, package_id)) == 1
    hub.still_serving()


@pytest.mark.parametrize("padding", [0, 1_200_000])
def test_replay_by_another_agency_is_forbidden_and_reveals_nothing(hub: Hub, padding: int) -> None:
    doc = document(recipients=(DEPARTMENT,), padding=padding)
    body = sign(doc, hub.pki.agencies[PROVINCE])
    assert hub.post(PROVINCE, "/v1/packages", body).status == 202
    before = hub.stored()
    reply = hub.post(FINANCE, "/v1/packages", body)
    assert (reply.status, reply.code) == (403, "auth.forbidden")
    assert b"HubReceipt" not in reply.body
    assert hub.stored() == before
    hub.still_serving()


@pytest.mark.parametrize("form", ["single", "multipart"])
def test_same_document_id_with_other_content_is_a_conflict(hub: Hub, form: str) -> None:
    number = str(time.time_ns() % 10**9)
    first = document(recipients=(DEPARTMENT,), number=number, subject="Bản gốc")
    assert hub.send(first)[2].status == 202
    before = hub.stored()
    other = document(recipients=(DEPARTMENT,), number=number, subject="Bản khác", attachment=ATTACHMENT)
    if form == "single":
        reply = hub.post(PROVINCE, "/v1/packages", sign(other, hub.pki.agencies[PROVINCE]))
    else:
        ctype, chunks = to_multipart(sign(other, hub.pki.agencies[PROVINCE], reference="envelope"))
        reply = hub.post(PROVINCE, "/v1/packages", b"".join(chunks), ctype)
    assert (reply.status, reply.code) == (409, "conflict.document_id")
    assert hub.stored() == before
    hub.still_serving()


# --- statuses: someone else's exchange, illegal transitions -----------------------------------------


def _status(hub: Hub, doc: DocumentPackage, code: str, sender: str, signer: str | None = None) -> bytes:
    return sign(status(sender=sender, doc=doc, code=code), hub.pki.agencies[signer or sender])


def _expect(hub: Hub, who: str, body: bytes, status_code: int, code: str, path: str = "/v1/status") -> None:
    before = hub.stored()
    reply = hub.post(who, path, body)
    assert (reply.status, reply.code) == (status_code, code), reply.body[:300]
    assert hub.stored() == before
    hub.still_serving()


def test_status_for_someone_elses_exchange(hub: Hub) -> None:
    doc, _, reply = hub.send(document(recipients=(DEPARTMENT,)))
    assert reply.status == 202
    # FINANCE, not a party, says it received the document.
    _expect(hub, FINANCE, _status(hub, doc, "01", FINANCE), 403, "auth.forbidden")
    # FINANCE's connection carries DEPARTMENT's validly signed status.
    _expect(hub, FINANCE, _status(hub, doc, "01", DEPARTMENT), 403, "auth.forbidden")
    # DEPARTMENT's connection, a status From DEPARTMENT signed with FINANCE's key.
    _expect(
        hub,
        DEPARTMENT,
        _status(hub, doc, "01", DEPARTMENT, signer=FINANCE),
        422,
        "certificate.agency_mismatch",
    )
    # The sender answering for its recipient.
    _expect(hub, PROVINCE, _status(hub, doc, "03", PROVINCE), 403, "auth.forbidden")
    # A recipient asking for a recall (only the sender may).
    _expect(hub, DEPARTMENT, _status(hub, doc, "13", DEPARTMENT), 403, "auth.forbidden")
    # A status about a document that was never sent.
    _expect(hub, DEPARTMENT, _status(hub, document(), "01", DEPARTMENT), 404, "resource.not_found")


ILLEGAL = {
    "refusal-after-acceptance": (["01", "03"], DEPARTMENT, "02"),
    "recall-agreed-without-request": (["01"], DEPARTMENT, "15"),
    "recall-refused-without-request": (["01"], DEPARTMENT, "16"),
    "recall-after-done": (["01", "03", "04", "05", "06"], PROVINCE, "13"),
    "progress-after-refusal": (["02"], DEPARTMENT, "05"),
    "done-after-recall": (["13", "15"], DEPARTMENT, "06"),
}


@pytest.mark.parametrize("name", list(ILLEGAL))
def test_illegal_transition_is_a_conflict_and_changes_nothing(hub: Hub, name: str) -> None:
    steps, who, code = ILLEGAL[name]
    doc, _, reply = hub.send(document(recipients=(DEPARTMENT,)))
    package_id = reply.headers["x-package-id"]
    for step in steps:
        actor = PROVINCE if step == "13" else DEPARTMENT
        assert hub.post(actor, "/v1/status", _status(hub, doc, step, actor)).status == 202
    timeline = hub.request(PROVINCE, "GET", f"/v1/packages/{package_id}/timeline").json()
    _expect(hub, who, _status(hub, doc, code, who), 409, "conflict.transition")
    assert hub.request(PROVINCE, "GET", f"/v1/packages/{package_id}/timeline").json() == timeline


# --- reading what is not yours ----------------------------------------------------------------------


def test_other_agencies_cannot_read_or_acknowledge(hub: Hub) -> None:
    _, _, reply = hub.send(document(recipients=(COMMUNE,)))
    package_id = reply.headers["x-package-id"]
    for suffix in ("", "/receipt", "/timeline"):
        for who in (FINANCE, DISTRICT):  # DISTRICT is the commune's parent: no right either
            got = hub.request(who, "GET", f"/v1/packages/{package_id}{suffix}")
            assert (got.status, got.code) == (404, "resource.not_found")
    got = hub.request(FINANCE, "GET", f"/v1/inbox?agency={COMMUNE}")
    assert (got.status, got.code) == (403, "auth.forbidden")
    (item,) = _inbox_items(hub, COMMUNE, package_id)
    ack = hub.request(
        FINANCE, "POST", "/v1/inbox/ack", b'{"item_ids": [%d]}' % item["item_id"], "application/json"
    )
    assert ack.status == 200
    assert ack.json()["acknowledged"] == 0
    assert len(_inbox_items(hub, COMMUNE, package_id)) == 1


# --- oversize bodies and slow clients ---------------------------------------------------------------


def _connect(hub: Hub, timeout: float = 10) -> ssl.SSLSocket:
    return raw_tls(hub.files, hub.config.port, timeout=timeout)


def _read_response(sock: ssl.SSLSocket, data: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_code, headers = response_head(head)
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status_code, headers, body


@pytest.mark.parametrize(("path", "limit"), [("/v1/packages", MAX_BODY), ("/v1/status", MAX_BODY)])
def test_declared_oversize_is_refused_before_the_body_is_read(hub: Hub, path: str, limit: int) -> None:
    """Content-Length over the limit: 413 after 4 KiB of a 20 MiB body, i.e. without waiting for it."""
    before = hub.stored()
    with _connect(hub) as sock:
        sock.sendall(request_head(path, "application/edxml+xml", 10 * limit) + b"<" + b"x" * 4095)
        started = time.monotonic()
        status_code, headers, body = _read_response(sock)
    assert time.monotonic() - started < READ_TIMEOUT  # answered at once, not after a read timeout
    assert status_code == 413
    assert headers["content-type"].startswith("application/problem+json")
    assert b'"input.too_large"' in body
    assert hub.stored() == before
    hub.still_serving()


def _answer_so_far(sock: ssl.SSLSocket) -> bytes:
    """Response bytes already here, without blocking. A readable socket may only hold TLS records (TLS 1.3
    session tickets): they are consumed and b"" is returned, and the client keeps sending."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable and not sock.pending():
        return b""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        return sock.recv(65536) or b"HTTP/1.1 000 closed\r\n\r\n"
    except ssl.SSLWantReadError:
        return b""
    finally:
        sock.settimeout(timeout)


@pytest.mark.parametrize("content_type", ["application/edxml+xml", MULTIPART])
def test_streamed_oversize_is_cut_off_at_the_limit(hub: Hub, content_type: str) -> None:
    """A chunked body (no Content-Length) is refused as soon as it passes the limit, while still sending."""
    before = hub.stored()
    chunk = b"<" + b"x" * (64 * 1024 - 1)
    if content_type == MULTIPART:
        chunk = frame([(START, b"")], close=False)[: 64 * 1024].ljust(64 * 1024, b"x")
    sent, early = 0, b""
    with _connect(hub) as sock:
        sock.sendall(request_head("/v1/packages", content_type, None))
        while sent < 16 * MAX_BODY and not early:
            early = _answer_so_far(sock)
            if early:
                break
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
            chunk = b"x" * len(chunk)
        status_code, _, body = _read_response(sock, early)
    assert status_code == 413
    assert b'"input.too_large"' in body
    assert sent < 16 * MAX_BODY  # the answer came before the client finished
    assert hub.stored() == before
    hub.still_serving()


@pytest.mark.parametrize(
    ("path", "content_type", "prefix"),
    [
        ("/v1/packages", "application/edxml+xml", b"<edXML"),
        ("/v1/packages", MULTIPART, b"--edxml-hostile-0123456789\r\nContent-ID: <edxml>\r\n"),
        ("/v1/packages", "application/edxml+xml", b""),
    ],
    ids=["single", "multipart", "no-byte-of-body"],
)
def test_a_body_that_stops_arriving_times_out(hub: Hub, path: str, content_type: str, prefix: bytes) -> None:
    before = hub.stored()
    with _connect(hub, timeout=READ_TIMEOUT + 5) as sock:
        sock.sendall(request_head(path, content_type, 100_000) + prefix)
        started = time.monotonic()
        status_code, _, body = _read_response(sock)
        took = time.monotonic() - started
    assert (status_code, b'"request.timeout"' in body) == (408, True), body
    assert READ_TIMEOUT * 0.8 <= took < READ_TIMEOUT + 3
    assert hub.stored() == before
    hub.still_serving()


def _closed_or_answered_within(sock: ssl.SSLSocket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        sock.recv(1)
    except TimeoutError:
        return False
    except (ssl.SSLError, OSError):
        return True
    return True


def test_a_status_body_that_stops_arriving_times_out(hub: Hub) -> None:
    with _connect(hub) as sock:
        sock.sendall(request_head("/v1/status", "application/edxml+xml", 10_000) + b"<edXML")
        assert _closed_or_answered_within(sock, READ_TIMEOUT + 2.5)
    hub.still_serving()


def test_headers_that_stop_arriving_are_cut_off(hub: Hub) -> None:
    with _connect(hub) as sock:
        sock.sendall(b"POST /v1/packages HTTP/1.1\r\nHost: hub\r\nContent-Ty")
        assert _closed_or_answered_within(sock, READ_TIMEOUT + 2.5)
    hub.still_serving()
