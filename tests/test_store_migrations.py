"""The migrations produce exactly the models' schema, on SQLite and PostgreSQL, from the packaged scripts."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from gateway.store.db import open_database
from gateway.store.migrate import current, head_revision, upgrade
from gateway.store.models import metadata


async def _diff_and_indexes(url: str):
    db = open_database(url)
    try:
        async with db.engine.connect() as conn:

            def _inspect(sync_conn):
                context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
                diff = compare_metadata(context, metadata)
                insp = inspect(sync_conn)
                indexes = {
                    (table, ix["name"], bool(ix["unique"]))
                    for table in insp.get_table_names()
                    if table != "alembic_version"
                    for ix in insp.get_indexes(table)
                }
                checks = {
                    (table, ck["name"])
                    for table in insp.get_table_names()
                    if table != "alembic_version"
                    for ck in insp.get_check_constraints(table)
                }
                return diff, indexes, checks

            return await conn.run_sync(_inspect)
    finally:
        await db.close()


def _expected():
    indexes = {(t.name, ix.name, bool(ix.unique)) for t in metadata.tables.values() for ix in t.indexes}
    checks = {
        (t.name, c.name)
        for t in metadata.tables.values()
        for c in t.constraints
        if c.__class__.__name__ == "CheckConstraint"
    }
    return indexes, checks


def _check(url: str) -> None:
    assert current(url) is None
    upgrade(url)
    assert current(url) == head_revision()
    diff, indexes, checks = asyncio.run(_diff_and_indexes(url))
    assert diff == []
    expected_indexes, expected_checks = _expected()
    assert expected_indexes <= indexes  # partial unique indexes included, by name
    assert expected_checks == checks
    upgrade(url)  # a second upgrade is a no-op
    assert current(url) == head_revision()


def test_sqlite_migration_matches_models(tmp_path):
    _check(f"sqlite+aiosqlite:///{tmp_path / 'sub' / 'gateway.db'}")


@pytest.mark.postgres
def test_postgresql_migration_matches_models(pg_empty_url):
    _check(pg_empty_url)


def test_migrations_are_packaged_with_the_code():
    from importlib.resources import files

    root = files("gateway.store") / "migrations"
    assert (root / "env.py").is_file()
    assert (root / "script.py.mako").is_file()
    assert any(p.name.endswith(".py") and p.name[0].isdigit() for p in (root / "versions").iterdir())


def test_cli_db_upgrade_and_current(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    run = [sys.executable, "-c", "from gateway.cli.db import app; app()"]
    before = subprocess.run([*run, "current", "--url", url], capture_output=True, text=True, check=True)
    assert "not migrated" in before.stdout
    up = subprocess.run([*run, "upgrade", "--url", url], capture_output=True, text=True, check=True)
    assert head_revision() in up.stdout
    after = subprocess.run([*run, "current", "--url", url], capture_output=True, text=True, check=True)
    assert head_revision() in after.stdout
    bad = subprocess.run([*run, "upgrade", "--url", "mysql://x/y"], capture_output=True, text=True)
    assert bad.returncode != 0
    assert "config.invalid" in bad.stderr
