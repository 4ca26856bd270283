"""A generated dataset for the rate tests, with known buckets, and an oracle written apart from gateway.rate.

:func:`generate` picks each exchange's bucket **first** and then makes up facts (signature, paper, state,
previous state) that must land in it, with the irrelevant facts random; so the bucket counts are known by
construction. :func:`oracle_bucket` recomputes a bucket from the facts alone with its own table (it never
calls :func:`gateway.rate.classify`), and :func:`oracle_rows` recomputes every figure in plain Python.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pytest
from sqlalchemy import insert

from gateway.store.db import Database
from gateway.store.models import Agency, Exchange, Package
from gateway.store.paper import PaperRecord, add_paper_dispatches

VN = dt.timezone(dt.timedelta(hours=7))
T_NOW = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
MONTHS = (202607, 202608, 202609, 202610, 202611, 202612)
MAIN = ("queued", "arrived", "accepted", "assigned", "in_progress", "done")
CONFIRMED_MAIN = MAIN[1:]
ALL_STATES = (*MAIN, "refused", "recall_requested", "recalled", "recall_refused")
BUCKET_NAMES = (
    "fully_electronic",
    "paper_copy",
    "invalid_signature",
    "refused",
    "unconfirmed",
    "paper_only",
    "recalled",
)

# (organ id, level in the directory or None = not in the directory)
AGENCIES: tuple[tuple[str, str | None], ...] = (
    ("000.00.00.G01", "central"),
    ("000.00.00.G02", "central"),
    ("000.00.00.H53", "province"),
    ("000.00.01.H53", "department"),
    ("000.00.02.H53", "department"),
    ("000.00.03.H53", "department"),
    ("000.00.21.H53", "district"),
    ("000.00.22.H53", "district"),
    ("000.01.21.H53", "commune"),
    ("000.02.21.H53", "commune"),
    ("000.01.22.H53", "commune"),
    ("000.00.00.H54", None),  # another province's agency, unknown to this hub's directory
)
LEVEL_OF = dict(AGENCIES)


@dataclass(frozen=True, slots=True)
class Ex:
    """One generated exchange: its facts, where it must land, and its id once stored."""

    id: int
    package_id: int
    sender: str
    recipient: str
    received_at: dt.datetime
    signature_ok: bool
    paper: bool
    state: str
    previous_state: str | None
    target: str

    @property
    def sender_level(self) -> str | None:
        return LEVEL_OF[self.sender]

    @property
    def recipient_level(self) -> str | None:
        return LEVEL_OF[self.recipient]

    @property
    def vn_day(self) -> dt.date:
        return self.received_at.astimezone(VN).date()

    @property
    def month(self) -> int:
        d = self.vn_day
        return d.year * 100 + d.month


@dataclass(frozen=True, slots=True)
class Paper:
    sender: str
    recipient: str
    number: str
    day: dt.date

    @property
    def month(self) -> int:
        return self.day.year * 100 + self.day.month


@dataclass(frozen=True, slots=True)
class Dataset:
    exchanges: list[Ex]
    papers: list[Paper]

    def known_counts(self) -> Counter[str]:
        counts = Counter(e.target for e in self.exchanges)
        counts["paper_only"] += len(self.papers)
        return counts


def _facts_for(target: str, rng: random.Random) -> tuple[bool, bool, str, str | None]:
    """(signature_ok, paper, state, previous_state) that land in ``target`` (irrelevant facts random)."""
    coin = rng.random() < 0.5
    if target == "recalled":
        return rng.random() < 0.8, coin, "recalled", rng.choice(MAIN)
    if target in ("invalid_signature", "paper_copy"):
        state = rng.choice([s for s in ALL_STATES if s != "recalled"])
        prev = None
        if state in ("recall_requested", "recall_refused"):
            prev = rng.choice(MAIN)
        elif state == "refused":
            prev = rng.choice(MAIN[:2])
        if target == "invalid_signature":
            return False, coin, state, prev
        return True, True, state, prev
    if target == "refused":
        return True, False, "refused", rng.choice(MAIN[:2])
    if target == "unconfirmed":
        state = rng.choice(["queued", "queued", "recall_requested", "recall_refused"])
        return True, False, state, (None if state == "queued" else "queued")
    assert target == "fully_electronic"
    state = rng.choice([*CONFIRMED_MAIN, "recall_requested", "recall_refused"])
    prev = rng.choice(CONFIRMED_MAIN) if state.startswith("recall_") else None
    return True, False, state, prev


def generate(seed: int = 20270101, n: int = 4000, n_paper: int = 300) -> Dataset:
    rng = random.Random(seed)
    targets = ["fully_electronic"] * 8 + [
        "paper_copy",
        "invalid_signature",
        "refused",
        "unconfirmed",
        "recalled",
    ]
    organs = [a for a, _ in AGENCIES]
    exchanges: list[Ex] = []
    package_id = 0
    while len(exchanges) < n:
        package_id += 1
        sender = rng.choice(organs)
        month = rng.choice(MONTHS)
        year, mon = divmod(month, 100)
        day = rng.randint(1, 28)
        # Times near midnight Vietnam time test the date rule: 23:59 on the last day of a month is that
        # month, 00:00 the next.
        if rng.random() < 0.1:
            vn = dt.datetime(year, mon, 1, 0, 0, rng.randint(0, 59), tzinfo=VN)
        elif rng.random() < 0.1:
            last = (dt.date(year + mon // 12, mon % 12 + 1, 1) - dt.timedelta(days=1)).day
            vn = dt.datetime(year, mon, last, 23, 59, rng.randint(0, 59), tzinfo=VN)
        else:
            vn = dt.datetime(year, mon, day, rng.randint(0, 23), rng.randint(0, 59), tzinfo=VN)
        received = vn.astimezone(dt.UTC)
        sig_ok_package = rng.random() < 0.85
        paper_package = rng.random() < 0.15
        recipients = rng.sample([o for o in organs if o != sender], k=rng.randint(1, 4))
        for recipient in recipients:
            target = rng.choice(targets)
            sig, paper, state, prev = _facts_for(target, rng)
            # Keep a package's own facts where the target allows it (most packages are coherent).
            if target == "recalled":
                sig, paper = sig_ok_package, paper_package
            exchanges.append(
                Ex(
                    id=len(exchanges) + 1,
                    package_id=package_id,
                    sender=sender,
                    recipient=recipient,
                    received_at=received,
                    signature_ok=sig,
                    paper=paper,
                    state=state,
                    previous_state=prev,
                    target=target,
                )
            )
    papers: list[Paper] = []
    for i in range(n_paper):
        sender, recipient = rng.sample(organs, k=2)
        year, mon = divmod(rng.choice(MONTHS), 100)
        papers.append(Paper(sender, recipient, str(i + 1), dt.date(year, mon, rng.randint(1, 28))))
    return Dataset(exchanges, papers)


async def load(db: Database, data: Dataset) -> None:
    """Write the directory, packages and exchanges straight into the tables; paper rows via the store."""
    async with db.write() as session:
        await session.execute(
            insert(Agency),
            [
                {"organ_id": o, "name": f"Cơ quan {o}", "level": lv, "created_at": T_NOW, "updated_at": T_NOW}
                for o, lv in AGENCIES
                if lv is not None
            ],
        )
        packages = {e.package_id: e for e in data.exchanges}
        await session.execute(
            insert(Package),
            [
                {
                    "id": pid,
                    "sha256": f"{pid:064x}",
                    "size": 1,
                    "form": "single",
                    "blob_sha256": f"{pid:064x}",
                    "sender_organ_id": e.sender,
                    "document_id": f"{e.sender},{e.vn_day:%Y/%m/%d},{pid}/VP",
                    "paper": e.paper,
                    "signature_verdict": "valid" if e.signature_ok else "signature.invalid",
                    "received_at": e.received_at,
                    "receipt": b"",
                    "code_number": str(pid),
                    "code_notation": "VP",
                    "subject": f"Văn bản {pid}",
                }
                for pid, e in packages.items()
            ],
        )
        await session.execute(
            insert(Exchange),
            [
                {
                    "id": e.id,
                    "package_id": e.package_id,
                    "sender_organ_id": e.sender,
                    "recipient_organ_id": e.recipient,
                    "sender_level": e.sender_level,
                    "recipient_level": e.recipient_level,
                    "month": e.month,
                    "paper": e.paper,
                    "signature_ok": e.signature_ok,
                    "state": e.state,
                    "previous_state": e.previous_state,
                    "created_at": e.received_at,
                    "deadline": e.received_at + dt.timedelta(days=2),
                    "updated_at": e.received_at,
                }
                for e in data.exchanges
            ],
        )
    if db.dialect == "postgresql":  # ids were given explicitly: move the sequences past them
        async with db.write() as session:
            from sqlalchemy import text

            for table in ("package", "exchange"):
                seq = f"pg_get_serial_sequence('{table}', 'id')"
                await session.execute(text(f"SELECT setval({seq}, (SELECT max(id) FROM {table}))"))
    await add_paper_dispatches(
        db,
        [
            PaperRecord(
                sender=p.sender,
                recipient=p.recipient,
                code_number=p.number,
                code_notation="GIAY",
                document_date=p.day,
                subject="Bản giấy",
                source="test",
            )
            for p in data.papers
        ],
        now=T_NOW,
    )


# --------------------------------------------------------------------------------------------------
# The oracle (independent of gateway/rate.py)
# --------------------------------------------------------------------------------------------------

_ORACLE_CONFIRMED = {"arrived", "accepted", "assigned", "in_progress", "done"}


def oracle_bucket(e: Ex) -> str:
    """DESIGN §5 read directly: recall leaves the denominator; else the first failing condition."""
    main = e.previous_state if e.state in ("recall_requested", "recall_refused") else e.state
    failures = [
        ("recalled", e.state == "recalled"),
        ("invalid_signature", not e.signature_ok),
        ("paper_copy", e.paper),
        ("refused", e.state == "refused"),
        ("unconfirmed", main not in _ORACLE_CONFIRMED),
    ]
    return next((name for name, failed in failures if failed), "fully_electronic")


def _pair(s: str | None, r: str | None) -> str:
    return f"{s or 'unknown'}→{r or 'unknown'}"


def _month_text(m: int) -> str:
    return f"{m // 100}-{m % 100:02d}"


def oracle_rows(
    data: Dataset,
    by: Sequence[str],
    date_from: dt.date,
    date_to: dt.date,
    *,
    sender: str | None = None,
    recipient: str | None = None,
    level_pair: str | None = None,
    month: str | None = None,
) -> dict[tuple[str, ...], dict[str, int]]:
    """key → {bucket: count} (only non-zero buckets), over exchanges and paper-only dispatches."""
    out: dict[tuple[str, ...], dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def key_of(s: str, r: str, m: int) -> tuple[str, ...]:
        parts = {
            "level_pair": _pair(LEVEL_OF[s], LEVEL_OF[r]),
            "sender": s,
            "recipient": r,
            "month": _month_text(m),
        }
        return tuple(parts[g] for g in by)

    def keep(s: str, r: str, m: int) -> bool:
        return (
            (sender is None or s == sender)
            and (recipient is None or r == recipient)
            and (level_pair is None or _pair(LEVEL_OF[s], LEVEL_OF[r]) == level_pair)
            and (month is None or _month_text(m) == month)
        )

    for e in data.exchanges:
        if date_from <= e.vn_day <= date_to and keep(e.sender, e.recipient, e.month):
            out[key_of(e.sender, e.recipient, e.month)][oracle_bucket(e)] += 1
    for p in data.papers:
        if date_from <= p.day <= date_to and keep(p.sender, p.recipient, p.month):
            out[key_of(p.sender, p.recipient, p.month)]["paper_only"] += 1
    return {k: dict(v) for k, v in out.items()}


def oracle_rate(counts: dict[str, int]) -> float | None:
    denominator = sum(counts.values()) - counts.get("recalled", 0)
    return counts.get("fully_electronic", 0) / denominator if denominator else None


def oracle_ids(
    data: Dataset, date_from: dt.date, date_to: dt.date, *, bucket: str | None = None, **filters: str | None
) -> tuple[set[int], int]:
    """Exchange ids and the number of paper-only rows the drill-down should list."""
    rows = oracle_rows(data, (), date_from, date_to, **filters)  # validates the filter names
    del rows
    ids = set()
    for e in data.exchanges:
        if not date_from <= e.vn_day <= date_to or (bucket and oracle_bucket(e) != bucket):
            continue
        if _matches(e.sender, e.recipient, e.month, filters):
            ids.add(e.id)
    papers = 0
    if bucket in (None, "paper_only"):
        papers = sum(
            1
            for p in data.papers
            if date_from <= p.day <= date_to and _matches(p.sender, p.recipient, p.month, filters)
        )
    return ids, papers


def _matches(s: str, r: str, m: int, filters: dict[str, str | None]) -> bool:
    checks = {
        "sender": s,
        "recipient": r,
        "level_pair": _pair(LEVEL_OF[s], LEVEL_OF[r]),
        "month": _month_text(m),
    }
    return all(v is None or checks[k] == v for k, v in filters.items())


def nonzero(counts: Iterable[tuple[str, int]]) -> dict[str, int]:
    return {k: v for k, v in counts if v}


# --------------------------------------------------------------------------------------------------
# One loaded database per backend and module (the reports only read it)
# --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def loaded_database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, data: Dataset):
    """A migrated database of ``request.param`` (sqlite / postgresql) holding ``data``; dropped afterwards."""
    from db_fixtures import _pg_admin

    from gateway.store.db import open_database
    from gateway.store.migrate import upgrade

    async def fill(url: str) -> None:
        db = open_database(url, pool_size=2)
        try:
            await load(db, data)
        finally:
            await db.close()

    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('rate') / 'gateway.db'}"
        upgrade(url)
        asyncio.run(fill(url))
        yield url
        return
    admin = request.getfixturevalue("pg_admin_url")
    template = request.getfixturevalue("pg_template")
    name = f"gw_rate_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(admin, f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    try:
        url = admin.set(database=name).render_as_string(hide_password=False)
        asyncio.run(fill(url))
        yield url
    finally:
        asyncio.run(_pg_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
