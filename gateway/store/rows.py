"""The rows a new package becomes, as column → value dicts.

Child rows carry the package's key in ``package_id``: its id once the package row is inserted, or its
SHA-256 when the whole batch goes to PostgreSQL as one statement that joins the children to the package
rows it inserts (:mod:`gateway.store.pg_batch`). :func:`children` is the one list of child tables both
ways write, so they write the same rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from gateway.calendar import HolidaysLike, deadline_for, month_key
from gateway.lifecycle import State

if TYPE_CHECKING:
    from gateway.store.packages import IngestItem, PackageRecord

K = TypeVar("K", int, str)
Row = dict[str, object]

PACKAGE_COLUMNS = (
    "sha256",
    "size",
    "form",
    "blob_sha256",
    "sender_organ_id",
    "document_id",
    "bussiness_doc_type",
    "bussiness_doc_reason",
    "paper",
    "target_document_id",
    "target_package_id",
    "signature_verdict",
    "signer_fingerprint",
    "received_at",
    "receipt",
    "code_number",
    "code_notation",
    "subject",
    "document_type",
    "promulgation_date",
    "priority",
    "due_date",
    "content_type",
)
RECIPIENT_COLUMNS = ("package_id", "organ_id", "position")
ATTACHMENT_COLUMNS = (
    "package_id",
    "content_id",
    "position",
    "name",
    "content_type",
    "description",
    "size",
    "sha256",
)
EXCHANGE_COLUMNS = (
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
    "request_kind",
    "created_at",
    "deadline",
    "arrived_at",
    "accepted_at",
    "closed_at",
    "updated_at",
)
INBOX_COLUMNS = ("organ_id", "kind", "package_id", "created_at", "acked_at")
BODY_COLUMNS = ("package_id", "data")


def package_row(item: IngestItem) -> Row:
    record = item.record
    return {
        "sha256": record.sha256,
        "size": record.size,
        "form": record.form,
        "blob_sha256": record.blob_sha256,
        "sender_organ_id": record.sender,
        "document_id": record.document_id,
        "bussiness_doc_type": record.bussiness_doc_type,
        "bussiness_doc_reason": record.bussiness_doc_reason,
        "paper": record.paper,
        "target_document_id": None,
        "target_package_id": None,
        "signature_verdict": record.signature_verdict,
        "signer_fingerprint": record.signer_fingerprint,
        "received_at": item.received_at,
        "receipt": item.receipt,
        "code_number": record.code_number,
        "code_notation": record.code_notation,
        "subject": record.subject,
        "document_type": record.document_type,
        "promulgation_date": record.promulgation_date,
        "priority": record.priority,
        "due_date": record.due_date,
        "content_type": record.content_type,
    }


def recipient_rows(packages: Sequence[tuple[K, PackageRecord]]) -> list[Row]:
    return [
        {"package_id": key, "organ_id": r, "position": i}
        for key, record in packages
        for i, r in enumerate(record.recipients)
    ]


def attachment_rows(packages: Sequence[tuple[K, PackageRecord]]) -> list[Row]:
    return [
        {
            "package_id": key,
            "content_id": a.content_id,
            "position": i,
            "name": a.name,
            "content_type": a.content_type,
            "description": a.description,
            "size": a.size,
            "sha256": a.sha256,
        }
        for key, record in packages
        for i, a in enumerate(record.attachments)
    ]


def exchange_rows(
    packages: Sequence[tuple[K, PackageRecord]],
    received_at: Sequence[dt.datetime],
    *,
    holidays: HolidaysLike,
    levels: Mapping[str, str | None],
) -> list[Row]:
    """One exchange per recipient of each new document (none for a recall, update or replacement):
    ``queued``, with its deadline by the working-day calendar and both levels as routed."""
    rows: list[Row] = []
    for (key, record), at in zip(packages, received_at, strict=True):
        if record.bussiness_doc_type != 0:
            continue
        deadline = deadline_for(at, holidays)
        month = month_key(at)
        rows += [
            {
                "package_id": key,
                "sender_organ_id": record.sender,
                "recipient_organ_id": recipient,
                "sender_level": levels.get(record.sender),
                "recipient_level": levels.get(recipient),
                "month": month,
                "paper": record.paper,
                "signature_ok": record.signature_verdict == "valid",
                "state": State.QUEUED.value,
                "previous_state": None,
                "request_kind": None,
                "created_at": at,
                "deadline": deadline,
                "arrived_at": None,
                "accepted_at": None,
                "closed_at": None,
                "updated_at": at,
            }
            for recipient in record.recipients
        ]
    return rows


def inbox_rows(packages: Sequence[tuple[K, PackageRecord]], received_at: Sequence[dt.datetime]) -> list[Row]:
    return [
        {"organ_id": r, "kind": "package", "package_id": key, "created_at": at, "acked_at": None}
        for (key, record), at in zip(packages, received_at, strict=True)
        for r in record.recipients
    ]


def body_rows(bodies: Sequence[tuple[K, bytes | None]]) -> list[Row]:
    """The bytes of the packages that keep them in the database (see ``PackageBody``)."""
    return [{"package_id": key, "data": data} for key, data in bodies if data is not None]


def children(
    packages: Sequence[tuple[K, IngestItem]], *, holidays: HolidaysLike, levels: Mapping[str, str | None]
) -> dict[str, list[Row]]:
    """Every child row of these packages, by table (the names of ``pg_batch.CHILDREN``, in its order):
    recipients, attachments, exchanges, inbox items, small bodies."""
    records = [(key, item.record) for key, item in packages]
    received_at = [item.received_at for _, item in packages]
    return {
        "recipient": recipient_rows(records),
        "attachment": attachment_rows(records),
        "exchange": exchange_rows(records, received_at, holidays=holidays, levels=levels),
        "inbox": inbox_rows(records, received_at),
        "body": body_rows([(key, item.body) for key, item in packages]),
    }
