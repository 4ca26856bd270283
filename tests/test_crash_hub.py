"""Crash safety of the hub (issue 7, item 1; DESIGN §6: nothing is acknowledged before it is committed).

The real hub runs as a process on SQLite (a file in a tmp folder) and on PostgreSQL (a fresh database) and
is killed with SIGKILL at least ``GATEWAY_CRASH_KILLS`` (default 20) times while five agency nodes (the real
:class:`gateway.node.node.Node`, in this process) send packages of varied size (a few of 2–5 MB, sent
multipart), pull and acknowledge their inboxes, answer 01 automatically and 03 as a clerk would. Each kill
is aimed by a seeded schedule: at a random moment, or while an upload (single-file or a big multipart), a
status post, an inbox acknowledgement or a package fetch is in flight.

Right after each kill, with the hub dead, its database must already hold every package and every status
a node holds a verified receipt for. After the last kill the hub runs and the nodes drain (their outbox
retries are what make "eventually delivered" hold); then, through the hub's API and its tables:

* every package a node queued is acknowledged and stored exactly once, by SHA-256 and by (sender,
  DocumentId); nothing is stored that no node sent;
* exactly one exchange and one inbox item per recipient, all acknowledged; each recipient's node holds
  it exactly once (one inbox row, verified, one drop folder);
* every acknowledged status is in its exchange's timeline exactly once (database and ``/timeline``),
  and its notice reached the sender's node exactly once;
* every package's bytes are where the store says: kept in the database (a small body) and hashing to
  the package's SHA-256, or a blob whose content hashes to its name (no torn write is visible).

The seed is printed and taken from ``GATEWAY_CRASH_SEED`` to replay a schedule (the timing of the
processes still varies).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest
from crash_helpers import (
    InFlight,
    KillableHub,
    drop_folders,
    hub_state,
    instrument,
    leftovers,
    open_node,
    torn_blobs,
)
from crash_helpers import dispatch as make_dispatch
from hub_helpers import (
    COMMUNE,
    DEPARTMENT,
    DISTRICT,
    FINANCE,
    PROVINCE,
    hub_config,
    write_config_toml,
    write_hub_files,
)
from node_helpers import write_node
from pki_fixtures import build_pki

from gateway.node.client import HubUnavailable
from gateway.node.node import Node

pytestmark = [pytest.mark.slow]

KILLS = max(20, int(os.environ.get("GATEWAY_CRASH_KILLS", "20")))
SENDERS = {PROVINCE: (DEPARTMENT, DISTRICT), FINANCE: (DISTRICT, COMMUNE, DEPARTMENT)}
RECEIVERS = (DEPARTMENT, DISTRICT, COMMUNE)
MAX_PACKAGES = 70  # per sender: bounds the settle time
BIG = 3  # 2–5 MB multipart packages per run
MODES = ("random", "upload", "big-upload", "status-post", "inbox-ack", "package-fetch")
MB = 1024 * 1024


@dataclass
class Kill:
    n: int
    mode: str
    aimed: bool
    alive_s: float
    in_flight: list[tuple[str, str, int]]
    acked_packages: int
    acked_statuses: int
    missing_packages: list[str] = field(default_factory=list)
    missing_statuses: list[str] = field(default_factory=list)


@dataclass
class Run:
    seed: int
    rng: random.Random
    hub: KillableHub
    url: str
    nodes: dict[str, Node]
    flight: InFlight
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    want_big: asyncio.Event = field(default_factory=asyncio.Event)
    big_sent: int = 0
    sent: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def hub_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
    return str(request.getfixturevalue("pg_empty_url"))  # fresh and empty: the hub migrates it at start


# --- what the nodes do ------------------------------------------------------------------------------


async def _acknowledged(nodes: dict[str, Node]) -> tuple[set[str], set[str]]:
    """SHA-256 of every package and status a node holds a verified hub receipt for."""
    packages: set[str] = set()
    statuses: set[str] = set()
    for node in nodes.values():
        for row in await node.store.outbox_rows():
            if row.state == "sent":
                (packages if row.kind == "package" else statuses).add(row.sha256)
    return packages, statuses


async def _clerk_accepts(run: Run, node: Node) -> None:
    """A clerk accepts (03) one received document whose 01 the hub has acknowledged."""
    sent = {(r.document_id, r.status_code): r.state for r in await node.store.statuses_sent()}
    ready = [
        r.document_id
        for r in await node.store.received()
        if sent.get((r.document_id, "01")) == "sent" and (r.document_id, "03") not in sent
    ]
    if ready:
        await node.send_status(run.rng.choice(ready), "03")


async def _node_loop(run: Run, organ_id: str, node: Node) -> None:
    rng = random.Random(run.rng.random())
    while not run.stop.is_set():
        try:
            recipients = SENDERS.get(organ_id)
            if recipients and run.sent[organ_id] < MAX_PACKAGES and run.hub.alive and rng.random() < 0.3:
                big = run.want_big.is_set() and run.big_sent < BIG
                if big:
                    run.want_big.clear()
                    run.big_sent += 1
                d = make_dispatch(organ_id, recipients, rng, big=big)
                signed = await asyncio.to_thread(node.sign_dispatch, d)
                row = await node.queue_package(signed, meta={"subject": d.subject})
                run.sent[organ_id] += 1
                await node.attempt(row)
            await node.deliver_outbox()
            await node.ack_processed()
            await node.pull(wait=0)
            await node.deliver_dms()
            if organ_id in RECEIVERS and rng.random() < 0.3:
                await _clerk_accepts(run, node)
        except HubUnavailable:
            await asyncio.sleep(rng.uniform(0.05, 0.2))
        except Exception as exc:  # anything else is a finding: keep going, report at the end
            run.errors.append(f"{organ_id}: {type(exc).__name__}: {exc}\n{traceback.format_exc()[-1500:]}")
            await asyncio.sleep(0.2)
        await asyncio.sleep(rng.uniform(0.01, 0.05))


# --- the killer -------------------------------------------------------------------------------------


def _aim(mode: str) -> Any:
    if mode == "upload":
        return lambda ops: any(k.startswith("upload") for k, _, _ in ops)
    if mode == "big-upload":
        return lambda ops: any(k == "upload-multipart" and size > 1 * MB for k, _, size in ops)
    return lambda ops: any(k == mode for k, _, _ in ops)


async def _killer(run: Run, schedule: list[str]) -> None:
    for n, mode in enumerate(schedule, 1):
        started = time.monotonic()
        aimed = False
        if mode == "random":
            await asyncio.sleep(run.rng.uniform(0.2, 1.0))
        else:
            await asyncio.sleep(run.rng.uniform(0.05, 0.3))
            if mode == "big-upload":  # asked for now, so it cannot come and go before the wait
                run.want_big.set()
            aimed = await run.flight.wait_for(_aim(mode), timeout=6 if mode == "big-upload" else 3)
            if aimed:  # a few ms into the call: the body, the verification or the commit
                await asyncio.sleep(run.rng.uniform(0, 0.08 if "upload" in mode else 0.01))
        in_flight = run.flight.now()
        await asyncio.to_thread(run.hub.kill)
        alive = time.monotonic() - started
        packages, statuses = await _acknowledged(run.nodes)
        state = await hub_state(run.url)
        stored = {r[0] for r in state["packages"]}
        applied = {r[1] for r in state["messages"]}
        run.kills.append(
            Kill(
                n=n,
                mode=mode,
                aimed=aimed,
                alive_s=round(alive, 2),
                in_flight=in_flight,
                acked_packages=len(packages),
                acked_statuses=len(statuses),
                missing_packages=sorted(packages - stored),
                missing_statuses=sorted(statuses - applied),
            )
        )
        await asyncio.to_thread(run.hub.restart)


def _schedule(rng: random.Random) -> list[str]:
    """Every aimed mode at least twice, the rest random, in a seeded order."""
    modes = [m for m in MODES for _ in range(2)]
    modes += ["random"] * (KILLS - len(modes))
    rng.shuffle(modes)
    return modes


# --- settling and the checks ------------------------------------------------------------------------


async def _settle(run: Run, deadline: float) -> None:
    """The hub up, every node drains until nothing is pending anywhere."""
    while time.monotonic() < deadline:
        busy = False
        for node in run.nodes.values():
            try:
                await node.drain()
            except HubUnavailable:
                busy = True
        rows = [r for n in run.nodes.values() for r in await n.store.outbox_rows()]
        state = await hub_state(run.url)
        unacked = [i for i in state["inbox"] if i[5] is None]
        if not busy and not unacked and all(r.state != "pending" for r in rows):
            return
        await asyncio.sleep(0.3)


async def _check(run: Run, data_dir: Path, drops: dict[str, Path]) -> list[str]:
    problems: list[str] = []
    state = await hub_state(run.url)
    rows = {o: await n.store.outbox_rows() for o, n in run.nodes.items()}
    queued = {r.sha256: (o, r) for o, rs in rows.items() for r in rs if r.kind == "package"}
    statuses = {r.sha256: (o, r) for o, rs in rows.items() for r in rs if r.kind == "status"}

    not_sent = [f"{o} {r.kind} {r.status_code or ''} {r.document_id} {r.state} {r.error_code}"
                for o, rs in rows.items() for r in rs if r.state != "sent"]  # fmt: skip
    if not_sent:
        problems.append(f"outbox rows not acknowledged after settling: {not_sent}")

    # packages: exactly once by SHA-256 and by (sender, DocumentId); nothing no node sent
    by_sha = Counter(p[0] for p in state["packages"])
    by_doc = Counter((p[1], p[2]) for p in state["packages"])
    problems += [f"package {s} stored {c} times" for s, c in by_sha.items() if c != 1]
    problems += [f"(sender, DocumentId) {k} stored {c} times" for k, c in by_doc.items() if c != 1]
    problems += [f"package {s} of {o} not stored" for s, (o, _) in queued.items() if s not in by_sha]
    problems += [f"package {s} stored but sent by no node" for s in by_sha if s not in queued]

    # one exchange and one inbox item per recipient, all acknowledged; each node holds it once
    exchanges = Counter((e[0], e[1]) for e in state["exchanges"])
    items = Counter((i[1], i[3]) for i in state["inbox"] if i[2] == "package")
    expected = {(s, to) for s, (_, r) in queued.items() for to in r.recipients}
    problems += [f"exchange {k} ×{exchanges.get(k, 0)}" for k in expected if exchanges.get(k, 0) != 1]
    problems += [f"exchange {k} for no recipient" for k in exchanges if k not in expected]
    problems += [f"inbox item {k} ×{items.get(k[::-1], 0)}" for k in expected if items.get(k[::-1], 0) != 1]
    unacked = [i for i in state["inbox"] if i[5] is None]
    if unacked:
        problems.append(f"inbox items never acknowledged: {unacked}")
    for organ in RECEIVERS:
        node = run.nodes[organ]
        mine = {s for s, to in expected if to == organ}
        got = Counter(r.sha256 for r in await node.store.received())
        problems += [f"{organ} holds {s} ×{got.get(s, 0)}" for s in mine if got.get(s, 0) != 1]
        problems += [f"{organ} holds {s}, not addressed to it" for s in got if s not in mine]
        bad = [r.sha256 for r in await node.store.received() if not r.ok]
        if bad:
            problems.append(f"{organ} could not verify {bad}")
        folders = Counter(name.rsplit("-", 1)[-1] for name in drop_folders(drops[organ]))
        problems += [f"{organ} drop folders for {s} ×{folders.get(s[:12], 0)}"
                     for s in mine if folders.get(s[:12], 0) != 1]  # fmt: skip

    # statuses: each acknowledged one stored once, one event on its own exchange, in /timeline once
    messages = {m[1]: m for m in state["messages"]}
    exchange_of = {e[3]: (e[0], e[1]) for e in state["exchanges"]}
    events = Counter(ev[1] for ev in state["events"])
    for sha, (organ, row) in statuses.items():
        m = messages.get(sha)
        if m is None:
            problems.append(f"status {row.status_code} of {organ} on {row.document_id} not stored")
            continue
        on = [exchange_of[ev[0]] for ev in state["events"] if ev[1] == m[0]]
        if events[m[0]] != 1 or any(to != organ for _, to in on):
            problems.append(f"status {row.status_code} of {organ} on {row.document_id}: events {on}")
    codes_in_db = Counter((exchange_of[ev[0]], ev[2]) for ev in state["events"])
    problems += [f"{k[0]} has {k[1]} ×{c} in its timeline" for k, c in codes_in_db.items() if c != 1]
    sent_codes = {
        (r.document_id, o, r.status_code) for o, rs in rows.items() for r in rs if r.kind == "status"
    }
    for sha, (sender, row) in queued.items():
        line = await run.nodes[sender].client.timeline(sha)
        for rec in line["recipients"]:
            codes = [e["code"] for e in rec["events"]]
            want = sorted(c for d, o, c in sent_codes if d == row.document_id and o == rec["organ_id"])
            if sorted(codes) != want:
                problems.append(
                    f"/timeline {row.document_id} {rec['organ_id']}: {codes}, acknowledged {want}"
                )

    # every forwarded status reached the sender's node exactly once
    for organ in SENDERS:
        notices = await run.nodes[organ].store.notices()
        by_item = Counter(n.item_id for n in notices)
        mine = [i[0] for i in state["inbox"] if i[1] == organ and i[2] == "status"]
        problems += [
            f"{organ} notice of item {i} ×{by_item.get(i, 0)}" for i in mine if by_item.get(i, 0) != 1
        ]
        problems += [f"{organ} notice {n.item_id} not verified" for n in notices if not n.verified]

    # bytes: each package's in the database (a small body) or a blob, no torn blob visible
    inline = {sha for sha, _ in state["bodies"]}
    problems += [
        f"package {sha} kept in the database with other bytes"
        for sha, data in state["bodies"]
        if hashlib.sha256(data).hexdigest() != sha
    ]
    blob_dir = data_dir / "blobs"
    torn = await asyncio.to_thread(torn_blobs, blob_dir)
    if torn:
        problems.append(f"blobs whose content does not hash to their name: {torn}")
    shas = {p.name for p in blob_dir.rglob("*") if p.is_file() and ".tmp" not in p.parts}
    needed = {p[3] for p in state["packages"] if p[0] not in inline} | {a[0] for a in state["attachments"]}
    problems += [f"blob {s} referenced but missing" for s in needed - shas]
    return problems


def _report(run: Run, data_dir: Path, elapsed: float, path: Path) -> dict[str, Any]:
    in_flight = Counter(k for kill in run.kills for k in {op for op, _, _ in kill.in_flight})
    report = {
        "seed": run.seed,
        "backend": run.url.split(":", 1)[0],
        "kills": run.hub.kills,
        "elapsed_s": round(elapsed, 1),
        "phases_s": {k: round(v, 1) for k, v in run.phases.items()},
        "restart_s": [round(s, 2) for s in run.hub.starts],
        "packages": sum(run.sent.values()),
        "big_multipart": run.big_sent,
        "kills_with_in_flight": dict(in_flight),
        "aimed": Counter(k.mode for k in run.kills if k.aimed),
        "orphan_spool_files": leftovers(data_dir / "tmp"),
        "orphan_blob_temp_files": leftovers(data_dir / "blobs" / ".tmp"),
        "kill_log": [asdict(k) for k in run.kills],
    }
    path.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    return report


# --- the test ---------------------------------------------------------------------------------------


@pytest.mark.timeout(420)
async def test_hub_killed_at_random_moments_loses_and_duplicates_nothing(
    hub_database: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("GATEWAY_CRASH_SEED") or random.randrange(1 << 32))
    print(f"crash seed {seed} (GATEWAY_CRASH_SEED={seed} to replay the schedule)")
    rng = random.Random(seed)
    t0 = time.monotonic()
    pki = build_pki()
    files = write_hub_files(pki, tmp_path / "hub")
    config = hub_config(files, hub_database, verify_processes=1, long_poll_max=1.0)
    hub = KillableHub(write_config_toml(config, tmp_path / "hub" / "hub.toml"))
    url = f"https://127.0.0.1:{config.port}"
    organs = (*SENDERS, *RECEIVERS)
    dirs = {
        o: write_node(
            tmp_path, o, pki, files, url,
            multipart_threshold=256 * 1024, poll_wait=0, retry_base=0.1, retry_max=0.5, request_timeout=15,
        )
        for o in organs
    }  # fmt: skip
    flight = InFlight()
    try:
        nodes: dict[str, Node] = {}
        opened = [open_node(d.config) for d in dirs.values()]
        for organ, ctx in zip(organs, opened, strict=True):
            nodes[organ] = await ctx.__aenter__()
            instrument(nodes[organ], flight)
        try:
            run = Run(seed=seed, rng=rng, hub=hub, url=hub_database, nodes=nodes, flight=flight)
            loops = [asyncio.create_task(_node_loop(run, o, n)) for o, n in nodes.items()]
            run.phases["setup"] = time.monotonic() - t0
            try:
                await _killer(run, _schedule(rng))
            finally:
                run.stop.set()
                await asyncio.gather(*loops)
            run.phases["kills"] = time.monotonic() - t0 - sum(run.phases.values())
            await _settle(run, time.monotonic() + 90)
            run.phases["settle"] = time.monotonic() - t0 - sum(run.phases.values())
            problems = await _check(run, config.data_dir, {o: d.drop for o, d in dirs.items()})
            run.phases["check"] = time.monotonic() - t0 - sum(run.phases.values())
        finally:
            for ctx in opened:
                await ctx.__aexit__(None, None, None)
        report = _report(run, config.data_dir, time.monotonic() - t0, tmp_path / "crash-report.json")
    finally:
        hub.stop()

    print(json.dumps({k: v for k, v in report.items() if k != "kill_log"}, default=str))
    lost = [k for k in run.kills if k.missing_packages or k.missing_statuses]
    assert not lost, f"seed {seed}: acknowledged but not in the database right after the kill: {lost}"
    assert not run.errors, f"seed {seed}: unexpected errors in the nodes:\n" + "\n".join(run.errors[:5])
    assert not problems, f"seed {seed}:\n" + "\n".join(problems[:40])
    assert hub.kills >= KILLS
    hit = report["kills_with_in_flight"]
    assert hit.get("upload-single", 0) + hit.get("upload-multipart", 0) >= 2, hit
    assert hit.get("status-post", 0) >= 1, hit
    assert hit.get("inbox-pull", 0) + hit.get("inbox-ack", 0) >= 1, hit
    assert run.big_sent >= 1


# --- what a killed upload leaves on disk ------------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_killed_upload_leaves_no_spool_file_after_restart(tmp_path: Path) -> None:
    import socket
    import ssl

    from hub_helpers import client_context

    pki = build_pki()
    files = write_hub_files(pki, tmp_path / "hub")
    config = hub_config(files, f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}", verify_processes=1)
    hub = KillableHub(write_config_toml(config, tmp_path / "hub" / "hub.toml"))
    spool = config.data_dir / "tmp"
    try:
        ctx: ssl.SSLContext = client_context(files, PROVINCE)
        with (
            socket.create_connection(("127.0.0.1", config.port)) as raw,
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
        ):
            conn.sendall(
                b"POST /v1/packages HTTP/1.1\r\nHost: hub\r\nContent-Type: application/edxml+xml\r\n"
                b"Content-Length: 3000000\r\n\r\n" + b"<" * 2_000_000
            )  # above the spool threshold (1 MiB): on disk; the rest never comes
            deadline = time.monotonic() + 20
            while not leftovers(spool) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert leftovers(spool), "the body was not spooled"
            hub.kill()
        hub.restart()
        old = time.time() - 7200  # as if the crash was two hours ago: past any sweep's age
        for folder in (spool, config.data_dir / "blobs" / ".tmp"):
            for name in leftovers(folder):
                os.utime(folder / name, (old, old))
        hub.kill()
        hub.restart()  # the start after a crash is where temp files are swept
        assert leftovers(spool) == []
    finally:
        hub.stop()
