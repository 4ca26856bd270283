"""The electronic-exchange rate over 1,000,000 exchanges, beside a bare ``SELECT count(*)`` (issue 5).

A seeded generator makes ``n`` exchanges (default 1,000,000; ``--quick`` 100,000) from ~10 recipients per
package across ~140 agencies of the five levels, 24 months, every lifecycle state, paper and signature
flags, plus 1 % paper-only dispatches. They are bulk-loaded into a freshly migrated database — COPY
(asyncpg ``copy_records_to_table``) on PostgreSQL, ``executemany`` on SQLite — then the table is
analysed (and vacuumed on PostgreSQL, as autovacuum would have done on a live hub).

Timed, best of ``--repeat`` after one warm-up, in the same run on the same table:

* ``count``: ``SELECT count(*) FROM exchange`` (the floor: one scan, nothing computed);
* ``rate``: :func:`gateway.store.rate.rate_report` ``by=("level_pair", "month")`` over the whole range,
  through the public API (SQL ``GROUP BY`` with the bucket ``CASE`` plus the paper-only union, then the
  Python rows).

Targets: rate < 1 s on PostgreSQL, < 2 s on SQLite.

    .venv/bin/python -m bench.rate [--quick] [--rows N] [--repeat K] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_PG_URL = "postgresql+asyncpg://gateway:gateway@127.0.0.1:5432/gateway_test"
TARGETS_S = {"postgresql": 1.0, "sqlite": 2.0}
DATE_FROM, DATE_TO = dt.date(2026, 1, 1), dt.date(2027, 12, 31)

STATE_WEIGHTS = {
    "done": 38,
    "in_progress": 9,
    "assigned": 5,
    "accepted": 10,
    "arrived": 10,
    "queued": 10,
    "refused": 5,
    "recalled": 3,
    "recall_requested": 6,
    "recall_refused": 4,
}
MAIN = ("queued", "arrived", "accepted", "assigned", "in_progress", "done")


# --- data -----------------------------------------------------------------------------------------


def agencies() -> list[tuple[str, str | None]]:
    """(organ_id, level) of a province's network; 1 % of levels unknown is simulated per exchange."""
    out: list[tuple[str, str | None]] = [(f"000.00.00.G{i:02d}", "central") for i in range(1, 6)]
    out.append(("000.00.00.H53", "province"))
    out += [(f"000.00.{i:02d}.H53", "department") for i in range(1, 21)]
    out += [(f"000.00.{i:02d}.H53", "district") for i in range(21, 31)]
    out += [(f"000.{i:02d}.{21 + i % 10:02d}.H53", "commune") for i in range(1, 101)]
    return out


def generate(
    n: int, seed: int = 5
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(packages, exchanges, paper dispatches) as tuples in the column order of :data:`COLUMNS`."""
    rng = random.Random(seed)
    orgs = agencies()
    states, weights = list(STATE_WEIGHTS), list(STATE_WEIGHTS.values())
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) - dt.timedelta(hours=7)
    span = (dt.datetime(2028, 1, 1, tzinfo=dt.UTC) - dt.timedelta(hours=7) - start).total_seconds()
    packages: list[tuple[Any, ...]] = []
    exchanges: list[tuple[Any, ...]] = []
    pid = 0
    while len(exchanges) < n:
        pid += 1
        sender, s_level = rng.choice(orgs)
        received = start + dt.timedelta(seconds=rng.random() * span)
        vn = received + dt.timedelta(hours=7)
        month = vn.year * 100 + vn.month
        paper = rng.random() < 0.1
        sig = rng.random() >= 0.03
        packages.append(
            (pid, f"{pid:064x}", sender, f"{sender},{vn:%Y/%m/%d},{pid}/VP", paper, sig, received)
        )
        for recipient, r_level in rng.sample(orgs, k=min(n - len(exchanges), rng.randint(1, 19))):
            state = rng.choices(states, weights)[0]
            previous = None
            if state in ("recall_requested", "recall_refused", "recalled"):
                previous = rng.choice(MAIN)
            elif state == "refused":
                previous = rng.choice(MAIN[:2])
            exchanges.append(
                (
                    pid,
                    sender,
                    recipient,
                    s_level if rng.random() > 0.01 else None,
                    r_level if rng.random() > 0.01 else None,
                    month,
                    paper,
                    sig,
                    state,
                    previous,
                    received,
                )
            )
    paper_rows = []
    for i in range(n // 100):
        (sender, s_level), (recipient, r_level) = rng.sample(orgs, k=2)
        day = DATE_FROM + dt.timedelta(days=rng.randrange((DATE_TO - DATE_FROM).days + 1))
        paper_rows.append(
            (sender, recipient, str(i), "GIAY", day, s_level, r_level, day.year * 100 + day.month)
        )
    return packages, exchanges, paper_rows


# --- loading --------------------------------------------------------------------------------------


def _sqlite_time(moment: dt.datetime) -> str:
    """How SQLAlchemy's SQLite DateTime stores an instant (naive UTC, microseconds)."""
    return moment.astimezone(dt.UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def load_sqlite(path: str, data: tuple[list[Any], list[Any], list[Any]]) -> None:
    packages, exchanges, paper_rows = data
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA synchronous = OFF")
        with con:
            con.executemany(
                "INSERT INTO package (id, sha256, size, form, blob_sha256, sender_organ_id, document_id, "
                "bussiness_doc_type, paper, signature_verdict, received_at, receipt) "
                "VALUES (?, ?, 1, 'single', ?, ?, ?, 0, ?, ?, ?, x'')",
                (
                    (p[0], p[1], p[1], p[2], p[3], p[4], "valid" if p[5] else "invalid", _sqlite_time(p[6]))
                    for p in packages
                ),
            )
            con.executemany(
                "INSERT INTO exchange (package_id, sender_organ_id, recipient_organ_id, sender_level, "
                "recipient_level, month, paper, signature_ok, state, previous_state, created_at, deadline, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                ((*e[:10], (t := _sqlite_time(e[10])), t, t) for e in exchanges),
            )
            now = _sqlite_time(dt.datetime.now(dt.UTC))
            con.executemany(
                "INSERT INTO paper_dispatch (sender_organ_id, recipient_organ_id, code_number, "
                "code_notation, document_date, sender_level, recipient_level, month, source, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'bench', ?)",
                ((*p[:4], p[4].isoformat(), *p[5:], now) for p in paper_rows),
            )
        con.execute("ANALYZE")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()


async def load_postgresql(dsn: str, data: tuple[list[Any], list[Any], list[Any]]) -> None:
    import asyncpg

    packages, exchanges, paper_rows = data
    con = await asyncpg.connect(dsn)
    try:
        await con.copy_records_to_table(
            "package",
            columns=[
                "id",
                "sha256",
                "size",
                "form",
                "blob_sha256",
                "sender_organ_id",
                "document_id",
                "bussiness_doc_type",
                "paper",
                "signature_verdict",
                "received_at",
                "receipt",
            ],
            records=(
                (
                    p[0],
                    p[1],
                    1,
                    "single",
                    p[1],
                    p[2],
                    p[3],
                    0,
                    p[4],
                    "valid" if p[5] else "invalid",
                    p[6],
                    b"",
                )
                for p in packages
            ),
        )
        await con.execute(
            "SELECT setval(pg_get_serial_sequence('package', 'id'), (SELECT max(id) FROM package))"
        )
        await con.copy_records_to_table(
            "exchange",
            columns=[
                "package_id",
                "sender_organ_id",
                "recipient_organ_id",
                "sender_level",
                "recipient_level",
                "month",
                "paper",
                "signature_ok",
                "state",
                "previous_state",
                "created_at",
                "deadline",
                "updated_at",
            ],
            records=((*e, e[10], e[10]) for e in exchanges),
        )
        now = dt.datetime.now(dt.UTC)
        await con.copy_records_to_table(
            "paper_dispatch",
            columns=[
                "sender_organ_id",
                "recipient_organ_id",
                "code_number",
                "code_notation",
                "document_date",
                "sender_level",
                "recipient_level",
                "month",
                "source",
                "created_at",
            ],
            records=((*p, "bench", now) for p in paper_rows),
        )
        await con.execute("VACUUM ANALYZE")
    finally:
        await con.close()


# --- timing ---------------------------------------------------------------------------------------


async def _best(fn: Callable[[], Awaitable[Any]], repeat: int) -> tuple[float, Any]:
    await fn()  # warm-up (caches, prepared statements)
    best, value = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = await fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


async def time_backend(url: str, repeat: int) -> dict[str, Any]:
    from sqlalchemy import text

    from gateway.store.db import open_database
    from gateway.store.rate import rate_report

    db = open_database(url)
    try:

        async def count() -> int:
            async with db.read() as session:
                return int((await session.execute(text("SELECT count(*) FROM exchange"))).scalar_one())

        async def rate() -> Any:
            return await rate_report(db, date_from=DATE_FROM, date_to=DATE_TO, by=("level_pair", "month"))

        count_s, rows = await _best(count, repeat)
        rate_s, report = await _best(rate, repeat)
    finally:
        await db.close()
    total = sum(r.total for r in report)
    return {"count_s": count_s, "rows": rows, "rate_s": rate_s, "groups": len(report), "counted": total}


def run_sqlite(data: tuple[list[Any], list[Any], list[Any]], repeat: int) -> dict[str, Any]:
    from gateway.store.migrate import upgrade

    with tempfile.TemporaryDirectory(prefix="rate-bench-") as tmp:
        path = os.path.join(tmp, "gateway.db")
        url = f"sqlite+aiosqlite:///{path}"
        upgrade(url)
        t0 = time.perf_counter()
        load_sqlite(path, data)
        load_s = time.perf_counter() - t0
        result = asyncio.run(time_backend(url, repeat))
    return {"backend": "sqlite", "load_s": load_s, **result}


def run_postgresql(data: tuple[list[Any], list[Any], list[Any]], repeat: int) -> dict[str, Any] | None:
    import asyncpg
    from sqlalchemy.engine import make_url

    from gateway.store.migrate import upgrade

    base = make_url(os.environ.get("GATEWAY_TEST_PG_URL", DEFAULT_PG_URL))
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"rate_bench_{uuid.uuid4().hex[:10]}"

    async def admin_sql(sql: str) -> None:
        con = await asyncpg.connect(admin, timeout=5)
        try:
            await con.execute(sql)
        finally:
            await con.close()

    try:
        asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        print(f"PostgreSQL unreachable ({exc!r}): the PostgreSQL run is skipped", file=sys.stderr)
        return None
    try:
        url = base.set(database=name).render_as_string(hide_password=False)
        upgrade(url)
        t0 = time.perf_counter()
        asyncio.run(
            load_postgresql(
                base.set(drivername="postgresql", database=name).render_as_string(hide_password=False), data
            )
        )
        load_s = time.perf_counter() - t0
        result = asyncio.run(time_backend(url, repeat))
    finally:
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return {"backend": "postgresql", "load_s": load_s, **result}


def run(quick: bool = False, rows: int | None = None, repeat: int = 5) -> dict[str, Any]:
    n = rows or (100_000 if quick else 1_000_000)
    t0 = time.perf_counter()
    data = generate(n)
    print(
        f"generated {len(data[1]):,} exchanges, {len(data[0]):,} packages, {len(data[2]):,} paper-only "
        f"dispatches in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    runs = []
    pg = run_postgresql(data, repeat)
    if pg is not None:
        runs.append(pg)
    runs.append(run_sqlite(data, repeat))
    for r in runs:
        r["target_s"] = TARGETS_S[r["backend"]]
        r["pass"] = r["rate_s"] < r["target_s"]
        if r["rows"] != n or r["counted"] != n + len(data[2]):
            raise RuntimeError(f"{r['backend']}: counted {r['rows']}/{r['counted']}, expected {n}")
    result: dict[str, Any] = {
        "name": "rate",
        "quick": quick,
        "exchanges": n,
        "paper_only": len(data[2]),
        "repeat": repeat,
        "runs": runs,
    }
    result["markdown"] = markdown(result)
    print(result["markdown"])
    return result


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Rate by level pair and month over {result['exchanges']:,} exchanges "
        f"(+ {result['paper_only']:,} paper-only), best of {result['repeat']}, beside a bare "
        "`SELECT count(*)` on the same table in the same run:",
        "",
        "| backend | rate (level pair × month) | `count(*)` | ratio | target | groups | load |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["runs"]:
        lines.append(
            f"| {r['backend']} | {r['rate_s'] * 1000:,.0f} ms | {r['count_s'] * 1000:,.0f} ms | "
            f"{r['rate_s'] / r['count_s']:.1f}× | < {r['target_s']:.0f} s "
            f"{'PASS' if r['pass'] else 'MISS'} | {r['groups']} | {r['load_s']:.0f} s |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 exchanges")
    parser.add_argument("--rows", type=int, default=None, help="number of exchanges")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    args = parser.parse_args()
    result = run(quick=args.quick, rows=args.rows, repeat=args.repeat)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "rate.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
