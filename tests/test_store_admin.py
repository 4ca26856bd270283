"""Directory, pins, node identities, the paper-only register and the job queue, on both backends."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import replace

import pytest
from db_fixtures import T0

from gateway.errors import DirectoryError
from gateway.store import (
    AgencyRecord,
    PaperRecord,
    add_paper_dispatch,
    add_paper_dispatches,
    claim_jobs,
    complete_job,
    enqueue_job,
    fail_job,
    get_agency,
    list_agencies,
    list_pins,
    open_database,
    organs_for_node,
    pin_certificate,
    register_node,
    unpin_certificate,
    unregister_node,
    upsert_agencies,
    upsert_agency,
)

FP = "AB:" + "cd" * 30 + "ef"
FP_HEX = "ab" + "cd" * 30 + "ef"


async def test_directory_upsert_is_idempotent(db):
    records = [
        AgencyRecord(organ_id="000.00.00.H53", name="UBND tỉnh Tây Ninh", level="province"),
        AgencyRecord(
            organ_id="000.00.31.H53", name="UBND huyện", level="district", parent_organ_id="000.00.00.H53"
        ),
    ]
    assert await upsert_agencies(db, records, now=T0) == 2
    assert await upsert_agencies(db, records, now=T0) == 2
    renamed = await upsert_agency(
        db, AgencyRecord(organ_id="000.00.31.H53", name="UBND thị xã", level="district"), now=T0
    )
    assert renamed.name == "UBND thị xã"
    assert [a.organ_id for a in await list_agencies(db)] == ["000.00.00.H53", "000.00.31.H53"]
    assert [a.organ_id for a in await list_agencies(db, level="district")] == ["000.00.31.H53"]
    await upsert_agency(db, AgencyRecord(organ_id="000.00.31.H53", name="x", active=False), now=T0)
    assert [a.organ_id for a in await list_agencies(db)] == ["000.00.00.H53"]
    assert (await get_agency(db, "000.00.31.H53")).active is False
    with pytest.raises(DirectoryError) as info:
        await upsert_agencies(db, [AgencyRecord(organ_id="x", name="x", level="village")], now=T0)
    assert info.value.code == "directory.bad_level"


async def test_pins_and_node_identities(db):
    await upsert_agency(db, AgencyRecord(organ_id="000.00.00.H53", name="UBND", level="province"), now=T0)
    pin = await pin_certificate(db, "000.00.00.H53", FP, now=T0, certificate=b"der")
    assert pin.fingerprint == FP_HEX
    await pin_certificate(db, "000.00.00.H53", FP_HEX, now=T0)  # twice is harmless
    assert [p.fingerprint for p in await list_pins(db, "000.00.00.H53")] == [FP_HEX]
    with pytest.raises(DirectoryError) as info:
        await pin_certificate(db, "000.00.99.H53", FP, now=T0)
    assert info.value.code == "directory.unknown_agency"
    with pytest.raises(DirectoryError):
        await pin_certificate(db, "000.00.00.H53", "not-a-fingerprint", now=T0)
    assert await unpin_certificate(db, "000.00.00.H53", FP)
    assert not await unpin_certificate(db, "000.00.00.H53", FP)

    await register_node(db, FP, "000.00.00.H53", now=T0)
    await register_node(db, FP, "000.00.00.H53", now=T0)
    assert await organs_for_node(db, FP) == frozenset({"000.00.00.H53"})
    assert await unregister_node(db, FP, "000.00.00.H53")
    assert await organs_for_node(db, FP) == frozenset()


async def test_paper_register_is_idempotent_and_snapshots_levels(db):
    await upsert_agencies(
        db,
        [
            AgencyRecord(organ_id="000.00.00.H53", name="UBND", level="province"),
            AgencyRecord(organ_id="000.21.31.H53", name="UBND xã", level="commune"),
        ],
        now=T0,
    )
    record = PaperRecord(
        sender="000.00.00.H53",
        recipient="000.21.31.H53",
        code_number="7",
        code_notation="UBND-VP",
        document_date=dt.date(2027, 2, 26),
        subject="Giấy mời",
        source="csv:feb.csv",
    )
    row, created = await add_paper_dispatch(db, record, now=T0)
    assert created
    assert (row.month, row.sender_level, row.recipient_level, row.source) == (
        202702,
        "province",
        "commune",
        "csv:feb.csv",
    )
    again, created = await add_paper_dispatch(db, record, now=T0)
    assert not created
    assert again.id == row.id
    other = replace(record, code_number="8")
    assert await add_paper_dispatches(db, [record, other], now=T0) == 1


async def test_job_queue_hands_each_job_to_one_worker(database_url):
    first, second = open_database(database_url), open_database(database_url)
    try:
        for i in range(6):
            assert await enqueue_job(first, "forward", {"n": i}, now=T0, key=f"forward:{i}")
        assert not await enqueue_job(first, "forward", {"n": 0}, now=T0, key="forward:0")  # deduped by key
        claims = await asyncio.gather(
            claim_jobs(first, worker="w1", now=T0, limit=4),
            claim_jobs(second, worker="w2", now=T0, limit=4),
        )
        taken = [job.id for batch in claims for job in batch]
        assert len(taken) == len(set(taken)) == 6
        assert all(j.state == "running" and j.attempts == 1 for batch in claims for j in batch)
        assert await claim_jobs(first, worker="w3", now=T0) == []

        job = claims[0][0]
        assert await complete_job(first, job.id, worker="w1", now=T0)
        assert not await complete_job(first, job.id, worker="w1", now=T0)
        retry = claims[0][1]
        assert await fail_job(
            first, retry.id, worker="w1", now=T0, error="hub down", retry_at=T0 + dt.timedelta(minutes=1)
        )
        assert await claim_jobs(first, worker="w1", now=T0) == []
        (again,) = await claim_jobs(first, worker="w1", now=T0 + dt.timedelta(minutes=2), limit=1)
        assert (again.id, again.attempts, again.last_error) == (retry.id, 2, "hub down")
        # an expired lease is handed out again
        later = T0 + dt.timedelta(hours=1)
        reclaimed = await claim_jobs(second, worker="w9", now=later, limit=10)
        assert {j.id for j in reclaimed} == set(taken) - {job.id}
        assert not await complete_job(first, claims[1][0].id, worker="w2", now=later)  # lost its lease
        assert await fail_job(second, reclaimed[0].id, worker="w9", now=later, error="gave up")
    finally:
        await first.close()
        await second.close()
