"""Alembic migration scripts of the hub's database (see :mod:`gateway.store.migrate`)."""
