"""Shared fixtures. Keep this file small: put groups of fixtures in their own module and import them here."""

from __future__ import annotations

try:  # tests/ is on sys.path (no __init__.py); fall back in case it becomes a package
    from db_fixtures import database_url, db, pg_admin_url, pg_empty_url, pg_template
except ImportError:  # pragma: no cover
    from tests.db_fixtures import database_url, db, pg_admin_url, pg_empty_url, pg_template

__all__ = ["database_url", "db", "pg_admin_url", "pg_empty_url", "pg_template"]
