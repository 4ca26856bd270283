"""Database fixtures: a migrated, throwaway database per test, on SQLite and on PostgreSQL.

``database_url`` is parametrised over both backends; the PostgreSQL case carries the ``postgres`` marker.
PostgreSQL comes from ``GATEWAY_TEST_PG_URL`` (CI exports it), else the local default below. When it is
unreachable the test is skipped on a laptop and **fails** under ``CI=true``, so CI can never pass
without having run it.

For speed, PostgreSQL databases are copies (``CREATE DATABASE … TEMPLATE``) of one database migrated
once per session; SQLite databases are migrated per test (a few tens of milliseconds).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.engine import URL, make_url

from gateway.store.db import Database, open_database
from gateway.store.migrate import upgrade
from gateway.store.packages import AttachmentRecord, PackageRecord

DEFAULT_PG_URL = "postgresql+asyncpg://gateway:gateway@127.0.0.1:5432/gateway_test"


def _dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def _pg_admin(url: URL, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_dsn(url), timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_admin_url() -> URL:
    """The PostgreSQL server's URL, checked reachable (skip on a laptop, fail in CI)."""
    url = make_url(os.environ.get("GATEWAY_TEST_PG_URL", DEFAULT_PG_URL))
    try:
        asyncio.run(_pg_admin(url, "SELECT 1"))
    except Exception as exc:
        message = f"PostgreSQL at {url.render_as_string()} is unreachable ({exc!r}); set GATEWAY_TEST_PG_URL"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture(scope="session")
def pg_template(pg_admin_url: URL) -> Iterator[str]:
    """A database migrated to head once per session, copied by each test."""
    name = f"gw_tpl_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(pg_admin_url, f'CREATE DATABASE "{name}"'))
    try:
        upgrade(pg_admin_url.set(database=name).render_as_string(hide_password=False))
        yield name
    finally:
        asyncio.run(_pg_admin(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def pg_empty_url(pg_admin_url: URL) -> Iterator[str]:
    """A fresh, empty PostgreSQL database (for migration tests)."""
    name = f"gw_t_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(pg_admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield pg_admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_pg_admin(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a migrated, empty database of each backend."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'gateway.db'}"
        upgrade(url)
        yield url
        return
    admin: URL = request.getfixturevalue("pg_admin_url")
    template: str = request.getfixturevalue("pg_template")
    name = f"gw_t_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(admin, f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_pg_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """An open :class:`Database` on a migrated, empty database (both backends)."""
    database = open_database(database_url, pool_size=4)
    try:
        yield database
    finally:
        await database.close()


# --- small builders for store tests -------------------------------------------------------------------

T0 = dt.datetime(2027, 3, 2, 3, 0, tzinfo=dt.UTC)  # Tuesday 10:00 in Vietnam
SENDER = "000.00.00.H53"
RECIPIENTS = ("000.00.02.H53", "000.00.31.H53")


def sha(text: str | bytes) -> str:
    return hashlib.sha256(text if isinstance(text, bytes) else text.encode()).hexdigest()


def make_record(
    body: str = "package-1",
    *,
    document_id: str = f"{SENDER},2027/03/02,12/UBND-VP",
    sender: str = SENDER,
    recipients: tuple[str, ...] = RECIPIENTS,
    doc_type: int = 0,
    paper: bool = False,
    verdict: str = "valid",
    targets: tuple[str, ...] = (),
    attachments: tuple[AttachmentRecord, ...] = (),
) -> PackageRecord:
    """A package record whose identity is the SHA-256 of ``body``."""
    digest = sha(body)
    return PackageRecord(
        sha256=digest,
        size=len(body),
        blob_sha256=digest,
        sender=sender,
        recipients=recipients,
        document_id=document_id,
        bussiness_doc_type=doc_type,
        paper=paper,
        signature_verdict=verdict,
        targets=targets,
        code_number="12",
        code_notation="UBND-VP",
        subject="Về việc thử nghiệm",
        promulgation_date=dt.date(2027, 3, 2),
        priority=0,
        attachments=attachments,
    )
