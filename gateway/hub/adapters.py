"""The hub's :class:`~gateway.hub.ports.Repository` on SQLAlchemy (async): SQLite (WAL) or PostgreSQL.

Seam: the project's store (:mod:`gateway.store`, migrations, the lifecycle table in
:mod:`gateway.lifecycle`) is being built alongside the hub; until it lands this module keeps the hub's
state in its own ``hub_*`` tables (created at start) with the same guarantees the design asks of the store:

* nothing is acknowledged before it is committed; package bytes up to :data:`INLINE_MAX` are stored in the
  row (durable with the commit), larger ones as a content-addressed blob, fsynced before the commit;
* unique constraints, not process memory, keep two hub processes from creating duplicates: a package by
  its SHA-256 and by ``(sender, DocumentId)``; a status by its SHA-256; an inbox item by its source;
* every write is one transaction; on PostgreSQL the exchange rows are locked (``FOR UPDATE``) while a
  status is applied, on SQLite one writer per process is enforced by a lock (SQLite has one writer anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from gateway.errors import AuthError, Conflict, NotFound
from gateway.hub.config import HubConfig
from gateway.hub.ports import (
    ApplyResult,
    AttachmentFile,
    InboxItem,
    RecipientTimeline,
    StatusEvent,
    StatusVerdict,
    StoredPackage,
    Verdict,
)
from gateway.trust.directory import Agency

INLINE_MAX = 256 * 1024
VN = dt.timezone(dt.timedelta(hours=7))

md = sa.MetaData()
TS = sa.DateTime(timezone=True)

packages = sa.Table(
    "hub_packages",
    md,
    sa.Column("package_id", sa.String(64), primary_key=True),
    sa.Column("document_id", sa.String(300), nullable=False),
    sa.Column("sender", sa.String(20), nullable=False),
    sa.Column("recipients", sa.Text, nullable=False),
    sa.Column("carriage", sa.String(16), nullable=False),
    sa.Column("content_type", sa.String(300), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("electronic", sa.Boolean, nullable=False),
    sa.Column("reason", sa.String(64)),
    sa.Column("business_doc_type", sa.Integer, nullable=False),
    sa.Column("paper", sa.Integer, nullable=False),
    sa.Column("subject", sa.Text),
    sa.Column("body", sa.LargeBinary),
    sa.Column("receipt_xml", sa.LargeBinary, nullable=False),
    sa.Column("received_at", TS, nullable=False),
    sa.UniqueConstraint("sender", "document_id", name="uq_hub_packages_sender_document"),
)
exchanges = sa.Table(
    "hub_exchanges",
    md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("package_id", sa.String(64), sa.ForeignKey("hub_packages.package_id"), nullable=False),
    sa.Column("recipient", sa.String(20), nullable=False),
    sa.Column("state", sa.String(24), nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.UniqueConstraint("package_id", "recipient", name="uq_hub_exchanges"),
)
events = sa.Table(
    "hub_status_events",
    md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("package_id", sa.String(64), nullable=False, index=True),
    sa.Column("recipient", sa.String(20), nullable=False),
    sa.Column("code", sa.String(2), nullable=False),
    sa.Column("state", sa.String(24), nullable=False),
    sa.Column("by", sa.String(20), nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("at", TS, nullable=False),
    sa.Column("message_sha256", sa.String(64), nullable=False),
    sa.Column("electronic", sa.Boolean, nullable=False),
    sa.Column("receipt_xml", sa.LargeBinary, nullable=False),
    sa.UniqueConstraint("message_sha256", "recipient", name="uq_hub_status_message"),
)
inbox = sa.Table(
    "hub_inbox",
    md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("agency", sa.String(20), nullable=False),
    sa.Column("kind", sa.String(10), nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("package_id", sa.String(64), nullable=False),
    sa.Column("document_id", sa.String(300), nullable=False),
    sa.Column("sender", sa.String(20), nullable=False),
    sa.Column("status_code", sa.String(2)),
    sa.Column("status_from", sa.String(20)),
    sa.Column("notice_xml", sa.LargeBinary),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("acked_at", TS),
    sa.UniqueConstraint("agency", "kind", "source", name="uq_hub_inbox_source"),
    sa.Index("ix_hub_inbox_pending", "agency", "acked_at", "id"),
)
paper = sa.Table(
    "hub_paper_dispatches",
    md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sender", sa.String(20), nullable=False),
    sa.Column("recipient", sa.String(20), nullable=False),
    sa.Column("document_id", sa.String(300), nullable=False),
    sa.Column("sent_on", sa.Date, nullable=False),
    sa.Column("subject", sa.Text),
    sa.Column("created_at", TS, nullable=False),
    sa.UniqueConstraint("sender", "recipient", "document_id", name="uq_hub_paper"),
)
agencies = sa.Table(
    "hub_agencies",
    md,
    sa.Column("organ_id", sa.String(20), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("parent", sa.String(20)),
    sa.Column("pins", sa.Text, nullable=False, server_default=""),
)
node_identities = sa.Table(
    "hub_node_identities",
    md,
    sa.Column("fingerprint", sa.String(64), primary_key=True),
    sa.Column("organ_id", sa.String(20), primary_key=True),
)

# --- the lifecycle (DESIGN §4) ------------------------------------------------------------------------
_CHAIN = ("queued", "arrived", "accepted", "assigned", "in_progress", "done")
_BY_CODE = {"01": "arrived", "03": "accepted", "04": "assigned", "05": "in_progress", "06": "done"}
_FINAL = frozenset({"done", "refused", "recalled"})


def next_state(state: str, code: str) -> str | None:
    """The state after ``code`` from ``state``; ``None`` if the lifecycle forbids it."""
    if code in _BY_CODE:
        target = _BY_CODE[code]
        if state not in _CHAIN:
            return None
        if state == "queued":  # a recipient confirms arrival (01) before anything else
            return target if code == "01" else None
        return target if _CHAIN.index(target) > _CHAIN.index(state) else None
    if code == "02":
        return "refused" if state in ("queued", "arrived") else None
    if code == "13":
        return "recall_requested" if state in _CHAIN and state != "done" else None
    if code == "15":
        return "recalled" if state == "recall_requested" else None
    if code == "16":
        return "recall_refused" if state == "recall_requested" else None
    return None


def _state_of(code: str) -> str:
    return {
        **_BY_CODE,
        "02": "refused",
        "13": "recall_requested",
        "15": "recalled",
        "16": "recall_refused",
    }.get(code, "")


def deadline_for(received: dt.datetime, holidays: frozenset[dt.date]) -> dt.datetime:
    """End of the next working day after receipt (Nghị định 30/2020, Điều 21), in Vietnam time."""
    day = received.astimezone(VN).date()
    while True:
        day += dt.timedelta(days=1)
        if day.weekday() < 5 and day not in holidays:
            break
    return dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=VN)


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


GROUP_MAX = 128


@dataclass(slots=True)
class _Pending:
    row: dict[str, Any]
    exchanges: list[dict[str, Any]]
    inbox: list[dict[str, Any]]
    future: asyncio.Future[None] | None = None


def _settle(item: _Pending, exc: BaseException | None) -> None:
    if item.future is None or item.future.done():
        return
    if exc is None:
        item.future.set_result(None)
    else:
        item.future.set_exception(exc)


class SqlRepository:
    """The hub repository over one async engine and a blob folder."""

    def __init__(self, engine: AsyncEngine, config: HubConfig) -> None:
        self.engine = engine
        self.config = config
        self.sqlite = engine.dialect.name == "sqlite"
        self._write_lock = asyncio.Lock()
        self._holidays = frozenset(dt.date.fromisoformat(h) for h in config.holidays)
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None

    # --- plumbing ---------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncConnection]:
        if self.sqlite:
            async with self._write_lock, self.engine.begin() as conn:
                yield conn
        else:
            async with self.engine.begin() as conn:
                yield conn

    def _blob_path(self, sha: str) -> Path:
        return self.config.blob_dir / sha[:2] / sha[2:4] / sha

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    # --- packages ---------------------------------------------------------------------------------
    @staticmethod
    def _stored(row: Any) -> StoredPackage:
        return StoredPackage(
            package_id=row.package_id,
            document_id=row.document_id,
            sender=row.sender,
            recipients=tuple(row.recipients.split(",")) if row.recipients else (),
            receipt_xml=bytes(row.receipt_xml),
            size=row.size,
            carriage=row.carriage,
            content_type=row.content_type,
            electronic=row.electronic,
            reason=row.reason,
            received_at=_aware(row.received_at),
        )

    _COLS = tuple(c for c in packages.c if c.name != "body")

    async def package(self, package_id: str) -> StoredPackage | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(*self._COLS).where(packages.c.package_id == package_id))
            ).first()
        return self._stored(row) if row else None

    async def package_by_document(self, sender: str, document_id: str) -> StoredPackage | None:
        q = sa.select(*self._COLS).where(packages.c.sender == sender, packages.c.document_id == document_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(q)).first()
        return self._stored(row) if row else None

    def _write_blob(self, sha: str, source: Path | None, data: bytes | None) -> bool:
        """Put the bytes at their content address, durably; ``True`` if this call created the file."""
        target = self._blob_path(sha)
        if target.exists():
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{sha}.{os.getpid()}.tmp")
        if source is not None:
            os.replace(source, tmp)
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        else:
            with open(tmp, "wb") as fh:
                fh.write(data or b"")
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, target)
        return True

    async def ingest(
        self,
        *,
        verdict: Verdict,
        package_id: str,
        size: int,
        carriage: str,
        content_type: str,
        body_path: Path | None,
        body: bytes | None,
        attachments: Sequence[AttachmentFile],
        received_at: dt.datetime,
    ) -> tuple[StoredPackage, bool]:
        inline: bytes | None = None
        created_blob = False
        if size <= INLINE_MAX:
            inline = body if body is not None else Path(body_path or "").read_bytes()
        else:
            created_blob = await asyncio.to_thread(self._write_blob, package_id, body_path, body)
        row = {
            "package_id": package_id,
            "document_id": verdict.document_id,
            "sender": verdict.sender,
            "recipients": ",".join(verdict.recipients),
            "carriage": carriage,
            "content_type": content_type,
            "size": size,
            "electronic": verdict.electronic,
            "reason": verdict.reason,
            "business_doc_type": verdict.business_doc_type,
            "paper": verdict.paper,
            "subject": verdict.subject,
            "body": inline,
            "receipt_xml": verdict.receipt_xml,
            "received_at": received_at,
        }
        exchange_rows = [
            {"package_id": package_id, "recipient": r, "state": "queued", "updated_at": received_at}
            for r in verdict.recipients
        ]
        inbox_rows = [
            {
                "agency": r,
                "kind": "package",
                "source": package_id,
                "package_id": package_id,
                "document_id": verdict.document_id,
                "sender": verdict.sender,
                "created_at": received_at,
            }
            for r in verdict.recipients
        ]
        try:
            await self._group_commit(_Pending(row=row, exchanges=exchange_rows, inbox=inbox_rows))
        except IntegrityError:
            same = await self.package(package_id)
            if same is not None:
                return same, False
            if created_blob:
                with contextlib.suppress(FileNotFoundError):
                    self._blob_path(package_id).unlink()
            other = await self.package_by_document(verdict.sender, verdict.document_id)
            raise Conflict(
                "conflict.document_id",
                f"{verdict.document_id} was already sent by {verdict.sender} with other content",
                package_id=other.package_id if other else None,
            ) from None
        except BaseException:
            if created_blob:
                with contextlib.suppress(FileNotFoundError):
                    self._blob_path(package_id).unlink()
            raise
        stored = StoredPackage(
            package_id=package_id,
            document_id=verdict.document_id,
            sender=verdict.sender,
            recipients=verdict.recipients,
            receipt_xml=verdict.receipt_xml,
            size=size,
            carriage=carriage,
            content_type=content_type,
            electronic=verdict.electronic,
            reason=verdict.reason,
            received_at=received_at,
        )
        return stored, True

    async def _group_commit(self, item: _Pending) -> None:
        """Commit ``item`` together with whatever other ingests are waiting (one transaction, one sync).

        Under load many requests finish verification while a commit is under way; they are written in
        the next transaction together, so the cost of a commit is shared. Each caller returns only once
        its rows are committed. If the batch hits a unique constraint (a duplicate), every item of it is
        retried on its own, so one duplicate fails only its own request.
        """
        loop = asyncio.get_running_loop()
        item.future = loop.create_future()
        self._pending.append(item)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await item.future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:GROUP_MAX], self._pending[GROUP_MAX:]
            try:
                await self._write(batch)
            except IntegrityError:
                for one in batch:
                    try:
                        await self._write([one])
                    except Exception as exc:
                        _settle(one, exc)
                    else:
                        _settle(one, None)
                continue
            except Exception as exc:
                for one in batch:
                    _settle(one, exc)
                continue
            for one in batch:
                _settle(one, None)

    async def _write(self, batch: list[_Pending]) -> None:
        async with self._tx() as conn:
            await conn.execute(packages.insert(), [p.row for p in batch])
            await conn.execute(exchanges.insert(), [r for p in batch for r in p.exchanges])
            await conn.execute(inbox.insert(), [r for p in batch for r in p.inbox])

    async def open_package(self, package_id: str) -> Path:
        """A file with the package bytes (inline rows are materialised into the blob folder on demand)."""
        path = self._blob_path(package_id)
        if path.exists():
            return path
        async with self.engine.connect() as conn:
            data = (
                await conn.execute(sa.select(packages.c.body).where(packages.c.package_id == package_id))
            ).scalar_one_or_none()
        if data is None:
            raise NotFound("resource.not_found", "the package bytes are missing")
        await asyncio.to_thread(self._write_blob, package_id, None, bytes(data))
        return path

    # --- inbox -----------------------------------------------------------------------------------
    async def inbox(self, organ_id: str, *, limit: int) -> list[InboxItem]:
        q = (
            sa.select(inbox)
            .where(inbox.c.agency == organ_id, inbox.c.acked_at.is_(None))
            .order_by(inbox.c.id)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [
            InboxItem(
                item_id=r.id,
                kind=r.kind,
                package_id=r.package_id,
                document_id=r.document_id,
                sender=r.sender,
                created_at=_aware(r.created_at),
                status_code=r.status_code,
                status_from=r.status_from,
                notice_xml=bytes(r.notice_xml) if r.notice_xml is not None else None,
            )
            for r in rows
        ]

    async def ack(self, organ_id: str, item_ids: Sequence[int]) -> int:
        if not item_ids:
            return 0
        now = dt.datetime.now(dt.UTC)
        async with self._tx() as conn:
            result = await conn.execute(
                inbox.update()
                .where(inbox.c.agency == organ_id, inbox.c.id.in_(list(item_ids)), inbox.c.acked_at.is_(None))
                .values(acked_at=now)
            )
        return int(result.rowcount or 0)

    async def inbox_depth(self) -> dict[str, int]:
        q = (
            sa.select(inbox.c.agency, sa.func.count())
            .where(inbox.c.acked_at.is_(None))
            .group_by(inbox.c.agency)
        )
        async with self.engine.connect() as conn:
            return {a: int(n) for a, n in (await conn.execute(q)).all()}

    # --- statuses --------------------------------------------------------------------------------
    async def apply_status(self, *, verdict: StatusVerdict, raw: bytes, at: dt.datetime) -> ApplyResult:
        async with self._tx() as conn:
            repeat = (
                await conn.execute(
                    sa.select(events.c.receipt_xml, events.c.state).where(
                        events.c.message_sha256 == verdict.message_sha256
                    )
                )
            ).first()
            if repeat is not None:
                return ApplyResult(
                    state=repeat.state, repeated=True, notified=(), receipt_xml=bytes(repeat[0])
                )
            pkg = (
                await conn.execute(
                    sa.select(packages.c.package_id, packages.c.sender).where(
                        packages.c.sender == verdict.document_sender,
                        packages.c.document_id == verdict.document_id,
                    )
                )
            ).first()
            if pkg is None:
                raise NotFound("resource.not_found", f"no exchange for {verdict.document_id}")
            q = sa.select(exchanges).where(exchanges.c.package_id == pkg.package_id)
            if not self.sqlite:
                q = q.with_for_update()
            rows = (await conn.execute(q)).all()
            code = verdict.status_code
            if code == "13":
                if verdict.sender != pkg.sender:
                    raise AuthError(
                        "auth.forbidden", "only the sender of a document may ask to recall it (13)"
                    )
                targets = list(rows)
                notify = [r.recipient for r in rows]
            else:
                targets = [r for r in rows if r.recipient == verdict.sender]
                if not targets:
                    raise AuthError(
                        "auth.forbidden", f"{verdict.sender} is not a recipient of {verdict.document_id}"
                    )
                notify = [pkg.sender]
            moves: list[tuple[Any, str]] = []
            for row in targets:
                new = next_state(row.state, code)
                if new is not None:
                    moves.append((row, new))
            if not moves:
                wanted = _state_of(code)
                if all(r.state == wanted for r in targets):
                    prior = (
                        await conn.execute(
                            sa.select(events.c.receipt_xml)
                            .where(
                                events.c.package_id == pkg.package_id,
                                events.c.code == code,
                                events.c.by == verdict.sender,
                            )
                            .order_by(events.c.id.desc())
                            .limit(1)
                        )
                    ).scalar_one_or_none()
                    if prior is not None:
                        return ApplyResult(state=wanted, repeated=True, notified=(), receipt_xml=bytes(prior))
                states = ", ".join(sorted({r.state for r in targets}))
                raise Conflict(
                    "conflict.transition", f"status {code} is not allowed in state {states}", state=states
                )
            for row, new in moves:
                await conn.execute(
                    exchanges.update().where(exchanges.c.id == row.id).values(state=new, updated_at=at)
                )
                await conn.execute(
                    events.insert().values(
                        package_id=pkg.package_id,
                        recipient=row.recipient,
                        code=code,
                        state=new,
                        by=verdict.sender,
                        description=verdict.description,
                        at=at,
                        message_sha256=verdict.message_sha256,
                        electronic=verdict.electronic,
                        receipt_xml=verdict.receipt_xml,
                    )
                )
            moved = {row.recipient for row, _ in moves}
            notify = [a for a in notify if code != "13" or a in moved]
            for agency in notify:
                await conn.execute(
                    inbox.insert().values(
                        agency=agency,
                        kind="status",
                        source=verdict.message_sha256,
                        package_id=pkg.package_id,
                        document_id=verdict.document_id,
                        sender=verdict.document_sender,
                        status_code=code,
                        status_from=verdict.sender,
                        notice_xml=verdict.notice_xml,
                        created_at=at,
                    )
                )
        return ApplyResult(
            state=moves[0][1], repeated=False, notified=tuple(notify), receipt_xml=verdict.receipt_xml
        )

    async def timeline(self, package_id: str, *, now: dt.datetime) -> list[RecipientTimeline]:
        async with self.engine.connect() as conn:
            pkg = (
                await conn.execute(
                    sa.select(packages.c.received_at).where(packages.c.package_id == package_id)
                )
            ).first()
            rows = (
                await conn.execute(
                    sa.select(exchanges).where(exchanges.c.package_id == package_id).order_by(exchanges.c.id)
                )
            ).all()
            evs = (
                await conn.execute(
                    sa.select(events).where(events.c.package_id == package_id).order_by(events.c.id)
                )
            ).all()
        if pkg is None:
            return []
        deadline = deadline_for(_aware(pkg.received_at), self._holidays)
        out = []
        for r in rows:
            mine = [e for e in evs if e.recipient == r.recipient]
            confirmed = any(e.code == "01" for e in mine) or r.state not in ("queued", "recall_requested")
            out.append(
                RecipientTimeline(
                    organ_id=r.recipient,
                    state=r.state,
                    overdue=not confirmed and now > deadline,
                    deadline=deadline,
                    events=tuple(
                        StatusEvent(
                            code=e.code, state=e.state, at=_aware(e.at), by=e.by, description=e.description
                        )
                        for e in mine
                    ),
                )
            )
        return out

    # --- directory, identities, paper -------------------------------------------------------------
    async def node_identities(self, fingerprint: str) -> frozenset[str]:
        q = sa.select(node_identities.c.organ_id).where(node_identities.c.fingerprint == fingerprint)
        async with self.engine.connect() as conn:
            return frozenset((await conn.execute(q)).scalars().all())

    async def add_paper_dispatch(self, *, data: dict[str, Any], at: dt.datetime) -> dict[str, Any]:
        row = {
            "sender": data["sender"],
            "recipient": str(data["recipient"]).strip().upper(),
            "document_id": data["document_id"],
            "sent_on": dt.date.fromisoformat(data["sent_on"]),
            "subject": data.get("subject") if isinstance(data.get("subject"), str) else None,
            "created_at": at,
        }
        try:
            async with self._tx() as conn:
                result = await conn.execute(paper.insert().values(**row))
                new_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
        except IntegrityError:
            raise Conflict("conflict.document_id", "this paper dispatch is already recorded") from None
        return {"id": new_id, **{k: str(v) if isinstance(v, dt.date) else v for k, v in row.items()}}

    async def admin(self, op: str, **kw: Any) -> Any:
        if op == "db_agencies":
            async with self.engine.connect() as conn:
                rows = (await conn.execute(sa.select(agencies).order_by(agencies.c.organ_id))).all()
            return tuple(
                Agency(
                    organ_id=r.organ_id,
                    name=r.name,
                    level=r.level,
                    parent=r.parent,
                    pinned_fingerprints=tuple(p for p in r.pins.split(",") if p),
                )
                for r in rows
            )
        if op == "list_node_identities":
            async with self.engine.connect() as conn:
                return [
                    (r.fingerprint, r.organ_id)
                    for r in (await conn.execute(sa.select(node_identities))).all()
                ]
        async with self._tx() as conn:
            if op in ("put_agency", "add_pin", "remove_pin"):
                a: Agency = kw["agency"]
                pins = list(a.pinned_fingerprints)
                if op == "add_pin" and kw["fingerprint"] not in pins:
                    pins.append(kw["fingerprint"])
                removed = False
                if op == "remove_pin":
                    norm = [p.lower().replace(":", "") for p in pins]
                    removed = kw["fingerprint"] in norm
                    pins = [p for p, n in zip(pins, norm, strict=True) if n != kw["fingerprint"]]
                values = {"name": a.name, "level": a.level, "parent": a.parent, "pins": ",".join(pins)}
                done = await conn.execute(
                    agencies.update().where(agencies.c.organ_id == a.organ_id).values(**values)
                )
                if not done.rowcount:
                    await conn.execute(agencies.insert().values(organ_id=a.organ_id, **values))
                return removed if op == "remove_pin" else True
            if op == "delete_agency":
                return (
                    await conn.execute(agencies.delete().where(agencies.c.organ_id == kw["organ_id"]))
                ).rowcount
            if op == "add_node_identity":
                with contextlib.suppress(IntegrityError):
                    async with conn.begin_nested():
                        await conn.execute(
                            node_identities.insert().values(
                                fingerprint=kw["fingerprint"], organ_id=kw["organ_id"]
                            )
                        )
                return True
            if op == "remove_node_identity":
                return (
                    await conn.execute(
                        node_identities.delete().where(
                            node_identities.c.fingerprint == kw["fingerprint"],
                            node_identities.c.organ_id == kw["organ_id"],
                        )
                    )
                ).rowcount
        raise ValueError(f"unknown admin operation {op!r}")


def make_engine(url: str) -> AsyncEngine:
    """An async engine; SQLite gets WAL, a busy timeout and foreign keys on every connection."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


async def create_schema(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(md.create_all)


@contextlib.asynccontextmanager
async def open_repository(
    config: HubConfig, *, clock: Callable[[], dt.datetime] | None = None
) -> AsyncIterator[SqlRepository]:
    """Open the engine (creating the hub tables if needed) for the lifetime of the app."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(config.database_url)
    try:
        for attempt in range(5):  # several hub processes may create the tables at once
            try:
                await create_schema(engine)
                break
            except Exception:
                if attempt == 4:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))
        yield SqlRepository(engine, config)
    finally:
        await engine.dispose()
