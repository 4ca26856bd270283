"""The agency directory, certificate pins and node identities (the operator's admin data).

Writes are upserts (``INSERT … ON CONFLICT``, the same statement on SQLite and PostgreSQL), so importing
the same directory twice, or from two processes at once, converges instead of failing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.errors import DirectoryError
from gateway.store.db import Database
from gateway.store.models import LEVELS, Agency, CertificatePin, NodeIdentity


@dataclass(frozen=True, slots=True, kw_only=True)
class AgencyRecord:
    organ_id: str
    name: str
    level: str | None = None
    parent_organ_id: str | None = None
    email: str | None = None
    active: bool = True
    source: str | None = None
    """``admin`` for the operator's rows (they win over the directory file); ``None`` keeps a row's source."""


def _insert(session: AsyncSession, table: Any) -> Any:
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def _normalise_fingerprint(fingerprint: str) -> str:
    value = fingerprint.replace(":", "").strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise DirectoryError("directory.bad_fingerprint", f"not a SHA-256 fingerprint: {fingerprint!r}")
    return value


async def upsert_agencies(db: Database, records: Iterable[AgencyRecord], *, now: dt.datetime) -> int:
    """Create or update agencies (one transaction); returns how many records were written."""
    rows = []
    for r in records:
        if r.level is not None and r.level not in LEVELS:
            raise DirectoryError(
                "directory.bad_level", f"{r.organ_id}: level must be one of {', '.join(LEVELS)}"
            )
        rows.append(
            {
                "organ_id": r.organ_id,
                "name": r.name,
                "level": r.level,
                "parent_organ_id": r.parent_organ_id,
                "email": r.email,
                "active": r.active,
                "source": r.source,
                "created_at": now,
                "updated_at": now,
            }
        )
    if not rows:
        return 0
    async with db.write() as session:
        stmt = _insert(session, Agency)
        stmt = stmt.on_conflict_do_update(
            index_elements=["organ_id"],
            set_={
                **{
                    c: stmt.excluded[c]
                    for c in ("name", "level", "parent_organ_id", "email", "active", "updated_at")
                },
                "source": func.coalesce(stmt.excluded.source, Agency.source),
            },
        )
        await session.execute(stmt, rows)
    return len(rows)


async def upsert_agency(db: Database, record: AgencyRecord, *, now: dt.datetime) -> Agency:
    await upsert_agencies(db, [record], now=now)
    agency = await get_agency(db, record.organ_id)
    assert agency is not None
    return agency


async def get_agency(db: Database, organ_id: str) -> Agency | None:
    async with db.read() as session:
        return await session.get(Agency, organ_id)


async def list_agencies(
    db: Database,
    *,
    level: str | None = None,
    parent_organ_id: str | None = None,
    include_inactive: bool = False,
) -> list[Agency]:
    query = select(Agency).order_by(Agency.organ_id)
    if level is not None:
        query = query.where(Agency.level == level)
    if parent_organ_id is not None:
        query = query.where(Agency.parent_organ_id == parent_organ_id)
    if not include_inactive:
        query = query.where(Agency.active.is_(True))  # type: ignore[attr-defined]
    async with db.read() as session:
        return list((await session.execute(query)).scalars())


async def remove_agency(db: Database, organ_id: str) -> bool:
    """Delete an agency with its pins and node identities (history keeps its organ id as plain text)."""
    async with db.write() as session:
        await session.execute(delete(CertificatePin).where(CertificatePin.organ_id == organ_id))
        await session.execute(delete(NodeIdentity).where(NodeIdentity.organ_id == organ_id))
        result = await session.execute(delete(Agency).where(Agency.organ_id == organ_id))
        return bool(result.rowcount)  # type: ignore[attr-defined]


async def _require_agency(session: AsyncSession, organ_id: str) -> None:
    if await session.get(Agency, organ_id) is None:
        raise DirectoryError("directory.unknown_agency", f"{organ_id} is not in the directory")


async def pin_certificate(
    db: Database,
    organ_id: str,
    fingerprint: str,
    *,
    now: dt.datetime,
    certificate: bytes | None = None,
    note: str | None = None,
) -> CertificatePin:
    """Pin a signing certificate (by SHA-256 of its DER) for an agency; pinning twice is harmless."""
    fingerprint = _normalise_fingerprint(fingerprint)
    async with db.write() as session:
        await _require_agency(session, organ_id)
        stmt = _insert(session, CertificatePin).on_conflict_do_nothing(
            index_elements=["organ_id", "fingerprint"]
        )
        await session.execute(
            stmt,
            [
                {
                    "organ_id": organ_id,
                    "fingerprint": fingerprint,
                    "certificate": certificate,
                    "note": note,
                    "created_at": now,
                }
            ],
        )
        pin = await session.get(CertificatePin, (organ_id, fingerprint))
        assert pin is not None
        return pin


async def unpin_certificate(db: Database, organ_id: str, fingerprint: str) -> bool:
    fingerprint = _normalise_fingerprint(fingerprint)
    async with db.write() as session:
        result = await session.execute(
            delete(CertificatePin).where(
                CertificatePin.organ_id == organ_id, CertificatePin.fingerprint == fingerprint
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


async def list_pins(db: Database, organ_id: str) -> list[CertificatePin]:
    async with db.read() as session:
        rows = await session.execute(
            select(CertificatePin)
            .where(CertificatePin.organ_id == organ_id)
            .order_by(CertificatePin.fingerprint)
        )
        return list(rows.scalars())


async def register_node(
    db: Database, fingerprint: str, organ_id: str, *, now: dt.datetime, note: str | None = None
) -> NodeIdentity:
    """Allow the transport certificate ``fingerprint`` to act for ``organ_id`` (idempotent)."""
    fingerprint = _normalise_fingerprint(fingerprint)
    async with db.write() as session:
        await _require_agency(session, organ_id)
        stmt = _insert(session, NodeIdentity).on_conflict_do_nothing(
            index_elements=["fingerprint", "organ_id"]
        )
        await session.execute(
            stmt, [{"fingerprint": fingerprint, "organ_id": organ_id, "note": note, "created_at": now}]
        )
        identity = await session.get(NodeIdentity, (fingerprint, organ_id))
        assert identity is not None
        return identity


async def unregister_node(db: Database, fingerprint: str, organ_id: str) -> bool:
    fingerprint = _normalise_fingerprint(fingerprint)
    async with db.write() as session:
        result = await session.execute(
            delete(NodeIdentity).where(
                NodeIdentity.fingerprint == fingerprint, NodeIdentity.organ_id == organ_id
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


async def organs_for_node(db: Database, fingerprint: str) -> frozenset[str]:
    """The agencies a transport certificate may act for (besides the one its own subject names)."""
    fingerprint = _normalise_fingerprint(fingerprint)
    async with db.read() as session:
        rows = await session.execute(
            select(NodeIdentity.organ_id).where(NodeIdentity.fingerprint == fingerprint)
        )
        return frozenset(rows.scalars())


async def list_nodes(db: Database) -> list[NodeIdentity]:
    """Every node identity, by fingerprint then agency."""
    async with db.read() as session:
        rows = await session.execute(
            select(NodeIdentity).order_by(NodeIdentity.fingerprint, NodeIdentity.organ_id)
        )
        return list(rows.scalars())


FILE_SOURCE = "file"
ADMIN_SOURCE = "admin"
FILE_PIN_NOTE = "directory file"


async def sync_directory(
    db: Database,
    records: Iterable[AgencyRecord],
    pins: dict[str, Iterable[str]],
    *,
    now: dt.datetime,
) -> int:
    """Bring the agencies imported from the directory file in step with it (one transaction).

    Agencies of the file are upserted with ``source='file'``, except rows the operator owns
    (``source='admin'``), which win over the file. File agencies no longer in the file are deactivated
    (their history keeps the organ id). Their pins are those of the file (``note='directory file'``);
    pins the operator added are left alone. Returns how many agencies the file lists.
    """
    records = list(records)
    for r in records:
        if r.level is not None and r.level not in LEVELS:
            raise DirectoryError(
                "directory.bad_level", f"{r.organ_id}: level must be one of {', '.join(LEVELS)}"
            )
    listed = {r.organ_id for r in records}
    async with db.write() as session:
        if records:
            stmt = _insert(session, Agency)
            stmt = stmt.on_conflict_do_update(
                index_elements=["organ_id"],
                set_={
                    c: stmt.excluded[c]
                    for c in ("name", "level", "parent_organ_id", "active", "source", "updated_at")
                },
                where=(Agency.source.is_(None)) | (Agency.source != ADMIN_SOURCE),  # type: ignore[union-attr]
            )
            await session.execute(
                stmt,
                [
                    {
                        "organ_id": r.organ_id,
                        "name": r.name,
                        "level": r.level,
                        "parent_organ_id": r.parent_organ_id,
                        "email": r.email,
                        "active": True,
                        "source": FILE_SOURCE,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for r in records
                ],
            )
        await session.execute(
            update(Agency)
            .where(Agency.source == FILE_SOURCE, Agency.organ_id.not_in(listed), Agency.active.is_(True))  # type: ignore[attr-defined,union-attr]
            .values(active=False, updated_at=now)
        )
        current = {
            (p.organ_id, p.fingerprint)
            for p in (
                await session.execute(select(CertificatePin).where(CertificatePin.note == FILE_PIN_NOTE))
            ).scalars()
        }
        wanted = {
            (organ_id, _normalise_fingerprint(fp))
            for organ_id, fps in pins.items()
            if organ_id in listed
            for fp in fps
        }
        for organ_id, fingerprint in current - wanted:
            await session.execute(
                delete(CertificatePin).where(
                    CertificatePin.organ_id == organ_id, CertificatePin.fingerprint == fingerprint
                )
            )
        if wanted - current:
            stmt = _insert(session, CertificatePin).on_conflict_do_nothing(
                index_elements=["organ_id", "fingerprint"]
            )
            await session.execute(
                stmt,
                [
                    {"organ_id": o, "fingerprint": f, "note": FILE_PIN_NOTE, "created_at": now}
                    for o, f in sorted(wanted - current)
                ],
            )
    return len(records)
