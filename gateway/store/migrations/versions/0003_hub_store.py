"""What the hub needs from the store: the package's Content-Type, the status receipt, the agency's source.

Revision ID: 0003_hub
Revises: 0002_web
Create Date: 2026-11-23

``package.content_type``: a multipart body must be served back with the Content-Type (and boundary) it
arrived with. ``status_message.receipt``: the same status bytes again are answered with the stored hub
receipt, byte for byte. ``agency.source``: ``file`` rows are kept in step with the directory file,
``admin`` rows (the operator's) win over it. All nullable (older rows have none). Written out, like 0001.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_hub"
down_revision: str | None = "0002_web"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("agency") as batch:
        batch.add_column(sa.Column("source", sa.String(length=16), nullable=True))
    with op.batch_alter_table("package") as batch:
        batch.add_column(sa.Column("content_type", sa.String(length=255), nullable=True))
    with op.batch_alter_table("status_message") as batch:
        batch.add_column(sa.Column("receipt", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("status_message") as batch:
        batch.drop_column("receipt")
    with op.batch_alter_table("package") as batch:
        batch.drop_column("content_type")
    with op.batch_alter_table("agency") as batch:
        batch.drop_column("source")
