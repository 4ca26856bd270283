"""A small durable work queue shared by every hub process (forwards, pushes, CRL fetches …).

Claiming is the only contended step. On PostgreSQL it is ``SELECT … FOR UPDATE SKIP LOCKED``: concurrent
workers each take different rows without waiting on each other. On SQLite the write transaction is
already exclusive (one writer, ``BEGIN IMMEDIATE``), so the same statement without the locking clause is
correct; SQLAlchemy leaves the clause out there by itself.

A claimed job carries a lease (``locked_until``); a worker that dies loses it when the lease runs out and
the job is handed out again, so a job runs *at least* once and handlers must be idempotent (keyed by
``key``, which is unique: enqueuing the same key twice is a no-op).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from gateway.store.db import Database
from gateway.store.models import Job


async def enqueue_job(
    db: Database,
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    now: dt.datetime,
    run_after: dt.datetime | None = None,
    key: str | None = None,
) -> bool:
    """Add a job; with ``key``, only if no job with that key exists. Returns whether one was added."""
    insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert
    stmt = insert(Job).values(
        kind=kind,
        key=key,
        payload=payload or {},
        state="ready",
        attempts=0,
        run_after=run_after or now,
        created_at=now,
    )
    if key is not None:
        stmt = stmt.on_conflict_do_nothing(index_elements=["key"])
    async with db.write() as session:
        result = await session.execute(stmt)
        return bool(result.rowcount)  # type: ignore[attr-defined]


async def claim_jobs(
    db: Database,
    *,
    worker: str,
    now: dt.datetime,
    kinds: list[str] | None = None,
    limit: int = 1,
    lease: dt.timedelta = dt.timedelta(minutes=5),
) -> list[Job]:
    """Take up to ``limit`` due jobs (ready, or running with an expired lease) for ``worker``."""
    due = or_(
        (Job.state == "ready") & (Job.run_after <= now),
        (Job.state == "running") & (Job.locked_until < now),
    )
    query = select(Job.id).where(due).order_by(Job.run_after, Job.id).limit(limit)
    if kinds:
        query = query.where(Job.kind.in_(kinds))  # type: ignore[attr-defined]
    async with db.write() as session:
        ids = list((await session.execute(query.with_for_update(skip_locked=True))).scalars())
        if not ids:
            return []
        await session.execute(
            update(Job)
            .where(Job.id.in_(ids))  # type: ignore[union-attr]
            .values(state="running", locked_by=worker, locked_until=now + lease, attempts=Job.attempts + 1)
        )
        rows = await session.execute(
            select(Job)
            .where(Job.id.in_(ids))
            .order_by(Job.run_after, Job.id)
            .execution_options(populate_existing=True)  # type: ignore[union-attr]
        )
        return list(rows.scalars())


async def complete_job(db: Database, job_id: int, *, worker: str, now: dt.datetime) -> bool:
    """Mark a job done; False if the worker no longer holds it (its lease expired and it was re-taken)."""
    async with db.write() as session:
        result = await session.execute(
            update(Job)
            .where(Job.id == job_id, Job.locked_by == worker, Job.state == "running")
            .values(state="done", finished_at=now, locked_until=None)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


async def fail_job(
    db: Database,
    job_id: int,
    *,
    worker: str,
    now: dt.datetime,
    error: str,
    retry_at: dt.datetime | None = None,
) -> bool:
    """Record a failure: retry at ``retry_at``, or give up (``failed``) when it is None."""
    values: dict[str, Any] = {"last_error": error, "locked_by": None, "locked_until": None}
    if retry_at is None:
        values |= {"state": "failed", "finished_at": now}
    else:
        values |= {"state": "ready", "run_after": retry_at}
    async with db.write() as session:
        result = await session.execute(
            update(Job)
            .where(Job.id == job_id, Job.locked_by == worker, Job.state == "running")
            .values(**values)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]
