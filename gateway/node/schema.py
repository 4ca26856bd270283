"""The node's own small schema (SQLAlchemy Core), separate from the hub's. Changes go through alembic
(``gateway/node/migrations``); ``tests/test_node_units.py`` checks that ``upgrade head`` equals this.

Times are aware UTC instants (:class:`UTC`), stored as naive UTC text by SQLite.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator


class UTC(TypeDecorator[dt.datetime]):
    """An aware UTC datetime; naive values are refused (they would silently shift by the local zone)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


metadata = sa.MetaData()

outbox = sa.Table(
    "node_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(10), nullable=False),  # package | status
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("content_type", sa.String(300), nullable=False),
    sa.Column("document_id", sa.String(300), nullable=False, index=True),
    sa.Column("document_sender", sa.String(20), nullable=False),
    sa.Column("business_doc_type", sa.Integer, nullable=False, server_default="0"),
    sa.Column("status_code", sa.String(2)),
    sa.Column("recipients", sa.Text, nullable=False, server_default="[]"),
    sa.Column("meta", sa.Text, nullable=False, server_default="{}"),
    sa.Column("state", sa.String(12), nullable=False),  # pending | sent | refused | mismatch
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTC, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("error_code", sa.String(64)),
    sa.Column("created_at", UTC, nullable=False),
    sa.Column("sent_at", UTC),
    sa.Column("hub_time", UTC),
    sa.Column("receipt_xml", sa.LargeBinary),
    sa.Index("ix_node_outbox_due", "state", "next_attempt_at"),
)

inbox = sa.Table(
    "node_inbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("item_id", sa.Integer, nullable=False),
    sa.Column("document_id", sa.String(300), nullable=False, index=True),
    sa.Column("sender", sa.String(20), nullable=False),
    sa.Column("business_doc_type", sa.Integer, nullable=False, server_default="0"),
    sa.Column("targets", sa.Text, nullable=False, server_default="[]"),
    sa.Column("subject", sa.Text),
    sa.Column("content_type", sa.String(300), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("verdict_code", sa.String(64)),
    sa.Column("verdict_detail", sa.Text),
    sa.Column("meta", sa.Text, nullable=False, server_default="{}"),
    sa.Column("folder", sa.Text, nullable=False),
    sa.Column("received_at", UTC, nullable=False),
    sa.Column("dms_delivered_at", UTC),
    sa.Column("dms_error", sa.Text),
)

hub_items = sa.Table(
    "node_hub_items",
    metadata,
    sa.Column("item_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(10), nullable=False),
    sa.Column("package_id", sa.String(64), nullable=False),
    sa.Column("processed_at", UTC, nullable=False),
    sa.Column("acked_at", UTC),
)

notices = sa.Table(
    "node_status_notices",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("notice_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("item_id", sa.Integer),
    sa.Column("package_id", sa.String(64), nullable=False),
    sa.Column("document_id", sa.String(300), nullable=False, index=True),
    sa.Column("document_sender", sa.String(20), nullable=False),
    sa.Column("code", sa.String(2), nullable=False),
    sa.Column("status_from", sa.String(20), nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("status_time", UTC),
    sa.Column("hub_time", UTC, nullable=False),
    sa.Column("verified", sa.Boolean, nullable=False),
    sa.Column("verdict_code", sa.String(64)),
    sa.Column("notice_xml", sa.LargeBinary, nullable=False),
)
