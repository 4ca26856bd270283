"""Packages: idempotent ingest, lookup, and the ACK-based inbox.

Idempotency keys (all enforced by unique indexes, so they hold across hub processes):

* ``package.sha256``: the same bytes are the same package. A re-send returns the stored package and the
  **stored receipt**, so a sender always gets the same receipt for the same bytes.
* ``(sender, document_id)`` among new documents (BussinessDocType 0): other bytes under a DocumentId already
  used are :class:`~gateway.errors.Conflict` ``conflict.document_id``. Recall, update and replacement
  packages (1/2/3) name an existing DocumentId and may repeat it.

Delivery is ACK-based: :func:`list_inbox` returns the oldest unacknowledged items and keeps returning them
until :func:`ack_inbox`; a node that crashes between the two sees the items again and dedupes by id.
This does not depend on ids being committed in order (two hub processes may commit id 8 before id 7:
an item is delivered as long as it is unacknowledged, not because it is above a cursor).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy import and_, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, aliased

from gateway import lifecycle
from gateway.calendar import HolidaysLike
from gateway.edxml.model import DocumentPackage
from gateway.errors import Conflict, FieldError, GatewayError, NotFound
from gateway.lifecycle import REQUEST_FOR_DOC_TYPE
from gateway.store import pg_batch, rows
from gateway.store.blobs import BlobStore
from gateway.store.db import Database
from gateway.store.models import (
    Agency,
    Exchange,
    InboxItem,
    Package,
    PackageAttachment,
    PackageBody,
    PackageRecipient,
    StatusEvent,
    StatusMessage,
)
from gateway.store.statuses import apply_transition, find_document, new_event

_SHA256 = re.compile(r"^[0-9a-f]{64}$")

Form = Literal["single", "multipart"]
RequestOutcome = Literal["applied", "repeat", "stale", "conflict", "not_found"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachmentRecord:
    """An attachment already written to the blob store."""

    content_id: str
    size: int
    sha256: str
    name: str | None = None
    content_type: str | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PackageRecord:
    """What the hub knows about a verified package, ready to store (built by :meth:`from_message`).

    ``sha256``/``size`` are those of the exact bytes received; ``blob_sha256`` names the blob holding
    the bytes served back to recipients (the same bytes for the single-file form). ``targets`` are the
    DocumentIds a recall/update/replacement acts on (default: its own DocumentId).
    ``signature_verdict`` is ``"valid"`` or the rejection code admitted in lenient mode.
    """

    sha256: str
    size: int
    blob_sha256: str
    sender: str
    recipients: tuple[str, ...]
    document_id: str
    form: Form = "single"
    bussiness_doc_type: int = 0
    bussiness_doc_reason: str | None = None
    paper: bool = False
    targets: tuple[str, ...] = ()
    signature_verdict: str = "valid"
    signer_fingerprint: str | None = None
    code_number: str | None = None
    code_notation: str | None = None
    subject: str | None = None
    document_type: str | None = None
    promulgation_date: dt.date | None = None
    priority: int | None = None
    due_date: dt.date | None = None
    attachments: tuple[AttachmentRecord, ...] = ()
    content_type: str | None = None
    """The Content-Type the bytes arrived with, to serve them back with (multipart keeps its boundary)."""

    @classmethod
    def from_message(
        cls,
        package: DocumentPackage,
        *,
        sha256: str,
        size: int,
        blob_sha256: str | None = None,
        form: Form = "single",
        signature_verdict: str = "valid",
        signer_fingerprint: str | None = None,
        attachments: Sequence[AttachmentRecord] | None = None,
        content_type: str | None = None,
    ) -> PackageRecord:
        """Take the fields from a parsed package (read from what the signature covers, DESIGN §3).

        Without ``attachments``, they are described from the inline attachments (hashing their bytes):
        the caller must still have written those bytes to the blob store.
        """
        header = package.header
        bussiness = package.bussiness
        if not header.document_id:
            raise FieldError("field.required", "the package has no DocumentId")
        if attachments is None:
            listed = {ref.content_id: ref for ref in package.manifest}
            attachments = [
                AttachmentRecord(
                    content_id=a.content_id,
                    size=len(a.data),
                    sha256=hashlib.sha256(a.data).hexdigest(),
                    name=a.attachment_name
                    or (listed[a.content_id].attachment_name if a.content_id in listed else None),
                    content_type=a.content_type,
                    description=a.description,
                )
                for a in package.attachments
            ]
        targets: tuple[str, ...] = ()
        if bussiness.bussiness_doc_type == 3 and bussiness.replacement_info_list:
            targets = tuple(dict.fromkeys(r.document_id for r in bussiness.replacement_info_list))
        doc_type = header.document_type
        return cls(
            sha256=sha256,
            size=size,
            blob_sha256=blob_sha256 or sha256,
            sender=header.from_.organ_id,
            recipients=tuple(o.organ_id for o in header.to),
            document_id=header.document_id,
            form=form,
            bussiness_doc_type=bussiness.bussiness_doc_type,
            bussiness_doc_reason=bussiness.bussiness_doc_reason,
            paper=bool(bussiness.paper),
            targets=targets,
            signature_verdict=signature_verdict,
            signer_fingerprint=signer_fingerprint,
            code_number=header.code.code_number if header.code else None,
            code_notation=header.code.code_notation if header.code else None,
            subject=header.subject,
            document_type=doc_type.type_name if doc_type else None,
            promulgation_date=header.promulgation_info.promulgation_date
            if header.promulgation_info
            else None,
            priority=header.other_info.priority if header.other_info else None,
            due_date=header.due_date,
            attachments=tuple(attachments),
            content_type=content_type,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestApplied:
    """How a recall/update/replacement package acted on one recipient's exchange."""

    recipient: str
    document_id: str
    outcome: RequestOutcome
    state: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestResult:
    package: Package
    created: bool
    """False when these bytes were stored before (a re-send, or a concurrent twin that won)."""
    requests: tuple[RequestApplied, ...] = ()

    @property
    def receipt(self) -> bytes:
        """The hub receipt to answer with: always the one stored with the first ingest."""
        return self.package.receipt


@dataclass(frozen=True, slots=True, kw_only=True)
class PackageDetail:
    package: Package
    recipients: tuple[str, ...]
    attachments: tuple[PackageAttachment, ...]

    def is_party(self, organ_id: str) -> bool:
        """Whether ``organ_id`` may read the package (its sender or a recipient)."""
        return organ_id == self.package.sender_organ_id or organ_id in self.recipients


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxEntry:
    """An inbox item with what a node needs to decide how to fetch it."""

    id: int
    kind: str
    created_at: dt.datetime
    package_id: int | None
    status_message_id: int | None
    document_id: str | None
    sender: str | None
    """The package's sender, or the status message's author."""
    bussiness_doc_type: int | None
    sha256: str | None
    status_code: str | None
    document_sender: str | None = None
    """The sender of the document the item is about (for a status: the one the status answers)."""
    document_sha256: str | None = None
    """The SHA-256 of that document's package (for a status: the new document it is about, if stored)."""
    notice: bytes | None = None
    """For a status, with ``with_notices``: the hub-signed copy (``status_message.forwarded``) to deliver."""


def _validate(record: PackageRecord) -> None:
    for name in ("sha256", "blob_sha256"):
        if not _SHA256.match(getattr(record, name)):
            raise ValueError(f"{name} must be lower-case hex SHA-256")
    if not record.recipients:
        raise FieldError("field.no_recipient", "the package has no recipient")
    if len(set(record.recipients)) != len(record.recipients):
        raise FieldError("field.duplicate_recipient", "a recipient is listed twice")
    if record.bussiness_doc_type not in (0, 1, 2, 3):
        raise FieldError("field.business_doc_type", f"BussinessDocType {record.bussiness_doc_type}")


async def _existing(session: AsyncSession, record: PackageRecord) -> Package | None:
    """The stored package for these bytes; Conflict if the DocumentId was used by other bytes.

    The two lookups are two statements: under READ COMMITTED (PostgreSQL) each sees its own snapshot, so
    a concurrent ingest of *these same bytes* may commit between them and be invisible to the first and
    visible to the second. The package found by DocumentId is therefore compared by SHA-256 before it is
    called a conflict: the same bytes are never a conflict, whoever stored them.
    """
    package = (
        await session.execute(select(Package).where(Package.sha256 == record.sha256))
    ).scalar_one_or_none()
    if package is not None:
        return package
    if record.bussiness_doc_type == 0:
        other = await find_document(session, record.sender, record.document_id)
        if other is not None and other.sha256 == record.sha256:
            return other
        if other is not None:
            raise _document_conflict(record)
    return None


def _document_conflict(record: PackageRecord) -> Conflict:
    return Conflict(
        "conflict.document_id",
        f"DocumentId {record.document_id} of {record.sender} was already used by a different package",
        document_id=record.document_id,
    )


def _levels_sync(session: Session, organ_ids: Iterable[str]) -> dict[str, str | None]:
    rows = session.execute(_LEVELS, {"organ_ids": list(organ_ids)})
    return {organ_id: level for organ_id, level in rows.all()}


async def _levels(session: AsyncSession, organ_ids: Iterable[str]) -> dict[str, str | None]:
    return await session.run_sync(_levels_sync, list(organ_ids))


async def ingest_package(
    db: Database,
    record: PackageRecord,
    *,
    receipt: bytes,
    received_at: dt.datetime,
    holidays: HolidaysLike = None,
    body: bytes | None = None,
) -> IngestResult:
    """Store a verified package in one transaction and route it; idempotent by the bytes' SHA-256.

    Creates the package, its recipients and attachments, one inbox item per recipient and, for a new
    document, one exchange per recipient (state ``queued``, deadline by the working-day calendar, levels
    snapshotted from the directory). A recall/update/replacement package (1/2/3) instead makes its
    request (as a 13 from the sender) on the exchanges of the document(s) it targets, for its own
    recipients; a closed exchange is reported as ``conflict``, not an error, so one finished recipient
    does not block the request to the others.

    ``receipt`` is the hub receipt built for this ingest; if the bytes were stored before, the stored
    receipt is returned instead (see :attr:`IngestResult.receipt`). ``body``: the package's bytes, to keep
    in the database with it (:class:`~gateway.store.models.PackageBody`); None when they are a blob.
    """
    _validate(record)
    async with db.read() as session:
        stored = await _existing(session, record)
    if stored is not None:
        return IngestResult(package=stored, created=False)
    try:
        async with db.write() as session:
            stored = await _existing(session, record)
            if stored is not None:
                return IngestResult(package=stored, created=False)
            item = IngestItem(record=record, receipt=receipt, received_at=received_at, body=body)
            return await _insert(session, item, holidays=holidays)
    except IntegrityError:
        # A concurrent ingest (another hub process) committed first: report what it stored.
        async with db.read() as session:
            stored = await _existing(session, record)
        if stored is None:
            raise
        return IngestResult(package=stored, created=False)


async def package_body(db: Database, sha256: str) -> bytes | None:
    """The bytes of package ``sha256`` if the database keeps them (a small body), else None: they are
    then the blob of that name, or the package does not exist."""
    async with db.read() as session:
        return (await session.execute(_BODY, {"sha256": sha256})).scalar_one_or_none()


async def package_bytes(
    db: Database, blobs: BlobStore, sha256: str, *, blob_sha256: str | None = None
) -> bytes | Path | None:
    """The bytes of package ``sha256`` where the hub keeps them: from the database (a small body), else
    the path of its blob file (``blob_sha256``, by default ``sha256``; for ``sendfile``). None when
    neither holds them (no such package, or its blob is missing)."""
    data = await package_body(db, sha256)
    if data is not None:
        return data
    path = blobs.path_of(blob_sha256 or sha256)
    return path if await asyncio.to_thread(path.is_file) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestItem:
    """One package for :func:`ingest_packages`: the arguments :func:`ingest_package` takes."""

    record: PackageRecord
    receipt: bytes
    received_at: dt.datetime
    body: bytes | None = None
    """The exact bytes, kept in the database with the package (a small body), or None (a blob)."""


async def ingest_packages(
    db: Database,
    items: Sequence[IngestItem],
    *,
    holidays: HolidaysLike = None,
    levels: Mapping[str, str | None] | None = None,
) -> list[IngestResult | GatewayError]:
    """Many ingests in **one** transaction: one commit (one fsync) for all, which is what lets SQLite's
    single writer keep up with concurrent requests (the hub's group commit).

    Each item gets what :func:`ingest_package` would have given it, in order: an :class:`IngestResult`, or
    the :class:`GatewayError` it would have raised (a DocumentId conflict, an invalid record) as a value,
    so one bad item does not fail the others. Items repeating each other within the batch behave as if
    sent one after the other. If the transaction hits a unique constraint (another process stored one of
    these packages first) or a deadlock with another process's batch, it is rolled back and every item is
    ingested on its own.

    ``levels``: the administrative level of every sender and recipient, from the directory the caller
    routed with (the hub's); without it they are read from the ``agency`` table.
    """
    results: list[IngestResult | GatewayError | None] = [None] * len(items)
    todo: list[int] = []
    for i, item in enumerate(items):
        try:
            _validate(item.record)
        except GatewayError as exc:
            results[i] = exc
        else:
            todo.append(i)
    if not todo:
        return results  # type: ignore[return-value]
    # One order for every process (by SHA-256): two batches inserting the same packages then take the
    # unique-index locks in the same order instead of deadlocking.
    todo.sort(key=lambda i: items[i].record.sha256)
    try:
        if all(items[i].record.bussiness_doc_type == 0 for i in todo) and db.dialect == "postgresql":
            # The common batch, new documents only, on PostgreSQL: one statement (see pg_batch).
            plan = await _store_documents_at_once(db, items, todo, results, holidays=holidays, levels=levels)
        elif all(items[i].record.bussiness_doc_type == 0 for i in todo):
            # The same on SQLite: the whole transaction is one hand-off to the writer thread (see
            # Database.run_write).
            plan = await db.run_write(
                _store_documents, items, todo, results, holidays=holidays, levels=levels
            )
        else:
            async with db.write() as session:
                plan = await session.run_sync(
                    _store_documents, items, todo, results, holidays=holidays, levels=levels
                )
                for i in plan.requests:
                    results[i] = await _insert(session, items[i], holidays=holidays, levels=plan.levels)
        for i, first in plan.twins:
            earlier = results[first]
            results[i] = (
                _document_conflict(items[i].record)
                if isinstance(earlier, Conflict)
                else IngestResult(package=earlier.package, created=False)  # type: ignore[union-attr]
            )
    except (IntegrityError, GatewayError, DBAPIError) as exc:
        if isinstance(exc, DBAPIError) and not isinstance(exc, IntegrityError) and not _retryable(exc):
            raise
        for i in todo:
            item = items[i]
            try:
                results[i] = await ingest_package(
                    db,
                    item.record,
                    receipt=item.receipt,
                    received_at=item.received_at,
                    holidays=holidays,
                    body=item.body,
                )
            except GatewayError as exc:
                results[i] = exc
    return results  # type: ignore[return-value]


_FIND_BYTES = select(Package).where(Package.sha256.in_(bindparam("shas", expanding=True)))  # type: ignore[attr-defined]
"""Packages holding these bytes (the unique index on ``sha256``)."""
_FIND_DOCUMENTS = select(Package).where(
    Package.bussiness_doc_type == 0,
    Package.sender_organ_id.in_(bindparam("senders", expanding=True)),  # type: ignore[attr-defined]
    Package.document_id.in_(bindparam("documents", expanding=True)),  # type: ignore[attr-defined]
)
"""New documents under these senders and DocumentIds: both columns constrained, so the lookup is a search
of the (sender, DocumentId) index, never a scan of the table (the caller keeps the exact pairs)."""
_INSERT_PACKAGES = {
    dialect: dml(Package.__table__)  # type: ignore[attr-defined]
    .on_conflict_do_nothing()
    .returning(Package.__table__.c.id, Package.__table__.c.sha256)  # type: ignore[attr-defined]
    for dialect, dml in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}
"""New packages, each unless a stored one holds its bytes or (a new document) its DocumentId: the two
unique indexes decide, so no look-up precedes the insert. A skipped row returns nothing; the rows that
are returned carry their SHA-256 (no order is promised)."""
_INSERT_CHILDREN = {name: insert(table) for name, table, _ in pg_batch.CHILDREN}
"""Each child table's multi-row insert, by the names of :func:`rows.children`."""
_BODY = (
    select(PackageBody.data)
    .join(Package, Package.id == PackageBody.package_id)  # type: ignore[arg-type]
    .where(Package.sha256 == bindparam("sha256"))
)
_LEVELS = select(Agency.organ_id, Agency.level).where(
    Agency.organ_id.in_(bindparam("organ_ids", expanding=True))  # type: ignore[attr-defined]
)


@dataclass(slots=True, kw_only=True)
class _Plan:
    """What :func:`_store_documents` left to its caller: the recall/update/replacement packages to apply
    (after the documents) and the repeats of an earlier item of the batch."""

    requests: list[int]
    twins: list[tuple[int, int]]
    levels: Mapping[str, str | None]


def _store_documents(
    session: Session,
    items: Sequence[IngestItem],
    todo: Sequence[int],
    results: list[IngestResult | GatewayError | None],
    *,
    holidays: HolidaysLike,
    levels: Mapping[str, str | None] | None,
) -> _Plan:
    """The synchronous part of a group commit: sort the items into repeats and conflicts within the batch,
    new documents and requests, and write the new documents (filling ``results``).

    New documents are not looked up first: the insert skips any that a stored package already holds
    (:data:`_INSERT_PACKAGES`), and only those are looked up, to tell a repeat from a conflict. Under load
    the look-ups were two of a commit's round trips and half of its time on PostgreSQL; almost every
    package is new. Other bytes under a DocumentId an earlier item of the batch carries are looked up
    after the insert: a conflict with that item, or with the stored package that made it skip, unless
    they are themselves stored bytes (a repeat)."""
    records = [items[i].record for i in todo]
    if levels is None:
        levels = _levels_sync(session, {o for r in records for o in (r.sender, *r.recipients)})
    plan = _Plan(requests=[], twins=[], levels=levels)
    request_shas = [r.sha256 for r in records if r.bussiness_doc_type != 0]
    stored = (
        {p.sha256: p for p in session.execute(_FIND_BYTES, {"shas": request_shas}).scalars()}
        if request_shas
        else {}
    )
    fresh, clashes = _sort_batch(items, todo, results, plan, stored)
    written = _insert_documents(session, [items[i] for i in fresh], holidays=holidays, levels=levels)
    if later := _place(results, fresh, written, clashes):
        for i, result in zip(later, _settle(session, [items[i].record for i in later]), strict=True):
            results[i] = result
    return plan


def _sort_batch(
    items: Sequence[IngestItem],
    todo: Sequence[int],
    results: list[IngestResult | GatewayError | None],
    plan: _Plan,
    stored: Mapping[str, Package],
) -> tuple[list[int], list[int]]:
    """Sort a batch, in its order, into repeats of an earlier item (``plan.twins``), requests
    (``plan.requests``; ``stored``: the packages holding their bytes, a repeat each), new documents to
    insert, and other bytes under the DocumentId of an earlier item (clashes, settled after the insert):
    the last two are returned."""
    fresh: list[int] = []  # new documents, written together below
    clashes: list[int] = []  # other bytes under the DocumentId of an earlier item: settled after it
    pending_sha: dict[str, int] = {}
    pending_doc: set[tuple[str, str]] = set()
    for i in todo:
        record = items[i].record
        if record.sha256 in pending_sha:
            plan.twins.append((i, pending_sha[record.sha256]))
        elif record.bussiness_doc_type != 0:
            if record.sha256 in stored:
                results[i] = IngestResult(package=stored[record.sha256], created=False)
            else:
                pending_sha[record.sha256] = i
                plan.requests.append(i)
        elif (record.sender, record.document_id) in pending_doc:
            pending_sha[record.sha256] = i
            clashes.append(i)
        else:
            pending_sha[record.sha256] = i
            pending_doc.add((record.sender, record.document_id))
            fresh.append(i)
    return fresh, clashes


async def _store_documents_at_once(
    db: Database,
    items: Sequence[IngestItem],
    todo: Sequence[int],
    results: list[IngestResult | GatewayError | None],
    *,
    holidays: HolidaysLike,
    levels: Mapping[str, str | None] | None,
) -> _Plan:
    """:func:`_store_documents` for a batch of new documents on PostgreSQL, as one statement committed on
    its own (:mod:`gateway.store.pg_batch`); what it skipped is settled afterwards, in a read."""
    records = [items[i].record for i in todo]
    if levels is None:
        async with db.read() as session:
            levels = await session.run_sync(
                _levels_sync, {o for r in records for o in (r.sender, *r.recipients)}
            )
    plan = _Plan(requests=[], twins=[], levels=levels)
    fresh, clashes = _sort_batch(items, todo, results, plan, {})
    written: list[IngestResult | None] = []
    if fresh:
        new = [items[i] for i in fresh]
        packages = [rows.package_row(item) for item in new]
        children = rows.children(
            [(item.record.sha256, item) for item in new], holidays=holidays, levels=levels
        )
        answer = await db.run_statement(pg_batch.STATEMENT, pg_batch.parameters(packages, children))
        written = _created(packages, {sha: pid for pid, sha in answer})
    if later := _place(results, fresh, written, clashes):
        async with db.read() as session:
            settled = await session.run_sync(_settle, [items[i].record for i in later])
        for i, result in zip(later, settled, strict=True):
            results[i] = result
    return plan


def _created(packages: Sequence[rows.Row], ids: Mapping[str, int]) -> list[IngestResult | None]:
    """The results of the new documents an insert wrote, from their rows and ids (by SHA-256); None for
    each one it skipped."""
    created: list[IngestResult | None] = []
    for row in packages:
        pid = ids.get(str(row["sha256"]))
        created.append(
            None
            if pid is None
            else IngestResult(package=Package.model_construct(id=pid, **row), created=True)
        )
    return created


def _place(
    results: list[IngestResult | GatewayError | None],
    fresh: Sequence[int],
    written: Sequence[IngestResult | None],
    clashes: Sequence[int],
) -> list[int]:
    """Put the results of the new documents the insert wrote; return the items left to :func:`_settle`:
    those it skipped, and the clashes."""
    for i, result in zip(fresh, written, strict=True):
        results[i] = result
    return [i for i, result in zip(fresh, written, strict=True) if result is None] + list(clashes)


def _settle(session: Session, records: Sequence[PackageRecord]) -> list[IngestResult | Conflict]:
    """What stored package keeps each of these new documents out: one with the same bytes (a repeat) or,
    failing that, another under the same DocumentId (a conflict).

    Each look-up is a statement of its own, which under READ COMMITTED (PostgreSQL) sees everything
    committed before it started, so the package that made the insert skip a row (committed before the
    insert went on) is visible to both."""
    shas = [r.sha256 for r in records]
    by_sha = {p.sha256: p for p in session.execute(_FIND_BYTES, {"shas": shas}).scalars()}
    rest = [r for r in records if r.sha256 not in by_sha]
    taken: set[tuple[str, str]] = set()
    if rest:
        params = {"senders": list({r.sender for r in rest}), "documents": list({r.document_id for r in rest})}
        taken = {
            (p.sender_organ_id, p.document_id) for p in session.execute(_FIND_DOCUMENTS, params).scalars()
        }
    settled: list[IngestResult | Conflict] = []
    for record in records:
        if record.sha256 in by_sha:
            settled.append(IngestResult(package=by_sha[record.sha256], created=False))
        elif (record.sender, record.document_id) in taken:
            settled.append(_document_conflict(record))
        else:  # pragma: no cover - packages are never deleted
            raise RuntimeError(f"package {record.sha256} was skipped, yet no stored package holds its keys")
    return settled


def _retryable(exc: DBAPIError) -> bool:
    """A deadlock or serialization failure (PostgreSQL 40P01/40001): the transaction may simply be redone."""
    state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return state in ("40P01", "40001")


def _insert_children(
    session: Session,
    packages: Sequence[tuple[int, IngestItem]],
    *,
    holidays: HolidaysLike,
    levels: Mapping[str, str | None],
) -> None:
    """The child rows of freshly inserted packages (:func:`rows.children`): one statement per table."""
    for name, table_rows in rows.children(packages, holidays=holidays, levels=levels).items():
        if table_rows:
            session.execute(_INSERT_CHILDREN[name], table_rows)


def _insert_documents(
    session: Session,
    items: Sequence[IngestItem],
    *,
    holidays: HolidaysLike,
    levels: Mapping[str, str | None],
) -> list[IngestResult | None]:
    """New documents (BussinessDocType 0), many at once: a fixed handful of statements for the whole batch.

    Each statement is a database round trip (through a thread for SQLite), which costs far more than the
    rows it carries; one multi-row INSERT … RETURNING per table keeps a group commit's cost nearly flat in
    its size. An item whose bytes or DocumentId a stored package holds is skipped: None (:func:`_settle`
    tells a repeat from a conflict). The returned packages are plain values (not attached to the
    session), like the ones a read session returns.
    """
    if not items:
        return []
    packages = [rows.package_row(item) for item in items]
    statement = _INSERT_PACKAGES[session.get_bind().dialect.name]
    ids: dict[str, int] = {sha: pid for pid, sha in session.execute(statement, packages)}
    written = [(ids[item.record.sha256], item) for item in items if item.record.sha256 in ids]
    _insert_children(session, written, holidays=holidays, levels=levels)
    return _created(packages, ids)


async def _insert(
    session: AsyncSession,
    item: IngestItem,
    *,
    holidays: HolidaysLike,
    levels: Mapping[str, str | None] | None = None,
) -> IngestResult:
    record, received_at = item.record, item.received_at
    if levels is None:
        levels = await _levels(session, {record.sender, *record.recipients})
    if record.bussiness_doc_type == 0:
        (document,) = await session.run_sync(_insert_documents, [item], holidays=holidays, levels=levels)
        if document is None:
            (document,) = await session.run_sync(_settle, [record])
        if isinstance(document, Conflict):
            raise document
        return document
    # A recall/update/replacement: an ORM object, since applying the request fills its target fields.
    package = Package(**rows.package_row(item))
    session.add(package)
    await session.flush()
    assert package.id is not None
    await session.run_sync(_insert_children, [(package.id, item)], holidays=holidays, levels=levels)
    requests = await _make_requests(session, package, record, received_at=received_at)
    return IngestResult(package=package, created=True, requests=requests)


async def _make_requests(
    session: AsyncSession, package: Package, record: PackageRecord, *, received_at: dt.datetime
) -> tuple[RequestApplied, ...]:
    kind = REQUEST_FOR_DOC_TYPE[record.bussiness_doc_type]
    outcomes: list[RequestApplied] = []
    for target in record.targets or (record.document_id,):
        document = await find_document(session, record.sender, target)
        if document is None:
            outcomes += [
                RequestApplied(recipient=r, document_id=target, outcome="not_found")
                for r in record.recipients
            ]
            continue
        if package.target_package_id is None:
            package.target_package_id = document.id
            package.target_document_id = target
        exchanges = {
            e.recipient_organ_id: e
            for e in (
                await session.execute(
                    select(Exchange)
                    .where(
                        Exchange.package_id == document.id,
                        Exchange.recipient_organ_id.in_(list(record.recipients)),
                    )  # type: ignore[attr-defined]
                    .order_by(Exchange.id)
                    .with_for_update()
                )
            ).scalars()
        }
        events: list[StatusEvent] = []
        for recipient in record.recipients:
            exchange = exchanges.get(recipient)
            if exchange is None:
                outcomes.append(RequestApplied(recipient=recipient, document_id=target, outcome="not_found"))
                continue
            try:
                transition = lifecycle.apply(
                    exchange.state,
                    "13",
                    actor="sender",
                    previous=exchange.previous_state,
                    pending=exchange.request_kind,
                    request=kind,
                )
            except Conflict:
                outcomes.append(
                    RequestApplied(
                        recipient=recipient, document_id=target, outcome="conflict", state=exchange.state
                    )
                )
                continue
            apply_transition(exchange, transition, at=received_at)
            events.append(
                new_event(
                    exchange,
                    transition,
                    actor_organ_id=record.sender,
                    received_at=received_at,
                    package_id=package.id,
                    description=record.bussiness_doc_reason,
                )
            )
            outcomes.append(
                RequestApplied(
                    recipient=recipient,
                    document_id=target,
                    outcome=transition.outcome,
                    state=transition.state.value,
                )
            )
        session.add_all(events)
    await session.flush()
    return tuple(outcomes)


async def get_package(db: Database, package_id: int) -> PackageDetail:
    """A package with its recipients and attachments; :class:`NotFound` if there is none."""
    async with db.read() as session:
        package = await session.get(Package, package_id)
        if package is None:
            raise NotFound("resource.not_found", f"no package {package_id}")
        recipients = (
            await session.execute(
                select(PackageRecipient.organ_id)
                .where(PackageRecipient.package_id == package_id)
                .order_by(PackageRecipient.position)  # type: ignore[arg-type]
            )
        ).scalars()
        attachments = (
            await session.execute(
                select(PackageAttachment)
                .where(PackageAttachment.package_id == package_id)
                .order_by(PackageAttachment.position)  # type: ignore[arg-type]
            )
        ).scalars()
        return PackageDetail(package=package, recipients=tuple(recipients), attachments=tuple(attachments))


async def get_package_by_sha256(db: Database, sha256: str) -> Package | None:
    """The package stored for these exact bytes (the hub's fast path for a re-send)."""
    async with db.read() as session:
        return (await session.execute(select(Package).where(Package.sha256 == sha256))).scalar_one_or_none()


async def list_inbox(
    db: Database,
    organ_id: str,
    *,
    limit: int = 100,
    after_id: int | None = None,
    with_notices: bool = False,
) -> list[InboxEntry]:
    """The oldest unacknowledged items for ``organ_id``.

    ``after_id`` pages within one drain; a new poll should start without it, so that an item committed
    late with a smaller id is still delivered. ``with_notices`` also loads each status item's forwarded
    copy (what the hub delivers), which the other callers do not need.
    """
    document = aliased(Package)
    columns = [
        InboxItem.id,
        InboxItem.kind,
        InboxItem.created_at,
        InboxItem.package_id,
        InboxItem.status_message_id,
        func.coalesce(Package.document_id, StatusMessage.document_id),
        func.coalesce(Package.sender_organ_id, StatusMessage.actor_organ_id),
        Package.bussiness_doc_type,
        Package.sha256,
        StatusMessage.code,
        func.coalesce(Package.sender_organ_id, StatusMessage.document_sender_organ_id),
        func.coalesce(Package.sha256, document.sha256),
    ]
    if with_notices:
        columns.append(StatusMessage.forwarded)
    query = (
        select(*columns)
        .outerjoin(Package, Package.id == InboxItem.package_id)
        .outerjoin(StatusMessage, StatusMessage.id == InboxItem.status_message_id)
        .outerjoin(
            document,
            and_(
                document.sender_organ_id == StatusMessage.document_sender_organ_id,
                document.document_id == StatusMessage.document_id,
                document.bussiness_doc_type == 0,
            ),
        )
        .where(InboxItem.organ_id == organ_id, InboxItem.acked_at.is_(None))  # type: ignore[union-attr]
        .order_by(InboxItem.id)
        .limit(limit)
    )
    if after_id is not None:
        query = query.where(InboxItem.id > after_id)  # type: ignore[operator]
    async with db.read() as session:
        rows = (await session.execute(query)).all()
    return [
        InboxEntry(
            id=r[0],
            kind=r[1],
            created_at=r[2],
            package_id=r[3],
            status_message_id=r[4],
            document_id=r[5],
            sender=r[6],
            bussiness_doc_type=r[7],
            sha256=r[8],
            status_code=r[9],
            document_sender=r[10],
            document_sha256=r[11],
            notice=r[12] if with_notices else None,
        )
        for r in rows
    ]


async def ack_inbox(db: Database, organ_id: str, ids: Iterable[int], *, now: dt.datetime) -> int:
    """Acknowledge items of ``organ_id``; returns how many were newly acknowledged.

    Ids of other agencies and ids already acknowledged are ignored, so acks are idempotent and an agency
    cannot touch another's inbox.
    """
    wanted = sorted(set(ids))
    if not wanted:
        return 0
    async with db.write() as session:
        result = await session.execute(
            update(InboxItem)
            .where(
                InboxItem.organ_id == organ_id,
                InboxItem.id.in_(wanted),  # type: ignore[union-attr]
                InboxItem.acked_at.is_(None),  # type: ignore[union-attr]
            )
            .values(acked_at=now)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def inbox_depth(db: Database, organ_id: str | None = None) -> int:
    """Unacknowledged items (of one agency, or all): the ``/metrics`` inbox gauge."""
    query = select(func.count()).select_from(InboxItem).where(InboxItem.acked_at.is_(None))  # type: ignore[union-attr]
    if organ_id is not None:
        query = query.where(InboxItem.organ_id == organ_id)
    async with db.read() as session:
        return int((await session.execute(query)).scalar_one())


async def inbox_depths(db: Database) -> dict[str, int]:
    """Unacknowledged items per agency (agencies with none are left out): the ``/metrics`` gauge."""
    query = (
        select(InboxItem.organ_id, func.count())
        .where(InboxItem.acked_at.is_(None))  # type: ignore[union-attr]
        .group_by(InboxItem.organ_id)
    )
    async with db.read() as session:
        return {organ_id: int(n) for organ_id, n in (await session.execute(query)).all()}
