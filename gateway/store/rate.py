"""The electronic-exchange rate in SQL: one GROUP BY over ``exchange`` (plus the paper-only register).

The bucket is computed in the database by :func:`bucket_case`, a ``CASE`` expression that mirrors
:func:`gateway.rate.classify` branch for branch (a test compares them row by row). Paper-only dispatches
(``paper_dispatch``) are added with ``UNION ALL`` as bucket ``paper_only``.

**Which date counts.** An exchange is dated by the hub's receipt of its package (``exchange.created_at``,
the hub clock, never the sender's), taken in Vietnam time (UTC+07:00); its ``month`` column is that
receipt month. ``date_from``/``date_to`` are inclusive Vietnam days. A paper-only dispatch has no
receipt: it is dated by its document date (and its month is that date's month). When the range covers
whole months the query filters on the indexed ``month`` column alone; a partial first or last month adds
a bound on ``created_at``.

Filters (``sender``, ``recipient``, ``level_pair``, ``month``) are validated and raise
:class:`~gateway.errors.RequestError` (``request.bad``) for bad values, so the web layer can answer 400.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    func,
    literal_column,
    not_,
    or_,
    select,
    union_all,
)

from gateway.calendar import VN_TZ
from gateway.errors import RequestError
from gateway.rate import (
    CONFIRMED_STATES,
    GROUPINGS,
    OVERLAY_STATES,
    Bucket,
    ExchangeReason,
    Grouping,
    RateRow,
    Series,
    aggregate,
    build_series,
    explain,
    level_pair_key,
    month_key,
    months_between,
    parse_level_pair,
    parse_month,
)
from gateway.store.db import Database
from gateway.store.models import Agency, Exchange, Package, PaperDispatch

__all__ = [
    "bucket_case",
    "exchanges_count",
    "exchanges_report",
    "monthly_series",
    "rate_report",
]

E = Exchange.__table__.c  # type: ignore[attr-defined]
P = PaperDispatch.__table__.c  # type: ignore[attr-defined]
PK = Package.__table__.c  # type: ignore[attr-defined]


def bucket_case(c: Any = E) -> ColumnElement[str]:
    """The SQL twin of :func:`gateway.rate.classify` (same branches, same order).

    ``c`` is a column collection with ``state``, ``previous_state``, ``paper`` and ``signature_ok``: the
    ``exchange`` table's (default) or a subquery's.
    """
    confirmed = or_(
        c.state.in_(CONFIRMED_STATES),
        and_(c.state.in_(OVERLAY_STATES), c.previous_state.in_(CONFIRMED_STATES)),
    )
    return case(
        (c.state == "recalled", Bucket.RECALLED.value),
        (not_(c.signature_ok), Bucket.INVALID_SIGNATURE.value),
        (c.paper, Bucket.PAPER_COPY.value),
        (c.state == "refused", Bucket.REFUSED.value),
        (confirmed, Bucket.FULLY_ELECTRONIC.value),
        else_=Bucket.UNCONFIRMED.value,
    )


FACTS: tuple[str, ...] = ("state", "previous_state", "paper", "signature_ok")
"""The columns :func:`bucket_case` reads."""

_INDEX_ORDER: tuple[str, ...] = (
    "month",
    "sender_level",
    "recipient_level",
    "sender_organ_id",
    "recipient_organ_id",
)
"""Grouped columns in the order of ``ix_exchange_rate`` (month, levels, then the facts), so that the inner
``GROUP BY`` of :func:`rate_report` streams over that covering index instead of sorting."""


# --------------------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------------------


def _vn_start(day: dt.date) -> dt.datetime:
    """00:00 of ``day`` in Vietnam time, as aware UTC."""
    return dt.datetime.combine(day, dt.time(), tzinfo=VN_TZ).astimezone(dt.UTC)


def _check_range(date_from: dt.date, date_to: dt.date) -> None:
    if not isinstance(date_from, dt.date) or not isinstance(date_to, dt.date):
        raise RequestError("request.bad", "date_from and date_to must be dates")
    if date_from > date_to:
        raise RequestError("request.bad", f"date_from {date_from} is after date_to {date_to}")


def _check_by(by: Sequence[str] | str) -> tuple[Grouping, ...]:
    items = (by,) if isinstance(by, str) else tuple(by)
    out: list[Grouping] = []
    for item in items:
        name = item.replace("-", "_")
        if name not in GROUPINGS:
            raise RequestError("request.bad", f"cannot group by {item!r}; choose from {', '.join(GROUPINGS)}")
        if name in out:
            raise RequestError("request.bad", f"grouping {item!r} is given twice")
        out.append(name)  # type: ignore[arg-type]
    return tuple(out)


def _level_pair(text: str | None) -> tuple[str | None, str | None] | None:
    if text is None:
        return None
    try:
        return parse_level_pair(text)
    except ValueError as exc:
        raise RequestError("request.bad", str(exc)) from exc


def _month(value: str | int | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_month(value)
    except ValueError as exc:
        raise RequestError("request.bad", str(exc)) from exc


def _is_null_or_eq(column: Any, value: str | None) -> ColumnElement[bool]:
    return column.is_(None) if value is None else column == value


def _exchange_where(
    date_from: dt.date,
    date_to: dt.date,
    *,
    sender: str | None,
    recipient: str | None,
    level_pair: str | None,
    month: str | int | None,
) -> list[ColumnElement[bool]]:
    """Conditions on ``exchange``: the receipt range (Vietnam days, inclusive) and the filters."""
    m_from, m_to = date_from.year * 100 + date_from.month, date_to.year * 100 + date_to.month
    conds: list[ColumnElement[bool]] = [E.month >= m_from, E.month <= m_to]
    if date_from.day != 1:
        conds.append(E.created_at >= _vn_start(date_from))
    if date_to.day != calendar.monthrange(date_to.year, date_to.month)[1]:
        conds.append(E.created_at < _vn_start(date_to + dt.timedelta(days=1)))
    conds += _common_filters(E, sender=sender, recipient=recipient, level_pair=level_pair, month=month)
    return conds


def _paper_where(
    date_from: dt.date,
    date_to: dt.date,
    *,
    sender: str | None,
    recipient: str | None,
    level_pair: str | None,
    month: str | int | None,
) -> list[ColumnElement[bool]]:
    """Conditions on ``paper_dispatch``: the document date in the range, and the filters."""
    conds: list[ColumnElement[bool]] = [P.document_date >= date_from, P.document_date <= date_to]
    conds += _common_filters(P, sender=sender, recipient=recipient, level_pair=level_pair, month=month)
    return conds


def _common_filters(
    t: Any, *, sender: str | None, recipient: str | None, level_pair: str | None, month: str | int | None
) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if sender is not None:
        conds.append(t.sender_organ_id == sender)
    if recipient is not None:
        conds.append(t.recipient_organ_id == recipient)
    pair = _level_pair(level_pair)
    if pair is not None:
        conds += [_is_null_or_eq(t.sender_level, pair[0]), _is_null_or_eq(t.recipient_level, pair[1])]
    m = _month(month)
    if m is not None:
        conds.append(t.month == m)
    return conds


def _group_columns(t: Any, by: Sequence[Grouping]) -> list[Any]:
    cols: list[Any] = []
    for g in by:
        if g == "level_pair":
            cols += [t.sender_level, t.recipient_level]
        elif g == "sender":
            cols.append(t.sender_organ_id)
        elif g == "recipient":
            cols.append(t.recipient_organ_id)
        else:
            cols.append(t.month)
    return cols


def _key(by: Sequence[Grouping], values: Sequence[Any]) -> tuple[str, ...]:
    """The row key from the grouped column values (level pairs take two columns)."""
    out: list[str] = []
    i = 0
    for g in by:
        if g == "level_pair":
            out.append(level_pair_key(values[i], values[i + 1]))
            i += 2
        elif g == "month":
            out.append(month_key(int(values[i])))
            i += 1
        else:
            out.append(str(values[i]))
            i += 1
    return tuple(out)


async def _agency_names(db: Database, organs: set[str]) -> dict[str, str]:
    if not organs:
        return {}
    stmt = select(Agency.organ_id, Agency.name)
    if len(organs) <= 1000:
        stmt = stmt.where(Agency.organ_id.in_(organs))  # type: ignore[attr-defined]
    async with db.read() as session:
        return {organ: name for organ, name in (await session.execute(stmt)).all() if organ in organs}


# --------------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------------


async def rate_report(
    db: Database,
    *,
    date_from: dt.date,
    date_to: dt.date,
    by: Sequence[Grouping] | Grouping = ("level_pair",),
    sender: str | None = None,
    recipient: str | None = None,
    level_pair: str | None = None,
    month: str | int | None = None,
    names: bool = True,
) -> list[RateRow]:
    """The rate per group over ``[date_from, date_to]`` (Vietnam days, inclusive), sorted by key.

    ``by`` is any ordered subset of ``level_pair``, ``sender``, ``recipient``, ``month`` (``-`` accepted
    for ``_``); ``by=()`` gives one total row. Groups with nothing in the range are absent. Sender and
    recipient labels are the directory's names (``names=False`` skips that lookup).

    One statement: ``exchange`` grouped by the keys and the four facts the bucket depends on (for level
    pair and month an index-only scan of ``ix_exchange_rate``, no sort), the bucket ``CASE`` over those
    few groups, ``UNION ALL`` the paper-only register grouped by the same keys.
    """
    _check_range(date_from, date_to)
    groups = _check_by(by)
    filters = {"sender": sender, "recipient": recipient, "level_pair": level_pair, "month": month}
    ex_cols = _group_columns(E, groups)
    inner_cols = sorted(ex_cols, key=lambda col: _INDEX_ORDER.index(col.name))
    facts = [E[name] for name in FACTS]
    inner = (
        select(*inner_cols, *facts, func.count().label("n"))
        .select_from(Exchange.__table__)
        .where(*_exchange_where(date_from, date_to, **filters))
        .group_by(*inner_cols, *facts)
        .subquery("facts")
    )
    outer_cols = [inner.c[col.name] for col in ex_cols]
    bucket = bucket_case(inner.c).label("bucket")
    ex: Select[Any] = (
        select(*outer_cols, bucket, func.sum(inner.c.n).label("n"))
        .select_from(inner)
        .group_by(*outer_cols, bucket)
    )
    pa_cols = _group_columns(P, groups)
    pa: Select[Any] = (
        select(
            *pa_cols, literal_column(f"'{Bucket.PAPER_ONLY.value}'").label("bucket"), func.count().label("n")
        )
        .select_from(PaperDispatch.__table__)
        .where(*_paper_where(date_from, date_to, **filters))
    )
    if pa_cols:
        pa = pa.group_by(*pa_cols)
    width = len(ex_cols)
    async with db.read() as session:
        result = (await session.execute(union_all(ex, pa))).all()
    counted = [(_key(groups, r[:width]), r[width], int(r[width + 1])) for r in result if r[width + 1]]
    organs: set[str] = set()
    if names and ("sender" in groups or "recipient" in groups):
        idx = [i for i, g in enumerate(groups) if g in ("sender", "recipient")]
        organs = {key[i] for key, _, _ in counted for i in idx}
    return aggregate(groups, counted, await _agency_names(db, organs))


async def monthly_series(
    db: Database,
    *,
    date_from: dt.date,
    date_to: dt.date,
    by: Grouping = "level_pair",
    sender: str | None = None,
    recipient: str | None = None,
    level_pair: str | None = None,
) -> list[Series]:
    """One :class:`~gateway.rate.Series` per ``by`` group: its row for every month of the range (charts)."""
    (group,) = _check_by((by,))
    if group == "month":
        raise RequestError("request.bad", "a monthly series is grouped by level_pair, sender or recipient")
    rows = await rate_report(
        db,
        date_from=date_from,
        date_to=date_to,
        by=(group, "month"),
        sender=sender,
        recipient=recipient,
        level_pair=level_pair,
    )
    return build_series(group, rows, months_between(date_from, date_to))


# --------------------------------------------------------------------------------------------------
# The drill-down
# --------------------------------------------------------------------------------------------------


def _page_query(
    date_from: dt.date,
    date_to: dt.date,
    bucket: Bucket | str | None,
    filters: dict[str, Any],
) -> Any:
    """``(kind, id, month)`` of every exchange and paper-only dispatch that matches (kind 0 / 1)."""
    b = None
    if bucket is not None:
        try:
            b = Bucket(bucket)
        except ValueError as exc:
            raise RequestError(
                "request.bad", f"unknown bucket {bucket!r}; choose from {', '.join(x.value for x in Bucket)}"
            ) from exc
    parts = []
    if b is not Bucket.PAPER_ONLY:
        conds = _exchange_where(date_from, date_to, **filters)
        if b is not None:
            conds.append(bucket_case() == b.value)
        parts.append(
            select(literal_column("0").label("kind"), E.id.label("id"), E.month.label("month"))
            .select_from(Exchange.__table__)
            .where(*conds)
        )
    if b is None or b is Bucket.PAPER_ONLY:
        parts.append(
            select(literal_column("1").label("kind"), P.id.label("id"), P.month.label("month"))
            .select_from(PaperDispatch.__table__)
            .where(*_paper_where(date_from, date_to, **filters))
        )
    return union_all(*parts).subquery("page") if len(parts) > 1 else parts[0].subquery("page")


async def exchanges_count(
    db: Database,
    *,
    date_from: dt.date,
    date_to: dt.date,
    bucket: Bucket | str | None = None,
    sender: str | None = None,
    recipient: str | None = None,
    level_pair: str | None = None,
    month: str | int | None = None,
) -> int:
    """How many rows :func:`exchanges_report` would list without ``limit``/``offset`` (for paging)."""
    _check_range(date_from, date_to)
    filters = {"sender": sender, "recipient": recipient, "level_pair": level_pair, "month": month}
    page = _page_query(date_from, date_to, bucket, filters)
    async with db.read() as session:
        return int((await session.execute(select(func.count()).select_from(page))).scalar_one())


async def exchanges_report(
    db: Database,
    *,
    date_from: dt.date,
    date_to: dt.date,
    bucket: Bucket | str | None = None,
    sender: str | None = None,
    recipient: str | None = None,
    level_pair: str | None = None,
    month: str | int | None = None,
    limit: int | None = 100,
    offset: int = 0,
) -> list[ExchangeReason]:
    """The exchanges (and paper-only dispatches) behind a figure, each with its bucket and reason.

    Same range and filters as :func:`rate_report` (a row's :meth:`~gateway.rate.RateRow.filters` can be
    passed as they are), plus ``bucket``. Newest month first, then exchanges before paper-only rows,
    newest id first. ``limit=None`` lists everything.
    """
    _check_range(date_from, date_to)
    if offset < 0 or (limit is not None and limit < 0):
        raise RequestError("request.bad", "limit and offset must not be negative")
    filters = {"sender": sender, "recipient": recipient, "level_pair": level_pair, "month": month}
    page = _page_query(date_from, date_to, bucket, filters)
    stmt = select(page.c.kind, page.c.id).order_by(page.c.month.desc(), page.c.kind, page.c.id.desc())
    if limit is not None:
        stmt = stmt.limit(limit)
    if offset:
        stmt = stmt.offset(offset)
    async with db.read() as session:
        order = [(int(k), int(i)) for k, i in (await session.execute(stmt)).all()]
        ex_ids = [i for k, i in order if k == 0]
        pa_ids = [i for k, i in order if k == 1]
        found: dict[tuple[int, int], ExchangeReason] = {}
        for chunk in _chunks(ex_ids):
            rows = await session.execute(
                select(
                    E.id,
                    E.package_id,
                    E.sender_organ_id,
                    E.recipient_organ_id,
                    E.sender_level,
                    E.recipient_level,
                    E.month,
                    E.paper,
                    E.signature_ok,
                    E.state,
                    E.previous_state,
                    E.created_at,
                    PK.document_id,
                    PK.code_number,
                    PK.code_notation,
                    PK.subject,
                    PK.promulgation_date,
                    PK.signature_verdict,
                    bucket_case().label("bucket"),
                )
                .select_from(Exchange.__table__.join(Package.__table__, PK.id == E.package_id))
                .where(E.id.in_(chunk))
            )
            for r in rows.mappings():
                facts = {
                    "signature_ok": bool(r["signature_ok"]),
                    "paper": bool(r["paper"]),
                    "state": r["state"],
                    "previous_state": r["previous_state"],
                }
                verdict = r["signature_verdict"]
                verdict_note = f" [{verdict}]" if not facts["signature_ok"] and verdict != "valid" else ""
                found[(0, r["id"])] = ExchangeReason(
                    exchange_id=r["id"],
                    package_id=r["package_id"],
                    document_id=r["document_id"],
                    number=r["code_number"],
                    notation=r["code_notation"],
                    sender=r["sender_organ_id"],
                    recipient=r["recipient_organ_id"],
                    sender_level=r["sender_level"],
                    recipient_level=r["recipient_level"],
                    level_pair=level_pair_key(r["sender_level"], r["recipient_level"]),
                    month=month_key(r["month"]),
                    received_at=r["created_at"],
                    document_date=r["promulgation_date"],
                    bucket=Bucket(r["bucket"]),
                    reason=explain(**facts, lang="en") + verdict_note,
                    reason_vi=explain(**facts, lang="vi") + verdict_note,
                    subject=r["subject"],
                    verdict=r["signature_verdict"],
                    **facts,
                )
        for chunk in _chunks(pa_ids):
            rows = await session.execute(select(PaperDispatch.__table__).where(P.id.in_(chunk)))
            for r in rows.mappings():
                found[(1, r["id"])] = ExchangeReason(
                    exchange_id=None,
                    paper_dispatch_id=r["id"],
                    package_id=None,
                    document_id=None,
                    number=r["code_number"],
                    notation=r["code_notation"],
                    sender=r["sender_organ_id"],
                    recipient=r["recipient_organ_id"],
                    sender_level=r["sender_level"],
                    recipient_level=r["recipient_level"],
                    level_pair=level_pair_key(r["sender_level"], r["recipient_level"]),
                    month=month_key(r["month"]),
                    received_at=None,
                    document_date=r["document_date"],
                    bucket=Bucket.PAPER_ONLY,
                    reason=Bucket.PAPER_ONLY.reason("en"),
                    reason_vi=Bucket.PAPER_ONLY.reason("vi"),
                    state=None,
                    previous_state=None,
                    paper=True,
                    signature_ok=None,
                    subject=r["subject"],
                    source=r["source"],
                )
    return [found[k] for k in order if k in found]


def _chunks(ids: list[int], size: int = 500) -> list[list[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]
