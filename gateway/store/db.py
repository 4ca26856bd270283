"""Engines and transactions for SQLite (embedded) and PostgreSQL (shared by N hub processes).

Every repository function runs in **one** transaction that is committed before it returns (DESIGN §6:
nothing is acknowledged before it is committed). :meth:`Database.write` and :meth:`Database.read` are the
only ways in.

SQLite is set up for a durable single-writer store:

* ``journal_mode=WAL`` so readers never block the writer; ``synchronous=FULL`` so a commit survives a
  power cut (WAL's NORMAL may lose the last commits, which would break "acknowledged means stored");
  ``foreign_keys=ON``; ``busy_timeout`` so other processes (the CLI) wait for the lock instead of failing.
* Writes go through a **single connection** whose transactions start with ``BEGIN IMMEDIATE``: writers
  queue in the pool (without blocking the event loop) instead of racing for SQLite's lock and failing
  with "database is locked" on a read-to-write upgrade. This also makes ``SELECT … FOR UPDATE`` (which
  SQLite does not have, and SQLAlchemy omits there) unnecessary: a write transaction is alone.
* Reads use a separate pool of connections with plain deferred transactions, concurrent under WAL.
* :meth:`Database.run_write` runs a whole write transaction written as a plain function over a sync
  ``Session`` in **one** hand-off to a dedicated thread, on a synchronous connection to the same file:
  through aiosqlite every statement costs several thread round trips (cursor, execute, fetch, close),
  which dominated the hub's group commit. The two writer connections take turns on an asyncio lock, so
  they never wait on each other inside SQLite. On PostgreSQL the same function runs in the async
  session (``run_sync``).

PostgreSQL uses one pool for both; exclusive work uses ``FOR UPDATE`` (``SKIP LOCKED`` for the job
queue), and uniqueness races end in a skipped insert or an ``IntegrityError`` that the repository turns
into "already there". The pool hands out the connection returned last (``pool_use_lifo``): the ones in
steady use stay few and keep their prepared statements, which the asyncpg dialect caches per connection
(in alternating runs of the hub's ingest, 550 → 609 packages/s when its commit was still several
statements whose text varies with the batch's size). A pooled connection is pinged when it is taken out
only if it sat idle (:data:`PING_AFTER_IDLE_S`). :meth:`Database.run_statement` runs one statement with
no transaction block, for PostgreSQL's one-statement group commit (:mod:`gateway.store.pg_batch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from sqlalchemy import Engine, Executable, Row, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from gateway.errors import ConfigError

Dialect = Literal["sqlite", "postgresql"]
T = TypeVar("T")


def parse_url(url: str | URL) -> URL:
    """Parse and check a database URL: only the async drivers this project ships are accepted."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError("config.invalid", f"not a database URL: {url!r}") from exc
    if parsed.drivername == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    if parsed.drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise ConfigError(
            "config.invalid",
            f"unsupported database driver {parsed.drivername!r}; use sqlite+aiosqlite:// or postgresql+asyncpg://",
        )
    return parsed


def _is_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def make_engine(
    url: str | URL,
    *,
    role: Literal["write", "read"] = "write",
    pool_size: int = 10,
    busy_timeout_ms: int = 30_000,
    **kwargs: Any,
) -> AsyncEngine:
    """An engine configured for this project (see the module docstring for why each setting)."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "postgresql":
        engine = create_async_engine(
            parsed, pool_size=pool_size, max_overflow=pool_size, pool_use_lifo=True, **kwargs
        )
        _ping_when_idle(engine.sync_engine)
        return engine

    if _is_memory(parsed):
        kwargs.setdefault("poolclass", StaticPool)
    elif role == "write":
        kwargs.update(pool_size=1, max_overflow=0, pool_timeout=max(busy_timeout_ms / 1000, 30))
    else:
        kwargs.update(pool_size=pool_size, max_overflow=0)
    engine = create_async_engine(parsed, **kwargs)
    _sqlite_setup(engine.sync_engine, parsed, role=role, busy_timeout_ms=busy_timeout_ms)
    return engine


PING_AFTER_IDLE_S = 1.0
"""A pooled PostgreSQL connection unused for this long is pinged when it is taken out of the pool.

SQLAlchemy's ``pool_pre_ping`` pings at every check-out: a round trip before each transaction, which
under load cost the hub's ingest on PostgreSQL about an eighth of its rate (alternating runs of 2,000
packages: 699 → 802 packages/s with this instead; 724 → 781 and 657 → 764 with no ping at all). A
connection in steady use needs no ping; one that sat idle may have been closed by a server restart or a
proxy, and the ping finds it before a request does. A connection that breaks while in use fails that
transaction either way; SQLAlchemy then renews every connection of the pool taken out before the
failure."""


def _ping_when_idle(engine: Engine) -> None:
    """Ping at check-out only a connection unused for :data:`PING_AFTER_IDLE_S` (see there)."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool drops every connection older than this one and takes a new one (SQLAlchemy's
            # own pre-ping does the same when its ping fails).
            raise InvalidatePoolError(f"the connection did not answer a ping: {exc!r}") from exc


def _sqlite_setup(engine: Engine, url: URL, *, role: str, busy_timeout_ms: int) -> None:
    """The pragmas of every SQLite connection, and who issues BEGIN (see the module docstring)."""
    begin = "BEGIN IMMEDIATE" if role == "write" else "BEGIN"
    memory = _is_memory(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver so that BEGIN is ours (see "begin" below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            if not memory:
                cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)


def _sync_writer(url: URL, *, busy_timeout_ms: int) -> Engine:
    """A synchronous engine on the same SQLite file, for :meth:`Database.run_write`'s thread."""
    engine = create_engine(
        url.set(drivername="sqlite+pysqlite"),
        pool_size=1,
        max_overflow=0,
        pool_timeout=max(busy_timeout_ms / 1000, 30),
        connect_args={"check_same_thread": False},  # used by one thread at a time, never at once
    )
    _sqlite_setup(engine, url, role="write", busy_timeout_ms=busy_timeout_ms)
    return engine


@dataclass(slots=True)
class Database:
    """The hub's database: a writer engine, a reader engine (the same one on PostgreSQL)."""

    url: URL
    engine: AsyncEngine
    read_engine: AsyncEngine
    _write_sessions: async_sessionmaker[AsyncSession]
    _read_sessions: async_sessionmaker[AsyncSession]
    sync_engine: Engine | None = None
    """SQLite file only: the synchronous writer of :meth:`run_write`."""
    _sync_sessions: sessionmaker[Session] | None = None
    _writer_thread: ThreadPoolExecutor | None = None
    _write_lock: asyncio.Lock | None = field(default=None)

    @property
    def dialect(self) -> Dialect:
        return "postgresql" if self.url.get_backend_name() == "postgresql" else "sqlite"

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One write transaction, committed when the block ends without an exception."""
        async with self._turn(), self._write_sessions() as session, session.begin():
            yield session

    async def run_write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(session, *args, **kwargs)`` over a sync ``Session`` as one write transaction, committed
        when it returns; its result is returned (loaded objects stay readable: nothing is expired).

        On a SQLite file this is one hand-off to the writer thread for the whole transaction; elsewhere
        the function runs in an async session (``AsyncSession.run_sync``). ``fn`` must not await.
        """
        if self.sync_engine is None or self._sync_sessions is None or self._writer_thread is None:
            async with self.write() as session:
                return await session.run_sync(fn, *args, **kwargs)
        sessions = self._sync_sessions

        def transaction() -> T:
            with sessions() as session, session.begin():
                return fn(session, *args, **kwargs)

        async with self._turn():
            return await asyncio.get_running_loop().run_in_executor(self._writer_thread, transaction)

    async def run_statement(self, statement: Executable, params: Mapping[str, Any]) -> list[Row[Any]]:
        """One statement as a transaction of its own (autocommit): committed once its answer arrives, with
        no BEGIN or COMMIT round trip. Its rows are returned. For PostgreSQL, where one statement can
        write several tables (SQLite's writes go through :meth:`run_write`)."""
        async with self.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            return list(await conn.execute(statement, params))

    def _turn(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """SQLite's two writer connections (async and sync) take turns here, never inside SQLite."""
        if self.sync_engine is None:
            return contextlib.nullcontext()
        if self._write_lock is None:
            self._write_lock = asyncio.Lock()
        return self._write_lock

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """One read-only transaction, rolled back when the session closes (nothing it does is kept).

        Closing (not ``rollback()``) detaches the loaded rows with their values, so they can be returned.
        """
        async with self._read_sessions() as session:
            yield session

    async def close(self) -> None:
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()
        if self._writer_thread is not None:
            self._writer_thread.shutdown(wait=True)
        if self.sync_engine is not None:
            await asyncio.to_thread(self.sync_engine.dispose)


def open_database(url: str | URL, *, pool_size: int = 10, busy_timeout_ms: int = 30_000) -> Database:
    """Create the engines (no connection is made yet). The schema must be migrated separately.

    For a SQLite file, the folder is created so that a fresh ``data_dir`` just works.
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite" and not _is_memory(parsed):
        assert parsed.database is not None
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    writer = make_engine(parsed, role="write", pool_size=pool_size, busy_timeout_ms=busy_timeout_ms)
    sync_writer: Engine | None = None
    if parsed.get_backend_name() == "postgresql" or _is_memory(parsed):
        reader = writer
    else:
        reader = make_engine(parsed, role="read", pool_size=pool_size, busy_timeout_ms=busy_timeout_ms)
        sync_writer = _sync_writer(parsed, busy_timeout_ms=busy_timeout_ms)
    return Database(
        url=parsed,
        engine=writer,
        read_engine=reader,
        _write_sessions=async_sessionmaker(writer, expire_on_commit=False, autoflush=False),
        _read_sessions=async_sessionmaker(reader, expire_on_commit=False, autoflush=False),
        sync_engine=sync_writer,
        _sync_sessions=sessionmaker(sync_writer, expire_on_commit=False, autoflush=False)
        if sync_writer is not None
        else None,
        _writer_thread=ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        if sync_writer is not None
        else None,
    )
