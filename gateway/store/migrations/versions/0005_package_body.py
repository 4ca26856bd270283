"""Small package bodies kept in the database, committed with their rows.

Revision ID: 0005_body
Revises: 0004_rate
Create Date: 2026-11-22

``package_body`` holds the exact bytes of a package the hub held in memory (up to
``inline_body_max_bytes``, default 1 MiB). Writing them in the package's own transaction makes them
durable with the group commit's single sync, instead of a file, a rename and two fsyncs per package;
larger bodies stay content-addressed files (docs/storage.md). On PostgreSQL the column is stored
uncompressed (``STORAGE EXTERNAL``): signed XML is mostly base64, which compresses little, and
compressing it would cost every commit CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_body"
down_revision: str | None = "0004_rate"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "package_body",
        sa.Column("package_id", BIG_ID, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["package_id"],
            ["package.id"],
            name=op.f("fk_package_body_package_id_package"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("package_id", name=op.f("pk_package_body")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE package_body ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.drop_table("package_body")
