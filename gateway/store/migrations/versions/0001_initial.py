"""Initial schema of the hub: directory, packages, exchanges, statuses, inbox, paper register, jobs.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Written out in full (generated once from gateway.store.models, then reviewed); it must not import
application code, so that it keeps meaning the same schema when the models move on. Times are
``DateTime(timezone=True)`` (the models wrap it in a UTC-enforcing TypeDecorator); ids are BIGINT on
PostgreSQL and INTEGER (the rowid) on SQLite. tests/test_store_migrations.py checks that this revision
equals the models on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

UTC_TIMESTAMP = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
STATES = (
    "'queued', 'arrived', 'accepted', 'assigned', 'in_progress', 'done', 'refused', "
    "'recall_requested', 'recalled', 'recall_refused'"
)


revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agency",
        sa.Column("organ_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=True),
        sa.Column("parent_organ_id", sa.String(length=64), nullable=True),
        sa.Column("email", sa.String(length=255), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC_TIMESTAMP, nullable=False),
        sa.Column("updated_at", UTC_TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "level IS NULL OR level IN ('central', 'province', 'department', 'district', 'commune')",
            name=op.f("ck_agency_level"),
        ),
        sa.PrimaryKeyConstraint("organ_id", name=op.f("pk_agency")),
    )
    op.create_index("ix_agency_parent", "agency", ["parent_organ_id"], unique=False)

    op.create_table(
        "job",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("run_after", UTC_TIMESTAMP, nullable=False),
        sa.Column("locked_by", sa.String(length=128), nullable=True),
        sa.Column("locked_until", UTC_TIMESTAMP, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UTC_TIMESTAMP, nullable=False),
        sa.Column("finished_at", UTC_TIMESTAMP, nullable=True),
        sa.CheckConstraint("state IN ('ready', 'running', 'done', 'failed')", name=op.f("ck_job_state")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job")),
        sa.UniqueConstraint("key", name="uq_job_key"),
    )
    op.create_index("ix_job_due", "job", ["state", "run_after"], unique=False)

    op.create_table(
        "package",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("form", sa.String(length=16), nullable=False),
        sa.Column("blob_sha256", sa.String(length=64), nullable=False),
        sa.Column("sender_organ_id", sa.String(length=64), nullable=False),
        sa.Column("document_id", sa.String(length=255), nullable=False),
        sa.Column("bussiness_doc_type", sa.SmallInteger(), nullable=False),
        sa.Column("bussiness_doc_reason", sa.Text(), nullable=True),
        sa.Column("paper", sa.Boolean(), nullable=False),
        sa.Column("target_document_id", sa.String(length=255), nullable=True),
        sa.Column("target_package_id", BIG_ID, nullable=True),
        sa.Column("signature_verdict", sa.String(length=64), nullable=False),
        sa.Column("signer_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("received_at", UTC_TIMESTAMP, nullable=False),
        sa.Column("receipt", sa.LargeBinary(), nullable=False),
        sa.Column("code_number", sa.String(length=32), nullable=True),
        sa.Column("code_notation", sa.String(length=64), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("document_type", sa.Text(), nullable=True),
        sa.Column("promulgation_date", sa.Date(), nullable=True),
        sa.Column("priority", sa.SmallInteger(), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.CheckConstraint("form IN ('single', 'multipart')", name=op.f("ck_package_form")),
        sa.CheckConstraint("bussiness_doc_type BETWEEN 0 AND 3", name=op.f("ck_package_bussiness_doc_type")),
        sa.ForeignKeyConstraint(
            ["target_package_id"], ["package.id"], name=op.f("fk_package_target_package_id_package")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_package")),
        sa.UniqueConstraint("sha256", name="uq_package_sha256"),
    )
    op.create_index("ix_package_code", "package", ["code_number", "code_notation"], unique=False)
    op.create_index("ix_package_received", "package", ["received_at"], unique=False)
    op.create_index("ix_package_sender_document", "package", ["sender_organ_id", "document_id"], unique=False)
    op.create_index("ix_package_sender_received", "package", ["sender_organ_id", "received_at"], unique=False)
    op.create_index("ix_package_target", "package", ["target_package_id"], unique=False)
    op.create_index(
        "uq_package_new_document",
        "package",
        ["sender_organ_id", "document_id"],
        unique=True,
        sqlite_where=sa.text("bussiness_doc_type = 0"),
        postgresql_where=sa.text("bussiness_doc_type = 0"),
    )

    op.create_table(
        "paper_dispatch",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("sender_organ_id", sa.String(length=64), nullable=False),
        sa.Column("recipient_organ_id", sa.String(length=64), nullable=False),
        sa.Column("code_number", sa.String(length=32), nullable=False),
        sa.Column("code_notation", sa.String(length=64), nullable=False),
        sa.Column("document_date", sa.Date(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("sender_level", sa.String(length=16), nullable=True),
        sa.Column("recipient_level", sa.String(length=16), nullable=True),
        sa.Column("month", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("created_at", UTC_TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paper_dispatch")),
        sa.UniqueConstraint(
            "sender_organ_id",
            "recipient_organ_id",
            "code_number",
            "code_notation",
            "document_date",
            name="uq_paper_dispatch_identity",
        ),
    )
    op.create_index(
        "ix_paper_dispatch_month_levels",
        "paper_dispatch",
        ["month", "sender_level", "recipient_level"],
        unique=False,
    )
    op.create_index(
        "ix_paper_dispatch_recipient_month", "paper_dispatch", ["recipient_organ_id", "month"], unique=False
    )
    op.create_index(
        "ix_paper_dispatch_sender_month", "paper_dispatch", ["sender_organ_id", "month"], unique=False
    )

    op.create_table(
        "status_message",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=2), nullable=False),
        sa.Column("actor_organ_id", sa.String(length=64), nullable=False),
        sa.Column("document_sender_organ_id", sa.String(length=64), nullable=False),
        sa.Column("document_id", sa.String(length=255), nullable=False),
        sa.Column("sent_at", UTC_TIMESTAMP, nullable=True),
        sa.Column("received_at", UTC_TIMESTAMP, nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("message", sa.LargeBinary(), nullable=True),
        sa.Column("forwarded", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_message")),
        sa.UniqueConstraint("sha256", name="uq_status_message_sha256"),
    )
    op.create_index(
        "ix_status_message_document",
        "status_message",
        ["document_sender_organ_id", "document_id"],
        unique=False,
    )

    op.create_table(
        "certificate_pin",
        sa.Column("organ_id", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("certificate", sa.LargeBinary(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", UTC_TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["organ_id"],
            ["agency.organ_id"],
            name=op.f("fk_certificate_pin_organ_id_agency"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organ_id", "fingerprint", name=op.f("pk_certificate_pin")),
    )
    op.create_table(
        "exchange",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("package_id", BIG_ID, nullable=False),
        sa.Column("sender_organ_id", sa.String(length=64), nullable=False),
        sa.Column("recipient_organ_id", sa.String(length=64), nullable=False),
        sa.Column("sender_level", sa.String(length=16), nullable=True),
        sa.Column("recipient_level", sa.String(length=16), nullable=True),
        sa.Column("month", sa.Integer(), nullable=False),
        sa.Column("paper", sa.Boolean(), nullable=False),
        sa.Column("signature_ok", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("previous_state", sa.String(length=20), nullable=True),
        sa.Column("request_kind", sa.String(length=10), nullable=True),
        sa.Column("created_at", UTC_TIMESTAMP, nullable=False),
        sa.Column("deadline", UTC_TIMESTAMP, nullable=False),
        sa.Column("arrived_at", UTC_TIMESTAMP, nullable=True),
        sa.Column("accepted_at", UTC_TIMESTAMP, nullable=True),
        sa.Column("closed_at", UTC_TIMESTAMP, nullable=True),
        sa.Column("updated_at", UTC_TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            f"previous_state IS NULL OR previous_state IN ({STATES})",
            name=op.f("ck_exchange_previous_state"),
        ),
        sa.CheckConstraint(
            "request_kind IS NULL OR request_kind IN ('recall', 'update', 'replace')",
            name=op.f("ck_exchange_request_kind"),
        ),
        sa.CheckConstraint(
            f"state IN ({STATES})",
            name=op.f("ck_exchange_state"),
        ),
        sa.ForeignKeyConstraint(
            ["package_id"], ["package.id"], name=op.f("fk_exchange_package_id_package"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exchange")),
        sa.UniqueConstraint("package_id", "recipient_organ_id", name="uq_exchange_package_recipient"),
    )
    op.create_index(
        "ix_exchange_month_levels", "exchange", ["month", "sender_level", "recipient_level"], unique=False
    )
    op.create_index(
        "ix_exchange_recipient_created", "exchange", ["recipient_organ_id", "created_at"], unique=False
    )
    op.create_index("ix_exchange_recipient_month", "exchange", ["recipient_organ_id", "month"], unique=False)
    op.create_index("ix_exchange_sender_month", "exchange", ["sender_organ_id", "month"], unique=False)
    op.create_index(
        "ix_exchange_unconfirmed_recipient",
        "exchange",
        ["recipient_organ_id", "deadline"],
        unique=False,
        sqlite_where=sa.text("arrived_at IS NULL"),
        postgresql_where=sa.text("arrived_at IS NULL"),
    )
    op.create_index(
        "ix_exchange_unconfirmed_sender",
        "exchange",
        ["sender_organ_id", "deadline"],
        unique=False,
        sqlite_where=sa.text("arrived_at IS NULL"),
        postgresql_where=sa.text("arrived_at IS NULL"),
    )

    op.create_table(
        "inbox_item",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("organ_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("package_id", BIG_ID, nullable=True),
        sa.Column("status_message_id", BIG_ID, nullable=True),
        sa.Column("created_at", UTC_TIMESTAMP, nullable=False),
        sa.Column("acked_at", UTC_TIMESTAMP, nullable=True),
        sa.CheckConstraint("kind IN ('package', 'status', 'receipt')", name=op.f("ck_inbox_item_kind")),
        sa.CheckConstraint(
            "package_id IS NOT NULL OR status_message_id IS NOT NULL", name=op.f("ck_inbox_item_reference")
        ),
        sa.ForeignKeyConstraint(
            ["package_id"], ["package.id"], name=op.f("fk_inbox_item_package_id_package"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["status_message_id"],
            ["status_message.id"],
            name=op.f("fk_inbox_item_status_message_id_status_message"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_item")),
        sa.UniqueConstraint("organ_id", "kind", "package_id", name="uq_inbox_item_package"),
        sa.UniqueConstraint("organ_id", "status_message_id", name="uq_inbox_item_status"),
    )
    op.create_index(
        "ix_inbox_item_pending",
        "inbox_item",
        ["organ_id", "id"],
        unique=False,
        sqlite_where=sa.text("acked_at IS NULL"),
        postgresql_where=sa.text("acked_at IS NULL"),
    )

    op.create_table(
        "node_identity",
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("organ_id", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", UTC_TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["organ_id"],
            ["agency.organ_id"],
            name=op.f("fk_node_identity_organ_id_agency"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("fingerprint", "organ_id", name=op.f("pk_node_identity")),
    )
    op.create_index("ix_node_identity_organ", "node_identity", ["organ_id"], unique=False)

    op.create_table(
        "package_attachment",
        sa.Column("package_id", BIG_ID, nullable=False),
        sa.Column("content_id", sa.String(length=255), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("content_type", sa.String(length=255), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["package_id"],
            ["package.id"],
            name=op.f("fk_package_attachment_package_id_package"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("package_id", "content_id", name=op.f("pk_package_attachment")),
    )
    op.create_index("ix_package_attachment_sha256", "package_attachment", ["sha256"], unique=False)

    op.create_table(
        "package_recipient",
        sa.Column("package_id", BIG_ID, nullable=False),
        sa.Column("organ_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["package_id"],
            ["package.id"],
            name=op.f("fk_package_recipient_package_id_package"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("package_id", "organ_id", name=op.f("pk_package_recipient")),
    )
    op.create_index("ix_package_recipient_organ", "package_recipient", ["organ_id"], unique=False)

    op.create_table(
        "status_event",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("exchange_id", BIG_ID, nullable=False),
        sa.Column("message_id", BIG_ID, nullable=True),
        sa.Column("package_id", BIG_ID, nullable=True),
        sa.Column("code", sa.String(length=2), nullable=False),
        sa.Column("actor", sa.String(length=10), nullable=False),
        sa.Column("actor_organ_id", sa.String(length=64), nullable=False),
        sa.Column("state_before", sa.String(length=20), nullable=False),
        sa.Column("state_after", sa.String(length=20), nullable=False),
        sa.Column("outcome", sa.String(length=10), nullable=False),
        sa.Column("request_kind", sa.String(length=10), nullable=True),
        sa.Column("sent_at", UTC_TIMESTAMP, nullable=True),
        sa.Column("received_at", UTC_TIMESTAMP, nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.CheckConstraint("outcome IN ('applied', 'repeat', 'stale')", name=op.f("ck_status_event_outcome")),
        sa.CheckConstraint(
            "message_id IS NOT NULL OR package_id IS NOT NULL", name=op.f("ck_status_event_source")
        ),
        sa.ForeignKeyConstraint(
            ["exchange_id"],
            ["exchange.id"],
            name=op.f("fk_status_event_exchange_id_exchange"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["status_message.id"],
            name=op.f("fk_status_event_message_id_status_message"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["package_id"],
            ["package.id"],
            name=op.f("fk_status_event_package_id_package"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_event")),
        sa.UniqueConstraint("exchange_id", "message_id", name="uq_status_event_exchange_message"),
        sa.UniqueConstraint("exchange_id", "package_id", name="uq_status_event_exchange_package"),
    )
    op.create_index("ix_status_event_exchange", "status_event", ["exchange_id", "id"], unique=False)
    op.create_index("ix_status_event_message", "status_event", ["message_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_status_event_message", table_name="status_event")
    op.drop_index("ix_status_event_exchange", table_name="status_event")

    op.drop_table("status_event")
    op.drop_index("ix_package_recipient_organ", table_name="package_recipient")

    op.drop_table("package_recipient")
    op.drop_index("ix_package_attachment_sha256", table_name="package_attachment")

    op.drop_table("package_attachment")
    op.drop_index("ix_node_identity_organ", table_name="node_identity")

    op.drop_table("node_identity")
    op.drop_index(
        "ix_inbox_item_pending",
        sqlite_where=sa.text("acked_at IS NULL"),
        postgresql_where=sa.text("acked_at IS NULL"),
        table_name="inbox_item",
    )

    op.drop_table("inbox_item")
    op.drop_index(
        "ix_exchange_unconfirmed_sender",
        sqlite_where=sa.text("arrived_at IS NULL"),
        postgresql_where=sa.text("arrived_at IS NULL"),
        table_name="exchange",
    )
    op.drop_index(
        "ix_exchange_unconfirmed_recipient",
        sqlite_where=sa.text("arrived_at IS NULL"),
        postgresql_where=sa.text("arrived_at IS NULL"),
        table_name="exchange",
    )
    op.drop_index("ix_exchange_sender_month", table_name="exchange")
    op.drop_index("ix_exchange_recipient_month", table_name="exchange")
    op.drop_index("ix_exchange_recipient_created", table_name="exchange")
    op.drop_index("ix_exchange_month_levels", table_name="exchange")

    op.drop_table("exchange")
    op.drop_table("certificate_pin")
    op.drop_index("ix_status_message_document", table_name="status_message")

    op.drop_table("status_message")
    op.drop_index("ix_paper_dispatch_sender_month", table_name="paper_dispatch")
    op.drop_index("ix_paper_dispatch_recipient_month", table_name="paper_dispatch")
    op.drop_index("ix_paper_dispatch_month_levels", table_name="paper_dispatch")

    op.drop_table("paper_dispatch")
    op.drop_index(
        "uq_package_new_document",
        sqlite_where=sa.text("bussiness_doc_type = 0"),
        postgresql_where=sa.text("bussiness_doc_type = 0"),
        table_name="package",
    )
    op.drop_index("ix_package_target", table_name="package")
    op.drop_index("ix_package_sender_received", table_name="package")
    op.drop_index("ix_package_sender_document", table_name="package")
    op.drop_index("ix_package_received", table_name="package")
    op.drop_index("ix_package_code", table_name="package")

    op.drop_table("package")
    op.drop_index("ix_job_due", table_name="job")

    op.drop_table("job")
    op.drop_index("ix_agency_parent", table_name="agency")

    op.drop_table("agency")
