"""Alembic environment of the node store: always driven with a connection handed in by the caller."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from gateway.node.schema import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,
        compare_type=True,
        version_table="node_alembic_version",
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("the node store is migrated with a connection (gateway.node.store.open_store)")
_run(connection)
