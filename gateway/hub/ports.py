"""The seam between the hub's HTTP layer and the layers below it (store, verification).

Handlers speak only to :class:`Repository` and take :class:`Verdict` objects from the verification pool;
:mod:`gateway.hub.adapters` binds the repository to :mod:`gateway.store` (its tables, migrations and blob
store, shared with the rate engine and the web pages), :mod:`gateway.hub.worker` the verdicts to
:mod:`gateway.verification`. Keeping the
surface this small is what lets the HTTP layer be read (and tested) without the storage details.

Every value crossing the seam is a frozen, keyword-only dataclass of plain data (picklable, so a verdict can
come back from a worker process).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gateway.store.packages import PackageRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """What verification of a document package found (built in a worker process)."""

    document_id: str
    sender: str
    recipients: tuple[str, ...]
    electronic: bool
    """The signature was valid, trusted and bound to the sender (DESIGN §5 condition 1)."""
    reason: str | None = None
    """Why not electronic (lenient mode): the rejection code the strict path would have given."""
    record: PackageRecord
    """What the store keeps, read from the signed content (``signature_verdict`` is ``valid`` or the
    reason); the hub adds the Content-Type the bytes came with."""
    receipt_xml: bytes = b""
    """The signed hub receipt, prepared in the worker with every recipient ``queued``."""
    verify_seconds: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusVerdict:
    """What verification of a status message found."""

    sender: str
    """The agency that sent the status (``From``)."""
    document_id: str
    """``ResponseFor/DocumentId``: the exchange the status is about."""
    document_sender: str
    """``ResponseFor/OrganId``: who sent the document."""
    status_code: str
    description: str | None
    timestamp: dt.datetime | None
    electronic: bool
    reason: str | None = None
    message_sha256: str = ""
    receipt_xml: bytes = b""
    """The signed hub receipt for the poster (``Result="applied"``; a repeat answers the stored one)."""
    notice_xml: bytes = b""
    """The signed status notice for the other side's inbox, carrying the original status."""
    verify_seconds: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredPackage:
    package_id: str
    """The public id: SHA-256 (hex) of the exact bytes received."""
    document_id: str
    sender: str
    recipients: tuple[str, ...]
    receipt_xml: bytes
    size: int
    carriage: str
    content_type: str
    """The Content-Type it arrived with (a multipart body keeps its boundary), served back on GET."""
    electronic: bool
    reason: str | None
    received_at: dt.datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxItem:
    item_id: int
    kind: str
    """``package`` (a document addressed to the agency) or ``status`` (a status notice for its document)."""
    package_id: str
    document_id: str
    sender: str
    created_at: dt.datetime
    status_code: str | None = None
    status_from: str | None = None
    notice_xml: bytes | None = None
    """For ``status``: the hub-signed status notice (with the original status inside)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusEvent:
    code: str
    state: str
    at: dt.datetime
    by: str
    description: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RecipientTimeline:
    organ_id: str
    state: str
    overdue: bool
    deadline: dt.datetime | None
    events: tuple[StatusEvent, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplyResult:
    state: str
    repeated: bool
    """The same status was already applied (or changed nothing): answered 200 with the stored receipt."""
    notified: tuple[str, ...]
    """Agencies whose inbox got the notice."""
    receipt_xml: bytes


class Repository(Protocol):
    """Durable state of the hub. Every method commits before it returns (or changes nothing)."""

    async def ping(self) -> None: ...

    async def package(self, package_id: str) -> StoredPackage | None: ...

    async def ingest(
        self,
        *,
        verdict: Verdict,
        content_type: str,
        body_path: Path | None,
        body: bytes | None,
        received_at: dt.datetime,
    ) -> tuple[StoredPackage, bool]:
        """Store package, exchanges, inbox items and receipt in one transaction (grouped with concurrent
        ingests), with the bytes: a small body held in memory in that transaction, else first as a blob,
        fsynced; ``(stored, created)``.

        The same bytes already stored: ``(existing, False)``. The same ``(sender, DocumentId)`` with other
        bytes: raises ``Conflict("conflict.document_id")``. Unique constraints decide, not process memory.
        """
        ...

    async def package_bytes(self, package_id: str) -> bytes | Path:
        """The package's bytes, or the file holding them; ``NotFound`` if they are missing."""
        ...

    async def inbox(self, organ_id: str, *, limit: int) -> list[InboxItem]: ...

    async def ack(self, organ_id: str, item_ids: Sequence[int]) -> int: ...

    async def inbox_depth(self) -> dict[str, int]: ...

    async def apply_status(self, *, verdict: StatusVerdict, raw: bytes, at: dt.datetime) -> ApplyResult:
        """Apply through the lifecycle table, store the status, queue the notice, all in one transaction.

        Raises ``NotFound`` (no such exchange for this sender), ``AuthError`` (the status's ``From`` is not a
        party that may send this code), ``Conflict("conflict.transition")`` (illegal transition). A repeat
        of a stored status (same bytes) returns the stored receipt with ``repeated=True``.
        """
        ...

    async def timeline(self, package_id: str, *, now: dt.datetime) -> list[RecipientTimeline]: ...

    async def node_identities(self, fingerprint: str) -> frozenset[str]: ...

    async def add_paper_dispatch(self, *, data: dict[str, Any], at: dt.datetime) -> dict[str, Any]: ...

    async def sync_directory(self, directory: Any) -> None:
        """Keep the stored agencies in step with the directory file (the operator's rows win)."""
        ...

    async def admin(self, op: str, **kwargs: Any) -> Any: ...
