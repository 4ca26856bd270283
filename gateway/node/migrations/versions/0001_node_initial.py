"""Initial schema of the agency node: outbox, inbox, hub inbox items seen, status notices received.

Revision ID: n0001
Revises:
Create Date: 2026-11-22

Written out in full; it must not import application code. tests/test_node_units.py checks that it equals
gateway.node.schema.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "n0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime()


def upgrade() -> None:
    op.create_table(
        "node_outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("content_type", sa.String(300), nullable=False),
        sa.Column("document_id", sa.String(300), nullable=False),
        sa.Column("document_sender", sa.String(20), nullable=False),
        sa.Column("business_doc_type", sa.Integer, nullable=False, server_default="0"),
        sa.Column("status_code", sa.String(2)),
        sa.Column("recipients", sa.Text, nullable=False, server_default="[]"),
        sa.Column("meta", sa.Text, nullable=False, server_default="{}"),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("error_code", sa.String(64)),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("sent_at", TS),
        sa.Column("hub_time", TS),
        sa.Column("receipt_xml", sa.LargeBinary),
    )
    op.create_index("ix_node_outbox_document_id", "node_outbox", ["document_id"])
    op.create_index("ix_node_outbox_due", "node_outbox", ["state", "next_attempt_at"])
    op.create_table(
        "node_inbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("item_id", sa.Integer, nullable=False),
        sa.Column("document_id", sa.String(300), nullable=False),
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
        sa.Column("received_at", TS, nullable=False),
        sa.Column("dms_delivered_at", TS),
        sa.Column("dms_error", sa.Text),
    )
    op.create_index("ix_node_inbox_document_id", "node_inbox", ["document_id"])
    op.create_table(
        "node_hub_items",
        sa.Column("item_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("package_id", sa.String(64), nullable=False),
        sa.Column("processed_at", TS, nullable=False),
        sa.Column("acked_at", TS),
    )
    op.create_table(
        "node_status_notices",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("notice_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("item_id", sa.Integer),
        sa.Column("package_id", sa.String(64), nullable=False),
        sa.Column("document_id", sa.String(300), nullable=False),
        sa.Column("document_sender", sa.String(20), nullable=False),
        sa.Column("code", sa.String(2), nullable=False),
        sa.Column("status_from", sa.String(20), nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("status_time", TS),
        sa.Column("hub_time", TS, nullable=False),
        sa.Column("verified", sa.Boolean, nullable=False),
        sa.Column("verdict_code", sa.String(64)),
        sa.Column("notice_xml", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_node_status_notices_document_id", "node_status_notices", ["document_id"])


def downgrade() -> None:
    for table in ("node_status_notices", "node_hub_items", "node_inbox", "node_outbox"):
        op.drop_table(table)
