"""The paper-only register: documents sent on paper, outside the hub (metadata only, DESIGN §5).

They count in the rate's denominator so the rate covers everything an agency sent. One row per
(sender, recipient, number, notation, date): registering or importing the same dispatch again is a no-op,
so a CSV can be re-imported safely.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from gateway.store.db import Database
from gateway.store.models import Agency, PaperDispatch


@dataclass(frozen=True, slots=True, kw_only=True)
class PaperRecord:
    sender: str
    recipient: str
    code_number: str
    code_notation: str
    document_date: dt.date
    subject: str | None = None
    source: str = "api"
    """Where the row came from (``api``, ``csv:<file name>`` …), for auditors."""


async def add_paper_dispatches(db: Database, records: Iterable[PaperRecord], *, now: dt.datetime) -> int:
    """Register paper-only dispatches in one transaction; returns how many were new."""
    records = list(records)
    if not records:
        return 0
    organs = {r.sender for r in records} | {r.recipient for r in records}
    async with db.write() as session:
        levels = dict(
            (
                await session.execute(
                    select(Agency.organ_id, Agency.level).where(Agency.organ_id.in_(organs))
                )
            ).all()  # type: ignore[attr-defined]
        )
        insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert
        stmt = insert(PaperDispatch).on_conflict_do_nothing(
            index_elements=[
                "sender_organ_id",
                "recipient_organ_id",
                "code_number",
                "code_notation",
                "document_date",
            ]
        )
        created = 0
        for r in records:
            result = await session.execute(
                stmt.values(
                    sender_organ_id=r.sender,
                    recipient_organ_id=r.recipient,
                    code_number=r.code_number,
                    code_notation=r.code_notation,
                    document_date=r.document_date,
                    subject=r.subject,
                    sender_level=levels.get(r.sender),
                    recipient_level=levels.get(r.recipient),
                    month=r.document_date.year * 100 + r.document_date.month,
                    source=r.source,
                    created_at=now,
                )
            )
            created += result.rowcount or 0  # type: ignore[attr-defined]
        return created


async def add_paper_dispatch(
    db: Database, record: PaperRecord, *, now: dt.datetime
) -> tuple[PaperDispatch, bool]:
    """Register one paper-only dispatch; returns the row and whether it was new."""
    created = await add_paper_dispatches(db, [record], now=now) == 1
    async with db.read() as session:
        row = (
            await session.execute(
                select(PaperDispatch).where(
                    PaperDispatch.sender_organ_id == record.sender,
                    PaperDispatch.recipient_organ_id == record.recipient,
                    PaperDispatch.code_number == record.code_number,
                    PaperDispatch.code_notation == record.code_notation,
                    PaperDispatch.document_date == record.document_date,
                )
            )
        ).scalar_one()
    return row, created
