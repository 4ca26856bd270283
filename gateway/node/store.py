"""The node's local store: SQLite (WAL, ``synchronous=FULL``) through SQLAlchemy async on aiosqlite, plus
content-addressed files for package bytes.

Rules (docs/node.md): bytes are written and fsynced *before* the row that refers to them is committed;
every method is one committed transaction; uniqueness (outbox by SHA-256, inbox by package SHA-256, hub
inbox items by id, notices by SHA-256) is in the database, so a crash and a restart never duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from gateway.node.schema import hub_items, inbox, notices, outbox


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- files ------------------------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durable(path: Path, data: bytes) -> None:
    """Write ``path`` atomically and durably: temp file, fsync, rename, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class Blobs:
    """Package bytes by SHA-256 under ``<data_dir>/blobs/<sha[:2]>/<sha>``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha: str) -> Path:
        return self.root / sha[:2] / sha

    def put(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        target = self.path(sha)
        if not target.exists():
            write_durable(target, data)
        return sha

    def get(self, sha: str) -> bytes:
        return self.path(sha).read_bytes()


# --- rows -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxRow:
    id: int
    kind: str
    sha256: str
    size: int
    content_type: str
    document_id: str
    document_sender: str
    business_doc_type: int
    status_code: str | None
    recipients: tuple[str, ...]
    meta: dict[str, Any]
    state: str
    attempts: int
    next_attempt_at: dt.datetime
    last_error: str | None
    error_code: str | None
    created_at: dt.datetime
    sent_at: dt.datetime | None
    hub_time: dt.datetime | None
    receipt_xml: bytes | None


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxRow:
    id: int
    sha256: str
    item_id: int
    document_id: str
    sender: str
    business_doc_type: int
    targets: tuple[str, ...]
    subject: str | None
    content_type: str
    size: int
    ok: bool
    verdict_code: str | None
    verdict_detail: str | None
    meta: dict[str, Any]
    folder: str
    received_at: dt.datetime
    dms_delivered_at: dt.datetime | None
    dms_error: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class NoticeRow:
    id: int
    notice_sha256: str
    item_id: int | None
    package_id: str
    document_id: str
    document_sender: str
    code: str
    status_from: str
    description: str | None
    status_time: dt.datetime | None
    hub_time: dt.datetime
    verified: bool
    verdict_code: str | None


def _outbox_row(r: Any) -> OutboxRow:
    m = dict(r._mapping)
    m["recipients"] = tuple(json.loads(m["recipients"] or "[]"))
    m["meta"] = json.loads(m["meta"] or "{}")
    m["receipt_xml"] = bytes(m["receipt_xml"]) if m["receipt_xml"] is not None else None
    return OutboxRow(**m)


def _inbox_row(r: Any) -> InboxRow:
    m = dict(r._mapping)
    m["targets"] = tuple(json.loads(m["targets"] or "[]"))
    m["meta"] = json.loads(m["meta"] or "{}")
    return InboxRow(**m)


def _notice_row(r: Any) -> NoticeRow:
    m = dict(r._mapping)
    m.pop("notice_xml", None)
    return NoticeRow(**m)


# --- the store --------------------------------------------------------------------------------------


HEAD = "n0001"
"""The newest migration (a unit test keeps it equal to alembic's head): at head alembic is not loaded."""


def _at_head(connection: Connection) -> bool:
    try:
        found = connection.execute(sa.text("SELECT version_num FROM node_alembic_version")).scalar()
    except OperationalError:
        return False
    return found == HEAD


def _migrate(connection: Connection) -> None:
    if _at_head(connection):
        return
    from alembic import command

    config = _alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _alembic_config() -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(files("gateway.node") / "migrations"))
    return config


def make_engine(db_path: Path) -> AsyncEngine:
    engine = create_async_engine(f"sqlite+aiosqlite:///{db_path}", connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_conn: Any, _: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")  # a committed row survives power loss
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    return engine


class NodeStore:
    """Repository of the node. One writer at a time (SQLite has one anyway; the lock avoids busy errors)."""

    def __init__(self, engine: AsyncEngine, data_dir: Path) -> None:
        self.engine = engine
        self.blobs = Blobs(data_dir / "blobs")
        self.received_dir = data_dir / "received"
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncConnection]:
        async with self._lock, self.engine.begin() as conn:
            yield conn

    # --- outbox -------------------------------------------------------------------------------------
    async def enqueue(
        self,
        *,
        kind: str,
        data: bytes,
        content_type: str,
        document_id: str,
        document_sender: str,
        business_doc_type: int = 0,
        status_code: str | None = None,
        recipients: Sequence[str] = (),
        meta: dict[str, Any] | None = None,
        conn: AsyncConnection | None = None,
    ) -> OutboxRow:
        """Store the exact bytes (fsynced) and then the outbox row; the same bytes again return the row."""
        sha = await asyncio.to_thread(self.blobs.put, data)
        now = utcnow()
        values = {
            "kind": kind,
            "sha256": sha,
            "size": len(data),
            "content_type": content_type,
            "document_id": document_id,
            "document_sender": document_sender,
            "business_doc_type": business_doc_type,
            "status_code": status_code,
            "recipients": json.dumps(list(recipients)),
            "meta": json.dumps(meta or {}, ensure_ascii=False, default=str),
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        if conn is not None:
            await self._insert_outbox(conn, values)
        else:
            async with self._tx() as c:
                await self._insert_outbox(c, values)
        row = await self.outbox_by_sha(sha)
        assert row is not None
        return row

    @staticmethod
    async def _insert_outbox(conn: AsyncConnection, values: dict[str, Any]) -> None:
        exists = (
            await conn.execute(sa.select(outbox.c.id).where(outbox.c.sha256 == values["sha256"]))
        ).first()
        if exists is None:
            await conn.execute(outbox.insert().values(**values))

    async def outbox_by_sha(self, sha: str) -> OutboxRow | None:
        async with self.engine.connect() as conn:
            r = (await conn.execute(sa.select(outbox).where(outbox.c.sha256 == sha))).first()
        return _outbox_row(r) if r else None

    async def due(self, now: dt.datetime, *, all_pending: bool = False) -> list[OutboxRow]:
        q = sa.select(outbox).where(outbox.c.state == "pending").order_by(outbox.c.id)
        if not all_pending:
            q = q.where(outbox.c.next_attempt_at <= now)
        async with self.engine.connect() as conn:
            return [_outbox_row(r) for r in (await conn.execute(q)).all()]

    async def next_due(self) -> dt.datetime | None:
        q = sa.select(sa.func.min(outbox.c.next_attempt_at)).where(outbox.c.state == "pending")
        async with self.engine.connect() as conn:
            value = (await conn.execute(q)).scalar_one_or_none()
        return value.replace(tzinfo=dt.UTC) if value is not None else None

    async def mark_sent(self, row_id: int, *, receipt_xml: bytes, hub_time: dt.datetime) -> None:
        async with self._tx() as conn:
            await conn.execute(
                outbox.update()
                .where(outbox.c.id == row_id)
                .values(
                    state="sent",
                    receipt_xml=receipt_xml,
                    hub_time=hub_time,
                    sent_at=utcnow(),
                    attempts=outbox.c.attempts + 1,
                    last_error=None,
                    error_code=None,
                )
            )

    async def mark_failed(
        self, row_id: int, *, state: str, error_code: str, error: str, retry_at: dt.datetime | None = None
    ) -> None:
        """``state='pending'`` with ``retry_at``: try again later; ``refused``/``mismatch``: final."""
        values: dict[str, Any] = {
            "state": state,
            "error_code": error_code,
            "last_error": error,
            "attempts": outbox.c.attempts + 1,
        }
        if retry_at is not None:
            values["next_attempt_at"] = retry_at
        async with self._tx() as conn:
            await conn.execute(outbox.update().where(outbox.c.id == row_id).values(**values))

    async def sent_documents(self, document_id: str | None = None) -> list[OutboxRow]:
        q = sa.select(outbox).where(outbox.c.kind == "package").order_by(outbox.c.id)
        if document_id is not None:
            q = q.where(outbox.c.document_id == document_id)
        async with self.engine.connect() as conn:
            return [_outbox_row(r) for r in (await conn.execute(q)).all()]

    async def statuses_sent(self, document_id: str | None = None) -> list[OutboxRow]:
        q = sa.select(outbox).where(outbox.c.kind == "status").order_by(outbox.c.id)
        if document_id is not None:
            q = q.where(outbox.c.document_id == document_id)
        async with self.engine.connect() as conn:
            return [_outbox_row(r) for r in (await conn.execute(q)).all()]

    async def outbox_rows(self) -> list[OutboxRow]:
        async with self.engine.connect() as conn:
            return [
                _outbox_row(r) for r in (await conn.execute(sa.select(outbox).order_by(outbox.c.id))).all()
            ]

    # --- hub inbox items ----------------------------------------------------------------------------
    async def processed_items(self, item_ids: Sequence[int]) -> dict[int, bool]:
        """``{item_id: acked}`` for the items already processed."""
        if not item_ids:
            return {}
        q = sa.select(hub_items.c.item_id, hub_items.c.acked_at).where(
            hub_items.c.item_id.in_(list(item_ids))
        )
        async with self.engine.connect() as conn:
            return {r.item_id: r.acked_at is not None for r in (await conn.execute(q)).all()}

    async def unacked_items(self) -> list[int]:
        q = sa.select(hub_items.c.item_id).where(hub_items.c.acked_at.is_(None)).order_by(hub_items.c.item_id)
        async with self.engine.connect() as conn:
            return list((await conn.execute(q)).scalars().all())

    async def mark_acked(self, item_ids: Sequence[int]) -> None:
        if not item_ids:
            return
        async with self._tx() as conn:
            await conn.execute(
                hub_items.update().where(hub_items.c.item_id.in_(list(item_ids))).values(acked_at=utcnow())
            )

    @staticmethod
    async def _item_done(conn: AsyncConnection, item_id: int, kind: str, package_id: str) -> None:
        if (await conn.execute(sa.select(hub_items.c.item_id).where(hub_items.c.item_id == item_id))).first():
            return
        await conn.execute(
            hub_items.insert().values(
                item_id=item_id, kind=kind, package_id=package_id, processed_at=utcnow()
            )
        )

    # --- received packages --------------------------------------------------------------------------
    async def inbox_by_sha(self, sha: str) -> InboxRow | None:
        async with self.engine.connect() as conn:
            r = (await conn.execute(sa.select(inbox).where(inbox.c.sha256 == sha))).first()
        return _inbox_row(r) if r else None

    async def record_received(
        self,
        *,
        item_id: int,
        values: dict[str, Any],
        status: dict[str, Any] | None,
    ) -> tuple[InboxRow, bool]:
        """In one transaction: the inbox row (unless that package is already stored), its automatic status
        (01 or 02, bytes already on disk) in the outbox, and the hub item as processed."""
        async with self._tx() as conn:
            existing = (
                await conn.execute(sa.select(inbox).where(inbox.c.sha256 == values["sha256"]))
            ).first()
            created = existing is None
            if created:
                await conn.execute(inbox.insert().values(**values))
                if status is not None:
                    await self._insert_outbox(conn, status)
            await self._item_done(conn, item_id, "package", values["sha256"])
        row = await self.inbox_by_sha(values["sha256"])
        assert row is not None
        return row, created

    async def mark_delivered(self, row_id: int, *, error: str | None) -> None:
        values: dict[str, Any] = {"dms_error": error}
        if error is None:
            values["dms_delivered_at"] = utcnow()
        async with self._tx() as conn:
            await conn.execute(inbox.update().where(inbox.c.id == row_id).values(**values))

    async def undelivered(self) -> list[InboxRow]:
        q = sa.select(inbox).where(inbox.c.dms_delivered_at.is_(None)).order_by(inbox.c.id)
        async with self.engine.connect() as conn:
            return [_inbox_row(r) for r in (await conn.execute(q)).all()]

    async def received(self, document_id: str | None = None) -> list[InboxRow]:
        q = sa.select(inbox).order_by(inbox.c.id)
        if document_id is not None:
            q = q.where(inbox.c.document_id == document_id)
        async with self.engine.connect() as conn:
            return [_inbox_row(r) for r in (await conn.execute(q)).all()]

    # --- status notices -----------------------------------------------------------------------------
    async def record_notice(self, *, item_id: int, values: dict[str, Any]) -> bool:
        async with self._tx() as conn:
            exists = (
                await conn.execute(
                    sa.select(notices.c.id).where(notices.c.notice_sha256 == values["notice_sha256"])
                )
            ).first()
            if exists is None:
                with contextlib.suppress(IntegrityError):
                    await conn.execute(notices.insert().values(item_id=item_id, **values))
            await self._item_done(conn, item_id, "status", values["package_id"])
        return exists is None

    async def notices(self, document_id: str | None = None) -> list[NoticeRow]:
        q = sa.select(notices).order_by(notices.c.id)
        if document_id is not None:
            q = q.where(notices.c.document_id == document_id)
        async with self.engine.connect() as conn:
            return [_notice_row(r) for r in (await conn.execute(q)).all()]


@contextlib.asynccontextmanager
async def open_store(data_dir: Path) -> AsyncIterator[NodeStore]:
    """Open (creating and migrating) the store in ``data_dir``; the engine is disposed on exit."""
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(data_dir / "node.db")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_migrate)
        yield NodeStore(engine, data_dir)
    finally:
        await engine.dispose()
