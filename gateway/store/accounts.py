"""Accounts and sessions of the web pages (clerks, auditors, administrators).

Two tables, registered on the hub's :data:`~gateway.store.models.metadata` (this module is imported by
:mod:`gateway.store`, so the migration test and alembic see them):

* ``web_user``: one row per person who signs in. ``password_hash`` is an argon2id string made by
  :mod:`gateway.web.passwords` (the store never sees a password). A clerk is bound to one agency
  (``organ_id``; a check constraint makes it mandatory for clerks). ``failed_logins``/``locked_until``
  throttle password guessing per account, in the database, so that N hub processes share the count.
* ``web_session``: server-side sessions. The browser holds a random token; the table holds only its
  SHA-256, so a leaked database does not hand out live sessions. A row carries the session's CSRF token
  and language. Logging out deletes the row, disabling a user deletes all of theirs: both take effect at
  once, which a stateless signed cookie could not do.

Every function is one transaction, like the rest of the store.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, ClassVar

from sqlalchemy import CheckConstraint, Index, Integer, String, UniqueConstraint, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field

from gateway.store.db import Database
from gateway.store.models import BigId, HubModel, OrganId
from gateway.store.types import UTCDateTime

ROLES = ("clerk", "auditor", "admin")
"""clerk: one agency's documents; auditor: figures and metadata of all; admin: everything and users."""

_ROLE_CHECK = "role IN (" + ", ".join(f"'{r}'" for r in ROLES) + ")"


class WebUser(HubModel, table=True):
    """A person who signs in to the web pages."""

    __tablename__: ClassVar[Any] = "web_user"
    __table_args__ = (
        UniqueConstraint("username", name="uq_web_user_username"),
        CheckConstraint(_ROLE_CHECK, name="role"),
        CheckConstraint("role <> 'clerk' OR organ_id IS NOT NULL", name="clerk_organ"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    username: str = Field(sa_type=String(64))
    password_hash: str = Field(sa_type=String(255))
    role: str = Field(sa_type=String(10))
    organ_id: str | None = Field(default=None, sa_type=OrganId)
    disabled: bool = Field(default=False)
    failed_logins: int = Field(default=0, sa_type=Integer)
    locked_until: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_login_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: dt.datetime = Field(sa_type=UTCDateTime)


class WebSession(HubModel, table=True):
    """A signed-in browser: the SHA-256 of its cookie token, its CSRF token and language."""

    __tablename__: ClassVar[Any] = "web_session"
    __table_args__ = (
        Index("ix_web_session_user", "user_id"),
        Index("ix_web_session_expires", "expires_at"),
    )

    token_hash: str = Field(primary_key=True, sa_type=String(64))
    user_id: int = Field(sa_type=BigId, foreign_key="web_user.id", ondelete="CASCADE")
    csrf_token: str = Field(sa_type=String(64))
    lang: str = Field(default="vi", sa_type=String(5))
    created_at: dt.datetime = Field(sa_type=UTCDateTime)
    expires_at: dt.datetime = Field(sa_type=UTCDateTime)


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionInfo:
    """A live session and its (enabled) user."""

    session: WebSession
    user: WebUser


async def add_user(
    db: Database,
    *,
    username: str,
    password_hash: str,
    role: str,
    organ_id: str | None,
    now: dt.datetime,
) -> tuple[WebUser, bool]:
    """Create a user; returns the row and ``True``, or the existing row and ``False`` (name taken)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    if role == "clerk" and not organ_id:
        raise ValueError("a clerk must be bound to an agency (organ_id)")
    user = WebUser(
        username=username,
        password_hash=password_hash,
        role=role,
        organ_id=organ_id if role == "clerk" else None,
        created_at=now,
    )
    try:
        async with db.write() as session:
            session.add(user)
            await session.flush()
        return user, True
    except IntegrityError:
        existing = await get_user(db, username)
        if existing is None:
            raise
        return existing, False


async def get_user(db: Database, username: str) -> WebUser | None:
    async with db.read() as session:
        query = select(WebUser).where(WebUser.username == username)
        return (await session.execute(query)).scalar_one_or_none()


async def list_users(db: Database) -> list[WebUser]:
    async with db.read() as session:
        return list((await session.execute(select(WebUser).order_by(WebUser.username))).scalars())


async def set_disabled(db: Database, username: str, *, disabled: bool = True) -> bool:
    """Disable (or re-enable) a user; disabling also ends every session of theirs. False: no such user."""
    async with db.write() as session:
        user = (
            await session.execute(select(WebUser).where(WebUser.username == username))
        ).scalar_one_or_none()
        if user is None:
            return False
        user.disabled = disabled
        if disabled:
            await session.execute(delete(WebSession).where(WebSession.user_id == user.id))
        return True


async def set_password(db: Database, username: str, password_hash: str) -> bool:
    """Replace a password hash (a rehash after a parameter change, or a reset); ends the user's sessions."""
    async with db.write() as session:
        user = (
            await session.execute(select(WebUser).where(WebUser.username == username))
        ).scalar_one_or_none()
        if user is None:
            return False
        user.password_hash = password_hash
        user.failed_logins = 0
        user.locked_until = None
        await session.execute(delete(WebSession).where(WebSession.user_id == user.id))
        return True


async def record_login_failure(
    db: Database, user_id: int, *, now: dt.datetime, free_attempts: int, lock_for: dt.timedelta
) -> None:
    """Count a wrong password; past ``free_attempts`` the account is locked for ``lock_for``, doubling."""
    async with db.write() as session:
        user = await session.get(WebUser, user_id)
        if user is None:
            return
        user.failed_logins += 1
        excess = user.failed_logins - free_attempts
        if excess >= 0:
            user.locked_until = now + lock_for * (2 ** min(excess, 6))


async def record_login_success(db: Database, user_id: int, *, now: dt.datetime) -> None:
    async with db.write() as session:
        await session.execute(
            update(WebUser)
            .where(WebUser.id == user_id)  # type: ignore[arg-type]
            .values(failed_logins=0, locked_until=None, last_login_at=now)
        )


async def create_session(
    db: Database,
    *,
    user_id: int,
    token_hash: str,
    csrf_token: str,
    lang: str,
    now: dt.datetime,
    ttl: dt.timedelta,
) -> WebSession:
    """Store a new session (the caller made the token; only its hash is kept). Expired rows are purged."""
    row = WebSession(
        token_hash=token_hash,
        user_id=user_id,
        csrf_token=csrf_token,
        lang=lang,
        created_at=now,
        expires_at=now + ttl,
    )
    async with db.write() as session:
        await session.execute(delete(WebSession).where(WebSession.expires_at < now))  # type: ignore[arg-type]
        session.add(row)
    return row


async def get_session(db: Database, token_hash: str, *, now: dt.datetime) -> SessionInfo | None:
    """The live session for this token hash with its user; ``None`` if unknown, expired or disabled."""
    async with db.read() as session:
        row = (
            await session.execute(
                select(WebSession, WebUser)
                .join(WebUser, WebUser.id == WebSession.user_id)  # type: ignore[arg-type]
                .where(WebSession.token_hash == token_hash)
            )
        ).first()
    if row is None:
        return None
    web_session, user = row
    if web_session.expires_at <= now or user.disabled:
        return None
    return SessionInfo(session=web_session, user=user)


async def delete_session(db: Database, token_hash: str) -> None:
    async with db.write() as session:
        await session.execute(delete(WebSession).where(WebSession.token_hash == token_hash))  # type: ignore[arg-type]


async def set_session_lang(db: Database, token_hash: str, lang: str) -> None:
    async with db.write() as session:
        await session.execute(
            update(WebSession).where(WebSession.token_hash == token_hash).values(lang=lang)  # type: ignore[arg-type]
        )
