"""The hub's :class:`~gateway.hub.ports.Repository` on :mod:`gateway.store`: its tables, its migrations and
its blob store, which the rate engine and the web pages read too.

* The schema comes only from alembic: :func:`open_repository` upgrades the database to the latest
  migration (``auto_migrate``, the default; several hubs starting at once on PostgreSQL take turns on an
  advisory lock) or refuses to start when it is behind (``auto_migrate = false``: run
  ``gateway db upgrade``).
* Nothing is acknowledged before it is committed: the package bytes go to the blob store (fsynced,
  renamed into place) before the transaction that refers to them; the ingests of concurrent requests
  are committed together (:func:`gateway.store.ingest_packages`: one transaction, one sync), which is
  what lets SQLite's single writer keep up.
* Unique constraints, not process memory, keep two hub processes from creating duplicates (the store's
  idempotency keys: the bytes' SHA-256, ``(sender, DocumentId)``, the status message's SHA-256).
* The directory file is kept in step in the ``agency`` table (:func:`gateway.store.sync_directory`), so
  the exchanges snapshot the levels the hub routes with; the operator's agencies win over the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import select, text

from gateway import store
from gateway.calendar import VN_TZ, HolidaysLike
from gateway.errors import ConfigError, Conflict, GatewayError, NotFound, RequestError
from gateway.hub.body import sweep_spool
from gateway.hub.config import HubConfig
from gateway.hub.ports import (
    ApplyResult,
    InboxItem,
    RecipientTimeline,
    StatusEvent,
    StatusVerdict,
    StoredPackage,
    Verdict,
)
from gateway.store.db import Database
from gateway.store.models import CertificatePin, Exchange, Package, PackageRecipient
from gateway.trust.directory import Agency, Directory

log = logging.getLogger("gateway.hub")

GROUP_MAX = 128
"""Most ingests committed in one transaction."""
MIGRATION_LOCK = 0x6C677370  # "lgsp": the PostgreSQL advisory lock hubs take turns on to migrate
_CODE = re.compile(r"^(?P<number>[^/]{1,32})/(?P<notation>.{1,64})$")


@dataclass(slots=True)
class _Pending:
    item: store.IngestItem
    future: asyncio.Future[store.IngestResult]


class StoreRepository:
    """The hub repository over a :class:`~gateway.store.Database` and a :class:`~gateway.store.BlobStore`."""

    def __init__(
        self,
        db: Database,
        blobs: store.BlobStore,
        *,
        holidays: Callable[[], HolidaysLike] = lambda: None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        directory: Callable[[], Directory | None] = lambda: None,
        inline_body_max: int = 1 << 20,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.inline_body_max = inline_body_max
        """Bodies held in memory up to this size are kept in the database (:class:`PackageBody`)."""
        self.holidays = holidays
        self.directory = directory
        self.clock = clock
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None

    async def ping(self) -> None:
        async with self.db.read() as session:
            await session.execute(text("SELECT 1"))

    # --- packages ---------------------------------------------------------------------------------
    @staticmethod
    def _stored(package: Package, recipients: Sequence[str]) -> StoredPackage:
        return StoredPackage(
            package_id=package.sha256,
            document_id=package.document_id,
            sender=package.sender_organ_id,
            recipients=tuple(recipients),
            receipt_xml=package.receipt,
            size=package.size,
            carriage=package.form,
            content_type=package.content_type or "application/edxml+xml",
            electronic=package.signature_ok,
            reason=None if package.signature_ok else package.signature_verdict,
            received_at=package.received_at,
        )

    async def package(self, package_id: str) -> StoredPackage | None:
        async with self.db.read() as session:
            package = (
                await session.execute(select(Package).where(Package.sha256 == package_id))
            ).scalar_one_or_none()
            if package is None:
                return None
            recipients = (
                await session.execute(
                    select(PackageRecipient.organ_id)
                    .where(PackageRecipient.package_id == package.id)
                    .order_by(PackageRecipient.position)  # type: ignore[arg-type]
                )
            ).scalars()
            return self._stored(package, list(recipients))

    async def ingest(
        self,
        *,
        verdict: Verdict,
        content_type: str,
        body_path: Path | None,
        body: bytes | None,
        received_at: dt.datetime,
    ) -> tuple[StoredPackage, bool]:
        record = replace(verdict.record, content_type=content_type)
        sha = record.sha256
        inline = body is not None and body_path is None and len(body) <= self.inline_body_max
        # A small body is written with its rows, in their transaction. Otherwise the bytes first, as a
        # blob, durably: a row never points at nothing (an unreferenced blob is harmless).
        if inline:
            created_blob = False
        elif body_path is not None:
            created_blob = await self.blobs.adopt(body_path, sha)
        elif await self.blobs.exists(sha):
            created_blob = False
        else:
            info = await self.blobs.put(body or b"")
            if info.sha256 != sha:  # pragma: no cover - the spool hashed the same bytes
                raise AssertionError("the body changed between hashing and storing")
            created_blob = True
        item = store.IngestItem(
            record=record,
            receipt=verdict.receipt_xml,
            received_at=received_at,
            body=body if inline else None,
        )
        try:
            result = await self._group_commit(item)
        except Exception as exc:
            if created_blob:
                await self._discard_blob(sha, conflict=isinstance(exc, Conflict))
            raise
        return self._stored(result.package, record.recipients), result.created

    async def _discard_blob(self, sha256: str, *, conflict: bool = False) -> None:
        """Remove a blob a refused request created (a refused request stores nothing), unless a package
        stored meanwhile refers to it."""
        if conflict or await self.package(sha256) is None:
            await self.blobs.delete(sha256)

    async def _group_commit(self, item: store.IngestItem) -> store.IngestResult:
        """Commit ``item`` together with whatever other ingests are waiting (one transaction, one sync).

        Under load many requests finish verification while a commit is under way; they are written in
        the next transaction together, so the cost of a commit is shared. Each caller returns only once
        its rows are committed; a duplicate or conflict fails only its own request (the store decides
        per item).
        """
        pending = _Pending(item=item, future=asyncio.get_running_loop().create_future())
        self._pending.append(pending)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await pending.future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:GROUP_MAX], self._pending[GROUP_MAX:]
            try:
                results = await store.ingest_packages(
                    self.db,
                    [p.item for p in batch],
                    holidays=self.holidays(),
                    levels=self._levels(p.item.record for p in batch),
                )
            except Exception as exc:
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            for p, result in zip(batch, results, strict=True):
                if p.future.done():
                    continue
                if isinstance(result, GatewayError):
                    p.future.set_exception(result)
                else:
                    p.future.set_result(result)

    def _levels(self, records: Iterable[store.PackageRecord]) -> dict[str, str | None] | None:
        """The levels of these agencies in the directory the hub routed them with (the exchanges keep
        them); None, to read the database instead, if any of them is not there."""
        directory = self.directory()
        if directory is None:
            return None
        levels: dict[str, str | None] = {}
        for record in records:
            for organ_id in (record.sender, *record.recipients):
                agency = directory.get(organ_id)
                if agency is None:
                    return None
                levels[organ_id] = agency.level
        return levels

    async def package_bytes(self, package_id: str) -> bytes | Path:
        """The package's bytes: from the database (a small body), else the blob file (for ``sendfile``)."""
        found = await store.package_bytes(self.db, self.blobs, package_id)
        if found is None:
            raise NotFound("resource.not_found", "the package bytes are missing")
        return found

    # --- inbox -----------------------------------------------------------------------------------
    async def inbox(self, organ_id: str, *, limit: int) -> list[InboxItem]:
        entries = await store.list_inbox(self.db, organ_id, limit=limit, with_notices=True)
        return [
            InboxItem(
                item_id=e.id,
                kind=e.kind,
                package_id=e.document_sha256 or "",
                document_id=e.document_id or "",
                sender=e.document_sender or "",
                created_at=e.created_at,
                status_code=e.status_code,
                status_from=e.sender if e.kind == "status" else None,
                notice_xml=e.notice,
            )
            for e in entries
        ]

    async def ack(self, organ_id: str, item_ids: Sequence[int]) -> int:
        return await store.ack_inbox(self.db, organ_id, item_ids, now=self.clock())

    async def inbox_depth(self) -> dict[str, int]:
        return await store.inbox_depths(self.db)

    # --- statuses --------------------------------------------------------------------------------
    async def apply_status(self, *, verdict: StatusVerdict, raw: bytes, at: dt.datetime) -> ApplyResult:
        sent_at = verdict.timestamp
        if sent_at is not None and sent_at.tzinfo is None:
            sent_at = sent_at.replace(tzinfo=VN_TZ)  # edXML times are Vietnam time
        result = await store.apply_status(
            self.db,
            document_sender=verdict.document_sender,
            document_id=verdict.document_id,
            actor_organ_id=verdict.sender,
            code=verdict.status_code,
            message_sha256=verdict.message_sha256,
            received_at=at,
            message=raw,
            sent_at=sent_at,
            description=verdict.description,
            forwarded=verdict.notice_xml,
            receipt=verdict.receipt_xml,
        )
        state = result.events[0].state_after if result.events else ""
        if not result.created:  # the same bytes again: the stored receipt, byte for byte
            receipt = result.message.receipt or verdict.receipt_xml
            return ApplyResult(state=state, repeated=True, notified=(), receipt_xml=receipt)
        if not result.changed:  # a repeat or stale code: recorded, not forwarded
            return ApplyResult(state=state, repeated=True, notified=(), receipt_xml=verdict.receipt_xml)
        if verdict.sender != verdict.document_sender:
            notified: tuple[str, ...] = (verdict.document_sender,)
        else:
            moved = [e.exchange_id for e in result.events if e.outcome == "applied"]
            async with self.db.read() as session:
                notified = tuple(
                    (
                        await session.execute(
                            select(Exchange.recipient_organ_id).where(Exchange.id.in_(moved))  # type: ignore[union-attr]
                        )
                    ).scalars()
                )
        return ApplyResult(state=state, repeated=False, notified=notified, receipt_xml=verdict.receipt_xml)

    async def timeline(self, package_id: str, *, now: dt.datetime) -> list[RecipientTimeline]:
        async with self.db.read() as session:
            pid = (
                await session.execute(select(Package.id).where(Package.sha256 == package_id))
            ).scalar_one_or_none()
        if pid is None:
            return []
        found = await store.timeline(self.db, pid, now=now, holidays=self.holidays())
        return [
            RecipientTimeline(
                organ_id=line.exchange.recipient_organ_id,
                state=line.exchange.state,
                overdue=line.overdue,
                deadline=line.deadline,
                events=tuple(
                    StatusEvent(
                        code=e.code,
                        state=e.state_after,
                        at=e.received_at,
                        by=e.actor_organ_id,
                        description=e.description,
                    )
                    for e in line.events
                ),
            )
            for line in found.exchanges
        ]

    # --- directory, identities, paper -------------------------------------------------------------
    async def node_identities(self, fingerprint: str) -> frozenset[str]:
        return await store.organs_for_node(self.db, fingerprint)

    async def add_paper_dispatch(self, *, data: dict[str, Any], at: dt.datetime) -> dict[str, Any]:
        document_id = str(data["document_id"]).strip()
        code = _CODE.match(document_id.rsplit(",", 1)[-1].strip())
        if code is None:
            raise RequestError(
                "request.bad", "document_id must end with the number/notation (…,2026/01/05,12/UBND-VP)"
            )
        sent_on = dt.date.fromisoformat(data["sent_on"])
        subject = data.get("subject") if isinstance(data.get("subject"), str) else None
        record = store.PaperRecord(
            sender=data["sender"],
            recipient=str(data["recipient"]).strip().upper(),
            code_number=code["number"],
            code_notation=code["notation"],
            document_date=sent_on,
            subject=subject,
        )
        row, created = await store.add_paper_dispatch(self.db, record, now=at)
        if not created:
            raise Conflict("conflict.document_id", "this paper dispatch is already recorded")
        return {
            "id": row.id,
            "sender": record.sender,
            "recipient": record.recipient,
            "document_id": document_id,
            "sent_on": sent_on.isoformat(),
            "subject": subject,
            "created_at": row.created_at.isoformat(),
        }

    async def sync_directory(self, directory: Directory) -> None:
        """Keep the ``agency`` table in step with the directory file (levels for the rate's snapshots)."""
        agencies = list(directory)
        await store.sync_directory(
            self.db,
            [
                store.AgencyRecord(organ_id=a.organ_id, name=a.name, level=a.level, parent_organ_id=a.parent)
                for a in agencies
            ],
            {a.organ_id: a.pinned_fingerprints for a in agencies},
            now=self.clock(),
        )

    async def db_agencies(self) -> tuple[Agency, ...]:
        agencies = await store.list_agencies(self.db)
        async with self.db.read() as session:
            pins: dict[str, list[str]] = {}
            for organ_id, fingerprint in (
                await session.execute(
                    select(CertificatePin.organ_id, CertificatePin.fingerprint).order_by(
                        CertificatePin.organ_id, CertificatePin.fingerprint
                    )
                )
            ).all():
                pins.setdefault(organ_id, []).append(fingerprint)
        return tuple(
            Agency(
                organ_id=a.organ_id,
                name=a.name,
                level=a.level,
                parent=a.parent_organ_id,
                pinned_fingerprints=tuple(pins.get(a.organ_id, ())),
            )
            for a in agencies
            if a.level is not None  # the trust directory routes by level; a row without one cannot route
        )

    async def admin(self, op: str, **kw: Any) -> Any:
        now = self.clock()
        if op == "db_agencies":
            return await self.db_agencies()
        if op == "list_node_identities":
            return [(n.fingerprint, n.organ_id) for n in await store.list_nodes(self.db)]
        if op == "put_agency":
            a: Agency = kw["agency"]
            record = store.AgencyRecord(
                organ_id=a.organ_id, name=a.name, level=a.level, parent_organ_id=a.parent, source="admin"
            )
            await store.upsert_agency(self.db, record, now=now)
            for fingerprint in a.pinned_fingerprints:
                await store.pin_certificate(self.db, a.organ_id, fingerprint, now=now)
            return True
        if op == "add_pin":
            a = kw["agency"]
            if await store.get_agency(self.db, a.organ_id) is None:
                await self.admin("put_agency", agency=a)
            await store.pin_certificate(self.db, a.organ_id, kw["fingerprint"], now=now)
            return True
        if op == "remove_pin":
            return await store.unpin_certificate(self.db, kw["agency"].organ_id, kw["fingerprint"])
        if op == "delete_agency":
            return int(await store.remove_agency(self.db, kw["organ_id"]))
        if op == "add_node_identity":
            await store.register_node(self.db, kw["fingerprint"], kw["organ_id"], now=now)
            return True
        if op == "remove_node_identity":
            return int(await store.unregister_node(self.db, kw["fingerprint"], kw["organ_id"]))
        raise ValueError(f"unknown admin operation {op!r}")


async def prepare_schema(db: Database, *, migrate: bool) -> None:
    """Bring the schema to the code's migration head, or refuse to go on if it is not there.

    On PostgreSQL the upgrade runs under an advisory lock, so hub processes starting together take
    turns (the later ones find the schema at head and do nothing).
    """
    from gateway.store import migrate as migrations

    head = migrations.head_revision()
    if migrate:
        try:
            if db.dialect == "postgresql":
                async with db.engine.connect() as conn:
                    await conn.execute(text(f"SELECT pg_advisory_lock({MIGRATION_LOCK})"))
                    try:
                        await migrations.upgrade_engine(db.engine)
                    finally:
                        await conn.execute(text(f"SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
            else:
                await migrations.upgrade_engine(db.engine)
        except Exception as exc:
            if isinstance(exc, GatewayError):
                raise
            raise ConfigError(
                "config.invalid", f"the database schema could not be upgraded to {head}: {exc}"
            ) from exc
        return
    current = await migrations.current_revision_engine(db.engine)
    if current != head:
        raise ConfigError(
            "config.invalid",
            f"the database schema is at {current or 'nothing'}, this hub needs {head}: "
            "run `gateway db upgrade` (or set auto_migrate = true)",
        )


@contextlib.asynccontextmanager
async def open_repository(
    config: HubConfig,
    *,
    clock: Callable[[], dt.datetime] | None = None,
    holidays: Callable[[], HolidaysLike] = lambda: None,
    directory: Callable[[], Directory | None] = lambda: None,
) -> AsyncIterator[StoreRepository]:
    """Open the database (migrated, or checked; see :func:`prepare_schema`) for the app's lifetime."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    db = store.open_database(
        config.database_url, pool_size=config.db_pool_size, busy_timeout_ms=config.sqlite_busy_timeout_ms
    )
    try:
        await prepare_schema(db, migrate=config.auto_migrate)
        blobs = store.BlobStore(config.blob_dir)
        await blobs.sweep_temp()
        await asyncio.to_thread(sweep_spool, config.tmp_dir)
        yield StoreRepository(
            db,
            blobs,
            holidays=holidays,
            clock=clock or (lambda: dt.datetime.now(dt.UTC)),
            directory=directory,
            inline_body_max=config.inline_body_max,
        )
    finally:
        await db.close()
