"""Crash safety of an agency node (issue 7, item 1): ``gateway node run`` and ``gateway node send`` killed
with SIGKILL while sending and while receiving, restarted, and nothing lost, nothing duplicated.

The hub (SQLite) stays up; the node is the real CLI in its own process. Kills are aimed by watching the
node's store from outside: the process is killed as soon as a seeded number of further rows has changed
state (one more package acknowledged, one more package stored, one more 01 acknowledged, one more hub
item acknowledged), i.e. in the middle of its work, never between two runs.

* **Sending**: every package in the outbox is acknowledged by the hub exactly once (one ``package`` row
  per SHA-256 and per DocumentId, nothing the node did not queue); a ``node send`` killed before its row
  was committed left nothing anywhere, one killed after it is sent by the next run.
* **Receiving**: each package is stored once in the node's inbox, handed to the DMS once (one drop
  folder), answered with exactly one 01 (one outbox row, one event in the hub's timeline), and every hub
  inbox item ends acknowledged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from crash_helpers import dispatch as make_dispatch
from crash_helpers import drop_folders, hub_state, node_count, node_rows, open_node
from hub_helpers import COMMUNE, DISTRICT, PROVINCE, VN
from node_helpers import CLI, REPO, Exchange, NodeDir, start_exchange

pytestmark = [pytest.mark.slow]

KILLS = 5  # at least, per direction
SENT = "SELECT count(*) FROM node_outbox WHERE kind = 'package' AND state = 'sent'"
PENDING = "SELECT count(*) FROM node_outbox WHERE state = 'pending'"
STORED = "SELECT count(*) FROM node_inbox"
CONFIRMED = "SELECT count(*) FROM node_outbox WHERE kind = 'status' AND state = 'sent'"
ACKED = "SELECT count(*) FROM node_hub_items WHERE acked_at IS NOT NULL"


@pytest.fixture(scope="module")
def ex(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    exchange = start_exchange(
        tmp_path_factory.mktemp("crash-node"), (PROVINCE, DISTRICT, COMMUNE), multipart_threshold=64 * 1024
    )
    try:
        yield exchange
    finally:
        exchange.hub.stop()


@pytest.fixture
def rng() -> random.Random:
    seed = int(os.environ.get("GATEWAY_CRASH_SEED") or random.randrange(1 << 32))
    print(f"crash seed {seed}")
    return random.Random(seed)


def data_dir(node: NodeDir) -> Path:
    return node.root / "data"


def kill_when(
    node: NodeDir, proc: subprocess.Popen[bytes], query: str, target: int, timeout: float = 60
) -> int:
    """SIGKILL ``proc`` as soon as ``query`` counts ``target`` rows in the node's store; returns the count."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            n = node_count(data_dir(node), query)
            if n >= target:
                return n
            time.sleep(0.003)
        raise AssertionError(f"{node.organ_id}: {query} never reached {target} (exit {proc.poll()})")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def queue(node: NodeDir, rng: random.Random, count: int, recipients: tuple[str, ...], *, send: bool) -> None:
    """Dispatches of varied size (some multipart) into the node's outbox, sent at once or only queued."""

    async def go() -> None:
        async with open_node(node.config) as n:
            for _ in range(count):
                d = make_dispatch(node.organ_id, recipients, rng)
                signed = n.sign_dispatch(d)
                if send:
                    row = await n.send(signed, meta={"subject": d.subject})
                    assert row.state == "sent", row
                else:
                    await n.queue_package(signed, meta={"subject": d.subject})

    asyncio.run(go())


def hub_packages(ex: Exchange) -> dict[str, object]:
    return asyncio.run(hub_state(ex.config.database_url))


def run_once(node: NodeDir) -> None:
    node.cli("node", "run", "--once", timeout=120)


# --- sending ---------------------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_node_killed_while_sending_delivers_every_package_exactly_once(
    ex: Exchange, rng: random.Random, tmp_path: Path
) -> None:
    province, district = ex.nodes[PROVINCE], ex.nodes[DISTRICT]
    before = {p[0] for p in hub_packages(ex)["packages"]}
    queue(province, rng, 24, (DISTRICT,), send=False)

    kills: list[tuple[int, int, int]] = []  # (acknowledged before, at the kill, still pending)
    while len(kills) < KILLS:
        sent = node_count(data_dir(province), SENT)
        assert node_count(data_dir(province), PENDING) > 0, f"the outbox ran dry after {kills}"
        proc = province.start()
        at = kill_when(province, proc, SENT, sent + rng.randint(1, 3))
        kills.append((sent, at, node_count(data_dir(province), PENDING)))
    assert all(pending > 0 for _, _, pending in kills), kills  # every kill interrupted the sending

    # `gateway node send` itself killed at random moments: before, during or after its one attempt.
    sends: list[tuple[str, float, bool]] = []
    pdf = tmp_path / "cong-van.pdf"
    pdf.write_bytes(b"%PDF-1.4\n" + os.urandom(300 * 1024))
    for _ in range(3):
        number = str(rng.randrange(10**8, 10**9))
        delay = rng.uniform(1.0, 3.5)
        proc = subprocess.Popen(
            [sys.executable, "-c", CLI, "node", "send", "--to", DISTRICT, "--number", number,
             "--notation", "UBND-VP", "--subject", "Gửi rồi bị ngắt", "--file", str(pdf),
             "--config", str(province.config)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        document = f"{PROVINCE},{dt.datetime.now(VN):%Y/%m/%d},{number}/UBND-VP"
        queued = node_rows(
            data_dir(province), f"SELECT state FROM node_outbox WHERE document_id = '{document}'"
        )
        sends.append((document, round(delay, 2), bool(queued)))

    run_once(province)  # the restart: whatever is pending goes now
    rows = node_rows(data_dir(province), "SELECT sha256, document_id, state, attempts FROM node_outbox")
    assert [r for r in rows if r[2] != "sent"] == [], rows
    state = hub_packages(ex)
    mine = [p for p in state["packages"] if p[0] not in before]
    by_sha = Counter(p[0] for p in mine)
    by_doc = Counter(p[2] for p in mine)
    assert set(by_sha) == {r[0] for r in rows if r[0] not in before}, "the hub holds other packages than sent"
    assert all(c == 1 for c in by_sha.values())
    assert all(c == 1 for c in by_doc.values())
    for document, _, was_queued in sends:  # a killed `node send`: on the hub iff its row was committed
        on_hub = document in by_doc
        in_outbox = any(r[1] == document for r in rows)
        assert on_hub == in_outbox, (document, was_queued, on_hub, in_outbox)

    run_once(district)
    run_once(district)
    folders = Counter(name.rsplit("-", 1)[-1] for name in drop_folders(district.drop))
    assert all(folders[sha[:12]] == 1 for sha in by_sha), folders
    print(f"sending kills (acked before, at kill, pending): {kills}; node send kills: {sends}")


# --- receiving -------------------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_node_killed_while_receiving_stores_and_confirms_each_package_once(
    ex: Exchange, rng: random.Random, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pages of 3 items: store, answer 01 and acknowledge alternate, so kills land in each of the three.
    monkeypatch.setenv("GATEWAY_NODE_POLL_LIMIT", "3")
    province, district, commune = ex.nodes[PROVINCE], ex.nodes[DISTRICT], ex.nodes[COMMUNE]
    run_once(district)  # start from an empty inbox
    run_once(commune)
    before = {p[0] for p in hub_packages(ex)["packages"]}
    queue(province, rng, 20, (DISTRICT, COMMUNE), send=True)
    new = [p for p in hub_packages(ex)["packages"] if p[0] not in before]
    assert len(new) == 20

    kills: list[tuple[str, int, int]] = []
    metrics = {"stored": STORED, "01 acknowledged": CONFIRMED, "item acknowledged": ACKED}
    base = {k: node_count(data_dir(district), q) for k, q in metrics.items()}
    plan = [k for k in metrics for _ in range(2)]  # each step twice, in a seeded order
    rng.shuffle(plan)
    while len(kills) < max(KILLS, len(plan)):
        counts = {k: node_count(data_dir(district), q) for k, q in metrics.items()}
        unfinished = [k for k, v in counts.items() if v < base[k] + len(new)]
        assert unfinished, f"the node finished before {KILLS} kills: {kills}"
        step = (
            plan[len(kills)] if len(kills) < len(plan) and plan[len(kills)] in unfinished else unfinished[0]
        )
        proc = district.start()
        target = min(counts[step] + rng.randint(1, 2), base[step] + len(new))
        at = kill_when(district, proc, metrics[step], target)
        kills.append((step, counts[step], at))

    run_once(district)  # the restart, twice: replay from the store, the hub re-offers what was not acked
    run_once(district)
    run_once(commune)
    run_once(province)

    ids = {p[2]: p[0] for p in new}  # DocumentId -> package id
    for node in (district, commune):
        inbox = Counter(r[0] for r in node_rows(data_dir(node), "SELECT sha256 FROM node_inbox"))
        assert all(inbox[sha] == 1 for sha in ids.values()), (node.organ_id, inbox)
        folders = Counter(name.rsplit("-", 1)[-1] for name in drop_folders(node.drop))
        assert all(folders[sha[:12]] == 1 for sha in ids.values()), (node.organ_id, folders)
        statuses = node_rows(
            data_dir(node), "SELECT document_id, status_code, state FROM node_outbox WHERE kind = 'status'"
        )
        ones = Counter(d for d, code, s in statuses if code == "01" and s == "sent")
        assert all(ones[d] == 1 for d in ids), (node.organ_id, ones)
        assert node_count(data_dir(node), PENDING) == 0

    state = hub_packages(ex)
    exchange_of = {e[3]: (e[0], e[1]) for e in state["exchanges"]}
    codes = Counter((exchange_of[ev[0]], ev[2]) for ev in state["events"])
    for sha in ids.values():
        for organ in (DISTRICT, COMMUNE):
            assert codes[((sha, organ), "01")] == 1, (sha, organ, codes)
            assert sum(c for (ex_, _), c in codes.items() if ex_ == (sha, organ)) == 1
    unacked = [i for i in state["inbox"] if i[1] in (DISTRICT, COMMUNE) and i[5] is None]
    assert unacked == []
    for sha in ids.values():  # and through the API, as the sender's clerk sees it
        line = asyncio.run(_timeline(province, sha))
        assert {r["organ_id"]: [e["code"] for e in r["events"]] for r in line["recipients"]} == {
            DISTRICT: ["01"],
            COMMUNE: ["01"],
        }
    print(f"receiving kills (step, count before, at kill): {kills}")


async def _timeline(node: NodeDir, package_id: str) -> dict[str, object]:
    async with open_node(node.config) as n:
        return await n.client.timeline(package_id)
