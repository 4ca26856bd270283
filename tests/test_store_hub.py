"""What the hub needs from the store: batched ingest, inbox notices, per-agency depth, the directory sync,
stored status receipts and the exchange snapshots the rate reads (both backends)."""

from __future__ import annotations

import asyncio

import pytest
from db_fixtures import RECIPIENTS, SENDER, T0, make_record, sha
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from gateway.errors import Conflict, FieldError
from gateway.store import (
    AgencyRecord,
    BlobStore,
    IngestItem,
    apply_status,
    inbox_depths,
    ingest_package,
    ingest_packages,
    list_agencies,
    list_inbox,
    list_pins,
    package_body,
    sync_directory,
    upsert_agency,
)
from gateway.store import db as db_module
from gateway.store.db import Database, open_database
from gateway.store.models import Exchange, Package, PackageBody

FP = "ab" * 32


async def test_batched_ingest_gives_each_item_what_a_single_ingest_would(db):
    await ingest_package(
        db, make_record("stored", document_id=f"{SENDER},2027/03/02,1/A"), receipt=b"r0", received_at=T0
    )
    items = [
        IngestItem(
            record=make_record("new", document_id=f"{SENDER},2027/03/02,2/A"), receipt=b"r1", received_at=T0
        ),
        IngestItem(
            record=make_record("stored", document_id=f"{SENDER},2027/03/02,1/A"),
            receipt=b"rx",
            received_at=T0,
        ),
        IngestItem(
            record=make_record("other", document_id=f"{SENDER},2027/03/02,1/A"), receipt=b"r2", received_at=T0
        ),
        IngestItem(
            record=make_record("new", document_id=f"{SENDER},2027/03/02,2/A"), receipt=b"r3", received_at=T0
        ),
        IngestItem(record=make_record("bad", recipients=()), receipt=b"r4", received_at=T0),
        IngestItem(
            record=make_record(
                "lenient", document_id=f"{SENDER},2027/03/02,3/A", verdict="signature.missing", paper=True
            ),
            receipt=b"r5",
            received_at=T0,
        ),
    ]
    new, repeat, conflict, twin, bad, lenient = await ingest_packages(db, items)
    assert new.created
    assert new.receipt == b"r1"
    assert not repeat.created
    assert repeat.receipt == b"r0"
    assert isinstance(conflict, Conflict)
    assert conflict.code == "conflict.document_id"
    assert not twin.created
    assert twin.package.id == new.package.id
    assert twin.receipt == b"r1"
    assert isinstance(bad, FieldError)
    assert lenient.created
    async with db.read() as s:
        rows = (
            (await s.execute(select(Exchange).where(Exchange.package_id == lenient.package.id)))
            .scalars()
            .all()
        )
    assert {(e.signature_ok, e.paper, e.month) for e in rows} == {(False, True, 202703)}
    assert (await ingest_packages(db, [])) == []


async def test_a_batch_keeps_the_levels_it_was_routed_with_and_a_request_after_its_document(db):
    """The levels the caller routed with are what the exchanges keep; a recall in the same batch as its
    document (whatever their order by SHA-256) finds the document."""
    doc = f"{SENDER},2027/03/02,7/A"
    levels = {SENDER: "province", RECIPIENTS[0]: "department", RECIPIENTS[1]: "district"}
    for recall_body in ("recall-a", "recall-b", "recall-c"):  # different SHA-256 orders
        document = make_record(f"doc-{recall_body}", document_id=doc + recall_body)
        recall = make_record(recall_body, document_id=doc + recall_body, doc_type=1)
        done = await ingest_packages(
            db,
            [
                IngestItem(record=recall, receipt=b"r", received_at=T0),
                IngestItem(record=document, receipt=b"d", received_at=T0),
            ],
            levels=levels,
        )
        assert all(r.created for r in done)
        assert {a.outcome for a in done[0].requests} == {"applied"}
        async with db.read() as s:
            rows = (
                (await s.execute(select(Exchange).where(Exchange.package_id == done[1].package.id)))
                .scalars()
                .all()
            )
        assert {(e.recipient_organ_id, e.sender_level, e.recipient_level) for e in rows} == {
            (RECIPIENTS[0], "province", "department"),
            (RECIPIENTS[1], "province", "district"),
        }


async def test_small_bodies_are_kept_with_their_packages_in_the_same_transaction(db):
    """A body given with an item is written in the batch's transaction (``package_body``); an item without
    one leaves its bytes to the blob store; a repeat or a conflict stores no bytes of its own."""
    doc = f"{SENDER},2027/03/02,8/"
    items = [
        IngestItem(
            record=make_record("inline", document_id=doc + "A"), receipt=b"r", received_at=T0, body=b"inline"
        ),
        IngestItem(record=make_record("as-blob", document_id=doc + "B"), receipt=b"r", received_at=T0),
        IngestItem(
            record=make_record("inline", document_id=doc + "A"), receipt=b"r", received_at=T0, body=b"inline"
        ),
        IngestItem(
            record=make_record("other", document_id=doc + "A"), receipt=b"r", received_at=T0, body=b"other"
        ),
        IngestItem(
            record=make_record("recall", document_id=doc + "A", doc_type=1),
            receipt=b"r",
            received_at=T0,
            body=b"recall",
        ),
    ]
    inline, as_blob, twin, conflict, recall = await ingest_packages(db, items)
    assert [r.created for r in (inline, as_blob, twin, recall)] == [True, True, False, True]
    assert isinstance(conflict, Conflict)
    await ingest_package(
        db, make_record("single", document_id=doc + "C"), receipt=b"r", received_at=T0, body=b"single"
    )
    assert await package_body(db, sha("inline")) == b"inline"
    assert await package_body(db, sha("recall")) == b"recall"
    assert await package_body(db, sha("single")) == b"single"
    assert await package_body(db, sha("as-blob")) is None
    assert await package_body(db, sha("other")) is None
    async with db.read() as s:
        assert len((await s.execute(select(PackageBody))).all()) == 3


async def test_batches_from_two_engines_racing_on_the_same_packages(database_url):
    from gateway.store import open_database

    first, second = open_database(database_url), open_database(database_url)
    try:
        records = [make_record(f"p{i}", document_id=f"{SENDER},2027/03/02,{i}/B") for i in range(20)]
        a = [IngestItem(record=r, receipt=b"A", received_at=T0) for r in records]
        b = [IngestItem(record=r, receipt=b"B", received_at=T0) for r in reversed(records)]
        left, right = await asyncio.gather(ingest_packages(first, a), ingest_packages(second, b))
        right.reverse()
        for x, y in zip(left, right, strict=True):
            assert x.package.id == y.package.id
            assert x.receipt == y.receipt  # type: ignore[union-attr]
            assert sorted([x.created, y.created]) == [False, True]  # type: ignore[union-attr]
    finally:
        await first.close()
        await second.close()


async def test_a_batch_of_new_documents_looks_nothing_up_and_settles_only_what_its_insert_skipped(db):
    """New documents are written by one insert that skips what a stored package holds, with no look-up
    first; only the skipped ones are looked up (a repeat, a conflict), and a repeat of a refused item
    within the batch is refused the same way."""
    from sqlalchemy import event

    doc = f"{SENDER},2027/03/02,9/"
    levels = {SENDER: "province", RECIPIENTS[0]: "department", RECIPIENTS[1]: "district"}  # as the hub routes
    await ingest_package(db, make_record("kept", document_id=doc + "A"), receipt=b"r0", received_at=T0)
    engines = {db.engine.sync_engine, *([db.sync_engine] if db.sync_engine is not None else [])}
    sent: list[str] = []

    def record(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        first = statement.split()[0].upper()
        sent.append("SELECT" if first == "SELECT" else "WRITE" if first in ("INSERT", "WITH") else first)

    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        fresh = [
            IngestItem(
                record=make_record(f"fresh-{i}", document_id=doc + f"F{i}"), receipt=b"r", received_at=T0
            )
            for i in range(5)
        ]
        done = await ingest_packages(db, fresh, levels=levels)
        assert all(r.created for r in done)
        assert "SELECT" not in sent, sent
        if db.dialect == "postgresql":
            assert sent == ["WRITE"]  # the whole batch is one statement (gateway.store.pg_batch)
        # Other bytes under the stored DocumentId, before and after the stored bytes in the batch's order
        # (by SHA-256), and twice; other bytes under a DocumentId new in the batch.
        clashes = [
            next(f"clash-{n}" for n in range(99) if (sha(f"clash-{n}") < sha("kept")) == before)
            for before in (True, False)
        ]
        for round_, name in enumerate(clashes):
            sent.clear()
            clash = make_record(name, document_id=doc + "A")
            done = await ingest_packages(
                db,
                [
                    IngestItem(
                        record=make_record("kept", document_id=doc + "A"), receipt=b"rx", received_at=T0
                    ),
                    IngestItem(record=clash, receipt=b"r1", received_at=T0),
                    IngestItem(record=clash, receipt=b"r2", received_at=T0),
                    IngestItem(
                        record=make_record(f"new-{round_}", document_id=doc + f"B{round_}"),
                        receipt=b"r3",
                        received_at=T0,
                    ),
                    IngestItem(
                        record=make_record(f"rival-{round_}", document_id=doc + f"B{round_}"),
                        receipt=b"r4",
                        received_at=T0,
                    ),
                ],
                levels=levels,
            )
            repeat, conflict, conflict_again, new, rival = done
            assert not repeat.created
            assert repeat.receipt == b"r0"
            assert isinstance(conflict, Conflict)
            assert isinstance(conflict_again, Conflict)
            assert conflict_again is not conflict
            assert sorted(type(r).__name__ for r in (new, rival)) == ["Conflict", "IngestResult"]
            assert sent.index("WRITE") < sent.index("SELECT"), sent  # looked up only after the insert
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)
    async with db.read() as s:
        stored = set((await s.execute(select(Package.document_id))).scalars())
    assert stored == {doc + "A", doc + "B0", doc + "B1", *(doc + f"F{i}" for i in range(5))}


def test_both_ways_of_writing_a_batch_fill_every_column_they_must():
    """PostgreSQL's one-statement batch and the per-table inserts write the rows the same builders make:
    the package rows fill every column but the id, and each child table's rows fill exactly the columns
    the statement names, every required one among them (a column added to a table must be added here)."""
    from gateway.store import pg_batch, rows
    from gateway.store.packages import AttachmentRecord

    assert set(rows.PACKAGE_COLUMNS) == {c.name for c in Package.__table__.columns} - {"id"}  # type: ignore[attr-defined]
    record = make_record("columns", attachments=(AttachmentRecord(content_id="a", size=1, sha256=sha("a")),))
    item = IngestItem(record=record, receipt=b"r", received_at=T0, body=b"bytes")
    built = rows.children([(record.sha256, item)], holidays=None, levels={})
    assert list(built) == [prefix for prefix, _, _ in pg_batch.CHILDREN]
    for prefix, table, columns in pg_batch.CHILDREN:
        assert built[prefix], prefix
        assert all(tuple(row) == columns for row in built[prefix]), prefix
        required = {
            c.name
            for c in table.columns
            if not c.nullable
            and c.default is None
            and c.server_default is None
            and c.name != "id"  # a serial key
        }
        assert required <= set(columns), (prefix, required - set(columns))
    statement = pg_batch.STATEMENT.text
    assert statement.count("INSERT INTO") == 1 + len(pg_batch.CHILDREN)
    assert "ON CONFLICT DO NOTHING" in statement


async def test_a_batch_writes_the_rows_a_single_ingest_writes(db):
    """Every row a batched ingest writes (on PostgreSQL the one statement of pg_batch, on SQLite the
    writer thread's per-table inserts) equals what a single ingest writes for the same package, attachments
    and small body included, but for the keys that tell the two packages apart."""
    from gateway.store import upsert_agencies
    from gateway.store.models import InboxItem, PackageAttachment, PackageRecipient
    from gateway.store.packages import AttachmentRecord

    await upsert_agencies(
        db,
        [
            AgencyRecord(organ_id=SENDER, name="UBND tỉnh", level="province"),
            AgencyRecord(organ_id=RECIPIENTS[0], name="Sở", level="department"),
        ],
        now=T0,
    )
    attachments = tuple(
        AttachmentRecord(
            content_id=f"cid:{i}",
            size=i,
            sha256=sha(f"att-{i}"),
            name=f"{i}.pdf",
            content_type="application/pdf",
            description=None if i else "QĐ",
        )
        for i in range(2)
    )

    def record(body: str):  # type: ignore[no-untyped-def]
        return make_record(
            body, document_id=f"{SENDER},2027/03/02,{body}/A", attachments=attachments, paper=True
        )

    single = await ingest_package(db, record("single"), receipt=b"<r/>", received_at=T0, body=b"<edXML/>")
    (batched,) = await ingest_packages(
        db, [IngestItem(record=record("double"), receipt=b"<r/>", received_at=T0, body=b"<edXML/>")]
    )
    assert single.created
    assert batched.created  # type: ignore[union-attr]
    ids = {single.package.id: "P", batched.package.id: "P"}  # type: ignore[union-attr]
    varying = {"id", "package_id", "sha256", "blob_sha256", "document_id"}

    async def rows_of(model, package_id: int) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
        async with db.read() as s:
            column = model.id if model is Package else model.package_id
            found = (await s.execute(select(model).where(column == package_id))).scalars().all()
        out = []
        for row in found:
            values = row.model_dump()
            varying_here = varying - {"sha256"} if model is PackageAttachment else varying
            out.append(
                {
                    k: (ids.get(v, v) if k == "package_id" else v)
                    for k, v in values.items()
                    if k not in varying_here
                }
            )
        return sorted(out, key=repr)

    for model in (Package, PackageRecipient, PackageAttachment, Exchange, InboxItem, PackageBody):
        left = await rows_of(model, single.package.id)
        right = await rows_of(model, batched.package.id)  # type: ignore[union-attr]
        assert left, model
        assert left == right, model


async def test_two_engines_racing_for_one_document_id_store_one_package(database_url):
    """Two batches (two hub processes) carrying other bytes under the same DocumentIds: each DocumentId
    ends up with exactly one package, and the other item is refused as a conflict, not an error."""
    from gateway.store import open_database

    first, second = open_database(database_url), open_database(database_url)
    try:
        ids = [f"{SENDER},2027/03/02,{i}/C" for i in range(20)]
        a = [
            IngestItem(record=make_record(f"a{i}", document_id=d), receipt=b"A", received_at=T0)
            for i, d in enumerate(ids)
        ]
        b = [
            IngestItem(record=make_record(f"b{i}", document_id=d), receipt=b"B", received_at=T0)
            for i, d in enumerate(ids)
        ]
        left, right = await asyncio.gather(ingest_packages(first, a), ingest_packages(second, b))
        for x, y in zip(left, right, strict=True):
            outcomes = sorted(type(r).__name__ for r in (x, y))
            assert outcomes == ["Conflict", "IngestResult"], (x, y)
        async with first.read() as s:
            count = (
                await s.execute(select(func.count()).select_from(Package).where(Package.document_id.in_(ids)))  # type: ignore[attr-defined]
            ).scalar_one()
        assert count == len(ids)
    finally:
        await first.close()
        await second.close()


async def test_status_items_carry_the_notice_and_the_document(db):
    doc = await ingest_package(db, make_record(), receipt=b"r", received_at=T0)
    result = await apply_status(
        db,
        document_sender=SENDER,
        document_id=doc.package.document_id,
        actor_organ_id=RECIPIENTS[0],
        code="01",
        message_sha256=sha("status-01"),
        received_at=T0,
        forwarded=b"<notice/>",
        receipt=b"<status receipt/>",
    )
    assert result.created
    assert result.message.receipt == b"<status receipt/>"
    again = await apply_status(
        db,
        document_sender=SENDER,
        document_id=doc.package.document_id,
        actor_organ_id=RECIPIENTS[0],
        code="01",
        message_sha256=sha("status-01"),
        received_at=T0,
        receipt=b"<another/>",
    )
    assert not again.created
    assert again.message.receipt == b"<status receipt/>"
    (item,) = await list_inbox(db, SENDER, with_notices=True)
    assert (item.kind, item.status_code, item.sender, item.document_sender) == (
        "status",
        "01",
        RECIPIENTS[0],
        SENDER,
    )
    assert (item.document_sha256, item.notice) == (doc.package.sha256, b"<notice/>")
    (plain,) = await list_inbox(db, SENDER)
    assert plain.notice is None
    assert await inbox_depths(db) == {RECIPIENTS[0]: 1, RECIPIENTS[1]: 1, SENDER: 1}


async def test_directory_sync_follows_the_file_and_leaves_the_operator_alone(db):
    file = [
        AgencyRecord(organ_id=SENDER, name="UBND tỉnh", level="province"),
        AgencyRecord(organ_id=RECIPIENTS[0], name="Sở", level="department", parent_organ_id=SENDER),
    ]
    await sync_directory(db, file, {RECIPIENTS[0]: [FP]}, now=T0)
    await upsert_agency(
        db, AgencyRecord(organ_id=RECIPIENTS[1], name="Huyện", level="district", source="admin"), now=T0
    )
    await upsert_agency(
        db, AgencyRecord(organ_id=SENDER, name="Tỉnh (operator)", level="province", source="admin"), now=T0
    )
    assert [p.fingerprint for p in await list_pins(db, RECIPIENTS[0])] == [FP]
    # The file drops the department and renames the province: the operator's province stays as it is.
    await sync_directory(
        db, [AgencyRecord(organ_id=SENDER, name="Tỉnh (file)", level="province")], {}, now=T0
    )
    names = {a.organ_id: a.name for a in await list_agencies(db)}
    assert names == {SENDER: "Tỉnh (operator)", RECIPIENTS[1]: "Huyện"}
    assert await list_pins(db, RECIPIENTS[0]) == []
    # The exchanges snapshot the levels of these rows.
    result = await ingest_package(db, make_record(), receipt=b"r", received_at=T0)
    async with db.read() as s:
        levels = (
            (
                await s.execute(
                    select(Exchange.recipient_level)
                    .where(Exchange.package_id == result.package.id)
                    .order_by(Exchange.id)
                )
            )
            .scalars()
            .all()
        )
    assert levels == ["department", "district"]  # a deactivated agency keeps its level


async def test_adopt_moves_a_hashed_file_into_the_blob_store(tmp_path):
    blobs = BlobStore(tmp_path / "blobs")
    (tmp_path / "blobs").mkdir()
    upload = tmp_path / "blobs" / "upload.tmp"
    upload.write_bytes(b"package bytes")
    assert await blobs.adopt(upload, sha(b"package bytes"))
    assert not upload.exists()
    assert await blobs.read(sha(b"package bytes")) == b"package bytes"
    upload.write_bytes(b"package bytes")
    assert not await blobs.adopt(upload, sha(b"package bytes"))  # already there: the copy is dropped
    assert not upload.exists()
    with pytest.raises(ValueError, match="SHA-256"):
        await blobs.adopt(upload, "not-a-sha")


async def test_content_type_is_kept(db):
    import dataclasses

    record = dataclasses.replace(
        make_record("mp"), form="multipart", content_type='multipart/related; boundary="b"'
    )
    result = await ingest_package(db, record, receipt=b"r", received_at=T0)
    async with db.read() as s:
        assert (await s.get(Package, result.package.id)).content_type == 'multipart/related; boundary="b"'  # type: ignore[union-attr]


async def test_sync_write_transactions_commit_roll_back_and_take_turns_with_async_ones(db):
    """Database.run_write: committed when the function returns, nothing kept when it raises, and (on
    SQLite, where it has its own connection in a writer thread) never colliding with async writes."""
    from sqlalchemy import func, insert

    from gateway.store.models import Agency

    def add(session, organ_id: str, *, fail: bool = False) -> str:
        session.execute(
            insert(Agency.__table__),
            [{"organ_id": organ_id, "name": organ_id, "created_at": T0, "updated_at": T0}],
        )
        if fail:
            raise RuntimeError("refused after the insert")
        return organ_id

    async def add_async(organ_id: str) -> None:
        async with db.write() as session:
            await session.execute(
                insert(Agency.__table__),
                [{"organ_id": organ_id, "name": organ_id, "created_at": T0, "updated_at": T0}],
            )

    assert await db.run_write(add, "001.00.00.A01") == "001.00.00.A01"
    with pytest.raises(RuntimeError):
        await db.run_write(add, "001.00.00.A02", fail=True)
    await asyncio.gather(
        *(db.run_write(add, f"002.00.{i:02d}.A01") for i in range(20)),
        *(add_async(f"003.00.{i:02d}.A01") for i in range(20)),
    )
    async with db.read() as s:
        names = set((await s.execute(select(Agency.organ_id))).scalars())
        count = (await s.execute(select(func.count()).select_from(Agency))).scalar_one()
    assert "001.00.00.A01" in names
    assert "001.00.00.A02" not in names
    assert count == 41


def test_a_group_commit_looks_its_keys_up_by_index_never_by_scanning_the_packages(tmp_path):
    """The batch lookups stay searches of an index however many packages are stored (SQLite's plan of the
    very SQL the statements send)."""
    from sqlalchemy import create_engine, event

    from gateway.store import packages
    from gateway.store.migrate import upgrade

    path = tmp_path / "plan.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    engine = create_engine(f"sqlite:///{path}")
    sent: list[tuple[str, object]] = []
    event.listen(engine, "before_cursor_execute", lambda *a: sent.append((a[2], a[3])))
    try:
        with engine.connect() as conn:
            for stmt, params in (
                (packages._FIND_BYTES, {"shas": ["a" * 64, "b" * 64]}),
                (packages._FIND_DOCUMENTS, {"senders": [SENDER], "documents": ["d1", "d2"]}),
            ):
                sent.clear()
                conn.execute(stmt, params)
                sql, bound = sent[-1]
                plan = " ".join(row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, bound))
                assert "USING INDEX" in plan, plan
                assert "SCAN" not in plan, plan
    finally:
        engine.dispose()


async def _select_one(database: Database) -> int:
    async with database.read() as session:
        return int((await session.execute(text("SELECT 1"))).scalar_one())


@pytest.mark.postgres
async def test_a_postgresql_connection_is_pinged_only_after_sitting_idle(
    pg_empty_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No round trip before each transaction of a connection in use; one that sat idle and was closed
    by the server meanwhile (a restart, a proxy's timeout) is found by a ping and replaced unseen."""
    import asyncpg

    database = open_database(pg_empty_url, pool_size=1)
    dialect = database.engine.sync_engine.dialect
    ping = dialect.do_ping
    pings: list[object] = []

    def counted_ping(dbapi_connection: object) -> bool:
        pings.append(dbapi_connection)
        return bool(ping(dbapi_connection))

    monkeypatch.setattr(dialect, "do_ping", counted_ping)
    try:
        monkeypatch.setattr(db_module, "PING_AFTER_IDLE_S", 60.0)
        assert [await _select_one(database) for _ in range(3)] == [1, 1, 1]
        assert pings == []

        url = make_url(pg_empty_url)
        admin = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False))
        try:
            closed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                url.database,
            )
        finally:
            await admin.close()
        assert closed == 1  # the pooled connection, idle

        monkeypatch.setattr(db_module, "PING_AFTER_IDLE_S", 0.0)
        assert await _select_one(database) == 1
        assert len(pings) == 1
    finally:
        await database.close()
