"""The month the demo plays: Tây Ninh's agencies, their dispatches and what each recipient does.

Pure data and date arithmetic (no I/O). The month is the 30 days before the demo runs: every dispatch
gets the next working day of that window as its promulgation date (PromulgationDate, in the DocumentId)
and the next number of its sender's register, so documents read as a real month of correspondence. The
hub stamps what it receives with its own, real clock (see :mod:`gateway.demo.runner` for why).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gateway.calendar import Holidays
from gateway.edxml.codes import compose_document_id

# --- agencies -------------------------------------------------------------------------------------------

MINISTRY = "000.00.00.G12"
PROVINCE = "000.00.00.H53"
OFFICE = "000.00.01.H53"
HOME_AFFAIRS = "000.00.02.H53"
FINANCE = "000.00.03.H53"
ICT = "000.00.04.H53"
EDUCATION = "000.00.05.H53"
TAN_BIEN = "000.00.31.H53"
CHAU_THANH = "000.00.32.H53"
TAN_LAP = "000.21.31.H53"
THANH_BAC = "000.22.31.H53"
HAO_DUOC = "000.21.32.H53"


@dataclass(frozen=True, slots=True, kw_only=True)
class Agency:
    organ_id: str
    name: str
    short: str
    """How the demo's output names it."""
    level: str
    parent: str | None = None
    place: str = "Tây Ninh"
    node: bool = False
    """Whether the demo runs an agency node for it (the others have not connected their DMS yet)."""


AGENCIES: tuple[Agency, ...] = (
    Agency(organ_id=MINISTRY, name="Bộ Nội vụ", short="Bộ Nội vụ", level="central", place="Hà Nội",
           node=True),
    Agency(organ_id=PROVINCE, name="Ủy ban nhân dân tỉnh Tây Ninh", short="UBND tỉnh", level="province",
           node=True),
    Agency(organ_id=OFFICE, name="Văn phòng Ủy ban nhân dân tỉnh Tây Ninh", short="Văn phòng UBND tỉnh",
           level="department", parent=PROVINCE),
    Agency(organ_id=HOME_AFFAIRS, name="Sở Nội vụ tỉnh Tây Ninh", short="Sở Nội vụ", level="department",
           parent=PROVINCE, node=True),
    Agency(organ_id=FINANCE, name="Sở Tài chính tỉnh Tây Ninh", short="Sở Tài chính", level="department",
           parent=PROVINCE),
    Agency(organ_id=ICT, name="Sở Thông tin và Truyền thông tỉnh Tây Ninh", short="Sở TT&TT",
           level="department", parent=PROVINCE),
    Agency(organ_id=EDUCATION, name="Sở Giáo dục và Đào tạo tỉnh Tây Ninh", short="Sở GD&ĐT",
           level="department", parent=PROVINCE),
    Agency(organ_id=TAN_BIEN, name="Ủy ban nhân dân huyện Tân Biên", short="UBND huyện Tân Biên",
           level="district", parent=PROVINCE, place="Tân Biên", node=True),
    Agency(organ_id=CHAU_THANH, name="Ủy ban nhân dân huyện Châu Thành", short="UBND huyện Châu Thành",
           level="district", parent=PROVINCE, place="Châu Thành"),
    Agency(organ_id=TAN_LAP, name="Ủy ban nhân dân xã Tân Lập", short="UBND xã Tân Lập", level="commune",
           parent=TAN_BIEN, place="Tân Lập", node=True),
    Agency(organ_id=THANH_BAC, name="Ủy ban nhân dân xã Thạnh Bắc", short="UBND xã Thạnh Bắc",
           level="commune", parent=TAN_BIEN, place="Thạnh Bắc"),
    Agency(organ_id=HAO_DUOC, name="Ủy ban nhân dân xã Hảo Đước", short="UBND xã Hảo Đước",
           level="commune", parent=CHAU_THANH, place="Hảo Đước"),
)  # fmt: skip
BY_ID: Mapping[str, Agency] = {a.organ_id: a for a in AGENCIES}
NODES: tuple[str, ...] = tuple(a.organ_id for a in AGENCIES if a.node)

HUB_NAME = "LGSP Tây Ninh"


def directory_toml(*, hostnames: Sequence[str] = ("localhost",), ips: Sequence[str] = ("127.0.0.1",)) -> str:
    """The agency directory of the demo (the same agencies as ``config/directory.toml``)."""

    def quoted(values: Sequence[str]) -> str:
        return "[" + ", ".join(f'"{v}"' for v in values) + "]"

    lines = [
        "# Agency directory of the demo: Tây Ninh (H53) and one ministry. Written by `gateway demo`.",
        "",
        "[hub]",
        f'name = "{HUB_NAME}"',
        f"hostnames = {quoted(hostnames)}",
        f"ips = {quoted(ips)}",
    ]
    for a in AGENCIES:
        lines += [
            "",
            "[[agencies]]",
            f'organ_id = "{a.organ_id}"',
            f'name = "{a.name}"',
            f'level = "{a.level}"',
        ]
        if a.parent:
            lines.append(f'parent = "{a.parent}"')
    return "\n".join(lines) + "\n"


# --- the month's dispatches -----------------------------------------------------------------------------

REFUSAL = (
    "Văn bản không thuộc thẩm quyền giải quyết của UBND huyện Tân Biên; đề nghị gửi Sở Giáo dục và Đào tạo"
)
RECALL_REASON = "Ban hành nhầm lịch tiếp công dân; UBND tỉnh sẽ ban hành thông báo thay thế"
RECALL_ANSWER = "Đồng ý thu hồi"


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """One dispatch as written in the script: who sends what to whom, and what each recipient's clerk does.

    ``answers`` maps a recipient to the statuses its clerk sends after the node's automatic ``01``
    (``02`` needs ``refusal``). A recipient without a running node never answers: it stays unconfirmed.
    """

    day: int
    """Index of the working day in the month (0 = the first)."""
    sender: str
    recipients: tuple[str, ...]
    notation: str
    type_name: str
    subject: str
    signer: str
    position: str
    answers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    priority: int = 0
    paper: int = 0
    refusal: str | None = None
    role: str = ""
    """``showcase``, ``refused``, ``recalled``, ``tampered``, ``revoked``: the dispatches the output names."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Dated:
    """A :class:`Plan` placed in the month: its promulgation date and register number."""

    plan: Plan
    date: dt.date
    number: str

    @property
    def document_id(self) -> str:
        return compose_document_id(
            organ_id=self.plan.sender,
            promulgation_date=self.date,
            code_number=self.number,
            code_notation=self.plan.notation,
        )

    @property
    def code(self) -> str:
        return f"{self.number}/{self.plan.notation}"


CHU_TICH = ("Nguyễn Thanh Ngọc", "Chủ tịch")
PHO_CHU_TICH = ("Trần Văn Chiến", "Phó Chủ tịch")
GIAM_DOC_SNV = ("Lê Thị Minh Thư", "Giám đốc")
CT_TAN_BIEN = ("Phạm Hùng Thái", "Chủ tịch")
CT_TAN_LAP = ("Võ Thị Hồng", "Chủ tịch")
THU_TRUONG = ("Nguyễn Duy Thăng", "Thứ trưởng")
GIAM_DOC_STC = ("Huỳnh Văn Quang", "Giám đốc")

done, progress, accepted, arrived = ("03", "05", "06"), ("03", "05"), ("03",), ()

PLANS: tuple[Plan, ...] = (
    Plan(day=0, sender=PROVINCE, recipients=(HOME_AFFAIRS, TAN_BIEN, TAN_LAP, CHAU_THANH), notation="KH-UBND",
         type_name="Kế hoạch", subject="Về việc triển khai Kế hoạch chuyển đổi số năm 2026 trên địa bàn tỉnh",
         signer=CHU_TICH[0], position=CHU_TICH[1], role="showcase",
         answers={HOME_AFFAIRS: done, TAN_BIEN: progress, TAN_LAP: accepted}),
    Plan(day=1, sender=MINISTRY, recipients=(PROVINCE,), notation="BNV-CCHC", type_name="Công văn",
         subject="Về việc báo cáo kết quả thực hiện cải cách hành chính năm 2026",
         signer=THU_TRUONG[0], position=THU_TRUONG[1], answers={PROVINCE: done}),
    Plan(day=2, sender=PROVINCE, recipients=(TAN_BIEN, CHAU_THANH), notation="UBND-VP", type_name="Công văn",
         subject="Về việc tăng cường công tác phòng, chống thiên tai, tìm kiếm cứu nạn mùa mưa bão",
         signer=PHO_CHU_TICH[0], position=PHO_CHU_TICH[1], priority=3, paper=1, answers={TAN_BIEN: accepted}),
    Plan(day=3, sender=HOME_AFFAIRS, recipients=(TAN_BIEN,), notation="SNV-VP", type_name="Công văn",
         subject="Về việc đề nghị cử giáo viên tham gia lớp bồi dưỡng chuẩn chức danh nghề nghiệp",
         signer=GIAM_DOC_SNV[0], position=GIAM_DOC_SNV[1], role="refused",
         answers={TAN_BIEN: ("02",)}, refusal=REFUSAL),
    Plan(day=4, sender=TAN_BIEN, recipients=(PROVINCE,), notation="BC-UBND", type_name="Báo cáo",
         subject="Báo cáo tình hình kinh tế - xã hội tháng 10 năm 2026 của huyện Tân Biên",
         signer=CT_TAN_BIEN[0], position=CT_TAN_BIEN[1], answers={PROVINCE: done}),
    Plan(day=5, sender=TAN_BIEN, recipients=(TAN_LAP, THANH_BAC), notation="UBND-VP", type_name="Công văn",
         subject="Về việc rà soát hộ nghèo, hộ cận nghèo năm 2026",
         signer=CT_TAN_BIEN[0], position=CT_TAN_BIEN[1], answers={TAN_LAP: done}),
    Plan(day=6, sender=TAN_LAP, recipients=(TAN_BIEN,), notation="BC-UBND", type_name="Báo cáo",
         subject="Báo cáo kết quả rà soát hộ nghèo, hộ cận nghèo trên địa bàn xã Tân Lập",
         signer=CT_TAN_LAP[0], position=CT_TAN_LAP[1], answers={TAN_BIEN: accepted}),
    Plan(day=7, sender=PROVINCE, recipients=(HOME_AFFAIRS, TAN_BIEN), notation="QĐ-UBND",
         type_name="Quyết định",
         subject="Quyết định công bố danh mục thủ tục hành chính được chuẩn hóa lĩnh vực nội vụ",
         signer=CHU_TICH[0], position=CHU_TICH[1], paper=1, answers={HOME_AFFAIRS: done, TAN_BIEN: done}),
    Plan(day=8, sender=PROVINCE, recipients=(MINISTRY,), notation="BC-UBND", type_name="Báo cáo",
         subject="Báo cáo kết quả triển khai Đề án 06 về phát triển ứng dụng dữ liệu dân cư năm 2026",
         signer=PHO_CHU_TICH[0], position=PHO_CHU_TICH[1], answers={MINISTRY: accepted}),
    Plan(day=9, sender=PROVINCE, recipients=(TAN_BIEN, TAN_LAP), notation="TB-UBND", type_name="Thông báo",
         subject="Thông báo lịch tiếp công dân định kỳ tháng 11 năm 2026 của Chủ tịch UBND tỉnh",
         signer=PHO_CHU_TICH[0], position=PHO_CHU_TICH[1], role="recalled"),
    Plan(day=10, sender=PROVINCE, recipients=(TAN_BIEN, TAN_LAP), notation="TB-UBND", type_name="Thông báo",
         subject="Thông báo lịch tiếp công dân định kỳ tháng 11 năm 2026 (thay thế thông báo đã thu hồi)",
         signer=PHO_CHU_TICH[0], position=PHO_CHU_TICH[1], answers={TAN_BIEN: accepted, TAN_LAP: accepted}),
    Plan(day=11, sender=PROVINCE, recipients=(HOME_AFFAIRS,), notation="UBND-VP", type_name="Công văn",
         subject="Về việc phân bổ 1.200 triệu đồng kinh phí thực hiện chuyển đổi số năm 2026",
         signer=CHU_TICH[0], position=CHU_TICH[1], role="tampered"),
    Plan(day=12, sender=FINANCE, recipients=(PROVINCE,), notation="STC-NS", type_name="Công văn",
         subject="Về việc thẩm định dự toán ngân sách địa phương năm 2027",
         signer=GIAM_DOC_STC[0], position=GIAM_DOC_STC[1], role="revoked"),
    Plan(day=13, sender=HOME_AFFAIRS, recipients=(PROVINCE,), notation="SNV-CCHC", type_name="Báo cáo",
         subject="Báo cáo công tác cải cách hành chính quý IV năm 2026",
         signer=GIAM_DOC_SNV[0], position=GIAM_DOC_SNV[1], answers={PROVINCE: accepted}),
    Plan(day=14, sender=PROVINCE, recipients=(TAN_BIEN, CHAU_THANH, TAN_LAP, THANH_BAC), notation="UBND-VP",
         type_name="Công văn", subject="Về việc tổ chức Ngày hội chuyển đổi số cấp xã năm 2026",
         signer=PHO_CHU_TICH[0], position=PHO_CHU_TICH[1], answers={TAN_BIEN: accepted, TAN_LAP: accepted}),
    Plan(day=15, sender=MINISTRY, recipients=(PROVINCE,), notation="BNV-CCVC", type_name="Công văn",
         subject="Về việc hướng dẫn đánh giá, xếp loại chất lượng cán bộ, công chức, viên chức năm 2026",
         signer=THU_TRUONG[0], position=THU_TRUONG[1], paper=1, answers={PROVINCE: progress}),
    Plan(day=16, sender=TAN_BIEN, recipients=(PROVINCE,), notation="BC-UBND", type_name="Báo cáo",
         subject="Báo cáo kết quả triển khai Kế hoạch chuyển đổi số năm 2026 của huyện Tân Biên",
         signer=CT_TAN_BIEN[0], position=CT_TAN_BIEN[1], answers={PROVINCE: accepted}),
    Plan(day=17, sender=PROVINCE, recipients=(HOME_AFFAIRS, TAN_BIEN, TAN_LAP), notation="UBND-VP",
         type_name="Công văn", subject="Về việc chuẩn bị tổ chức Tết Nguyên đán Đinh Mùi năm 2027",
         signer=CHU_TICH[0], position=CHU_TICH[1], priority=1,
         answers={HOME_AFFAIRS: accepted, TAN_BIEN: accepted, TAN_LAP: arrived}),
    Plan(day=18, sender=TAN_LAP, recipients=(TAN_BIEN,), notation="TTr-UBND", type_name="Tờ trình",
         subject="Về việc đề nghị hỗ trợ kinh phí sửa chữa Trường Mầm non Tân Lập",
         signer=CT_TAN_LAP[0], position=CT_TAN_LAP[1], answers={TAN_BIEN: progress}),
    Plan(day=19, sender=HOME_AFFAIRS, recipients=(TAN_LAP,), notation="SNV-TCBC", type_name="Công văn",
         subject="Về việc hướng dẫn sắp xếp tổ chức bộ máy, biên chế cấp xã",
         signer=GIAM_DOC_SNV[0], position=GIAM_DOC_SNV[1], answers={TAN_LAP: done}),
    Plan(day=20, sender=PROVINCE, recipients=(TAN_LAP,), notation="UBND-VP", type_name="Công văn",
         subject="Về việc kiểm tra công tác văn thư, lưu trữ năm 2026",
         signer=PHO_CHU_TICH[0], position=PHO_CHU_TICH[1], answers={TAN_LAP: arrived}),
    Plan(day=21, sender=TAN_BIEN, recipients=(TAN_LAP, THANH_BAC), notation="UBND-VP", type_name="Công văn",
         subject="Về việc triển khai chiến dịch tiêm chủng mở rộng đợt cuối năm 2026",
         signer=CT_TAN_BIEN[0], position=CT_TAN_BIEN[1], answers={TAN_LAP: accepted}),
)  # fmt: skip

FIRST_NUMBERS: Mapping[str, int] = {
    MINISTRY: 5821,
    PROVINCE: 3412,
    HOME_AFFAIRS: 1187,
    FINANCE: 2406,
    TAN_BIEN: 1954,
    TAN_LAP: 214,
}
"""Where each sender's register of outgoing documents stands at the start of the month."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PaperRow:
    """A dispatch sent on paper only (never through the hub), for the paper-only register."""

    sender: str
    recipient: str
    number: str
    notation: str
    date: dt.date
    subject: str


PAPER: tuple[tuple[int, str, str, str, str], ...] = (
    (0, OFFICE, HAO_DUOC, "VP-TH", "Về việc cung cấp số liệu phục vụ báo cáo tổng kết năm"),
    (2, CHAU_THANH, HAO_DUOC, "UBND-VP", "Về việc kiểm tra tiến độ xây dựng nông thôn mới"),
    (4, FINANCE, CHAU_THANH, "STC-QLNS", "Về việc thông báo bổ sung dự toán ngân sách năm 2026"),
    (7, EDUCATION, TAN_BIEN, "SGDĐT-TCCB", "Về việc tuyển dụng giáo viên năm học 2026-2027"),
    (9, PROVINCE, HAO_DUOC, "UBND-VP", "Về việc hỗ trợ khắc phục hậu quả mưa lớn"),
    (11, CHAU_THANH, PROVINCE, "BC-UBND", "Báo cáo tình hình thiệt hại do mưa lớn kéo dài"),
    (13, ICT, CHAU_THANH, "STTTT-BCVT", "Về việc phát triển hạ tầng viễn thông thụ động"),
    (15, HAO_DUOC, CHAU_THANH, "BC-UBND", "Báo cáo kết quả thu ngân sách 10 tháng năm 2026"),
    (18, OFFICE, THANH_BAC, "VP-KSTT", "Về việc niêm yết công khai thủ tục hành chính"),
    (20, EDUCATION, HAO_DUOC, "SGDĐT-KHTC", "Về việc cấp kinh phí miễn, giảm học phí"),
)
"""(working day, sender, recipient, notation, subject): agencies without a node still send on paper."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Month:
    days: tuple[dt.date, ...]
    """The working days of the month, oldest first."""
    dispatches: tuple[Dated, ...]
    paper: tuple[PaperRow, ...]

    @property
    def first(self) -> dt.date:
        return self.days[0]

    def by_role(self, role: str) -> Dated:
        return next(d for d in self.dispatches if d.plan.role == role)

    def weeks(self) -> list[tuple[dt.date, dt.date, list[Dated]]]:
        """The dispatches grouped by ISO week (what the progress bar shows)."""
        out: dict[tuple[int, int], list[Dated]] = {}
        for d in self.dispatches:
            out.setdefault(d.date.isocalendar()[:2], []).append(d)
        weeks = []
        for items in out.values():
            monday = items[0].date - dt.timedelta(days=items[0].date.weekday())
            weeks.append((monday, monday + dt.timedelta(days=4), items))
        return weeks


def working_days(today: dt.date, holidays: Holidays, *, span: int = 30) -> tuple[dt.date, ...]:
    """The working days among the ``span`` days before ``today`` (today excluded), oldest first."""
    days = (today - dt.timedelta(days=n) for n in range(span, 0, -1))
    return tuple(d for d in days if holidays.is_working_day(d))


def plan_month(today: dt.date, holidays: Holidays | None = None) -> Month:
    """Place :data:`PLANS` and :data:`PAPER` on the working days before ``today``, numbers in sequence."""
    days = working_days(today, holidays or Holidays())
    needed = 1 + max(max(p.day for p in PLANS), max(row[0] for row in PAPER))
    if len(days) < needed:  # a month full of holidays: stretch the window rather than fail
        days = working_days(today, holidays or Holidays(), span=60)[-needed:]
    scale = (len(days) - 1) / (needed - 1)

    def day(index: int) -> dt.date:
        return days[round(index * scale)]

    counters = dict(FIRST_NUMBERS)
    dated: list[Dated] = []
    for plan in sorted(PLANS, key=lambda p: p.day):
        counters[plan.sender] = counters.get(plan.sender, 100) + 1
        dated.append(Dated(plan=plan, date=day(plan.day), number=str(counters[plan.sender])))
    paper = tuple(
        PaperRow(sender=s, recipient=r, number=str(700 + i * 13), notation=n, date=day(d), subject=subj)
        for i, (d, s, r, n, subj) in enumerate(PAPER)
    )
    return Month(days=days, dispatches=tuple(dated), paper=paper)
