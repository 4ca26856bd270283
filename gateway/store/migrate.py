"""Schema migrations (alembic), usable from an installed package and from async code.

The migration scripts live in the package (``gateway/store/migrations``), found through
:mod:`importlib.resources`, so ``gateway db upgrade`` works without an ``alembic.ini`` or a checkout.
Async URLs are used as they are: ``env.py`` drives alembic's synchronous API through ``run_sync`` on an
async connection, with the same engine settings as the hub (WAL, foreign keys, ``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import asyncio
from importlib.resources import files
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.db import make_engine, parse_url


def alembic_config(url: str | None = None, *, connection: Connection | None = None) -> Config:
    """An alembic configuration pointing at the packaged scripts; ``url`` or ``connection`` selects the DB."""
    config = Config()
    config.set_main_option("script_location", str(files("gateway.store") / "migrations"))
    if url is not None:
        # ConfigParser interpolates '%': escape it so passwords with '%' survive.
        config.set_main_option(
            "sqlalchemy.url", parse_url(url).render_as_string(hide_password=False).replace("%", "%%")
        )
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def upgrade_engine(engine: AsyncEngine, revision: str = "head") -> None:
    """Upgrade the database behind ``engine`` (from async code: tests, the hub's ``--migrate``)."""

    def _run(connection: Connection) -> None:
        command.upgrade(alembic_config(connection=connection), revision)

    async with engine.begin() as conn:
        await conn.run_sync(_run)


async def current_revision_engine(engine: AsyncEngine) -> str | None:
    def _current(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as conn:
        return await conn.run_sync(_current)


def _with_engine(url: str, coro_factory: Any) -> Any:
    async def _main() -> Any:
        engine = make_engine(url)
        try:
            return await coro_factory(engine)
        finally:
            await engine.dispose()

    return asyncio.run(_main())


def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` (synchronous, for the CLI). Creates a SQLite file's folder."""
    from gateway.store.db import open_database

    async def _main() -> None:
        db = open_database(url)
        try:
            await upgrade_engine(db.engine, revision)
        finally:
            await db.close()

    asyncio.run(_main())


def current(url: str) -> str | None:
    """The revision the database at ``url`` is at (``None``: not migrated yet; a missing SQLite file
    is not created by asking)."""
    parsed = parse_url(url)
    if (
        parsed.get_backend_name() == "sqlite"
        and parsed.database not in (None, "", ":memory:")
        and not Path(str(parsed.database)).expanduser().is_file()
    ):
        return None
    return _with_engine(url, current_revision_engine)
