"""Agency codes, status codes, enumerations, DocumentId and the wire's dates."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import code_notations, code_numbers, dates, organ_ids, timestamps

from gateway.edxml.codes import (
    BussinessDocType,
    DocumentId,
    Level,
    OrganId,
    Paper,
    Priority,
    StatusCode,
    compose_document_id,
    format_date,
    format_timestamp,
    parse_date,
    parse_timestamp,
)
from gateway.errors import FieldError

# --- OrganId ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code", ["000.00.00.H53", "000.00.02.H53", "000.00.31.H53", "000.21.31.H53", "002.00.20.H13"]
)
def test_strict_codes(code: str) -> None:
    organ = OrganId.parse(code)
    assert str(organ) == code
    assert not organ.legacy
    assert (organ.v, organ.z, organ.y, organ.x) == tuple(code.split("."))


@pytest.mark.parametrize(
    "code",
    [
        "28.22.H17",  # legacy (real sample)
        "01.02.G22",  # legacy (real sample)
        "000.00.00.h53",  # lower-case letter
        "000.00.00.53",  # no letter
        "000.00.00.HH3",
        "0000.00.00.H53",
        "000.0.00.H53",
        "000.00.00.H5",
        " 000.00.00.H53",
        "000.00.00.H53 ",
        "000-00-00-H53",
        "",
    ],
)
def test_strict_rejects(code: str) -> None:
    with pytest.raises(FieldError) as info:
        OrganId.parse(code)
    assert info.value.code == "field.organ_id"


def test_lenient_accepts_legacy_codes_only() -> None:
    legacy = OrganId.parse("28.22.H17", strict=False)
    assert legacy.legacy
    assert legacy.x == "H17"
    assert legacy.parent is None
    assert legacy.proposed_level is None
    assert OrganId.parse("01.02.G22", strict=False).legacy
    assert not OrganId.parse("000.00.00.H53", strict=False).legacy
    with pytest.raises(FieldError):
        OrganId.parse("garbage", strict=False)
    with pytest.raises(FieldError):
        OrganId.parse("28.22.17", strict=False)


@pytest.mark.parametrize(
    "code",
    ["000.00.00.H53", "000.21.31.H53", "28.22.H17", "01.02.G22", "garbage", "28.22.17", "000.00.00.h53", ""],
)
@pytest.mark.parametrize("strict", [True, False])
def test_check_agrees_with_parse(code: str, strict: bool) -> None:
    def outcome(fn: Callable[..., object]) -> tuple[str, str] | None:
        try:
            fn(code, strict=strict)
        except FieldError as exc:
            return exc.code, exc.detail
        return None

    assert outcome(OrganId.check) == outcome(OrganId.parse)


@pytest.mark.parametrize(
    ("code", "parent"),
    [
        ("000.21.31.H53", "000.00.31.H53"),  # xã → huyện
        ("000.00.31.H53", "000.00.00.H53"),  # huyện → tỉnh
        ("000.00.02.H53", "000.00.00.H53"),  # sở → tỉnh
        ("005.21.31.H53", "000.21.31.H53"),  # fourth level → xã
        ("000.00.00.H53", None),
        ("000.00.00.G22", None),
        ("000.00.04.G14", "000.00.00.G14"),
    ],
)
def test_parent(code: str, parent: str | None) -> None:
    got = OrganId.parse(code).parent
    assert (str(got) if got else None) == parent


def test_parent_chain_ends_at_the_top() -> None:
    chain = []
    organ: OrganId | None = OrganId.parse("007.21.31.H53")
    while organ is not None:
        chain.append(str(organ))
        organ = organ.parent
    assert chain == ["007.21.31.H53", "000.21.31.H53", "000.00.31.H53", "000.00.00.H53"]


@pytest.mark.parametrize(
    ("code", "level"),
    [
        ("000.00.00.G22", Level.CENTRAL),
        ("000.00.04.G14", Level.CENTRAL),
        ("000.05.31.G01", Level.CENTRAL),
        ("000.00.00.H53", Level.PROVINCE),
        ("000.00.01.H53", Level.DEPARTMENT),
        ("000.00.30.H53", Level.DEPARTMENT),
        ("000.03.02.H53", Level.DEPARTMENT),  # a unit of a sở
        ("000.00.31.H53", Level.DISTRICT),
        ("000.00.99.H53", Level.DISTRICT),
        ("000.21.31.H53", Level.COMMUNE),
        ("004.21.31.H53", Level.COMMUNE),
        ("000.04.00.H53", Level.PROVINCE),  # a unit of the provincial People's Committee
        ("000.00.00.K01", Level.PROVINCE),  # other letters follow the province rules
    ],
)
def test_proposed_level(code: str, level: Level) -> None:
    assert OrganId.parse(code).proposed_level is level


def test_level_labels() -> None:
    assert Level.COMMUNE.vi == "Cấp xã"
    assert Level.DISTRICT.en == "District"
    assert {lv.value for lv in Level} == {"central", "province", "department", "district", "commune"}
    assert all(lv.vi and lv.en for lv in Level)


@given(organ_ids())
def test_generated_codes_are_strict_and_parents_shorter(code: str) -> None:
    organ = OrganId.parse(code)
    parent = organ.parent
    if parent is not None:
        assert parent.x == organ.x
        assert str(parent).count("0") > str(organ).count("0")


# --- StatusCode and enumerations --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "member", "en"),
    [
        ("01", StatusCode.ARRIVED, "Arrived"),
        ("02", StatusCode.REFUSED, "Refused"),
        ("03", StatusCode.ACCEPTED, "Accepted and registered"),
        ("04", StatusCode.ASSIGNED, "Assigned"),
        ("05", StatusCode.IN_PROGRESS, "In progress"),
        ("06", StatusCode.DONE, "Done"),
        ("13", StatusCode.RECALL_REQUESTED, "Recall requested"),
        ("15", StatusCode.RECALL_AGREED, "Recall or update agreed"),
        ("16", StatusCode.RECALL_REFUSED, "Recall or update refused"),
    ],
)
def test_status_codes(text: str, member: StatusCode, en: str) -> None:
    assert StatusCode.parse(text) is member
    assert member.en == en
    assert member.vi


def test_status_code_single_digit_is_tolerated() -> None:
    assert StatusCode.parse("1") is StatusCode.ARRIVED
    assert StatusCode.parse(" 06 ") is StatusCode.DONE


@pytest.mark.parametrize("text", ["07", "08", "09", "10", "11", "12", "14", "00", "17", "99"])
def test_undefined_status_codes(text: str) -> None:
    with pytest.raises(FieldError) as info:
        StatusCode.parse(text)
    assert info.value.code == "field.status_code"
    assert "not defined" in info.value.detail


@pytest.mark.parametrize("text", ["", "x", "001", "-1", "1.0", "٠١"])
def test_malformed_status_codes(text: str) -> None:
    with pytest.raises(FieldError) as info:
        StatusCode.parse(text)
    assert info.value.code == "field.status_code"


@pytest.mark.parametrize(
    ("enum", "good", "bad", "code"),
    [
        (Priority, range(5), [-1, 5, "x"], "field.priority"),
        (BussinessDocType, range(4), [-1, 4, "new"], "field.business_doc_type"),
        (Paper, range(2), [2, -1, "yes"], "field.paper"),
    ],
)
def test_integer_enums(enum: type, good: range, bad: list[object], code: str) -> None:
    for value in good:
        assert enum.parse(value) == value
        assert enum.parse(str(value)) == value
    for value in bad:
        with pytest.raises(FieldError) as info:
            enum.parse(value)
        assert info.value.code == code


def test_enum_meanings() -> None:
    assert Priority.FLASH_SCHEDULED == 4
    assert BussinessDocType.RECALL == 1
    assert BussinessDocType.REPLACE == 3
    assert Paper.WITH_PAPER == 1


# --- dates ------------------------------------------------------------------------------------------


def test_dates() -> None:
    assert parse_date("2018/09/28") == dt.date(2018, 9, 28)
    assert parse_date(" 2018/9/8 ") == dt.date(2018, 9, 8)
    assert format_date(dt.date(2018, 9, 8)) == "2018/09/08"
    assert parse_timestamp("2018/09/28 17:25:11") == dt.datetime(2018, 9, 28, 17, 25, 11)
    assert format_timestamp(dt.datetime(2018, 9, 28, 7, 5, 1, 999)) == "2018/09/28 07:05:01"


@pytest.mark.parametrize(
    "text", ["2014/02/30", "2018-09-28", "28/09/2018", "2018/13/01", "", "2018/09/28 10:00:00"]
)
def test_bad_dates(text: str) -> None:
    with pytest.raises(FieldError) as info:
        parse_date(text)
    assert info.value.code == "edxml.bad_date"


@pytest.mark.parametrize(
    "text", ["2018/09/28", "2018/09/28T10:00:00", "2018/09/28 25:00:00", "2018/09/28 10:00"]
)
def test_bad_timestamps(text: str) -> None:
    with pytest.raises(FieldError) as info:
        parse_timestamp(text)
    assert info.value.code == "edxml.bad_timestamp"


@given(dates(min_value=dt.date(1000, 1, 1), max_value=dt.date(9999, 12, 31)), timestamps())
def test_date_round_trip(date: dt.date, stamp: dt.datetime) -> None:
    assert parse_date(format_date(date)) == date
    assert parse_timestamp(format_timestamp(stamp)) == stamp


# --- DocumentId -------------------------------------------------------------------------------------


def test_document_id_with_slashes_and_vietnamese_notation() -> None:
    doc = DocumentId.parse("000.00.00.G22,2015/09/30,7816/VPCP-TTĐT")
    assert doc.organ_id == "000.00.00.G22"
    assert doc.promulgation_date == dt.date(2015, 9, 30)
    assert (doc.code_number, doc.code_notation) == ("7816", "VPCP-TTĐT")
    assert doc.code == "7816/VPCP-TTĐT"
    decree = DocumentId.parse("000.00.00.G01,2024/01/15,12/2024/NĐ-CP")
    assert (decree.code_number, decree.code_notation) == ("12", "2024/NĐ-CP")


@pytest.mark.parametrize(
    "text",
    [
        "9fbfbad2-f1f8-4256-a2eb-50fb1061cddb",  # a UUID (real sample)
        "000.00.00.G22,2014/02/30,7806/VPCP-TTĐT",  # 30 February (real sample)
        "000.00.00.G22,2014/2/3,7806/VPCP",  # unpadded date
        "000.00.00.G22,2015/09/30,7816",  # no notation
        "000.00.00.G22,2015/09/30,/VPCP",  # no number
        "000.00.00.G22,2015/09/30,7816/",
        "28.22.H17,2015/09/30,1/A",  # legacy agency code in strict mode
        "000.00.00.G22;2015/09/30;7816/VPCP",
        "",
    ],
)
def test_document_id_rejects(text: str) -> None:
    with pytest.raises(FieldError) as info:
        DocumentId.parse(text)
    assert info.value.code == "field.document_id"


def test_document_id_lenient_agency() -> None:
    assert DocumentId.parse("28.22.H17,2015/09/30,1/A", strict_organ_id=False).organ_id == "28.22.H17"


@given(organ_ids(), dates(), code_numbers, code_notations)
def test_document_id_round_trip(organ: str, date: dt.date, number: str, notation: str) -> None:
    text = compose_document_id(
        organ_id=organ, promulgation_date=date, code_number=number, code_notation=notation
    )
    doc = DocumentId.parse(text)
    assert doc == DocumentId(
        organ_id=organ, promulgation_date=date, code_number=number, code_notation=notation
    )
    assert str(doc) == text


@given(st.text(max_size=60))
def test_document_id_parse_never_crashes(text: str) -> None:
    codes = set()
    try:
        DocumentId.parse(text)
    except FieldError as exc:
        codes.add(exc.code)
    assert codes <= {"field.document_id"}
