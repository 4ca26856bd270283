"""Two hub processes on one PostgreSQL taking packages concurrently (DESIGN §6).

Each package is sent to *both* hubs at the same moment, from several threads, so the two processes race to
store the same bytes. Then: every acknowledged package is stored exactly once, with one receipt that both
answers agree on, and each recipient receives it exactly once even when it pulls and acknowledges through
both hubs in turn. Unique constraints decide, not process memory.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from hub_helpers import (
    DEPARTMENT,
    DISTRICT,
    PROVINCE,
    Client,
    HubProcess,
    client_context,
    document,
    hub_config,
    write_config_toml,
    write_hub_files,
)
from hub_helpers import sign as sign_package
from pki_fixtures import build_pki
from sqlalchemy.ext.asyncio import create_async_engine
from test_hub_service import drop_pg, pg_url_or_skip

pytestmark = pytest.mark.postgres

PACKAGES = 40


def _count_rows(url: str) -> dict[str, object]:
    async def run() -> dict[str, object]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                packages = (await conn.execute(sa.text("SELECT sha256 FROM package"))).scalars().all()
                inbox = (
                    await conn.execute(
                        sa.text(
                            "SELECT i.organ_id, p.sha256 FROM inbox_item i JOIN package p"
                            " ON p.id = i.package_id WHERE i.kind = 'package'"
                        )
                    )
                ).all()
            return {"packages": list(packages), "inbox": [tuple(r) for r in inbox]}
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_two_hub_processes_store_and_deliver_each_package_exactly_once(tmp_path) -> None:
    pki = build_pki()
    files = write_hub_files(pki, tmp_path)
    url = pg_url_or_skip()
    base = hub_config(files, url)
    configs = [base, base.with_(port=base.port + 1 if base.port < 65000 else base.port - 1)]
    hubs = [HubProcess(write_config_toml(c, tmp_path / f"hub{i}.toml")) for i, c in enumerate(configs)]
    try:
        bodies = [
            sign_package(document(recipients=(DEPARTMENT, DISTRICT)), pki.agencies[PROVINCE])
            for _ in range(PACKAGES)
        ]

        def send(args: tuple[int, bytes]) -> tuple[int, bytes]:
            i, body = args
            client = Client(configs[i].port, client_context(files, PROVINCE))
            try:
                reply = client.post_package(body)
            finally:
                client.close()
            return reply.status, reply.body

        jobs = [(i, body) for body in bodies for i in (0, 1)]
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(send, jobs))
        statuses = sorted(s for s, _ in results)
        assert set(statuses) <= {200, 202}, statuses
        assert statuses.count(202) == PACKAGES  # exactly one of the two racing sends created it
        for k in range(PACKAGES):
            assert results[2 * k][1] == results[2 * k + 1][1]  # both hubs answered the same receipt

        rows = _count_rows(url)
        assert len(rows["packages"]) == len(set(rows["packages"])) == PACKAGES  # type: ignore[arg-type]
        assert sorted(rows["inbox"]) == sorted(  # type: ignore[arg-type]
            (agency, pid)
            for pid in rows["packages"]
            for agency in (DEPARTMENT, DISTRICT)  # type: ignore[union-attr]
        )

        # Each recipient pulls through both hubs alternately, acknowledging as it goes.
        for agency in (DEPARTMENT, DISTRICT):
            seen: list[str] = []
            clients = [Client(c.port, client_context(files, agency)) for c in configs]
            turn = 0
            while True:
                items = clients[turn % 2].get("/v1/inbox?limit=7").json()["items"]
                if not items:
                    break
                seen += [i["package_id"] for i in items]
                ack = clients[(turn + 1) % 2].post_json(
                    "/v1/inbox/ack", {"item_ids": [i["item_id"] for i in items]}
                )
                assert ack.json()["acknowledged"] == len(items)
                turn += 1
            assert sorted(seen) == sorted(rows["packages"])  # type: ignore[arg-type]
    finally:
        for hub in hubs:
            hub.stop()
        drop_pg(url)
