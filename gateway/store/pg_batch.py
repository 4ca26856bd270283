"""A group commit of new documents on PostgreSQL as **one statement**, committed on its own.

Under load the hub's commit is the step every package waits for, and on PostgreSQL its length was round
trips, not work: BEGIN, an INSERT per table, COMMIT, each waiting for the server and then for the hub's
busy event loop to read the answer. Here the whole batch travels as arrays, one per column, and one
statement unnests them: its first part inserts the package rows, skipping any whose bytes or DocumentId
a stored package holds (``ON CONFLICT DO NOTHING``), and returns their ids by SHA-256; the other parts
insert each table's child rows joined to those ids by the package's SHA-256, so a skipped package gets
no children. A single statement outside a transaction block is atomic and durable when its answer
arrives, so neither BEGIN nor COMMIT needs a round trip. Its text never changes, so each connection
prepares it once.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ARRAY, Table, bindparam, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import TextClause

from gateway.store.models import (
    Exchange,
    InboxItem,
    Package,
    PackageAttachment,
    PackageBody,
    PackageRecipient,
)
from gateway.store.rows import (
    ATTACHMENT_COLUMNS,
    BODY_COLUMNS,
    EXCHANGE_COLUMNS,
    INBOX_COLUMNS,
    PACKAGE_COLUMNS,
    RECIPIENT_COLUMNS,
    Row,
)

_PG = postgresql.dialect()
_PACKAGE: Table = Package.__table__  # type: ignore[attr-defined]
CHILDREN: tuple[tuple[str, Table, tuple[str, ...]], ...] = (
    ("recipient", PackageRecipient.__table__, RECIPIENT_COLUMNS),  # type: ignore[attr-defined]
    ("attachment", PackageAttachment.__table__, ATTACHMENT_COLUMNS),  # type: ignore[attr-defined]
    ("exchange", Exchange.__table__, EXCHANGE_COLUMNS),  # type: ignore[attr-defined]
    ("inbox", InboxItem.__table__, INBOX_COLUMNS),  # type: ignore[attr-defined]
    ("body", PackageBody.__table__, BODY_COLUMNS),  # type: ignore[attr-defined]
)
"""Each child table: its parameter prefix, the table, the columns its rows fill (``package_id`` holds
the package's SHA-256 until the join replaces it with the id)."""


def _unnest(prefix: str, table: Table, columns: Sequence[str]) -> tuple[str, list[object]]:
    """``unnest(CAST(:p__c AS type[]), …)`` over these columns, and their typed parameters (so that each
    value goes through its column type, e.g. the check that a time is aware)."""
    casts, params = [], []
    for column in columns:
        # A child's package_id carries the package's SHA-256 here.
        sa_type = _PACKAGE.c.sha256.type if column == "package_id" else table.c[column].type
        casts.append(f"CAST(:{prefix}__{column} AS {sa_type.compile(dialect=_PG)}[])")
        params.append(bindparam(f"{prefix}__{column}", type_=ARRAY(sa_type)))
    return "unnest(" + ", ".join(casts) + ")", params


def _statement() -> TextClause:
    def names(columns: Sequence[str]) -> str:
        return ", ".join(f'"{c}"' for c in columns)

    unnest, params = _unnest("package", _PACKAGE, PACKAGE_COLUMNS)
    parts = [
        f"WITH pkg AS (INSERT INTO package ({names(PACKAGE_COLUMNS)}) SELECT * FROM {unnest} "
        "ON CONFLICT DO NOTHING RETURNING id, sha256)"
    ]
    for prefix, table, columns in CHILDREN:
        unnest, more = _unnest(prefix, table, columns)
        params += more
        picked = ", ".join("pkg.id" if c == "package_id" else f'u."{c}"' for c in columns)
        parts.append(
            f"{prefix} AS (INSERT INTO {table.name} ({names(columns)}) SELECT {picked} "
            f"FROM {unnest} AS u({names(columns)}) JOIN pkg ON pkg.sha256 = u.package_id)"
        )
    return text(",\n".join(parts) + "\nSELECT id, sha256 FROM pkg").bindparams(*params)


STATEMENT = _statement()


def parameters(packages: Sequence[Row], children: dict[str, Sequence[Row]]) -> dict[str, list[object]]:
    """The arrays :data:`STATEMENT` takes: the package rows, and each child table's rows (by the prefix
    in :data:`CHILDREN`) keyed by their package's SHA-256."""
    values = {f"package__{c}": [row[c] for row in packages] for c in PACKAGE_COLUMNS}
    for prefix, _, columns in CHILDREN:
        rows = children.get(prefix, ())
        values.update({f"{prefix}__{c}": [row[c] for row in rows] for c in columns})
    return values
