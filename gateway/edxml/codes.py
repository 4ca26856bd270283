"""The codes of QCVN 102:2016 and its companions (DESIGN §2): agency codes, status codes, enumerations,
DocumentId and the wire's date formats.

The model keeps these as plain ``str``/``int`` so that messy real packages can still be loaded and
inspected; the parsers here turn them into checked values, and every violation is a
:class:`~gateway.errors.FieldError` with its own stable code.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from dataclasses import dataclass

from gateway.errors import FieldError

# --- agency code (mã định danh) --------------------------------------------------------------------

_STRICT_ORGAN_ID = re.compile(r"(?P<v>\d{3})\.(?P<z>\d{2})\.(?P<y>\d{2})\.(?P<x>[A-Z]\d{2})")
# Legacy codes seen in real packages (``28.22.H17``, ``01.02.G22``): one to three dotted groups of one to
# three digits before the letter group. Their groups cannot be mapped to V/Z/Y reliably.
_LEGACY_ORGAN_ID = re.compile(r"(?:\d{1,3}\.){1,3}[A-Z]\d{2}")

CENTRAL_LETTERS = frozenset({"G"})
"""Letter groups whose codes default to the central level. Every other letter follows the province rules."""

DEPARTMENT_Y_MAX = 30
"""Y in 01-30 is a department-level unit (sở, ban, ngành); 31 and above an administrative district."""


class Level(enum.Enum):
    """Administrative level of an agency, as provinces report the electronic-exchange rate."""

    CENTRAL = "central"
    PROVINCE = "province"
    DEPARTMENT = "department"
    DISTRICT = "district"
    COMMUNE = "commune"

    @property
    def vi(self) -> str:
        return _LEVEL_VI[self]

    @property
    def en(self) -> str:
        return _LEVEL_EN[self]


_LEVEL_VI = {
    Level.CENTRAL: "Trung ương",
    Level.PROVINCE: "Cấp tỉnh",
    Level.DEPARTMENT: "Cấp sở, ban, ngành",
    Level.DISTRICT: "Cấp huyện",
    Level.COMMUNE: "Cấp xã",
}
_LEVEL_EN = {
    Level.CENTRAL: "Central",
    Level.PROVINCE: "Province",
    Level.DEPARTMENT: "Department",
    Level.DISTRICT: "District",
    Level.COMMUNE: "Commune",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class OrganId:
    """An agency code ``V1V2V3.Z1Z2.Y1Y2.X1X2X3`` (e.g. ``000.21.31.H53``).

    X is the first level (a ministry ``G..``, a province ``H..``), Y the second (a sở or a huyện), Z the
    third (a xã, or a unit of a sở), V the fourth. ``legacy`` codes (accepted only by
    ``parse(strict=False)``) keep their text but have no groups, parent or proposed level.
    """

    value: str
    v: str | None = None
    z: str | None = None
    y: str | None = None
    x: str | None = None
    legacy: bool = False

    @classmethod
    def parse(cls, text: str, *, strict: bool = True) -> OrganId:
        """Check a code. Surrounding whitespace is not tolerated: a code is compared byte for byte."""
        m = _STRICT_ORGAN_ID.fullmatch(text or "")
        if m:
            return cls(value=text, v=m["v"], z=m["z"], y=m["y"], x=m["x"])
        if not strict and _LEGACY_ORGAN_ID.fullmatch(text or ""):
            return cls(value=text, x=text.rsplit(".", 1)[1], legacy=True)
        what = "legacy agency code" if _LEGACY_ORGAN_ID.fullmatch(text or "") else "agency code"
        raise FieldError("field.organ_id", f"{what} {text!r} is not of the form 000.00.00.H00")

    @classmethod
    def check(cls, text: str, *, strict: bool = True) -> None:
        """:meth:`parse` without building the value (what validation needs): a strict code costs one match."""
        if _STRICT_ORGAN_ID.fullmatch(text or "") is None:
            cls.parse(text, strict=strict)  # a legacy code when allowed; otherwise parse's own error

    @classmethod
    def from_groups(cls, *, v: str = "000", z: str = "00", y: str = "00", x: str) -> OrganId:
        return cls.parse(f"{v}.{z}.{y}.{x}")

    def __str__(self) -> str:
        return self.value

    @property
    def parent(self) -> OrganId | None:
        """The code with its most specific non-zero group zeroed; ``None`` at the top (or if legacy)."""
        if self.legacy or self.x is None:
            return None
        if self.v != "000":
            return OrganId.from_groups(z=self.z or "00", y=self.y or "00", x=self.x)
        if self.z != "00":
            return OrganId.from_groups(y=self.y or "00", x=self.x)
        if self.y != "00":
            return OrganId.from_groups(x=self.x)
        return None

    @property
    def proposed_level(self) -> Level | None:
        """A default level read from the code; the agency directory has the last word (DESIGN §2).

        Rule: a letter group in :data:`CENTRAL_LETTERS` (``G``: ministries) is central whatever follows.
        Otherwise (``H``: provinces, and any other letter): Z non-zero under Y ≥ 31 is a commune; Y ≥ 31 a
        district; Y in 01-30 a department (Z non-zero there is a unit of that department, still
        department level); Y = 00 the province (Z non-zero there is a unit of the provincial
        People's Committee). V (a fourth-level unit) does not change the level. Legacy codes: ``None``.
        """
        if self.legacy or self.x is None or self.y is None or self.z is None:
            return None
        if self.x[0] in CENTRAL_LETTERS:
            return Level.CENTRAL
        y = int(self.y)
        if y == 0:
            return Level.PROVINCE
        if y <= DEPARTMENT_Y_MAX:
            return Level.DEPARTMENT
        return Level.COMMUNE if self.z != "00" else Level.DISTRICT


# --- enumerations -----------------------------------------------------------------------------------


class StatusCode(enum.Enum):
    """Status codes of a status message; 07-12 and 14 are not defined and are rejected."""

    ARRIVED = "01"
    REFUSED = "02"
    ACCEPTED = "03"
    ASSIGNED = "04"
    IN_PROGRESS = "05"
    DONE = "06"
    RECALL_REQUESTED = "13"
    RECALL_AGREED = "15"
    RECALL_REFUSED = "16"

    @classmethod
    def parse(cls, text: str) -> StatusCode:
        """Accept the two-digit form (``01``) and, tolerantly, a single digit (``1``)."""
        raw = (text or "").strip()
        if not (raw.isascii() and raw.isdigit() and 1 <= len(raw) <= 2):
            raise FieldError("field.status_code", f"status code {text!r} is not a two-digit number")
        try:
            return cls(raw.zfill(2))
        except ValueError:
            raise FieldError(
                "field.status_code", f"status code {raw.zfill(2)} is not defined by QCVN 102:2016"
            ) from None

    @property
    def vi(self) -> str:
        return _STATUS_LABELS[self][0]

    @property
    def en(self) -> str:
        return _STATUS_LABELS[self][1]


_STATUS_LABELS = {
    StatusCode.ARRIVED: ("Đã đến", "Arrived"),
    StatusCode.REFUSED: ("Từ chối tiếp nhận", "Refused"),
    StatusCode.ACCEPTED: ("Đã tiếp nhận", "Accepted and registered"),
    StatusCode.ASSIGNED: ("Phân công", "Assigned"),
    StatusCode.IN_PROGRESS: ("Đang xử lý", "In progress"),
    StatusCode.DONE: ("Hoàn thành", "Done"),
    StatusCode.RECALL_REQUESTED: ("Yêu cầu lấy lại", "Recall requested"),
    StatusCode.RECALL_AGREED: ("Đồng ý cập nhật, lấy lại", "Recall or update agreed"),
    StatusCode.RECALL_REFUSED: ("Từ chối cập nhật, lấy lại", "Recall or update refused"),
}


def _int_enum_parse(cls: type[enum.IntEnum], value: int | str, code: str, name: str) -> enum.IntEnum:
    try:
        number = value if isinstance(value, int) else int(str(value).strip())
        return cls(number)
    except (ValueError, TypeError):
        allowed = ", ".join(str(int(m)) for m in cls)
        raise FieldError(code, f"{name} {value!r} is not one of {allowed}") from None


class Priority(enum.IntEnum):
    """Độ khẩn."""

    NORMAL = 0  # thường
    URGENT = 1  # khẩn
    VERY_URGENT = 2  # thượng khẩn
    FLASH = 3  # hỏa tốc
    FLASH_SCHEDULED = 4  # hỏa tốc hẹn giờ

    @classmethod
    def parse(cls, value: int | str) -> Priority:
        return _int_enum_parse(cls, value, "field.priority", "Priority")  # type: ignore[return-value]


class BussinessDocType(enum.IntEnum):
    """What a document package does (the standard's spelling)."""

    NEW = 0  # văn bản mới
    RECALL = 1  # thu hồi
    UPDATE = 2  # cập nhật
    REPLACE = 3  # thay thế

    @classmethod
    def parse(cls, value: int | str) -> BussinessDocType:
        return _int_enum_parse(  # type: ignore[return-value]
            cls, value, "field.business_doc_type", "BussinessDocType"
        )


class Paper(enum.IntEnum):
    """Whether a paper copy was also sent (which takes the exchange out of "fully electronic")."""

    ELECTRONIC_ONLY = 0
    WITH_PAPER = 1

    @classmethod
    def parse(cls, value: int | str) -> Paper:
        return _int_enum_parse(cls, value, "field.paper", "Paper")  # type: ignore[return-value]


# --- dates ------------------------------------------------------------------------------------------

DATE_FORMAT = "%Y/%m/%d"
TIMESTAMP_FORMAT = "%Y/%m/%d %H:%M:%S"
_DATE = re.compile(r"(\d{4})/(\d{1,2})/(\d{1,2})")
_TIMESTAMP = re.compile(r"(\d{4})/(\d{1,2})/(\d{1,2}) (\d{1,2}):(\d{2}):(\d{2})")


def format_date(value: dt.date) -> str:
    """``yyyy/MM/dd``, always zero-padded."""
    return f"{value.year:04d}/{value.month:02d}/{value.day:02d}"


def format_timestamp(value: dt.datetime) -> str:
    """``yyyy/MM/dd HH:mm:ss`` in the naive local time the model holds; sub-seconds are not carried."""
    return f"{format_date(value)} {value.hour:02d}:{value.minute:02d}:{value.second:02d}"


def parse_date(text: str) -> dt.date:
    """Read ``yyyy/MM/dd``; single-digit month or day is tolerated, surrounding whitespace too."""
    m = _DATE.fullmatch((text or "").strip())
    if not m:
        raise FieldError("edxml.bad_date", f"{text!r} is not yyyy/MM/dd")
    try:
        return dt.date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError as exc:
        raise FieldError("edxml.bad_date", f"{text.strip()!r} is not a calendar date ({exc})") from exc


def parse_timestamp(text: str) -> dt.datetime:
    """Read ``yyyy/MM/dd HH:mm:ss`` as a naive local datetime."""
    m = _TIMESTAMP.fullmatch((text or "").strip())
    if not m:
        raise FieldError("edxml.bad_timestamp", f"{text!r} is not yyyy/MM/dd HH:mm:ss")
    try:
        return dt.datetime(*(int(g) for g in m.groups()))
    except ValueError as exc:
        raise FieldError("edxml.bad_timestamp", f"{text.strip()!r} is not a valid time ({exc})") from exc


# --- DocumentId -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DocumentId:
    """``<sender OrganId>,<yyyy/MM/dd>,<CodeNumber>/<CodeNotation>``.

    The notation may itself contain ``/`` and ``-`` and Vietnamese letters (``7816/VPCP-TTĐT``,
    ``12/2024/NĐ-CP``): the number ends at the *first* slash, everything after it is the notation.
    """

    organ_id: str
    promulgation_date: dt.date
    code_number: str
    code_notation: str

    def __str__(self) -> str:
        return compose_document_id(
            organ_id=self.organ_id,
            promulgation_date=self.promulgation_date,
            code_number=self.code_number,
            code_notation=self.code_notation,
        )

    @property
    def code(self) -> str:
        """``CodeNumber/CodeNotation``, the form ``ResponseFor/Code`` uses."""
        return f"{self.code_number}/{self.code_notation}"

    @classmethod
    def parse(cls, text: str, *, strict_organ_id: bool = True) -> DocumentId:
        parts = (text or "").split(",", 2)
        if len(parts) != 3:
            raise FieldError(
                "field.document_id", f"{text!r} is not <OrganId>,<yyyy/MM/dd>,<CodeNumber>/<CodeNotation>"
            )
        organ, date_text, code = parts
        try:
            OrganId.check(organ, strict=strict_organ_id)
        except FieldError as exc:
            raise FieldError("field.document_id", f"in DocumentId {text!r}: {exc.detail}") from exc
        try:
            date = parse_date(date_text)
        except FieldError as exc:
            raise FieldError("field.document_id", f"in DocumentId {text!r}: {exc.detail}") from exc
        if date_text != date_text.strip() or len(date_text.strip()) != 10:
            raise FieldError("field.document_id", f"in DocumentId {text!r}: date must be yyyy/MM/dd")
        number, slash, notation = code.partition("/")
        if not slash or not number or not notation:
            raise FieldError(
                "field.document_id", f"in DocumentId {text!r}: {code!r} is not <CodeNumber>/<CodeNotation>"
            )
        return cls(organ_id=organ, promulgation_date=date, code_number=number, code_notation=notation)


def compose_document_id(
    *, organ_id: str, promulgation_date: dt.date, code_number: str, code_notation: str
) -> str:
    """The DocumentId a sender gives a document; what :meth:`DocumentId.parse` reads back."""
    return f"{organ_id},{format_date(promulgation_date)},{code_number}/{code_notation}"
