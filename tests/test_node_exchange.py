"""The agency node end to end: one real hub (subprocess, SQLite, mutual TLS) and three nodes (the province,
a huyện, a xã) driven by the real ``gateway`` CLI in their own processes.

Each test sends fresh documents, so the tests share the module's hub without depending on each other.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hub_helpers import COMMUNE, DISTRICT, PROVINCE, VN, Client, client_context
from node_helpers import CLI, REPO, Exchange, NodeDir, fresh_number, start_exchange

from gateway.demo.runner import forge_hub_copy

NOTATION = "UBND-VP"


@pytest.fixture(scope="module")
def ex(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    exchange = start_exchange(
        tmp_path_factory.mktemp("node-exchange"), (PROVINCE, DISTRICT, COMMUNE), multipart_threshold=64 * 1024
    )
    try:
        yield exchange
    finally:
        exchange.hub.stop()


def doc_id(number: str, sender: str = PROVINCE) -> str:
    return f"{sender},{dt.datetime.now(VN):%Y/%m/%d},{number}/{NOTATION}"


def send(
    node: NodeDir, *recipients: str, number: str | None = None, files: tuple[Path, ...] = (), **kw: Any
) -> str:
    number = number or fresh_number()
    args = [
        "node",
        "send",
        "--number",
        number,
        "--notation",
        NOTATION,
        "--subject",
        kw.get("subject", "Về việc thử nghiệm"),
    ]
    for r in recipients:
        args += ["--to", r]
    for f in files:
        args += ["--file", str(f)]
    node.cli(*args)
    return doc_id(number, node.organ_id)


def timeline(ex: Exchange, who: str, package_id: str) -> dict[str, Any]:
    reply = Client(ex.config.port, client_context(ex.files, who)).get(f"/v1/packages/{package_id}/timeline")
    assert reply.status == 200, reply.body
    return reply.json()  # type: ignore[no-any-return]


def by_recipient(receipts: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["organ_id"]: r for r in receipts["recipients"]}


def codes(recipient: dict[str, Any]) -> list[str]:
    return [e["code"] for e in recipient["events"]]


# --- the main scenario ------------------------------------------------------------------------------


def test_dispatch_confirmed_by_both_accepted_by_one_refused_by_the_other(
    ex: Exchange, tmp_path: Path
) -> None:
    province, district, commune = ex.nodes[PROVINCE], ex.nodes[DISTRICT], ex.nodes[COMMUNE]
    pdf = tmp_path / "cong-van.pdf"
    pdf.write_bytes(b"%PDF-1.4\n" + os.urandom(100 * 1024))  # above the 64 KiB threshold: multipart
    document = send(province, DISTRICT, COMMUNE, files=(pdf,))

    # Both recipients pull, verify themselves, answer 01 automatically and hand the file to their DMS.
    for node in (district, commune):
        node.cli("node", "run", "--once")
        dropped = [d for d in node.dropped() if d["document_id"] == document]
        assert len(dropped) == 1
        sidecar = dropped[0]
        assert sidecar["verdict"]["ok"] is True
        assert sidecar["verdict"]["verified_by"] == node.organ_id
        assert sidecar["subject"] == "Về việc thử nghiệm"
        folder = next(d for d in node.drop.iterdir() if d.name.endswith(sidecar["package_sha256"][:12]))
        assert (folder / "cong-van.pdf").read_bytes() == pdf.read_bytes()
        assert sidecar["files"][0]["sha256"] == hashlib.sha256(pdf.read_bytes()).hexdigest()

    district.cli("node", "status", document, "--code", "03")
    commune.cli("node", "status", document, "--code", "02", "--reason", "Không đúng thẩm quyền xử lý")
    province.cli("node", "run", "--once")  # the status notices reach the sender's store

    data = province.json("receipts", document)
    assert data["role"] == "sender"
    assert data["hub_receipt"]["signature"] == "verified"
    assert data["hub_receipt"]["carriage"] == "multipart"
    assert data["source"] == "hub"
    rows = by_recipient(data)
    assert set(rows) == {DISTRICT, COMMUNE}
    assert rows[DISTRICT]["state"] == "accepted"
    assert codes(rows[DISTRICT]) == ["01", "03"]
    assert rows[COMMUNE]["state"] == "refused"
    assert codes(rows[COMMUNE]) == ["01", "02"]
    refusal = rows[COMMUNE]["events"][1]
    assert refusal["by"] == COMMUNE
    assert refusal["description"] == "Không đúng thẩm quyền xử lý"
    assert all(e["notice_verified"] for r in rows.values() for e in r["events"])
    assert not any(r["overdue"] for r in rows.values())

    table = province.cli("receipts", document).stdout
    for word in ("accepted", "refused", "Không đúng thẩm quyền"):
        assert word in table

    # The clerk's overdue view: the district accepted, the commune refused: nothing left for either.
    for node in (district, commune):
        assert document not in [r["document_id"] for r in node.json("overdue")["received"]]


def test_a_received_document_waits_in_overdue_until_the_clerk_accepts_it(ex: Exchange) -> None:
    province, district = ex.nodes[PROVINCE], ex.nodes[DISTRICT]
    document = send(province, DISTRICT)
    district.cli("node", "run", "--once")
    pending = {r["document_id"]: r for r in district.json("overdue")["received"]}
    assert pending[document]["last_status"] == "01"
    district.cli("node", "status", document, "--code", "03")
    assert document not in [r["document_id"] for r in district.json("overdue")["received"]]


# --- outbox: the hub is down ------------------------------------------------------------------------


def test_hub_down_the_outbox_retries_and_delivers_exactly_once(ex: Exchange) -> None:
    province, commune = ex.nodes[PROVINCE], ex.nodes[COMMUNE]
    ex.hub.stop()
    runner: subprocess.Popen[bytes] | None = None
    try:
        number = fresh_number()
        proc = province.cli(
            "node", "send", "--to", COMMUNE, "--number", number, "--notation", NOTATION,
            "--subject", "Gửi khi trục tạm ngừng", check=False,
        )  # fmt: skip
        assert proc.returncode == 3, proc.stdout + proc.stderr
        assert "queued" in proc.stdout
        document = doc_id(number)
        queued = province.json("node", "outbox")
        row = next(r for r in queued if r["document_id"] == document)
        assert row["state"] == "pending"

        runner = province.start()  # retries with backoff while the hub is down
        time.sleep(1.5)
        runner.send_signal(signal.SIGKILL)  # the node dies; its outbox must survive
        runner.wait()
        again = next(r for r in province.json("node", "outbox") if r["document_id"] == document)
        assert again["state"] == "pending"
        assert again["sha256"] == row["sha256"]
        assert again["attempts"] >= 2

        runner = province.start()  # restarted before the hub comes back
        ex.restart_hub()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = next(r for r in province.json("node", "outbox") if r["document_id"] == document)
            if now["state"] == "sent":
                break
            time.sleep(0.3)
        assert now["state"] == "sent", now
        assert now["sha256"] == row["sha256"]  # the very bytes stored before the first attempt
    finally:
        if runner is not None and runner.poll() is None:
            runner.terminate()
            runner.wait(10)
        if ex.hub.proc.poll() is not None:
            ex.restart_hub()

    commune.cli("node", "run", "--once")
    assert [d["document_id"] for d in commune.dropped()].count(document) == 1
    line = timeline(ex, PROVINCE, row["sha256"])
    assert [r["organ_id"] for r in line["recipients"]] == [COMMUNE]
    assert [e["code"] for e in line["recipients"][0]["events"]] == ["01"]


# --- inbox: killed while receiving ------------------------------------------------------------------

KILLING_RUN = """
import os, signal, sys
from gateway.node.node import Node
target = getattr(Node, sys.argv[1])
async def killed(self, *a, **kw):
    os.kill(os.getpid(), signal.SIGKILL)
setattr(Node, sys.argv[1], killed)
sys.argv = ["gateway", *sys.argv[2:]]
exec(compile(sys.argv and CLI, "cli", "exec"))
"""


@pytest.mark.parametrize(
    "kill_at",
    ["deliver_outbox", "ack_processed"],
    ids=["stored-before-status-sent", "status-sent-before-ack"],
)
def test_node_killed_mid_receive_loses_nothing_and_confirms_once(ex: Exchange, kill_at: str) -> None:
    province, district = ex.nodes[PROVINCE], ex.nodes[DISTRICT]
    document = send(province, DISTRICT)
    code = KILLING_RUN.replace("sys.argv and CLI", repr(CLI))
    killed = subprocess.run(
        [sys.executable, "-c", code, kill_at, "node", "run", "--once", "--config", str(district.config)],
        capture_output=True,
        cwd=REPO,
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    district.cli("node", "run", "--once")  # restart: replays from the store, the hub re-offers the item
    district.cli("node", "run", "--once")
    assert [d["document_id"] for d in district.dropped()].count(document) == 1
    received = district.json("node", "inbox")["documents"]
    assert [d["document_id"] for d in received].count(document) == 1
    statuses = [r for r in district.json("node", "outbox") if r["document_id"] == document]
    assert [(r["status_code"], r["state"]) for r in statuses] == [("01", "sent")]
    package_id = next(r for r in province.json("node", "outbox") if r["document_id"] == document)["sha256"]
    events = timeline(ex, PROVINCE, package_id)["recipients"][0]["events"]
    assert [e["code"] for e in events] == ["01"]


# --- recall, update, replacement ------------------------------------------------------------------


def test_recall_agreed_by_one_recipient_and_refused_by_the_other(ex: Exchange) -> None:
    province, district, commune = ex.nodes[PROVINCE], ex.nodes[DISTRICT], ex.nodes[COMMUNE]
    document = send(province, DISTRICT, COMMUNE)
    for node in (district, commune):
        node.cli("node", "run", "--once")
    province.cli("node", "recall", document, "--reason", "Ban hành nhầm")
    for node in (district, commune):
        node.cli("node", "run", "--once")
        requests = node.json("node", "inbox")["requests"]
        assert {"document_id": document, "from": PROVINCE, "description": "Ban hành nhầm"} in requests
    district.cli("node", "status", document, "--code", "15", "--reason", "Đồng ý thu hồi")
    commune.cli("node", "status", document, "--code", "16", "--reason", "Đã xử lý xong")
    province.cli("node", "run", "--once")

    rows = by_recipient(province.json("receipts", document))
    assert rows[DISTRICT]["state"] == "recalled"
    assert codes(rows[DISTRICT]) == ["01", "13", "15"]
    assert rows[COMMUNE]["state"] == "recall_refused"
    assert codes(rows[COMMUNE]) == ["01", "13", "16"]
    # and the recipients see the same timeline from their side
    seen = by_recipient(district.json("receipts", document))
    assert seen[DISTRICT]["state"] == "recalled"
    assert [s["code"] for s in district.json("receipts", document)["my_statuses"]] == ["01", "15"]


def test_replacement_reaches_the_recipients_and_asks_them_about_the_old_document(ex: Exchange) -> None:
    province, district = ex.nodes[PROVINCE], ex.nodes[DISTRICT]
    old = send(province, DISTRICT, subject="Bản cũ")
    district.cli("node", "run", "--once")
    number = fresh_number()
    province.cli(
        "node", "replace", old, "--number", number, "--subject", "Bản thay thế", "--reason", "Sai số liệu"
    )
    new = doc_id(number)
    district.cli("node", "run", "--once")
    sidecar = next(d for d in district.dropped() if d["document_id"] == new)
    assert sidecar["business_doc_type"] == 3
    assert sidecar["replaces"] == [old]
    assert sidecar["subject"] == "Bản thay thế"
    assert any(r["document_id"] == old for r in district.json("node", "inbox")["requests"])
    district.cli("node", "status", old, "--code", "15", "--reason", "Đã thay thế")
    province.cli("node", "run", "--once")
    # The hub applied the replacement package to the old document as a request (13, kind "replace");
    # an agreed replacement (15) returns the old exchange to where it was: only a recall takes it out.
    row = by_recipient(province.json("receipts", old))[DISTRICT]
    assert codes(row)[-2:] == ["13", "15"]
    assert row["state"] == "arrived"
    # The replacement's own timeline: its own exchange (hub in adapters.py) or, where the hub applies
    # requests to their target (docs/storage.md), the replaced document's: either way it arrived.
    assert "01" in codes(by_recipient(province.json("receipts", new))[DISTRICT])


def test_update_reaches_the_recipients_who_answer_it(ex: Exchange) -> None:
    province, district = ex.nodes[PROVINCE], ex.nodes[DISTRICT]
    document = send(province, DISTRICT, subject="Bản đầu")
    district.cli("node", "run", "--once")
    province.cli("node", "update", document, "--subject", "Bản cập nhật", "--reason", "Sửa trích yếu")
    district.cli("node", "run", "--once")
    updates = [d for d in district.dropped() if d["document_id"] == document and d["business_doc_type"] == 2]
    assert updates
    assert updates[0]["subject"] == "Bản cập nhật"
    district.cli("node", "status", document, "--code", "15", "--reason", "Đồng ý cập nhật")
    province.cli("node", "run", "--once")
    assert codes(by_recipient(province.json("receipts", document))[DISTRICT])[-1] == "15"


# --- a package changed after the hub -----------------------------------------------------------------


def test_a_package_tampered_on_the_hub_is_refused_with_02_and_the_reason(ex: Exchange) -> None:
    province, commune = ex.nodes[PROVINCE], ex.nodes[COMMUNE]
    document = send(province, COMMUNE, subject="Nội dung gốc")
    package_id = next(r for r in province.json("node", "outbox") if r["document_id"] == document)["sha256"]
    # Change the bytes where the hub keeps them (its database, for a small package), after it verified them.
    database = Path(ex.config.database_url.split(":///", 1)[1])
    forge_hub_copy(database, ex.config.data_dir, package_id, "Nội dung gốc".encode(), "Nội dung giả".encode())

    commune.cli("node", "run", "--once")
    received = next(d for d in commune.json("node", "inbox")["documents"] if d["document_id"] == document)
    assert received["verdict"] == "signature.digest_mismatch"
    sidecar = next(d for d in commune.dropped() if d["document_id"] == document)
    assert sidecar["verdict"]["ok"] is False
    assert sidecar["files"] == []

    province.cli("node", "run", "--once")
    row = by_recipient(province.json("receipts", document))[COMMUNE]
    assert row["state"] == "refused"
    assert codes(row) == ["02"]
    assert row["events"][0]["description"].startswith("signature.digest_mismatch")
