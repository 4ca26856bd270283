"""The electronic-exchange rate (DESIGN §5) as pure data: buckets, the classification rule, result rows.

An *exchange* is one new document to one recipient. Each one falls in **exactly one** :class:`Bucket`,
decided by :func:`classify`. The rule is the first condition of DESIGN §5 that fails, in the order §5
lists them, except that *recalled* is decided first because a recalled exchange leaves the denominator
altogether (rate = fully electronic ÷ (all − recalled)):

1. ``recalled`` — the sender recalled it and the recipient agreed (state ``recalled``);
2. ``invalid_signature`` — unsigned or the signature did not verify (only reachable in lenient mode:
   strict hubs reject such packages at the door);
3. ``paper_copy`` — the package said ``Paper = 1`` (a paper copy was sent as well);
4. ``refused`` — the recipient refused it (status 02);
5. ``unconfirmed`` — no 01 (or later) yet: the main-chain state behind any overlay is ``queued``;
6. ``fully_electronic`` — none of the above.

``paper_only`` is never the result of :func:`classify`: it is the bucket of the paper-only register
(dispatches that never passed through the hub), which counts in the denominator only.

So a refused exchange that carried a paper copy is ``paper_copy`` (the sender-side facts come first, as
they do in §5), and a recalled exchange is ``recalled`` whatever else is true of it. Every bucket's
explanation (:func:`explain`) also names the other conditions that failed, so nothing is hidden.

The SQL in :mod:`gateway.store.rate` mirrors :func:`classify` expression for expression; a test checks
them row by row. This module imports neither the database nor aiohttp (docs/CONVENTIONS.md).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal, get_args

from gateway.edxml.codes import Level
from gateway.lifecycle import State

Lang = Literal["vi", "en"]
Grouping = Literal["level_pair", "sender", "recipient", "month"]
GROUPINGS: Final[tuple[Grouping, ...]] = get_args(Grouping)

UNKNOWN_LEVEL: Final = "unknown"
"""The level of an agency the directory did not know (or had no level for) when the row was written."""

LEVEL_PAIR_ARROW: Final = "→"


class Bucket(StrEnum):
    """Where an exchange (or a paper-only dispatch) counts. Values are API and CSV vocabulary: keep them."""

    FULLY_ELECTRONIC = "fully_electronic"
    PAPER_COPY = "paper_copy"
    INVALID_SIGNATURE = "invalid_signature"
    REFUSED = "refused"
    UNCONFIRMED = "unconfirmed"
    RECALLED = "recalled"
    PAPER_ONLY = "paper_only"

    @property
    def vi(self) -> str:
        return _LABELS[self][0]

    @property
    def en(self) -> str:
        return _LABELS[self][1]

    def label(self, lang: Lang = "vi") -> str:
        """Short label (column header, legend)."""
        return self.vi if lang == "vi" else self.en

    def reason(self, lang: Lang = "vi") -> str:
        """One line saying why an exchange in this bucket did or did not count."""
        return _REASONS[self][0 if lang == "vi" else 1]

    @property
    def in_denominator(self) -> bool:
        """Whether the bucket counts in the rate's denominator (all but ``recalled``)."""
        return self is not Bucket.RECALLED


BUCKETS: Final[tuple[Bucket, ...]] = (
    Bucket.FULLY_ELECTRONIC,
    Bucket.PAPER_COPY,
    Bucket.INVALID_SIGNATURE,
    Bucket.REFUSED,
    Bucket.UNCONFIRMED,
    Bucket.PAPER_ONLY,
    Bucket.RECALLED,
)
"""Display order (tables, CSV columns, stacked charts): the rate's numerator first, recalled last."""

PRECEDENCE: Final[tuple[Bucket, ...]] = (
    Bucket.RECALLED,
    Bucket.INVALID_SIGNATURE,
    Bucket.PAPER_COPY,
    Bucket.REFUSED,
    Bucket.UNCONFIRMED,
    Bucket.FULLY_ELECTRONIC,
)
"""The order in which :func:`classify` tests the buckets (the first that applies wins)."""

_LABELS: Final[dict[Bucket, tuple[str, str]]] = {
    Bucket.FULLY_ELECTRONIC: ("Hoàn toàn điện tử", "Fully electronic"),
    Bucket.PAPER_COPY: ("Kèm bản giấy", "With paper copy"),
    Bucket.INVALID_SIGNATURE: ("Không ký số / chữ ký không hợp lệ", "Unsigned or invalid signature"),
    Bucket.REFUSED: ("Bị từ chối", "Refused"),
    Bucket.UNCONFIRMED: ("Chưa xác nhận", "Unconfirmed"),
    Bucket.RECALLED: ("Đã thu hồi", "Recalled"),
    Bucket.PAPER_ONLY: ("Chỉ gửi bản giấy", "Paper only"),
}

_REASONS: Final[dict[Bucket, tuple[str, str]]] = {
    Bucket.FULLY_ELECTRONIC: (
        "Ký số hợp lệ, không gửi kèm bản giấy, bên nhận đã xác nhận điện tử, không bị thu hồi.",
        "Validly signed, no paper copy, confirmed electronically by the recipient, not recalled.",
    ),
    Bucket.PAPER_COPY: (
        "Văn bản có gửi kèm bản giấy (Paper = 1) nên không tính là hoàn toàn điện tử.",
        "The package declared a paper copy (Paper = 1), so it is not fully electronic.",
    ),
    Bucket.INVALID_SIGNATURE: (
        "Gói tin không có chữ ký số hợp lệ của cơ quan gửi (chỉ nhận ở chế độ nới lỏng).",
        "The package had no valid signature of the sending agency (accepted in lenient mode only).",
    ),
    Bucket.REFUSED: (
        "Bên nhận đã từ chối văn bản (trạng thái 02).",
        "The recipient refused the document (status 02).",
    ),
    Bucket.UNCONFIRMED: (
        "Bên nhận chưa xác nhận đã nhận văn bản (chưa có trạng thái 01).",
        "The recipient has not confirmed receipt yet (no status 01).",
    ),
    Bucket.RECALLED: (
        "Văn bản đã được thu hồi (trạng thái 15): không tính vào mẫu số.",
        "The document was recalled (status 15): it leaves the denominator.",
    ),
    Bucket.PAPER_ONLY: (
        "Văn bản chỉ gửi bằng giấy, ghi trong sổ văn bản giấy: tính vào mẫu số.",
        "Sent on paper only (paper-only register): counts in the denominator.",
    ),
}

_CONFIRMED_STATES: Final[frozenset[str]] = frozenset(
    s.value for s in (State.ARRIVED, State.ACCEPTED, State.ASSIGNED, State.IN_PROGRESS, State.DONE)
)
"""Main-chain states at or after 01: the recipient confirmed arrival electronically (§5 rule 3)."""

_OVERLAYS: Final[frozenset[str]] = frozenset({State.RECALL_REQUESTED.value, State.RECALL_REFUSED.value})

CONFIRMED_STATES: Final[tuple[str, ...]] = tuple(sorted(_CONFIRMED_STATES))
OVERLAY_STATES: Final[tuple[str, ...]] = tuple(sorted(_OVERLAYS))


def is_confirmed(state: str, previous_state: str | None) -> bool:
    """Whether the main-chain state behind ``state`` is 01 or later (an overlay keeps it in ``previous``).

    Total over every value the database allows: an overlay without a previous state (not produced by
    :mod:`gateway.lifecycle`) counts as unconfirmed, since nothing shows that the recipient confirmed.
    """
    if state in _CONFIRMED_STATES:
        return True
    return state in _OVERLAYS and previous_state in _CONFIRMED_STATES


def classify(*, signature_ok: bool, paper: bool, state: str, previous_state: str | None) -> Bucket:
    """The one bucket of an exchange (DESIGN §5; the precedence is :data:`PRECEDENCE`).

    ``state``/``previous_state`` are the stored lifecycle columns; an unknown state raises ``ValueError``.
    """
    State(state)  # validates
    if state == State.RECALLED:
        return Bucket.RECALLED
    if not signature_ok:
        return Bucket.INVALID_SIGNATURE
    if paper:
        return Bucket.PAPER_COPY
    if state == State.REFUSED:
        return Bucket.REFUSED
    if not is_confirmed(state, previous_state):
        return Bucket.UNCONFIRMED
    return Bucket.FULLY_ELECTRONIC


def failed_conditions(
    *, signature_ok: bool, paper: bool, state: str, previous_state: str | None
) -> list[Bucket]:
    """Every bucket whose condition holds, in :data:`PRECEDENCE` order (the first is :func:`classify`)."""
    found: list[Bucket] = []
    if state == State.RECALLED:
        found.append(Bucket.RECALLED)
    if not signature_ok:
        found.append(Bucket.INVALID_SIGNATURE)
    if paper:
        found.append(Bucket.PAPER_COPY)
    if state == State.REFUSED:
        found.append(Bucket.REFUSED)
    elif state != State.RECALLED and not is_confirmed(state, previous_state):
        found.append(Bucket.UNCONFIRMED)
    return found or [Bucket.FULLY_ELECTRONIC]


def explain(
    *, signature_ok: bool, paper: bool, state: str, previous_state: str | None, lang: Lang = "vi"
) -> str:
    """The reason line of an exchange: its bucket's reason, plus the other conditions that also failed."""
    found = failed_conditions(
        signature_ok=signature_ok, paper=paper, state=state, previous_state=previous_state
    )
    text = found[0].reason(lang)
    if len(found) > 1:
        also = ", ".join(b.label(lang).lower() for b in found[1:])
        text += f" ({'đồng thời' if lang == 'vi' else 'also'}: {also})"
    return text


# --------------------------------------------------------------------------------------------------
# Keys and labels
# --------------------------------------------------------------------------------------------------


def level_pair_key(sender_level: str | None, recipient_level: str | None) -> str:
    """``"province→district"``; a missing level is ``unknown``."""
    return f"{sender_level or UNKNOWN_LEVEL}{LEVEL_PAIR_ARROW}{recipient_level or UNKNOWN_LEVEL}"


def parse_level_pair(text: str) -> tuple[str | None, str | None]:
    """``"province→district"`` (or ``->``, ``>``, ``/``) → ``("province", "district")``; ``unknown`` → None.

    Raises ``ValueError`` for anything else.
    """
    for sep in (LEVEL_PAIR_ARROW, "->", ">", "/"):
        if sep in text:
            left, _, right = text.partition(sep)
            break
    else:
        raise ValueError(f"not a level pair: {text!r} (expected e.g. province{LEVEL_PAIR_ARROW}district)")
    levels = {lv.value for lv in Level} | {UNKNOWN_LEVEL}
    out: list[str | None] = []
    for part in (left.strip().lower(), right.strip().lower()):
        if part not in levels:
            raise ValueError(f"unknown level {part!r} in {text!r}; levels: {', '.join(sorted(levels))}")
        out.append(None if part == UNKNOWN_LEVEL else part)
    return out[0], out[1]


def level_label(level: str | None, lang: Lang = "vi") -> str:
    if not level or level == UNKNOWN_LEVEL:
        return "Không rõ" if lang == "vi" else "Unknown"
    lv = Level(level)
    return lv.vi if lang == "vi" else lv.en


def month_key(month: int) -> str:
    """``202703`` → ``"2027-03"`` (the stored ``yyyymm`` column → the key used in rows and filters)."""
    return f"{month // 100:04d}-{month % 100:02d}"


def parse_month(text: str | int) -> int:
    """``"2027-03"``, ``"202703"`` or ``202703`` → ``202703``; raises ``ValueError`` otherwise."""
    raw = str(text).strip()
    digits = raw.replace("-", "")
    if not digits.isdigit() or len(digits) != 6:
        raise ValueError(f"not a month: {text!r} (expected YYYY-MM)")
    value = int(digits)
    if not 1 <= value % 100 <= 12:
        raise ValueError(f"not a month: {text!r} (expected YYYY-MM)")
    return value


def months_between(date_from: dt.date, date_to: dt.date) -> list[int]:
    """Every ``yyyymm`` from the month of ``date_from`` to that of ``date_to`` inclusive."""
    out, y, m = [], date_from.year, date_from.month
    while (y, m) <= (date_to.year, date_to.month):
        out.append(y * 100 + m)
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def key_labels(
    by: Sequence[Grouping], key: Sequence[str], names: Mapping[str, str], lang: Lang
) -> tuple[str, ...]:
    """Human labels for a row key: level names, agency names from ``names`` (else the code), months."""
    out: list[str] = []
    for grouping, part in zip(by, key, strict=True):
        if grouping == "level_pair":
            s, r = parse_level_pair(part)
            out.append(f"{level_label(s, lang)} → {level_label(r, lang)}")
        elif grouping == "month":
            year, month = part.split("-")
            out.append(f"{month}/{year}" if lang == "vi" else part)
        else:
            out.append(names.get(part) or part)
    return tuple(out)


# --------------------------------------------------------------------------------------------------
# Result rows
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RateRow:
    """One figure of the report: the buckets of one group (``key`` follows ``by``).

    ``key`` parts are ``"province→district"`` for a level pair, the OrganId for sender/recipient and
    ``"YYYY-MM"`` for a month; with ``by=()`` there is one row, the total, with ``key=()``.
    ``rate`` is ``fully_electronic / denominator`` (``None`` when the denominator is 0).
    """

    by: tuple[Grouping, ...]
    key: tuple[str, ...]
    labels: Mapping[Lang, tuple[str, ...]]
    counts: Mapping[Bucket, int]
    total: int
    denominator: int
    fully_electronic: int
    rate: float | None

    def label(self, lang: Lang = "vi", sep: str = " · ") -> str:
        parts = self.labels.get(lang) or self.key
        return sep.join(parts) if parts else ("Tổng cộng" if lang == "vi" else "Total")

    def filters(self) -> dict[str, str]:
        """This row's key as keyword filters for ``exchanges_report`` (the drill-down of the figure)."""
        return dict(zip(self.by, self.key, strict=True))

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: grouping keys by name, every bucket count, totals and the rate."""
        return {
            **self.filters(),
            **{b.value: self.counts.get(b, 0) for b in BUCKETS},
            "total": self.total,
            "denominator": self.denominator,
            "rate": self.rate,
        }


def make_row(
    by: Sequence[Grouping],
    key: Sequence[str],
    counts: Mapping[Bucket, int],
    names: Mapping[str, str] | None = None,
) -> RateRow:
    """A :class:`RateRow` from bucket counts (missing buckets are 0)."""
    full = {b: int(counts.get(b, 0)) for b in BUCKETS}
    total = sum(full.values())
    denominator = total - full[Bucket.RECALLED]
    fe = full[Bucket.FULLY_ELECTRONIC]
    names = names or {}
    return RateRow(
        by=tuple(by),
        key=tuple(key),
        labels={lang: key_labels(by, key, names, lang) for lang in ("vi", "en")},
        counts=full,
        total=total,
        denominator=denominator,
        fully_electronic=fe,
        rate=fe / denominator if denominator else None,
    )


def aggregate(
    by: Sequence[Grouping],
    counted: Iterable[tuple[Sequence[str], Bucket | str, int]],
    names: Mapping[str, str] | None = None,
) -> list[RateRow]:
    """Fold ``(key, bucket, count)`` triples into rows, one per key, sorted by key."""
    acc: dict[tuple[str, ...], dict[Bucket, int]] = {}
    for key, bucket, count in counted:
        per = acc.setdefault(tuple(key), {})
        b = Bucket(bucket)
        per[b] = per.get(b, 0) + count
    return [make_row(by, key, acc[key], names) for key in sorted(acc)]


def total_row(rows: Iterable[RateRow]) -> RateRow:
    """The sum of ``rows`` as one row with ``key=()`` (the "total" line of a table)."""
    summed: dict[Bucket, int] = {}
    for row in rows:
        for b, n in row.counts.items():
            summed[b] = summed.get(b, 0) + n
    return make_row((), (), summed)


@dataclass(frozen=True, slots=True, kw_only=True)
class Series:
    """One line of a monthly chart: a group's rows for every month of the range, in order.

    ``points[i]`` is the row of ``months[i]`` (``"YYYY-MM"``); a month without anything has ``total == 0``
    and ``rate is None`` (a gap in the line, not a zero).
    """

    by: Grouping
    key: str
    labels: Mapping[Lang, str]
    months: tuple[str, ...]
    points: tuple[RateRow, ...]


def build_series(by: Grouping, rows: Iterable[RateRow], months: Sequence[int]) -> list[Series]:
    """Series per ``by`` group from rows grouped by ``(by, "month")``, zero-filled over ``months``."""
    month_keys = tuple(month_key(m) for m in months)
    per: dict[str, dict[str, RateRow]] = {}
    for row in rows:
        if row.by != (by, "month"):
            raise ValueError(f"rows must be grouped by ({by!r}, 'month'), not {row.by!r}")
        per.setdefault(row.key[0], {})[row.key[1]] = row
    out = []
    for group in sorted(per):
        found = per[group]
        first = next(iter(found.values()))
        points = tuple(
            found.get(m) or make_row((by, "month"), (group, m), {}, {group: first.labels["en"][0]})
            for m in month_keys
        )
        out.append(
            Series(
                by=by,
                key=group,
                labels={"vi": first.labels["vi"][0], "en": first.labels["en"][0]},
                months=month_keys,
                points=points,
            )
        )
    return out


# --------------------------------------------------------------------------------------------------
# The drill-down
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangeReason:
    """One exchange (or paper-only dispatch) behind a figure, with why it did or did not count.

    For an exchange, ``exchange_id``/``package_id``/``document_id``/``received_at``/``state`` are set; for
    a paper-only dispatch, ``paper_dispatch_id``/``document_date``/``source`` are, ``bucket`` is
    ``paper_only`` and ``signature_ok``/``state`` are ``None``. ``month`` is ``"YYYY-MM"``.
    """

    exchange_id: int | None
    paper_dispatch_id: int | None = None
    package_id: int | None
    document_id: str | None
    number: str | None
    notation: str | None
    sender: str
    recipient: str
    sender_level: str | None
    recipient_level: str | None
    level_pair: str
    month: str
    received_at: dt.datetime | None
    document_date: dt.date | None
    bucket: Bucket
    reason: str
    """English reason line (:func:`explain`); ``reason_vi`` is the Vietnamese one."""
    reason_vi: str
    state: str | None
    previous_state: str | None
    paper: bool
    signature_ok: bool | None
    subject: str | None
    source: str | None = None
    verdict: str | None = None
    """The package's signature verdict (``valid`` or the error code, e.g. ``certificate.revoked``)."""

    def reason_in(self, lang: Lang = "vi") -> str:
        return self.reason_vi if lang == "vi" else self.reason

    def as_dict(self) -> dict[str, object]:
        """JSON/CSV-ready (dates as ISO strings)."""
        return {
            "kind": "paper_only" if self.exchange_id is None else "exchange",
            "exchange_id": self.exchange_id,
            "paper_dispatch_id": self.paper_dispatch_id,
            "package_id": self.package_id,
            "document_id": self.document_id,
            "number": self.number,
            "notation": self.notation,
            "sender": self.sender,
            "recipient": self.recipient,
            "level_pair": self.level_pair,
            "month": self.month,
            "received_at": self.received_at.isoformat() if self.received_at else None,
            "document_date": self.document_date.isoformat() if self.document_date else None,
            "bucket": self.bucket.value,
            "state": self.state,
            "previous_state": self.previous_state,
            "paper": self.paper,
            "signature_ok": self.signature_ok,
            "subject": self.subject,
            "source": self.source,
            "verdict": self.verdict,
            "reason": self.reason,
            "reason_vi": self.reason_vi,
        }
