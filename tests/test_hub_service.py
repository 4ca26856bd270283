"""The hub as a real subprocess over real mutual TLS, on SQLite and on PostgreSQL.

One hub process per backend for the whole module (started once); each test uses fresh DocumentIds so tests
do not depend on each other's order. Every rejection is checked for its problem type *and* for leaving the
database and the blob folder exactly as they were.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import os
import signal
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_helpers import (
    COMMUNE,
    DEPARTMENT,
    DISTRICT,
    FINANCE,
    PROVINCE,
    UNLISTED,
    Client,
    HubFiles,
    HubProcess,
    child_pids,
    client_context,
    document,
    hub_config,
    sign,
    snapshot,
    status,
    verify_hub_signed,
    write_config_toml,
    write_hub_files,
)
from lxml import etree
from pki_fixtures import PkiSet, build_pki

from gateway.edxml.build import build
from gateway.edxml.multipart import to_multipart
from gateway.hub import receipts
from gateway.hub.config import HubConfig
from gateway.trust.store import TrustStore

MAX_BODY = 3 * 1024 * 1024
DEFAULT_PG_URL = "postgresql+asyncpg://gateway:gateway@127.0.0.1:5432/gateway_test"


def pg_url_or_skip() -> str:
    """A fresh PostgreSQL database for this module: skipped on a laptop without one, failed in CI."""
    from sqlalchemy.engine import make_url

    base = make_url(os.environ.get("GATEWAY_TEST_PG_URL", DEFAULT_PG_URL))
    name = f"hub_t_{uuid.uuid4().hex[:10]}"

    async def create() -> None:
        import asyncpg

        conn = await asyncpg.connect(
            base.set(drivername="postgresql").render_as_string(hide_password=False), timeout=5
        )
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    try:
        asyncio.run(create())
    except Exception as exc:
        message = f"PostgreSQL at {base.render_as_string()} is unreachable ({exc!r}); set GATEWAY_TEST_PG_URL"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return base.set(database=name).render_as_string(hide_password=False)


def drop_pg(url: str) -> None:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    name = u.database
    admin = u.set(database=make_url(os.environ.get("GATEWAY_TEST_PG_URL", DEFAULT_PG_URL)).database)

    async def drop() -> None:
        import asyncpg

        conn = await asyncpg.connect(admin.set(drivername="postgresql").render_as_string(hide_password=False))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


class Env:
    def __init__(self, pki: PkiSet, files: HubFiles, config: HubConfig, hub: HubProcess) -> None:
        self.pki, self.files, self.config, self.hub = pki, files, config, hub
        self.trust = TrustStore.load(files.trust_dir)

    def client(self, who: str | None) -> Client:
        return Client(self.config.port, client_context(self.files, who))

    def state(self) -> dict[str, object]:
        return snapshot(self.config.database_url, self.config.data_dir)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    pki = build_pki()
    root = tmp_path_factory.mktemp(f"hub-{request.param}")
    files = write_hub_files(pki, root)
    url = f"sqlite+aiosqlite:///{root}/hub.db" if request.param == "sqlite" else pg_url_or_skip()
    config = hub_config(files, url, max_body=MAX_BODY)
    hub = HubProcess(write_config_toml(config, root / "hub.toml"))
    try:
        yield Env(pki, files, config, hub)
    finally:
        hub.stop()
        if request.param == "postgresql":
            drop_pg(url)


def send(env: Env, sender: str = PROVINCE, recipients: tuple[str, ...] = (DEPARTMENT,), **kw: object):
    doc = document(sender=sender, recipients=recipients, **kw)  # type: ignore[arg-type]
    data = sign(doc, env.pki.agencies[sender])
    return doc, data, env.client(sender).post_package(data)


def verified_receipt(env: Env, body: bytes) -> receipts.Receipt:
    checked = verify_hub_signed(body, trust=env.trust, at=dt.datetime.now(dt.UTC))
    return receipts.parse_receipt(checked.signed_root)


# --- sending ----------------------------------------------------------------------------------------


def test_send_answers_a_signed_receipt_for_exactly_the_bytes_sent(env: Env) -> None:
    import hashlib

    doc, data, reply = send(env, recipients=(DEPARTMENT, DISTRICT))
    assert reply.status == 202, reply.body
    receipt = verified_receipt(env, reply.body)
    assert receipt.sha256 == hashlib.sha256(data).hexdigest() == reply.headers["x-package-id"]
    assert receipt.size == len(data)
    assert receipt.document_id == doc.header.document_id
    assert receipt.sender == PROVINCE
    assert receipt.electronic
    assert receipt.verdict == "verified"
    assert [(r.organ_id, r.result) for r in receipt.recipients] == [
        (DEPARTMENT, "queued"),
        (DISTRICT, "queued"),
    ]
    assert abs((receipt.hub_time - dt.datetime.now(dt.UTC)).total_seconds()) < 60


def test_the_same_bytes_again_return_the_same_receipt_and_store_nothing(env: Env) -> None:
    _, data, first = send(env)
    before = env.state()
    again = env.client(PROVINCE).post_package(data)
    assert again.status == 200
    assert again.body == first.body
    assert env.state() == before


def test_same_document_id_with_other_content_is_a_conflict(env: Env) -> None:
    doc, _, first = send(env, subject="Bản gốc")
    assert first.status == 202
    before = env.state()
    other = document(number=doc.header.code.code_number, subject="Bản khác")  # type: ignore[union-attr]
    reply = env.client(PROVINCE).post_package(sign(other, env.pki.agencies[PROVINCE]))
    assert (reply.status, reply.code) == (409, "conflict.document_id")
    assert env.state() == before


def test_multipart_package_is_streamed_verified_and_served_back_byte_for_byte(env: Env) -> None:
    doc = document(recipients=(FINANCE,), padding=2 * 1024 * 1024 + 17)
    single = sign(doc, env.pki.agencies[PROVINCE], reference="envelope")
    content_type, chunks = to_multipart(single)
    body = b"".join(chunks)
    reply = env.client(PROVINCE).post_package(body, content_type)
    assert reply.status == 202, reply.body
    receipt = verified_receipt(env, reply.body)
    assert receipt.carriage == "multipart"
    fetched = env.client(FINANCE).get(f"/v1/packages/{receipt.package_id}")
    assert fetched.status == 200
    assert fetched.body == body
    assert fetched.headers["content-type"].startswith("multipart/related")


def test_a_small_body_is_kept_in_the_database_and_a_large_one_is_a_blob(env: Env) -> None:
    """Where the bytes go (docs/storage.md): a body held in memory is written with its rows, no file; a
    body spooled to disk (over 1 MiB) is a content-addressed blob, no row. Both come back byte for byte."""
    before = env.state()
    _, small, reply = send(env, recipients=(FINANCE,))
    assert reply.status == 202
    after_small = env.state()
    assert after_small["rows"]["package_body"] == before["rows"]["package_body"] + 1
    assert after_small["blobs"] == before["blobs"]
    _, large, reply_large = send(env, recipients=(FINANCE,), padding=(1 << 20) + 4096)
    assert reply_large.status == 202
    after_large = env.state()
    assert after_large["rows"]["package_body"] == after_small["rows"]["package_body"]
    sha = hashlib.sha256(large).hexdigest()
    assert set(after_large["blobs"]) - set(after_small["blobs"]) == {f"{sha[:2]}/{sha}"}
    finance = env.client(FINANCE)
    for data, answer in ((small, reply), (large, reply_large)):
        fetched = finance.get(f"/v1/packages/{answer.headers['x-package-id']}")
        assert fetched.status == 200
        assert fetched.body == data
        assert fetched.headers["x-package-sha256"] == hashlib.sha256(data).hexdigest()


# --- inbox and packages -----------------------------------------------------------------------------


def test_inbox_delivers_until_acknowledged_and_only_to_the_recipient(env: Env) -> None:
    _, data, reply = send(env, recipients=(COMMUNE,))
    package_id = reply.headers["x-package-id"]
    commune = env.client(COMMUNE)
    items = commune.get("/v1/inbox?limit=1000").json()["items"]
    mine = [i for i in items if i["package_id"] == package_id]
    assert len(mine) == 1
    assert mine[0]["kind"] == "package"
    assert commune.get(mine[0]["href"]).body == data
    # Another agency sees neither the inbox item nor the package.
    other = env.client(FINANCE)
    assert package_id not in {i["package_id"] for i in other.get("/v1/inbox?limit=1000").json()["items"]}
    assert other.get(f"/v1/packages/{package_id}").code == "resource.not_found"
    assert other.get(f"/v1/inbox?agency={COMMUNE}").code == "auth.forbidden"
    # Acknowledged items are not delivered again; acknowledging twice is harmless.
    ack = commune.post_json("/v1/inbox/ack", {"item_ids": [mine[0]["item_id"]]})
    assert ack.json()["acknowledged"] == 1
    assert commune.post_json("/v1/inbox/ack", {"item_ids": [mine[0]["item_id"]]}).json()["acknowledged"] == 0
    assert package_id not in {i["package_id"] for i in commune.get("/v1/inbox?limit=1000").json()["items"]}


def test_long_poll_returns_as_soon_as_something_arrives(env: Env) -> None:
    import threading

    ministry = env.client(COMMUNE)
    for item in ministry.get("/v1/inbox?limit=1000").json()["items"]:
        ministry.post_json("/v1/inbox/ack", {"item_ids": [item["item_id"]]})
    result: dict[str, object] = {}

    def poll() -> None:
        t = time.monotonic()
        result["items"] = env.client(COMMUNE).get("/v1/inbox?wait=20").json()["items"]
        result["took"] = time.monotonic() - t

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.5)
    send(env, recipients=(COMMUNE,))
    thread.join(30)
    assert result["items"]
    assert result["took"] < 10


# --- statuses ---------------------------------------------------------------------------------------


def test_status_lifecycle_notices_timeline_and_idempotency(env: Env) -> None:
    doc, _, reply = send(env, recipients=(DEPARTMENT, DISTRICT))
    package_id = reply.headers["x-package-id"]
    dept = env.client(DEPARTMENT)
    arrived = sign(status(sender=DEPARTMENT, doc=doc, code="01"), env.pki.agencies[DEPARTMENT])
    first = dept.post_status(arrived)
    assert first.status == 202, first.body
    r = verified_receipt(env, first.body)
    assert r.kind == "status"
    assert r.status is not None
    assert (r.status.code, r.status.sender) == ("01", DEPARTMENT)
    # The very same status again: the same receipt, nothing new.
    before = env.state()
    again = dept.post_status(arrived)
    assert (again.status, again.body) == (200, first.body)
    assert env.state() == before
    # 03 then an illegal 02 (refusal after acceptance).
    assert (
        dept.post_status(
            sign(status(sender=DEPARTMENT, doc=doc, code="03"), env.pki.agencies[DEPARTMENT])
        ).status
        == 202
    )
    before = env.state()
    refused = dept.post_status(
        sign(status(sender=DEPARTMENT, doc=doc, code="02"), env.pki.agencies[DEPARTMENT])
    )
    assert (refused.status, refused.code) == (409, "conflict.transition")
    assert env.state() == before
    # Another message repeating a state already reached (03 again, other bytes): 200, a receipt for
    # *that* message (its own SHA-256), the state unchanged, nothing forwarded (docs/api.md).
    repeat = sign(
        status(sender=DEPARTMENT, doc=doc, code="03", description="nhắc lại"), env.pki.agencies[DEPARTMENT]
    )
    repeated = dept.post_status(repeat)
    assert (repeated.status, repeated.headers["x-exchange-state"]) == (200, "accepted")
    r = verified_receipt(env, repeated.body)
    assert (r.sha256, r.size) == (hashlib.sha256(repeat).hexdigest(), len(repeat))
    # The sender's inbox got hub-signed notices carrying the original statuses.
    items = [
        i
        for i in env.client(PROVINCE).get("/v1/inbox?limit=1000").json()["items"]
        if i["package_id"] == package_id
    ]
    assert [i["status_code"] for i in items] == ["01", "03"]
    import base64

    notice = verified_receipt(env, base64.b64decode(items[0]["notice"]))
    assert notice.kind == "status-notice"
    assert notice.original == arrived
    # Timeline: per recipient, events and state; the district has not confirmed yet.
    timeline = env.client(PROVINCE).get(f"/v1/packages/{package_id}/timeline").json()
    by = {r["organ_id"]: r for r in timeline["recipients"]}
    assert by[DEPARTMENT]["state"] == "accepted"
    assert [e["code"] for e in by[DEPARTMENT]["events"]] == ["01", "03", "03"]  # the repeat is recorded
    assert by[DISTRICT]["state"] == "queued"
    assert by[DISTRICT]["overdue"] is False


def test_status_from_someone_not_party_to_the_exchange_is_forbidden(env: Env) -> None:
    doc, _, _ = send(env, recipients=(DEPARTMENT,))
    before = env.state()
    # FINANCE signs a status about a document not addressed to it.
    reply = env.client(FINANCE).post_status(
        sign(status(sender=FINANCE, doc=doc, code="01"), env.pki.agencies[FINANCE])
    )
    assert (reply.status, reply.code) == (403, "auth.forbidden")
    # FINANCE's certificate posting DEPARTMENT's (validly signed) status: the transport identity is not From.
    dept_status = sign(status(sender=DEPARTMENT, doc=doc, code="01"), env.pki.agencies[DEPARTMENT])
    reply = env.client(FINANCE).post_status(dept_status)
    assert (reply.status, reply.code) == (403, "auth.forbidden")
    assert env.state() == before


def test_recall_by_the_sender_reaches_every_recipient(env: Env) -> None:
    doc, _, reply = send(env, recipients=(DEPARTMENT, FINANCE))
    recall = env.client(PROVINCE).post_status(
        sign(status(sender=PROVINCE, doc=doc, code="13"), env.pki.agencies[PROVINCE])
    )
    assert recall.status == 202, recall.body
    agreed = env.client(FINANCE).post_status(
        sign(status(sender=FINANCE, doc=doc, code="15"), env.pki.agencies[FINANCE])
    )
    assert agreed.status == 202
    timeline = env.client(PROVINCE).get(f"/v1/packages/{reply.headers['x-package-id']}/timeline").json()
    assert {r["organ_id"]: r["state"] for r in timeline["recipients"]} == {
        DEPARTMENT: "recall_requested",
        FINANCE: "recalled",
    }


# --- rejections: problem type, and nothing stored ---------------------------------------------------


def _unsigned(env: Env) -> bytes:
    return build(document())


def _tampered(env: Env) -> bytes:
    data = sign(document(subject="Nội dung gốc"), env.pki.agencies[PROVINCE])
    return data.replace("Nội dung gốc".encode(), "Nội dung sửa".encode())


def _revoked_signer(env: Env) -> bytes:
    return sign(document(), env.pki.bad("revoked"))


def _other_agency_cert(env: Env) -> bytes:
    return sign(document(), env.pki.agencies[FINANCE])  # From = PROVINCE, signed by FINANCE


REJECTIONS = {
    "unsigned": (PROVINCE, _unsigned, "application/edxml+xml", 422, "signature.missing"),
    "tampered": (PROVINCE, _tampered, "application/edxml+xml", 422, "signature.digest_mismatch"),
    "revoked signer": (PROVINCE, _revoked_signer, "application/edxml+xml", 422, "certificate.revoked"),
    "another agency's signature": (
        PROVINCE,
        _other_agency_cert,
        "application/edxml+xml",
        422,
        "certificate.agency_mismatch",
    ),
    "sender not the mTLS identity": (
        DEPARTMENT,
        lambda env: sign(document(), env.pki.agencies[PROVINCE]),
        "application/edxml+xml",
        403,
        "auth.forbidden",
    ),
    "unknown recipient": (
        PROVINCE,
        lambda env: sign(document(recipients=(DEPARTMENT, UNLISTED)), env.pki.agencies[PROVINCE]),
        "application/edxml+xml",
        422,
        "directory.unknown_recipient",
    ),
    "malformed xml": (
        PROVINCE,
        lambda env: b"<edXML><unclosed>",
        "application/edxml+xml",
        400,
        "xml.malformed",
    ),
    "dtd": (
        PROVINCE,
        lambda env: b'<?xml version="1.0"?><!DOCTYPE x SYSTEM "http://example.org/x.dtd"><x/>',
        "application/edxml+xml",
        400,
        "xml.dtd_forbidden",
    ),
    "empty": (PROVINCE, lambda env: b"", "application/edxml+xml", 400, "input.empty"),
    "wrong media type": (
        PROVINCE,
        lambda env: b"{}",
        "application/json",
        415,
        "request.unsupported_media_type",
    ),
    "oversize": (
        PROVINCE,
        lambda env: b"<x>" + b"a" * MAX_BODY + b"</x>",
        "application/edxml+xml",
        413,
        "input.too_large",
    ),
    "truncated multipart": (
        PROVINCE,
        lambda env: b"--b\r\nContent-Type: application/edxml+xml\r\nContent-ID: <edxml>\r\n\r\n<x/>",
        'multipart/related; boundary=b; type="application/edxml+xml"',
        400,
        "multipart.truncated",
    ),
}


@pytest.mark.parametrize("case", sorted(REJECTIONS))
def test_every_rejection_has_its_problem_type_and_stores_nothing(env: Env, case: str) -> None:
    who, make, content_type, status_code, code = REJECTIONS[case]
    body = make(env)
    before = env.state()
    reply = env.client(who).post_package(body, content_type)
    assert (reply.status, reply.code) == (status_code, code), reply.body[:500]
    problem = reply.json()
    assert problem["type"].endswith(code)
    assert problem["status"] == status_code
    assert problem["title"]
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert env.state() == before
    # The hub still serves the next good request.
    assert send(env)[2].status == 202


def test_oversize_is_refused_from_content_length_before_the_body_is_read(env: Env) -> None:
    import http.client

    conn = http.client.HTTPSConnection(
        "127.0.0.1", env.config.port, context=client_context(env.files, PROVINCE)
    )
    conn.putrequest("POST", "/v1/packages")
    conn.putheader("Content-Type", "application/edxml+xml")
    conn.putheader("Content-Length", str(10 * MAX_BODY))
    conn.endheaders()  # no body sent at all: the answer must come anyway
    reply = conn.getresponse()
    assert reply.status == 413
    assert b"input.too_large" in reply.read()
    conn.close()


# --- transport security -----------------------------------------------------------------------------


@pytest.mark.parametrize("who", [None, "foreign", "revoked", "expired"])
def test_a_client_without_a_trusted_valid_certificate_cannot_connect(env: Env, who: str | None) -> None:
    client = env.client(who)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        client.get("/healthz")


def test_admin_api_is_for_the_operator_only(env: Env) -> None:
    new = "000.00.07.H53"
    payload = {"name": "Sở Y tế", "level": "department", "parent": PROVINCE}
    assert (
        env.client(PROVINCE).post_json(f"/v1/admin/agencies/{new}", payload, method="PUT").code
        == "auth.forbidden"
    )
    reply = env.client("hub").post_json(f"/v1/admin/agencies/{new}", payload, method="PUT")
    assert reply.status == 200, reply.body
    assert new in {a["organ_id"] for a in env.client(PROVINCE).get("/v1/agencies").json()["agencies"]}


def test_ops_endpoints(env: Env) -> None:
    c = env.client(DISTRICT)
    assert c.get("/healthz").status == 200
    ready = c.get("/readyz")
    assert ready.status == 200
    assert ready.json()["checks"]["database"] == "ok"
    send(env)
    metrics = c.get("/metrics").body.decode()
    assert 'gateway_packages_accepted_total{kind="package",form="single"}' in metrics
    assert "gateway_verification_seconds_count" in metrics
    assert 'gateway_packages_rejected_total{reason="signature.missing"}' in metrics
    assert "gateway_inbox_depth{" in metrics


def test_paper_dispatch_is_recorded_for_the_sender_only(env: Env) -> None:
    body = {
        "sender": PROVINCE,
        "recipient": COMMUNE,
        "document_id": f"{PROVINCE},2026/01/05,{uuid.uuid4().hex[:6]}/UBND",
        "sent_on": "2026-01-05",
    }
    assert env.client(PROVINCE).post_json("/v1/paper-dispatches", body).status == 201
    assert env.client(DEPARTMENT).post_json("/v1/paper-dispatches", body).code == "auth.forbidden"
    assert env.client(PROVINCE).post_json("/v1/paper-dispatches", {"sender": PROVINCE}).code == "request.bad"


def test_trust_changes_apply_without_restart(env: Env, tmp_path: Path) -> None:
    """A CRL revoking a client, dropped into the trust folder, shuts that client out (mtime polling)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from gateway.trust.pki import make_crl

    victim = env.pki.agencies[MINISTRY_ID]
    assert env.client(MINISTRY_ID).get("/healthz").status == 200
    now = dt.datetime.now(dt.UTC)
    crl = make_crl(
        env.pki.intermediate,
        [
            (env.pki.bad("revoked").cert.serial_number, now - dt.timedelta(days=400)),
            (victim.cert.serial_number, now),
        ],
        this_update=now,
        next_update=now + dt.timedelta(days=7),
        crl_number=2,
    )
    crl_file = env.files.trust_dir / "issuing.crl"
    original = crl_file.read_bytes()
    try:
        crl_file.write_bytes(crl.public_bytes(Encoding.PEM))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                env.client(MINISTRY_ID).get("/healthz")
            except (ssl.SSLError, ConnectionError, OSError):
                break
            time.sleep(0.3)
        else:
            pytest.fail("the revoked client could still connect 10 s after the CRL changed")
    finally:
        crl_file.write_bytes(original)
        time.sleep(1.5)


MINISTRY_ID = "000.00.00.G12"


def test_sighup_forces_a_reload_and_the_hub_keeps_serving(env: Env) -> None:
    assert env.client(PROVINCE).get("/healthz").status == 200
    env.hub.signal(signal.SIGHUP)
    time.sleep(0.5)
    assert env.client(PROVINCE).get("/readyz").status == 200


def _pool_workers(hub: HubProcess) -> set[int]:
    """The verification workers: the hub process's spawned children (not multiprocessing's resource
    tracker), started from any of its threads."""
    out: set[int] = set()
    for child in child_pids(hub.proc.pid):
        with contextlib.suppress(OSError):
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                out.add(child)
    return out


def test_a_killed_verification_worker_is_replaced_and_the_hub_keeps_serving(env: Env) -> None:
    """The OOM killer takes a verification worker: the hub logs it, starts another, and every package
    sent afterwards is verified and accepted."""
    before = _pool_workers(env.hub)
    assert len(before) == env.config.verify_processes
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not (victim not in _pool_workers(env.hub) and len(_pool_workers(env.hub)) == len(before)):
        assert time.monotonic() < deadline, "the dead worker was not replaced"
        time.sleep(0.05)
    assert [send(env)[2].status for _ in range(2 * len(before))] == [202] * (2 * len(before))
    assert f"verification worker {victim} died" in env.hub.log.read_text()


def test_receipt_xml_is_namespaced_and_signed_last(env: Env) -> None:
    _, _, reply = send(env)
    root = etree.fromstring(reply.body)
    assert root.tag == f"{{{receipts.RECEIPT_NS}}}HubReceipt"
    assert etree.QName(root[-1]).localname == "Signature"
