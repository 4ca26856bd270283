"""Package ingest (idempotency, DocumentId conflicts, concurrency) and the ACK-based inbox, both backends."""

from __future__ import annotations

import asyncio

import pytest
from db_fixtures import RECIPIENTS, SENDER, T0, make_record
from sqlalchemy import func, select

from gateway.errors import Conflict, FieldError, NotFound
from gateway.store import (
    AgencyRecord,
    AttachmentRecord,
    ack_inbox,
    get_package,
    get_package_by_sha256,
    inbox_depth,
    ingest_package,
    list_inbox,
    open_database,
    upsert_agencies,
)
from gateway.store.models import Exchange, InboxItem, Package, PackageAttachment


async def count(db, model) -> int:
    async with db.read() as s:
        return int((await s.execute(select(func.count()).select_from(model))).scalar_one())


async def test_ingest_creates_package_exchanges_and_inbox_items(db):
    await upsert_agencies(
        db,
        [
            AgencyRecord(organ_id=SENDER, name="UBND tỉnh", level="province"),
            AgencyRecord(organ_id=RECIPIENTS[0], name="Sở", level="department"),
        ],
        now=T0,
    )
    attachment = AttachmentRecord(content_id="cid:1", size=3, sha256="a" * 64, name="qd.pdf")
    result = await ingest_package(
        db, make_record(attachments=(attachment,)), receipt=b"<receipt 1/>", received_at=T0
    )
    assert result.created
    assert result.receipt == b"<receipt 1/>"
    detail = await get_package(db, result.package.id)
    assert detail.recipients == RECIPIENTS
    assert [a.content_id for a in detail.attachments] == ["cid:1"]
    assert detail.is_party(SENDER)
    assert detail.is_party(RECIPIENTS[1])
    assert not detail.is_party("000.00.99.H53")
    async with db.read() as s:
        exchanges = list((await s.execute(select(Exchange).order_by(Exchange.id))).scalars())
    assert [e.recipient_organ_id for e in exchanges] == list(RECIPIENTS)
    assert {e.state for e in exchanges} == {"queued"}
    assert [(e.sender_level, e.recipient_level) for e in exchanges] == [
        ("province", "department"),
        ("province", None),
    ]
    assert exchanges[0].month == 202703
    assert exchanges[0].created_at == T0
    assert exchanges[0].deadline.isoformat() == "2027-03-03T16:59:59.999999+00:00"
    for recipient in RECIPIENTS:
        (item,) = await list_inbox(db, recipient)
        assert (item.kind, item.package_id, item.document_id, item.sender) == (
            "package",
            result.package.id,
            result.package.document_id,
            SENDER,
        )
    assert await list_inbox(db, SENDER) == []


async def test_same_bytes_twice_is_one_package_with_the_same_receipt(db):
    first = await ingest_package(db, make_record(), receipt=b"<receipt first/>", received_at=T0)
    again = await ingest_package(db, make_record(), receipt=b"<receipt second/>", received_at=T0)
    assert not again.created
    assert again.package.id == first.package.id
    assert again.receipt == b"<receipt first/>"
    assert await count(db, Package) == 1
    assert await count(db, Exchange) == 2
    assert await count(db, InboxItem) == 2
    assert (await get_package_by_sha256(db, first.package.sha256)).id == first.package.id


async def test_same_document_id_with_other_bytes_is_a_conflict_and_changes_nothing(db):
    await ingest_package(db, make_record("v1"), receipt=b"r1", received_at=T0)
    with pytest.raises(Conflict) as info:
        await ingest_package(db, make_record("v2"), receipt=b"r2", received_at=T0)
    assert info.value.code == "conflict.document_id"
    assert info.value.status == 409
    assert await count(db, Package) == 1
    assert await count(db, InboxItem) == 2


async def test_recall_package_may_repeat_the_document_id(db):
    original = await ingest_package(db, make_record("v1"), receipt=b"r1", received_at=T0)
    recall = await ingest_package(db, make_record("recall", doc_type=1), receipt=b"r2", received_at=T0)
    assert recall.created
    assert recall.package.target_package_id == original.package.id
    assert {r.outcome for r in recall.requests} == {"applied"}
    async with db.read() as s:
        states = set((await s.execute(select(Exchange.state, Exchange.request_kind))).all())
    assert states == {("recall_requested", "recall")}
    assert await count(db, Exchange) == 2  # a recall makes no exchanges of its own
    assert len(await list_inbox(db, RECIPIENTS[0])) == 2  # the document, then the recall


async def test_request_for_an_unknown_document_is_delivered_but_applies_nowhere(db):
    result = await ingest_package(db, make_record("update", doc_type=2), receipt=b"r", received_at=T0)
    assert result.created
    assert {r.outcome for r in result.requests} == {"not_found"}
    assert result.package.target_package_id is None


async def test_invalid_records_are_refused():
    with pytest.raises(FieldError):
        await ingest_package(None, make_record(recipients=()), receipt=b"", received_at=T0)  # type: ignore[arg-type]
    with pytest.raises(FieldError):
        await ingest_package(None, make_record(recipients=("a", "a")), receipt=b"", received_at=T0)  # type: ignore[arg-type]


async def test_missing_package_is_not_found(db):
    with pytest.raises(NotFound):
        await get_package(db, 12345)


async def test_inbox_ack_delivers_exactly_once(db):
    for i in range(5):
        await ingest_package(
            db,
            make_record(f"p{i}", document_id=f"{SENDER},2027/03/02,{i}/UBND-VP"),
            receipt=b"r",
            received_at=T0,
        )
    recipient = RECIPIENTS[0]
    page = await list_inbox(db, recipient, limit=3)
    assert [e.id for e in page] == sorted(e.id for e in page)
    assert len(page) == 3
    # not acknowledged: the same items come back (a node that crashed sees them again)
    assert [e.id for e in await list_inbox(db, recipient, limit=3)] == [e.id for e in page]
    assert await ack_inbox(db, recipient, [e.id for e in page], now=T0) == 3
    assert await ack_inbox(db, recipient, [e.id for e in page], now=T0) == 0  # idempotent
    rest = await list_inbox(db, recipient)
    assert len(rest) == 2
    assert not {e.id for e in rest} & {e.id for e in page}
    # another agency cannot acknowledge these
    assert await ack_inbox(db, RECIPIENTS[1], [e.id for e in rest], now=T0) == 0
    assert await inbox_depth(db, recipient) == 2
    assert await inbox_depth(db) == 7
    paged = await list_inbox(db, recipient, after_id=rest[0].id)
    assert [e.id for e in paged] == [rest[1].id]


async def test_attachments_are_recorded(db):
    attachments = tuple(
        AttachmentRecord(content_id=f"cid:{i}", size=i, sha256=f"{i:064x}", content_type="application/pdf")
        for i in range(3)
    )
    result = await ingest_package(db, make_record(attachments=attachments), receipt=b"r", received_at=T0)
    detail = await get_package(db, result.package.id)
    assert [a.sha256 for a in detail.attachments] == [a.sha256 for a in attachments]
    assert await count(db, PackageAttachment) == 3


async def test_concurrent_ingest_from_two_engines_creates_one_package(database_url):
    """Two engines = two hub processes: on PostgreSQL a real race; on SQLite two writers on one file."""
    first, second = open_database(database_url), open_database(database_url)
    try:
        for round_ in range(10):
            record = make_record(f"race-{round_}", document_id=f"{SENDER},2027/03/02,{round_}/R")
            results = await asyncio.gather(
                ingest_package(first, record, receipt=b"receipt-A", received_at=T0),
                ingest_package(second, record, receipt=b"receipt-B", received_at=T0),
            )
            assert sorted(r.created for r in results) == [False, True]
            assert results[0].package.id == results[1].package.id
            assert results[0].receipt == results[1].receipt
        # same DocumentId, different bytes, at the same time: one wins, the other is a conflict
        racing = [make_record(f"doc-{x}", document_id=f"{SENDER},2027/03/02,99/R") for x in "AB"]
        outcomes = await asyncio.gather(
            ingest_package(first, racing[0], receipt=b"a", received_at=T0),
            ingest_package(second, racing[1], receipt=b"b", received_at=T0),
            return_exceptions=True,
        )
        assert sum(isinstance(o, Conflict) for o in outcomes) == 1
        assert await count(first, Package) == 11
        assert await count(first, Exchange) == 22
        assert await count(first, InboxItem) == 22
    finally:
        await first.close()
        await second.close()


async def test_concurrent_ingest_in_one_process(db):
    record = make_record("same")
    results = await asyncio.gather(
        *(ingest_package(db, record, receipt=f"r{i}".encode(), received_at=T0) for i in range(8))
    )
    assert sum(r.created for r in results) == 1
    assert len({r.receipt for r in results}) == 1
    assert await count(db, Package) == 1
