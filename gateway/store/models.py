"""The hub's tables (sqlmodel on SQLAlchemy 2), with the constraints that keep them right.

The design is explained in ``docs/storage.md``; the short version:

* Uniqueness lives in the database, not in process memory, so that N hub processes sharing one PostgreSQL
  cannot create duplicates: ``package.sha256`` (the same bytes are one package), a partial unique index on
  ``(sender, document_id)`` for new documents (BussinessDocType 0), ``exchange(package, recipient)``,
  ``status_message.sha256`` (the same status message is applied once), one inbox item per party and item.
* Organ ids are plain strings, not foreign keys to ``agency``: history must survive a directory change,
  and a recipient may live in a parent hub's directory. The levels needed by the rate are *snapshotted*
  on each exchange and paper dispatch when they are created.
* Immutable facts of a package that the rate needs (``paper``, whether the signature was valid) are
  copied onto its exchanges, so the rate is one scan of one table grouped by indexed columns.
* Every time is an aware UTC instant (:class:`~gateway.store.types.UTCDateTime`); ``month`` columns are
  ``yyyymm`` in Vietnam time, computed once when the row is written.

These models are the reference for the migrations: a test checks that ``alembic upgrade head`` produces
exactly this metadata on SQLite and PostgreSQL. Change both together.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from gateway.lifecycle import RequestKind, State
from gateway.store.types import UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)
"""The hub's own metadata (not SQLModel's global one, which other stores may share)."""

BigId = BigInteger().with_variant(Integer(), "sqlite")
"""64-bit ids on PostgreSQL; ``INTEGER PRIMARY KEY`` (the rowid, 64-bit anyway) on SQLite."""

OrganId = String(64)
Sha256Hex = String(64)
DocumentIdType = String(255)

LEVELS = ("central", "province", "department", "district", "commune")
"""Administrative levels of DESIGN §5 (the directory holds them; codes only suggest a default)."""

STATES = tuple(s.value for s in State)
REQUEST_KINDS = tuple(k.value for k in RequestKind)
INBOX_KINDS = ("package", "status", "receipt")
JOB_STATES = ("ready", "running", "done", "failed")


def _in(column: str, values: tuple[str, ...], *, nullable: bool = False) -> str:
    listed = ", ".join(f"'{v}'" for v in values)
    return f"{column} IS NULL OR {column} IN ({listed})" if nullable else f"{column} IN ({listed})"


class HubModel(SQLModel, registry=registry(metadata=metadata)):
    """Base of the hub's tables; rows returned by the store are detached and meant to be read only."""


class Agency(HubModel, table=True):
    """The directory: an agency (cơ quan) by its code, with the level the rate groups by."""

    __tablename__: ClassVar[Any] = "agency"
    __table_args__ = (
        CheckConstraint(_in("level", LEVELS, nullable=True), name="level"),
        Index("ix_agency_parent", "parent_organ_id"),
    )

    organ_id: str = Field(primary_key=True, sa_type=OrganId)
    name: str = Field(sa_type=Text)
    level: str | None = Field(default=None, sa_type=String(16))
    parent_organ_id: str | None = Field(default=None, sa_type=OrganId)
    email: str | None = Field(default=None, sa_type=String(255))
    active: bool = Field(default=True)
    source: str | None = Field(default=None, sa_type=String(16))
    """Who maintains the row: ``file`` (imported from the directory file, kept in step with it) or
    ``admin`` (the operator, through the admin API or CLI; wins over the file); ``None`` for others."""
    created_at: dt.datetime = Field(sa_type=UTCDateTime)
    updated_at: dt.datetime = Field(sa_type=UTCDateTime)


class CertificatePin(HubModel, table=True):
    """A signing certificate pinned for an agency (DESIGN §3: the directory can pin certificates)."""

    __tablename__: ClassVar[Any] = "certificate_pin"

    organ_id: str = Field(
        primary_key=True, sa_type=OrganId, foreign_key="agency.organ_id", ondelete="CASCADE"
    )
    fingerprint: str = Field(primary_key=True, sa_type=Sha256Hex)
    certificate: bytes | None = Field(default=None, sa_type=LargeBinary)
    note: str | None = Field(default=None, sa_type=Text)
    created_at: dt.datetime = Field(sa_type=UTCDateTime)


class NodeIdentity(HubModel, table=True):
    """A transport (mTLS client) certificate allowed to act for an agency: a node may serve several."""

    __tablename__: ClassVar[Any] = "node_identity"
    __table_args__ = (Index("ix_node_identity_organ", "organ_id"),)

    fingerprint: str = Field(primary_key=True, sa_type=Sha256Hex)
    organ_id: str = Field(
        primary_key=True, sa_type=OrganId, foreign_key="agency.organ_id", ondelete="CASCADE"
    )
    note: str | None = Field(default=None, sa_type=Text)
    created_at: dt.datetime = Field(sa_type=UTCDateTime)


class Package(HubModel, table=True):
    """One received package: the exact bytes (by SHA-256), its verdict, routing facts and search fields."""

    __tablename__: ClassVar[Any] = "package"
    __table_args__ = (
        UniqueConstraint("sha256", name="uq_package_sha256"),
        Index(
            "uq_package_new_document",
            "sender_organ_id",
            "document_id",
            unique=True,
            sqlite_where=text("bussiness_doc_type = 0"),
            postgresql_where=text("bussiness_doc_type = 0"),
        ),
        Index("ix_package_sender_document", "sender_organ_id", "document_id"),
        Index("ix_package_sender_received", "sender_organ_id", "received_at"),
        Index("ix_package_received", "received_at"),
        Index("ix_package_code", "code_number", "code_notation"),
        Index("ix_package_target", "target_package_id"),
        CheckConstraint("bussiness_doc_type BETWEEN 0 AND 3", name="bussiness_doc_type"),
        CheckConstraint(_in("form", ("single", "multipart")), name="form"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    sha256: str = Field(sa_type=Sha256Hex)
    size: int = Field(sa_type=BigInteger)
    form: str = Field(sa_type=String(16))
    blob_sha256: str = Field(sa_type=Sha256Hex)
    sender_organ_id: str = Field(sa_type=OrganId)
    document_id: str = Field(sa_type=DocumentIdType)
    bussiness_doc_type: int = Field(default=0, sa_type=SmallInteger)
    bussiness_doc_reason: str | None = Field(default=None, sa_type=Text)
    paper: bool = Field(default=False)
    target_document_id: str | None = Field(default=None, sa_type=DocumentIdType)
    target_package_id: int | None = Field(default=None, sa_type=BigId, foreign_key="package.id")
    signature_verdict: str = Field(default="valid", sa_type=String(64))
    signer_fingerprint: str | None = Field(default=None, sa_type=Sha256Hex)
    received_at: dt.datetime = Field(sa_type=UTCDateTime)
    receipt: bytes = Field(sa_type=LargeBinary)
    code_number: str | None = Field(default=None, sa_type=String(32))
    code_notation: str | None = Field(default=None, sa_type=String(64))
    subject: str | None = Field(default=None, sa_type=Text)
    document_type: str | None = Field(default=None, sa_type=Text)
    promulgation_date: dt.date | None = Field(default=None, sa_type=Date)
    priority: int | None = Field(default=None, sa_type=SmallInteger)
    due_date: dt.date | None = Field(default=None, sa_type=Date)
    content_type: str | None = Field(default=None, sa_type=String(255))
    """The Content-Type the bytes arrived with (a multipart keeps its boundary), served back with them."""

    @property
    def signature_ok(self) -> bool:
        return self.signature_verdict == "valid"


class PackageRecipient(HubModel, table=True):
    """A recipient a package was routed to, in the order of its ``To`` list (also for 1/2/3 packages)."""

    __tablename__: ClassVar[Any] = "package_recipient"
    __table_args__ = (Index("ix_package_recipient_organ", "organ_id"),)

    package_id: int = Field(primary_key=True, sa_type=BigId, foreign_key="package.id", ondelete="CASCADE")
    organ_id: str = Field(primary_key=True, sa_type=OrganId)
    position: int = Field(default=0, sa_type=Integer)


class PackageBody(HubModel, table=True):
    """The exact bytes of a small package, kept in the database with its rows (docs/storage.md).

    A body the hub held in memory (up to ``inline_body_max_bytes``) is written in the same transaction
    as its package: the commit that makes the package durable makes its bytes durable too, with no file,
    rename or fsync of its own. Larger bodies are content-addressed files in the blob store; a package
    has a row here or a blob there, never both.
    """

    __tablename__: ClassVar[Any] = "package_body"

    package_id: int = Field(primary_key=True, sa_type=BigId, foreign_key="package.id", ondelete="CASCADE")
    data: bytes = Field(sa_type=LargeBinary)


class PackageAttachment(HubModel, table=True):
    """An attachment of a package, stored as a content-addressed blob."""

    __tablename__: ClassVar[Any] = "package_attachment"
    __table_args__ = (Index("ix_package_attachment_sha256", "sha256"),)

    package_id: int = Field(primary_key=True, sa_type=BigId, foreign_key="package.id", ondelete="CASCADE")
    content_id: str = Field(primary_key=True, sa_type=String(255))
    position: int = Field(default=0, sa_type=Integer)
    name: str | None = Field(default=None, sa_type=Text)
    content_type: str | None = Field(default=None, sa_type=String(255))
    description: str | None = Field(default=None, sa_type=Text)
    size: int = Field(sa_type=BigInteger)
    sha256: str = Field(sa_type=Sha256Hex)


class Exchange(HubModel, table=True):
    """One new document × one recipient: the unit of the lifecycle, the overdue rule and the rate."""

    __tablename__: ClassVar[Any] = "exchange"
    __table_args__ = (
        UniqueConstraint("package_id", "recipient_organ_id", name="uq_exchange_package_recipient"),
        Index("ix_exchange_sender_month", "sender_organ_id", "month"),
        Index("ix_exchange_recipient_month", "recipient_organ_id", "month"),
        # The rate by level pair and month reads only this index (docs/rate.md; migration 0004_rate).
        Index(
            "ix_exchange_rate",
            "month",
            "sender_level",
            "recipient_level",
            "state",
            "previous_state",
            "paper",
            "signature_ok",
        ),
        Index("ix_exchange_recipient_created", "recipient_organ_id", "created_at"),
        Index(
            "ix_exchange_unconfirmed_recipient",
            "recipient_organ_id",
            "deadline",
            sqlite_where=text("arrived_at IS NULL"),
            postgresql_where=text("arrived_at IS NULL"),
        ),
        Index(
            "ix_exchange_unconfirmed_sender",
            "sender_organ_id",
            "deadline",
            sqlite_where=text("arrived_at IS NULL"),
            postgresql_where=text("arrived_at IS NULL"),
        ),
        CheckConstraint(_in("state", STATES), name="state"),
        CheckConstraint(_in("previous_state", STATES, nullable=True), name="previous_state"),
        CheckConstraint(_in("request_kind", REQUEST_KINDS, nullable=True), name="request_kind"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    package_id: int = Field(sa_type=BigId, foreign_key="package.id", ondelete="CASCADE")
    sender_organ_id: str = Field(sa_type=OrganId)
    recipient_organ_id: str = Field(sa_type=OrganId)
    sender_level: str | None = Field(default=None, sa_type=String(16))
    recipient_level: str | None = Field(default=None, sa_type=String(16))
    month: int = Field(sa_type=Integer)
    paper: bool = Field(default=False)
    signature_ok: bool = Field(default=True)
    state: str = Field(default=State.QUEUED.value, sa_type=String(20))
    previous_state: str | None = Field(default=None, sa_type=String(20))
    request_kind: str | None = Field(default=None, sa_type=String(10))
    created_at: dt.datetime = Field(sa_type=UTCDateTime)
    deadline: dt.datetime = Field(sa_type=UTCDateTime)
    arrived_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    accepted_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: dt.datetime = Field(sa_type=UTCDateTime)


class StatusMessage(HubModel, table=True):
    """A status message as received (its identity is the SHA-256 of its bytes) and the hub's forward."""

    __tablename__: ClassVar[Any] = "status_message"
    __table_args__ = (
        UniqueConstraint("sha256", name="uq_status_message_sha256"),
        Index("ix_status_message_document", "document_sender_organ_id", "document_id"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    sha256: str = Field(sa_type=Sha256Hex)
    code: str = Field(sa_type=String(2))
    actor_organ_id: str = Field(sa_type=OrganId)
    document_sender_organ_id: str = Field(sa_type=OrganId)
    document_id: str = Field(sa_type=DocumentIdType)
    sent_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    received_at: dt.datetime = Field(sa_type=UTCDateTime)
    description: str | None = Field(default=None, sa_type=Text)
    message: bytes | None = Field(default=None, sa_type=LargeBinary)
    forwarded: bytes | None = Field(default=None, sa_type=LargeBinary)
    receipt: bytes | None = Field(default=None, sa_type=LargeBinary)
    """The hub receipt answered to the poster; a repeat of the same bytes gets it again, byte for byte."""


class StatusEvent(HubModel, table=True):
    """One status applied to one exchange: the timeline. Made by a status message or a 1/2/3 package."""

    __tablename__: ClassVar[Any] = "status_event"
    __table_args__ = (
        UniqueConstraint("exchange_id", "message_id", name="uq_status_event_exchange_message"),
        UniqueConstraint("exchange_id", "package_id", name="uq_status_event_exchange_package"),
        Index("ix_status_event_exchange", "exchange_id", "id"),
        Index("ix_status_event_message", "message_id"),
        CheckConstraint("message_id IS NOT NULL OR package_id IS NOT NULL", name="source"),
        CheckConstraint(_in("outcome", ("applied", "repeat", "stale")), name="outcome"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    exchange_id: int = Field(sa_type=BigId, foreign_key="exchange.id", ondelete="CASCADE")
    message_id: int | None = Field(
        default=None, sa_type=BigId, foreign_key="status_message.id", ondelete="CASCADE"
    )
    package_id: int | None = Field(default=None, sa_type=BigId, foreign_key="package.id", ondelete="CASCADE")
    code: str = Field(sa_type=String(2))
    actor: str = Field(sa_type=String(10))
    actor_organ_id: str = Field(sa_type=OrganId)
    state_before: str = Field(sa_type=String(20))
    state_after: str = Field(sa_type=String(20))
    outcome: str = Field(sa_type=String(10))
    request_kind: str | None = Field(default=None, sa_type=String(10))
    sent_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    received_at: dt.datetime = Field(sa_type=UTCDateTime)
    description: str | None = Field(default=None, sa_type=Text)


class InboxItem(HubModel, table=True):
    """Something for an agency to fetch. Delivered until acknowledged (at-least-once; nodes dedupe)."""

    __tablename__: ClassVar[Any] = "inbox_item"
    __table_args__ = (
        UniqueConstraint("organ_id", "kind", "package_id", name="uq_inbox_item_package"),
        UniqueConstraint("organ_id", "status_message_id", name="uq_inbox_item_status"),
        Index(
            "ix_inbox_item_pending",
            "organ_id",
            "id",
            sqlite_where=text("acked_at IS NULL"),
            postgresql_where=text("acked_at IS NULL"),
        ),
        CheckConstraint(_in("kind", INBOX_KINDS), name="kind"),
        CheckConstraint("package_id IS NOT NULL OR status_message_id IS NOT NULL", name="reference"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    organ_id: str = Field(sa_type=OrganId)
    kind: str = Field(sa_type=String(10))
    package_id: int | None = Field(default=None, sa_type=BigId, foreign_key="package.id", ondelete="CASCADE")
    status_message_id: int | None = Field(
        default=None, sa_type=BigId, foreign_key="status_message.id", ondelete="CASCADE"
    )
    created_at: dt.datetime = Field(sa_type=UTCDateTime)
    acked_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)


class PaperDispatch(HubModel, table=True):
    """A document sent on paper only (metadata), so the rate's denominator covers everything sent."""

    __tablename__: ClassVar[Any] = "paper_dispatch"
    __table_args__ = (
        UniqueConstraint(
            "sender_organ_id",
            "recipient_organ_id",
            "code_number",
            "code_notation",
            "document_date",
            name="uq_paper_dispatch_identity",
        ),
        Index("ix_paper_dispatch_sender_month", "sender_organ_id", "month"),
        Index("ix_paper_dispatch_recipient_month", "recipient_organ_id", "month"),
        Index("ix_paper_dispatch_month_levels", "month", "sender_level", "recipient_level"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    sender_organ_id: str = Field(sa_type=OrganId)
    recipient_organ_id: str = Field(sa_type=OrganId)
    code_number: str = Field(sa_type=String(32))
    code_notation: str = Field(sa_type=String(64))
    document_date: dt.date = Field(sa_type=Date)
    subject: str | None = Field(default=None, sa_type=Text)
    sender_level: str | None = Field(default=None, sa_type=String(16))
    recipient_level: str | None = Field(default=None, sa_type=String(16))
    month: int = Field(sa_type=Integer)
    source: str = Field(default="api", sa_type=String(255))
    created_at: dt.datetime = Field(sa_type=UTCDateTime)


class Job(HubModel, table=True):
    """A unit of background work (forward, push, CRL fetch …) handed to exactly one worker at a time."""

    __tablename__: ClassVar[Any] = "job"
    __table_args__ = (
        UniqueConstraint("key", name="uq_job_key"),
        Index("ix_job_due", "state", "run_after"),
        CheckConstraint(_in("state", JOB_STATES), name="state"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    kind: str = Field(sa_type=String(64))
    key: str | None = Field(default=None, sa_type=String(255))
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    state: str = Field(default="ready", sa_type=String(10))
    attempts: int = Field(default=0, sa_type=Integer)
    run_after: dt.datetime = Field(sa_type=UTCDateTime)
    locked_by: str | None = Field(default=None, sa_type=String(128))
    locked_until: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, sa_type=Text)
    created_at: dt.datetime = Field(sa_type=UTCDateTime)
    finished_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
