"""Scale-out as plain processes (DESIGN §6, issue 6 item 4): the topology of ``docker/compose.yaml`` without
Docker. PostgreSQL (a fresh, empty database the hubs migrate at start), two ``gateway hub serve`` processes
on their own ports sharing it and one blob folder, and nginx from Debian in front in stream mode, passing
TLS through (``tests/scale_helpers.py``).

First, that TLS really passes through: the certificate a client sees behind nginx is the hub's, a client
without a certificate is refused in the handshake, an agency's request is answered for that agency (its
inbox) and a package it may not send for is refused (``auth.forbidden``), and nginx spreads the sessions
over both hubs.

Then agency nodes (the real :class:`gateway.node.node.Node`, in this process, ``hub_url`` pointing at
nginx) send, and the recipients' nodes drain their inboxes through nginx, while one hub process at a time
is SIGKILLed at a random moment (with its verification pool) and restarted, at least twice. Afterwards:
every package a sender holds a verified receipt for (an outbox row ``sent``) is stored once in the hub's
database with its blob, routed once to each recipient, acknowledged, and held exactly once by each
recipient's node (one inbox row, one DMS drop folder); each automatic 01 reached the sender once; nothing
is stored that no node sent.

The seed is printed and taken from ``GATEWAY_SCALE_SEED`` to replay the kill schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.client
import json
import os
import random
import socket
import ssl
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hub_helpers import (
    COMMUNE,
    DEPARTMENT,
    DISTRICT,
    FINANCE,
    PROVINCE,
    Client,
    HubFiles,
    client_context,
    document,
    free_port,
    hub_config,
    sign,
    write_config_toml,
    write_hub_files,
)
from node_helpers import write_node
from pki_fixtures import build_pki
from scale_helpers import HubServe, Nginx, Unavailable, nginx_paths
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.node.client import HubUnavailable
from gateway.node.compose import Dispatch, FileSpec
from gateway.node.config import load_node_settings
from gateway.node.node import Node

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SENDERS = {PROVINCE: (DISTRICT, COMMUNE), FINANCE: (DISTRICT, COMMUNE), DEPARTMENT: (COMMUNE,)}
RECEIVERS = (DISTRICT, COMMUNE)
SEND_SECONDS = 24.0
KILLS = 3  # at least two (the issue); one hub at a time, the other keeps serving
SETTLE_SECONDS = 45.0


@pytest.fixture(scope="module")
def nginx_available() -> None:
    try:
        nginx_paths()
    except Unavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@dataclass
class Topology:
    files: HubFiles
    database_url: str
    hubs: list[HubServe]
    hub_ports: list[int]
    nginx: Nginx
    data_dir: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.nginx.port}"


@pytest.fixture
def topology(nginx_available: None, pg_empty_url: str, tmp_path: Path) -> Iterator[Topology]:
    files = write_hub_files(build_pki(), tmp_path / "hub")
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(free_port())
    hub_ports, nginx_port = sorted(ports)[:2], sorted(ports)[2]
    # One blob folder and one database for both; on 2 cores one verification process per hub.
    base = hub_config(files, pg_empty_url, verify_processes=1, long_poll_max=2.0)
    hubs = [
        HubServe(
            write_config_toml(base.with_(port=p), tmp_path / f"hub{i}.toml"), name=f"hub{i}", standby=True
        )
        for i, p in enumerate(hub_ports, 1)
    ]
    nginx: Nginx | None = None
    try:
        HubServe.start_all(hubs)  # at once, on the empty database: they take turns migrating it
        nginx = Nginx(tmp_path / "nginx", nginx_port, hub_ports)
        yield Topology(
            files=files,
            database_url=pg_empty_url,
            hubs=hubs,
            hub_ports=hub_ports,
            nginx=nginx,
            data_dir=base.data_dir,
        )
    finally:
        if nginx is not None:
            nginx.stop()
        for hub in hubs:
            hub.stop()


# --- TLS passes through ------------------------------------------------------------------------------


def _peer_subject(t: Topology, who: str) -> str:
    ctx = client_context(t.files, who)
    with (
        socket.create_connection(("127.0.0.1", t.nginx.port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        cert = tls.getpeercert()
    return dict(x[0] for x in cert["subject"])["commonName"]


def check_tls_passes_through(t: Topology) -> None:
    # The certificate behind nginx is the hub's own (nginx holds no certificate at all).
    assert _peer_subject(t, DISTRICT) == "LGSP Tây Ninh"

    # No client certificate: the hub refuses the handshake, through nginx, on every connection.
    for _ in range(4):
        anonymous = Client(t.nginx.port, client_context(t.files, None))
        with pytest.raises((ssl.SSLError, ConnectionResetError, http.client.RemoteDisconnected)) as refused:
            anonymous.get("/healthz")
        anonymous.close()
        if isinstance(refused.value, ssl.SSLError):
            assert "certificate" in str(refused.value).lower(), refused.value

    # An agency's request is answered for that agency: its own inbox, named by the hub from its certificate.
    for who in (DISTRICT, COMMUNE, PROVINCE, DISTRICT):
        client = Client(t.nginx.port, client_context(t.files, who))
        reply = client.get("/v1/inbox?limit=1&wait=0")
        client.close()
        assert reply.status == 200, reply.body
        assert reply.json()["agency"] == who

    # A package from the province sent with the department's certificate: the hub saw who connected.
    body = sign(document(sender=PROVINCE, recipients=(DISTRICT,)), build_pki().agencies[PROVINCE])
    client = Client(t.nginx.port, client_context(t.files, DEPARTMENT))
    reply = client.post_package(body)
    client.close()
    assert (reply.status, reply.code) == (403, "auth.forbidden"), reply.body

    # nginx spread these sessions over both hubs (round robin).
    deadline = time.monotonic() + 5
    while len(used := set(t.nginx.upstreams_used())) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert used == {f"127.0.0.1:{p}" for p in t.hub_ports}, used


# --- the run -----------------------------------------------------------------------------------------


@dataclass
class Run:
    rng: random.Random
    topology: Topology
    senders: dict[str, Node]
    receivers: dict[str, Node]
    stop_sending: asyncio.Event = field(default_factory=asyncio.Event)
    stop_receiving: asyncio.Event = field(default_factory=asyncio.Event)
    down: int | None = None
    """Index of the hub that is down, if one is."""
    queued: Counter[str] = field(default_factory=Counter)
    acked_while_down: int = 0
    kills: list[dict[str, Any]] = field(default_factory=list)


def _dispatch(sender: str, recipients: tuple[str, ...], rng: random.Random) -> Dispatch:
    """Mostly small packages; now and then one above the nodes' multipart threshold (64 KiB)."""
    roll = rng.random()
    size = 0 if roll < 0.3 else rng.randint(500, 20_000) if roll < 0.9 else rng.randint(70_000, 300_000)
    files = (FileSpec(name="van-ban.pdf", data=b"%PDF-1.4\n" + rng.randbytes(size)),) if size else ()
    number = str(rng.randrange(10**8, 10**9))
    return Dispatch(
        sender=sender,
        recipients=recipients,
        number=number,
        notation="UBND-VP",
        subject=f"Văn bản thử nghiệm nhiều trục {number}",
        files=files,
    )


async def _sender(run: Run, node: Node) -> None:
    recipients = SENDERS[node.organ_id]
    while not run.stop_sending.is_set():
        d = _dispatch(node.organ_id, recipients, run.rng)
        signed = await asyncio.to_thread(node.sign_dispatch, d)
        down = run.down
        row = await node.send(signed, meta={"subject": d.subject})
        run.queued[node.organ_id] += 1
        if row.state == "sent" and down is not None and run.down == down:
            run.acked_while_down += 1
        assert row.state in ("sent", "pending"), (row.state, row.error_code, row.last_error)
        await node.deliver_outbox()
        await asyncio.sleep(run.rng.uniform(0.02, 0.15))


async def _receiver(run: Run, node: Node) -> None:
    while not run.stop_receiving.is_set():
        try:
            await node.pull(wait=1)
            await node.deliver_outbox()
        except HubUnavailable:
            await asyncio.sleep(0.2)


async def _killer(run: Run) -> None:
    hubs = run.topology.hubs
    start = time.monotonic()
    for n in range(KILLS):
        await asyncio.sleep(run.rng.uniform(1.5, 5.0))
        victim = run.rng.randrange(len(hubs))
        run.down = victim
        await asyncio.to_thread(hubs[victim].kill)
        killed_at = time.monotonic() - start
        await asyncio.sleep(run.rng.uniform(0.2, 2.0))
        await asyncio.to_thread(hubs[victim].start)
        run.down = None
        run.kills.append(
            {"n": n + 1, "hub": hubs[victim].name, "at_s": round(killed_at, 1),
             "back_after_s": round(time.monotonic() - start - killed_at, 1)}
        )  # fmt: skip


async def _settle(run: Run) -> None:
    """Every sender's outbox empty, every inbox drained and acknowledged, every 01 sent and noticed."""
    deadline = time.monotonic() + SETTLE_SECONDS
    nodes = {**run.senders, **run.receivers}
    errors: dict[str, str] = {}
    while True:
        pending = 0
        for organ_id, node in nodes.items():
            try:
                await node.drain()
            except HubUnavailable as exc:
                errors[organ_id] = exc.detail
            pending += sum(1 for r in await node.store.outbox_rows() if r.state == "pending")
            pending += len(await node.store.unacked_items())
        left: dict[str, Any] = {}
        if pending == 0:
            for organ_id, node in nodes.items():
                try:
                    items = await node.client.inbox(wait=0, limit=20)
                except HubUnavailable as exc:
                    errors[organ_id] = exc.detail
                    left[organ_id] = "?"
                    continue
                if items:
                    seen = await node.store.processed_items([int(i["item_id"]) for i in items])
                    left[organ_id] = [(i["item_id"], i["kind"], seen.get(int(i["item_id"]))) for i in items]
            if not left:
                return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"not settled after {SETTLE_SECONDS} s: {pending} pending; left in the hub's inboxes "
                f"(item, kind, the node's acked flag): {left}; last errors: {errors}"
            )
        await asyncio.sleep(0.3)


# --- what the hub's database holds -------------------------------------------------------------------


async def _hub_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = create_async_engine(url)
    queries = {
        "packages": "SELECT p.sha256, p.blob_sha256, p.sender_organ_id, p.document_id, b.data FROM package p"
        " LEFT JOIN package_body b ON b.package_id = p.id",
        "inbox": "SELECT i.organ_id, p.sha256, i.acked_at IS NOT NULL FROM inbox_item i"
        " JOIN package p ON p.id = i.package_id WHERE i.kind = 'package'",
        "exchanges": "SELECT e.recipient_organ_id, p.sha256, e.state FROM exchange e"
        " JOIN package p ON p.id = e.package_id",
        "notices": "SELECT i.organ_id, i.acked_at IS NOT NULL FROM inbox_item i WHERE i.kind = 'status'",
    }
    try:
        async with engine.connect() as conn:
            return {k: [tuple(r) for r in (await conn.execute(sa.text(q))).all()] for k, q in queries.items()}
    finally:
        await engine.dispose()


def _blob(data_dir: Path, sha: str) -> Path:
    return data_dir / "blobs" / sha[:2] / sha


# --- the test ----------------------------------------------------------------------------------------


async def test_nodes_through_nginx_while_a_hub_process_is_killed_deliver_each_package_exactly_once(
    topology: Topology, tmp_path: Path
) -> None:
    t = topology
    await asyncio.to_thread(check_tls_passes_through, t)

    seed = int(os.environ.get("GATEWAY_SCALE_SEED", random.randrange(10**6)))
    print(f"GATEWAY_SCALE_SEED={seed}")
    pki = build_pki()
    dirs = {
        organ_id: write_node(
            tmp_path / "nodes", organ_id, pki, t.files, t.url,
            multipart_threshold=64 * 1024, request_timeout=10, poll_limit=20,
        )
        for organ_id in {*SENDERS, *RECEIVERS}
    }  # fmt: skip
    async with contextlib.AsyncExitStack() as stack:
        nodes = {
            o: await stack.enter_async_context(Node.open(load_node_settings(d.config)))
            for o, d in dirs.items()
        }
        run = Run(
            rng=random.Random(seed),
            topology=t,
            senders={o: nodes[o] for o in SENDERS},
            receivers={o: nodes[o] for o in RECEIVERS},
        )
        tasks = [asyncio.create_task(_sender(run, n)) for n in run.senders.values()]
        tasks += [asyncio.create_task(_receiver(run, n)) for n in run.receivers.values()]
        killer = asyncio.create_task(_killer(run))
        started = time.monotonic()
        await asyncio.sleep(SEND_SECONDS)
        await killer  # the last restart may outlast the sending time
        run.stop_sending.set()
        await asyncio.sleep(0.5)
        run.stop_receiving.set()
        await asyncio.gather(*tasks)
        print(f"kills: {json.dumps(run.kills)}; {time.monotonic() - started:.1f} s of traffic")
        assert all(h.alive for h in t.hubs)
        await _settle(run)

        # --- what the nodes hold -----------------------------------------------------------------
        acked: dict[str, tuple[str, tuple[str, ...], str]] = {}  # sha → (sender, recipients, document id)
        for organ_id, node in run.senders.items():
            rows = [r for r in await node.store.outbox_rows() if r.kind == "package"]
            assert len(rows) == run.queued[organ_id]
            assert {r.state for r in rows} == {"sent"}, Counter((r.state, r.error_code) for r in rows)
            acked.update({r.sha256: (organ_id, tuple(r.recipients), r.document_id) for r in rows})
        assert len(acked) >= 60, f"only {len(acked)} packages in {SEND_SECONDS} s"
        assert len(run.kills) >= 2
        assert run.acked_while_down > 0, "no package was acknowledged while a hub was down"

        expected = Counter((r, sha) for sha, (_, recipients, _) in acked.items() for r in recipients)
        for organ_id, node in run.receivers.items():
            received = await node.store.received()
            shas = Counter(row.sha256 for row in received)
            assert shas == Counter({sha: 1 for (r, sha) in expected if r == organ_id})
            assert all(row.ok for row in received), [row.verdict_code for row in received if not row.ok]
            documents = Counter(d["document_id"] for d in dirs[organ_id].dropped())
            assert documents == Counter({acked[sha][2]: 1 for sha in shas}), "DMS drop folders"

        # Each automatic 01 reached its sender exactly once.
        for organ_id, node in run.senders.items():
            notices = Counter((n.package_id, n.status_from, n.code) for n in await node.store.notices())
            want = {(sha, r, "01") for sha, (s, rs, _) in acked.items() if s == organ_id for r in rs}
            assert set(notices) == want
            assert set(notices.values()) == {1}

        # --- what the hub's database and blob folder hold --------------------------------------------
        rows = await _hub_rows(t.database_url)
        stored = Counter(sha for sha, *_ in rows["packages"])
        assert stored == Counter(dict.fromkeys(acked, 1)), "stored once each, nothing nobody sent"
        for sha, blob_sha, sender, document_id, body in rows["packages"]:
            assert (sender, document_id) == (acked[sha][0], acked[sha][2])
            # a small body is kept in the database, a larger one is the blob of its name
            data = body if body is not None else _blob(t.data_dir, blob_sha).read_bytes()
            assert hashlib.sha256(data).hexdigest() == sha
        assert Counter((r, sha) for r, sha, _ in rows["inbox"]) == expected
        assert all(done for *_, done in rows["inbox"]), "every package inbox item acknowledged"
        assert Counter((r, sha) for r, sha, _ in rows["exchanges"]) == expected
        assert {state for *_, state in rows["exchanges"]} == {"arrived"}
        assert len(rows["notices"]) == len(expected)
        assert all(done for _, done in rows["notices"])

    for hub in t.hubs:
        log = hub.log.read_text(errors="replace")
        assert "Traceback" not in log, f"{hub.name}: {log[-3000:]}"
