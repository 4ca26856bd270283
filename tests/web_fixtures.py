"""A small province for the web tests: agencies, dispatches with statuses, a paper dispatch, four users.

Built with the store's own functions on a real, migrated SQLite database (the same path the hub uses),
so the pages are tested against what the hub actually stores. ``NOW`` is the clock the app is given.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from gateway.calendar import VN_TZ, Holidays
from gateway.store.accounts import add_user
from gateway.store.blobs import BlobStore
from gateway.store.db import Database, open_database
from gateway.store.directory import AgencyRecord, upsert_agencies
from gateway.store.migrate import upgrade_engine
from gateway.store.packages import PackageRecord, ingest_package
from gateway.store.paper import PaperRecord, add_paper_dispatch
from gateway.store.statuses import apply_status
from gateway.web import create_web_app
from gateway.web.passwords import hash_password

PROVINCE = "000.00.00.H53"
DEPT = "000.00.02.H53"
DISTRICT = "000.00.31.H53"
DISTRICT2 = "000.00.32.H53"
COMMUNE = "000.21.31.H53"
PASSWORD = "mật-khẩu-đủ-dài-2027"
NOW = dt.datetime(2027, 3, 10, 10, 0, tzinfo=VN_TZ).astimezone(dt.UTC)

AGENCIES = (
    AgencyRecord(organ_id=PROVINCE, name="Ủy ban nhân dân tỉnh Tây Ninh", level="province"),
    AgencyRecord(organ_id=DEPT, name="Sở Nội vụ tỉnh Tây Ninh", level="department", parent_organ_id=PROVINCE),
    AgencyRecord(organ_id=DISTRICT, name="Ủy ban nhân dân huyện Tân Biên", level="district"),
    AgencyRecord(organ_id=DISTRICT2, name="Ủy ban nhân dân huyện Tân Châu", level="district"),
    AgencyRecord(organ_id=COMMUNE, name="Ủy ban nhân dân xã Tân Lập", level="commune"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Seeded:
    """Package ids of the dataset, by what they are for."""

    province_to_all: int
    """Province → district 31 (01, 03), district 32 (02 refused), department (nothing: overdue)."""
    district_to_commune: int
    dept_paper: int
    """Department → district 32, with a paper copy: not visible to district 31."""
    recent: int
    """Province → commune, received on NOW's day: not overdue yet."""
    other_district: int
    """District 32 → province: not visible to district 31."""
    overdue_sent: int
    """District 31 → district 32, never confirmed: on district 31's overdue list (sent)."""
    overdue_received: int
    """Province → district 31, never confirmed: on district 31's overdue list (received)."""


def vn(year: int, month: int, day: int, hour: int = 9) -> dt.datetime:
    return dt.datetime(year, month, day, hour, tzinfo=VN_TZ).astimezone(dt.UTC)


async def _package(
    db: Database,
    blobs: BlobStore,
    *,
    sender: str,
    recipients: tuple[str, ...],
    number: str,
    notation: str,
    subject: str,
    at: dt.datetime,
    paper: bool = False,
    inline: bool = False,
) -> int:
    """A stored package whose bytes are a blob or, ``inline``, kept in the database (as the hub keeps a
    small body)."""
    day = at.astimezone(VN_TZ).date()
    document_id = f"{sender},{day:%Y/%m/%d},{number}/{notation}"
    body = f'<edXML document="{document_id}">{subject}</edXML>'.encode()
    digest = hashlib.sha256(body).hexdigest()
    if not inline:
        await blobs.put(body)
    record = PackageRecord(
        sha256=digest,
        size=len(body),
        blob_sha256=digest,
        sender=sender,
        recipients=recipients,
        document_id=document_id,
        paper=paper,
        code_number=number,
        code_notation=notation,
        subject=subject,
        document_type="Công văn",
        promulgation_date=day,
        priority=0,
    )
    result = await ingest_package(
        db,
        record,
        receipt=b"<HubReceipt>" + digest.encode() + b"</HubReceipt>",
        received_at=at,
        body=body if inline else None,
    )
    assert result.package.id is not None
    return result.package.id


async def _status(
    db: Database, document_sender: str, document_id: str, actor: str, code: str, at: dt.datetime
) -> None:
    message = f"{document_id}|{actor}|{code}|{at.isoformat()}".encode()
    await apply_status(
        db,
        document_sender=document_sender,
        document_id=document_id,
        actor_organ_id=actor,
        code=code,
        message=message,
        message_sha256=hashlib.sha256(message).hexdigest(),
        received_at=at,
        description="Không thuộc thẩm quyền" if code == "02" else None,
    )


async def seed(db: Database, blobs: BlobStore) -> Seeded:
    await upsert_agencies(db, AGENCIES, now=vn(2027, 1, 1))
    p1 = await _package(
        db,
        blobs,
        sender=PROVINCE,
        recipients=(DISTRICT, DISTRICT2, DEPT),
        number="12",
        notation="UBND-VP",
        subject="Về việc triển khai chuyển đổi số năm 2027",
        at=vn(2027, 2, 22),
    )
    doc1 = f"{PROVINCE},2027/02/22,12/UBND-VP"
    await _status(db, PROVINCE, doc1, DISTRICT, "01", vn(2027, 2, 22, 14))
    await _status(db, PROVINCE, doc1, DISTRICT, "03", vn(2027, 2, 23, 8))
    await _status(db, PROVINCE, doc1, DISTRICT2, "02", vn(2027, 2, 23, 9))
    p2 = await _package(
        db,
        blobs,
        sender=DISTRICT,
        recipients=(COMMUNE,),
        number="45",
        notation="UBND",
        subject="Về việc tổ chức tiếp công dân định kỳ",
        at=vn(2027, 1, 12),
    )
    await _status(db, DISTRICT, f"{DISTRICT},2027/01/12,45/UBND", COMMUNE, "01", vn(2027, 1, 12, 15))
    p3 = await _package(
        db,
        blobs,
        sender=DEPT,
        recipients=(DISTRICT2,),
        number="7",
        notation="SNV-VP",
        subject="Về việc tuyển dụng công chức cấp xã",
        at=vn(2027, 2, 3),
        paper=True,
    )
    await _status(db, DEPT, f"{DEPT},2027/02/03,7/SNV-VP", DISTRICT2, "01", vn(2027, 2, 3, 16))
    p4 = await _package(
        db,
        blobs,
        sender=PROVINCE,
        recipients=(COMMUNE,),
        number="30",
        notation="UBND-KT",
        subject="Về việc phòng chống thiên tai",
        at=vn(2027, 3, 10, 8),
    )
    p5 = await _package(
        db,
        blobs,
        sender=DISTRICT2,
        recipients=(PROVINCE,),
        number="99",
        notation="UBND-TC",
        subject="Báo cáo riêng của huyện Tân Châu",
        at=vn(2027, 2, 15),
        inline=True,
    )
    await _status(db, DISTRICT2, f"{DISTRICT2},2027/02/15,99/UBND-TC", PROVINCE, "01", vn(2027, 2, 15, 10))
    p6 = await _package(
        db,
        blobs,
        sender=DISTRICT,
        recipients=(DISTRICT2,),
        number="46",
        notation="UBND",
        subject="Về việc phối hợp quản lý đất đai vùng giáp ranh",
        at=vn(2027, 3, 2),
    )
    p7 = await _package(
        db,
        blobs,
        sender=PROVINCE,
        recipients=(DISTRICT,),
        number="31",
        notation="UBND-NC",
        subject="Về việc báo cáo tình hình an ninh trật tự quý I",
        at=vn(2027, 3, 3),
    )
    await add_paper_dispatch(
        db,
        PaperRecord(
            sender=PROVINCE,
            recipient=DISTRICT,
            code_number="5",
            code_notation="UBND-VP",
            document_date=dt.date(2027, 2, 10),
            subject="Giấy mời họp",
        ),
        now=vn(2027, 2, 10),
    )
    password_hash = hash_password(PASSWORD)
    for username, role, organ in (
        ("vanthu.tanbien", "clerk", DISTRICT),
        ("vanthu.tanchau", "clerk", DISTRICT2),
        ("kiemtra", "auditor", None),
        ("quantri", "admin", None),
    ):
        await add_user(
            db,
            username=username,
            password_hash=password_hash,
            role=role,
            organ_id=organ,
            now=vn(2027, 1, 1),
        )
    return Seeded(
        province_to_all=p1,
        district_to_commune=p2,
        dept_paper=p3,
        recent=p4,
        other_district=p5,
        overdue_sent=p6,
        overdue_received=p7,
    )


async def open_seeded(tmp: Path) -> tuple[Database, BlobStore, Seeded]:
    db = open_database(f"sqlite+aiosqlite:///{tmp / 'gateway.db'}")
    await upgrade_engine(db.engine)
    blobs = BlobStore(tmp / "blobs")
    return db, blobs, await seed(db, blobs)


def hub_like_app(db: Database, blobs: BlobStore) -> web.Application:
    """A parent app that mounts the web pages at ``/ui/`` the way the hub does."""
    parent = web.Application()
    # Callables, as the hub passes its repository's database and its runtime's (reloadable) calendar.
    web_app = create_web_app(
        db=lambda: db, blobs=lambda: blobs, holidays=lambda: Holidays(), clock=lambda: NOW
    )
    parent.add_subapp("/ui/", web_app)
    return parent


class ServerThread:
    """The hub-like app on a real localhost port, in its own thread and event loop (for the browser)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.seeded: Seeded | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except BaseException as exc:  # report to the test thread
            self.error = exc
            self.ready.set()
            return
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self._stop())

    async def _start(self) -> None:
        self.db, blobs, self.seeded = await open_seeded(self.tmp)
        self.runner = web.AppRunner(hub_like_app(self.db, blobs))
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        await self.runner.cleanup()
        await self.db.close()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self.ready.wait(60)
        if self.error is not None:
            raise self.error
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/ui/"


def serve(tmp: Path) -> Iterator[ServerThread]:
    with ServerThread(tmp) as server:
        yield server
