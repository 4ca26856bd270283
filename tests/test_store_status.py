"""Status messages in the store: lifecycle, idempotency, forwarding, timeline and overdue (both backends)."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from db_fixtures import RECIPIENTS, SENDER, T0, make_record, sha
from sqlalchemy import func, select

from gateway.calendar import Holidays
from gateway.errors import AuthError, Conflict, FieldError, NotFound
from gateway.store import (
    apply_status,
    get_status_message,
    ingest_package,
    list_inbox,
    open_database,
    overdue_exchanges,
    timeline,
)
from gateway.store.models import Exchange, InboxItem, StatusEvent, StatusMessage

DOC = f"{SENDER},2027/03/02,12/UBND-VP"
A, B = RECIPIENTS


async def send(db, body="doc"):
    return await ingest_package(db, make_record(body, document_id=DOC), receipt=b"r", received_at=T0)


async def status(db, actor, code, *, n=0, at=None, **kw):
    message = f"{actor}:{code}:{n}".encode()
    return await apply_status(
        db,
        document_sender=SENDER,
        document_id=DOC,
        actor_organ_id=actor,
        code=code,
        message=message,
        message_sha256=sha(message),
        received_at=at or T0 + dt.timedelta(hours=1),
        description=kw.pop("description", None),
        forwarded=b"<forwarded/>",
        **kw,
    )


async def exchange_of(db, recipient) -> Exchange:
    async with db.read() as s:
        return (
            await s.execute(select(Exchange).where(Exchange.recipient_organ_id == recipient))
        ).scalar_one()


async def snapshot(db):
    async with db.read() as s:
        return (
            tuple(
                (
                    await s.execute(
                        select(Exchange.id, Exchange.state, Exchange.previous_state, Exchange.arrived_at)
                    )
                ).all()
            ),
            (await s.execute(select(func.count()).select_from(StatusMessage))).scalar_one(),
            (await s.execute(select(func.count()).select_from(StatusEvent))).scalar_one(),
            (await s.execute(select(func.count()).select_from(InboxItem))).scalar_one(),
        )


async def test_recipient_status_moves_its_exchange_and_is_forwarded_to_the_sender(db):
    await send(db)
    result = await status(db, A, "01")
    assert result.created
    assert result.changed
    ex = await exchange_of(db, A)
    assert ex.state == "arrived"
    assert ex.arrived_at == T0 + dt.timedelta(hours=1)
    assert (await exchange_of(db, B)).state == "queued"
    (item,) = await list_inbox(db, SENDER)
    assert (item.kind, item.status_code, item.status_message_id) == ("status", "01", result.message.id)
    stored = await get_status_message(db, item.status_message_id)
    assert stored.forwarded == b"<forwarded/>"
    assert stored.message == f"{A}:01:0".encode()


async def test_same_message_twice_is_applied_once(db):
    await send(db)
    first = await status(db, A, "03")
    again = await status(db, A, "03")
    assert not again.created
    assert again.message.id == first.message.id
    assert [e.id for e in again.events] == [e.id for e in first.events]
    assert len(await list_inbox(db, SENDER)) == 1


async def test_another_message_repeating_the_code_is_recorded_not_forwarded(db):
    await send(db)
    await status(db, A, "01", n=1)
    repeat = await status(db, A, "01", n=2)
    assert repeat.created
    assert not repeat.changed
    assert repeat.events[0].outcome == "repeat"
    assert len(await list_inbox(db, SENDER)) == 1


async def test_forward_jump_sets_arrival_and_acceptance(db):
    await send(db)
    await status(db, A, "03")
    ex = await exchange_of(db, A)
    assert ex.state == "accepted"
    assert ex.arrived_at is not None
    assert ex.accepted_at is not None


async def test_illegal_transition_leaves_the_database_unchanged(db):
    await send(db)
    await status(db, A, "03")
    before = await snapshot(db)
    with pytest.raises(Conflict) as info:
        await status(db, A, "02")
    assert info.value.code == "conflict.transition"
    with pytest.raises(Conflict):
        await status(db, B, "15")
    assert await snapshot(db) == before


async def test_wrong_party_and_unknown_document(db):
    await send(db)
    before = await snapshot(db)
    with pytest.raises(AuthError):
        await status(db, "000.00.99.H53", "01")  # not a recipient
    with pytest.raises(AuthError):
        await status(db, SENDER, "01")  # the sender cannot confirm arrival
    with pytest.raises(AuthError):
        await status(db, A, "13")  # a recipient cannot recall
    with pytest.raises(FieldError):
        await status(db, A, "07")
    with pytest.raises(NotFound):
        await apply_status(
            db,
            document_sender=SENDER,
            document_id="nope",
            actor_organ_id=A,
            code="01",
            message_sha256=sha("x"),
            received_at=T0,
        )
    assert await snapshot(db) == before


async def test_recall_by_status_13_goes_to_every_open_recipient(db):
    await send(db)
    await status(db, A, "06")  # A is done: a recall cannot reach it
    result = await status(db, SENDER, "13")
    assert [e.exchange_id for e in result.events] == [(await exchange_of(db, B)).id]
    assert (await exchange_of(db, B)).state == "recall_requested"
    assert [(i.kind, i.status_code) for i in await list_inbox(db, B)] == [("package", None), ("status", "13")]
    assert [i.kind for i in await list_inbox(db, A)] == ["package"]
    agreed = await status(db, B, "15")
    ex = await exchange_of(db, B)
    assert (ex.state, ex.previous_state) == ("recalled", "queued")
    assert ex.closed_at is not None
    assert agreed.events[0].state_after == "recalled"
    with pytest.raises(Conflict):
        await status(db, SENDER, "13", n=1)  # nobody left to ask


async def test_recall_refused_keeps_the_previous_state(db):
    await send(db)
    await status(db, A, "03")
    await status(db, SENDER, "13")
    await status(db, A, "16")
    ex = await exchange_of(db, A)
    assert (ex.state, ex.previous_state) == ("recall_refused", "accepted")
    await status(db, A, "05")
    ex = await exchange_of(db, A)
    assert (ex.state, ex.previous_state) == ("in_progress", None)


async def test_update_package_asks_and_15_continues_the_chain(db):
    await send(db)
    await status(db, A, "03")
    update = await ingest_package(
        db, make_record("update", document_id=DOC, doc_type=2), receipt=b"u", received_at=T0
    )
    assert {r.outcome for r in update.requests} == {"applied"}
    ex = await exchange_of(db, A)
    assert (ex.state, ex.request_kind, ex.previous_state) == ("recall_requested", "update", "accepted")
    await status(db, A, "15")
    ex = await exchange_of(db, A)
    assert (ex.state, ex.request_kind, ex.previous_state) == ("accepted", None, None)
    tl = await timeline(db, update.package.id, now=T0)
    assert tl.document.id != tl.package.id
    codes = [e.code for e in tl.exchanges[0].events]
    assert codes == ["03", "13", "15"]
    assert tl.exchanges[0].events[1].package_id == update.package.id


async def test_concurrent_statuses_for_one_exchange_are_serialised(database_url):
    """Two engines (two hub processes) racing on one exchange: both applied, in some order, no loss."""
    first, second = open_database(database_url), open_database(database_url)
    try:
        await send(first)
        results = await asyncio.gather(status(first, A, "01"), status(second, A, "03"))
        assert all(r.created for r in results)
        assert (await exchange_of(first, A)).state == "accepted"
        dup = await asyncio.gather(status(first, A, "05"), status(second, A, "05"))
        assert sorted(r.created for r in dup) == [False, True]
        assert dup[0].message.id == dup[1].message.id
        async with first.read() as s:
            assert (await s.execute(select(func.count()).select_from(StatusMessage))).scalar_one() == 3
    finally:
        await first.close()
        await second.close()


async def test_timeline_and_overdue(db):
    friday = dt.datetime(2027, 3, 5, 9, 0, tzinfo=dt.UTC)  # Friday 16:00 in Vietnam
    result = await ingest_package(db, make_record(document_id=DOC), receipt=b"r", received_at=friday)
    monday_late = dt.datetime(2027, 3, 8, 16, 0, tzinfo=dt.UTC)  # Monday 23:00: still in time
    await status(db, A, "01", at=monday_late)
    tuesday = dt.datetime(2027, 3, 9, 2, 0, tzinfo=dt.UTC)
    tl = await timeline(db, result.package.id, now=tuesday)
    lines = {line.exchange.recipient_organ_id: line for line in tl.exchanges}
    assert (lines[A].overdue, lines[A].pending) == (False, False)
    assert (lines[B].overdue, lines[B].pending) == (True, True)
    assert [e.code for e in lines[A].events] == ["01"]
    # with Monday as a holiday, B is not overdue yet
    holiday = Holidays(days_off=frozenset({dt.date(2027, 3, 8)}))
    tl = await timeline(db, result.package.id, now=tuesday, holidays=holiday)
    assert not {line.exchange.recipient_organ_id: line for line in tl.exchanges}[B].overdue
    late = await overdue_exchanges(db, organ_id=SENDER, role="sender", now=tuesday)
    assert [line.exchange.recipient_organ_id for line in late] == [B]
    assert [
        line.exchange.recipient_organ_id
        for line in await overdue_exchanges(db, organ_id=B, role="recipient", now=tuesday)
    ] == [B]
    assert await overdue_exchanges(db, organ_id=A, role="recipient", now=tuesday) == []
    await status(db, B, "02", at=tuesday)
    assert await overdue_exchanges(db, organ_id=SENDER, role="sender", now=tuesday) == []
