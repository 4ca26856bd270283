"""Alembic migration scripts of the node's SQLite store (see :mod:`gateway.node.store`)."""
