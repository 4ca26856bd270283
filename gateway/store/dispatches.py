"""Read-only queries behind the clerks' pages: dispatches sent or received by an agency, searchable.

A *dispatch* here is a stored package (any BussinessDocType) seen from one agency: ``sent`` when the agency
is its sender, ``received`` when it is among its recipients (``package_recipient``, which also covers
recall/update/replacement packages). Without an agency (auditors, administrators) every package is listed.

Search decisions:

* ``number`` matches the number *or* the full ``number/notation`` (``12``, ``12/UBND-VP``, ``UBND``) as a
  substring; ``subject`` is a substring. On PostgreSQL both are case-insensitive (``ILIKE``); SQLite's
  ``LIKE`` is case-insensitive for ASCII letters only, so a Vietnamese capital may not match there.
* ``date_from``/``date_to`` are inclusive days in Vietnam time on the **hub's receipt time** (the one date
  every package has and the sender does not control); the promulgation date is shown beside it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import ColumnElement, exists, func, or_, select

from gateway.calendar import VN_TZ
from gateway.store.db import Database
from gateway.store.models import Exchange, Package, PackageRecipient

Direction = Literal["all", "sent", "received"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchRow:
    """One package in a list, with a summary of its recipients' states."""

    package: Package
    recipients: int
    states: dict[str, int] = field(default_factory=dict)
    """Exchange states of a new document, counted (``{"arrived": 2, "queued": 1}``)."""
    own_state: str | None = None
    """The listing agency's own exchange state when it is a recipient."""

    @property
    def confirmed(self) -> int:
        return sum(n for s, n in self.states.items() if s not in ("queued", "refused", "recalled"))


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchPage:
    rows: tuple[DispatchRow, ...]
    total: int


def _vn_day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=VN_TZ).astimezone(dt.UTC)


def _like(column: Any, text: str, *, postgres: bool) -> ColumnElement[bool]:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = f"%{escaped}%"
    if postgres:
        return column.ilike(pattern, escape="\\")  # type: ignore[no-any-return]
    return column.like(pattern, escape="\\")  # type: ignore[no-any-return]


def _conditions(
    *,
    organ_id: str | None,
    direction: Direction,
    number: str | None,
    subject: str | None,
    date_from: dt.date | None,
    date_to: dt.date | None,
    postgres: bool,
) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if organ_id is not None:
        received = exists().where(
            PackageRecipient.package_id == Package.id, PackageRecipient.organ_id == organ_id
        )
        sent = Package.sender_organ_id == organ_id
        conds.append({"sent": sent, "received": received}.get(direction, or_(sent, received)))
    if number:
        full = func.coalesce(Package.code_number, "") + "/" + func.coalesce(Package.code_notation, "")
        conds.append(_like(full, number.strip(), postgres=postgres))
    if subject:
        conds.append(_like(Package.subject, subject.strip(), postgres=postgres))
    if date_from is not None:
        conds.append(Package.received_at >= _vn_day_start(date_from))
    if date_to is not None:
        conds.append(Package.received_at < _vn_day_start(date_to + dt.timedelta(days=1)))
    return conds


async def search_dispatches(
    db: Database,
    *,
    organ_id: str | None = None,
    direction: Direction = "all",
    number: str | None = None,
    subject: str | None = None,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
    limit: int = 50,
    offset: int = 0,
) -> DispatchPage:
    """Packages of ``organ_id`` (or all), newest first, with their recipients' states; and the total."""
    conds = _conditions(
        organ_id=organ_id,
        direction=direction,
        number=number,
        subject=subject,
        date_from=date_from,
        date_to=date_to,
        postgres=db.dialect == "postgresql",
    )
    async with db.read() as session:
        total = int(
            (await session.execute(select(func.count()).select_from(Package).where(*conds))).scalar_one()
        )
        packages = list(
            (
                await session.execute(
                    select(Package)
                    .where(*conds)
                    .order_by(Package.received_at.desc(), Package.id.desc())  # type: ignore[attr-defined,union-attr]
                    .limit(limit)
                    .offset(offset)
                )
            ).scalars()
        )
        ids = [p.id for p in packages]
        recipients: dict[int, int] = {}
        states: dict[int, dict[str, int]] = {}
        own: dict[int, str] = {}
        if ids:
            for package_id, count in await session.execute(
                select(PackageRecipient.package_id, func.count())
                .where(PackageRecipient.package_id.in_(ids))  # type: ignore[attr-defined]
                .group_by(PackageRecipient.package_id)
            ):
                recipients[package_id] = count
            for package_id, state, count in await session.execute(
                select(Exchange.package_id, Exchange.state, func.count())
                .where(Exchange.package_id.in_(ids))  # type: ignore[attr-defined]
                .group_by(Exchange.package_id, Exchange.state)
            ):
                states.setdefault(package_id, {})[state] = count
            if organ_id is not None:
                for package_id, state in await session.execute(
                    select(Exchange.package_id, Exchange.state).where(
                        Exchange.package_id.in_(ids),  # type: ignore[attr-defined]
                        Exchange.recipient_organ_id == organ_id,
                    )
                ):
                    own[package_id] = state
    rows = tuple(
        DispatchRow(
            package=p,
            recipients=recipients.get(p.id or 0, 0),
            states=states.get(p.id or 0, {}),
            own_state=own.get(p.id or 0),
        )
        for p in packages
    )
    return DispatchPage(rows=rows, total=total)


async def packages_by_ids(db: Database, ids: Iterable[int]) -> dict[int, Package]:
    """Packages by id (for lists built from exchanges, such as the overdue list)."""
    wanted: Sequence[int] = sorted(set(ids))
    if not wanted:
        return {}
    async with db.read() as session:
        rows = (await session.execute(select(Package).where(Package.id.in_(wanted)))).scalars()  # type: ignore[union-attr]
        return {p.id: p for p in rows if p.id is not None}
