"""The hub's durable storage: async SQLAlchemy/sqlmodel on SQLite (WAL) or PostgreSQL, plus blobs.

Every function here is one transaction, committed before it returns. See ``docs/storage.md``.
Imports point one way: the store uses the pure core (:mod:`gateway.lifecycle`, :mod:`gateway.calendar`,
:mod:`gateway.edxml.model`) and :mod:`gateway.errors`; the hub, node and CLI use the store.
"""

from gateway.store import accounts as accounts  # registers web_user/web_session on the metadata
from gateway.store.blobs import BlobInfo, BlobStore, BlobWriter
from gateway.store.db import Database, make_engine, open_database
from gateway.store.directory import (
    AgencyRecord,
    get_agency,
    list_agencies,
    list_pins,
    organs_for_node,
    pin_certificate,
    register_node,
    unpin_certificate,
    unregister_node,
    upsert_agencies,
    upsert_agency,
)
from gateway.store.jobs import claim_jobs, complete_job, enqueue_job, fail_job
from gateway.store.packages import (
    AttachmentRecord,
    InboxEntry,
    IngestResult,
    PackageDetail,
    PackageRecord,
    RequestApplied,
    ack_inbox,
    get_package,
    get_package_by_sha256,
    inbox_depth,
    ingest_package,
    list_inbox,
)
from gateway.store.paper import PaperRecord, add_paper_dispatch, add_paper_dispatches
from gateway.store.statuses import (
    ExchangeTimeline,
    StatusResult,
    Timeline,
    apply_status,
    get_status_message,
    overdue_exchanges,
    timeline,
)

__all__ = [
    "AgencyRecord",
    "AttachmentRecord",
    "BlobInfo",
    "BlobStore",
    "BlobWriter",
    "Database",
    "ExchangeTimeline",
    "InboxEntry",
    "IngestResult",
    "PackageDetail",
    "PackageRecord",
    "PaperRecord",
    "RequestApplied",
    "StatusResult",
    "Timeline",
    "ack_inbox",
    "add_paper_dispatch",
    "add_paper_dispatches",
    "apply_status",
    "claim_jobs",
    "complete_job",
    "enqueue_job",
    "fail_job",
    "get_agency",
    "get_package",
    "get_package_by_sha256",
    "get_status_message",
    "inbox_depth",
    "ingest_package",
    "list_agencies",
    "list_inbox",
    "list_pins",
    "make_engine",
    "open_database",
    "organs_for_node",
    "overdue_exchanges",
    "pin_certificate",
    "register_node",
    "timeline",
    "unpin_certificate",
    "unregister_node",
    "upsert_agencies",
    "upsert_agency",
]
