"""The real packages of another vendor (../shared/interop/edxml-samples): each parses, or fails with one
precise code, and inspection lists exactly what is wrong with it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from gateway.edxml.build import build
from gateway.edxml.inspection import inspect_package
from gateway.edxml.model import DocumentPackage, StatusMessage
from gateway.edxml.parse import parse, parse_lenient
from gateway.errors import GatewayError

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "interop" / "edxml-samples"
TODAY = dt.date(2025, 1, 1)

# What strict parsing says of each file: None = parses. edoc.edxml carries a JMeter placeholder
# instead of base64; edoc_new.edxml starts with the four bytes "1212" before its XML declaration.
STRICT_VERDICT = {
    "edoc.edxml": "edxml.bad_base64",
    "edoc_new.edxml": "xml.malformed",
}
STATUS_FILES = {
    "status.edxml": "01",
    "status_inbox_01.edxml": "01",
    "status_rejection_02.edxml": "02",
    "status_acceptance_03.edxml": "03",
    "status_assignment_04.edxml": "04",
    "status_processing_05.edxml": "05",
    "status_finish_06.edxml": "06",
    "status_cancellation_13.edxml": "13",
    "status_change-acceptance_15.edxml": "15",
    "status_change-rejection_16.edxml": "16",
}


def read(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def all_samples() -> list[str]:
    return sorted(p.name for p in SAMPLES.iterdir())


def test_every_sample_is_covered() -> None:
    names = set(all_samples())
    assert len(names) == 15
    assert names == set(STATUS_FILES) | {
        "edoc.edxml",
        "edoc_new.edxml",
        "edoc_revocation.edxml",
        "edoc_update.edxml",
        "edoc_replacement.edxml",
    }


@pytest.mark.parametrize("name", all_samples())
def test_strict_parse(name: str) -> None:
    expected = STRICT_VERDICT.get(name)
    if expected is None:
        msg = parse(read(name))
        assert isinstance(msg, StatusMessage if name.startswith("status") else DocumentPackage)
    else:
        with pytest.raises(GatewayError) as info:
            parse(read(name))
        assert info.value.code == expected


@pytest.mark.parametrize("name", all_samples())
def test_lenient_parse_always_gives_the_header(name: str) -> None:
    msg, problems = parse_lenient(read(name))
    assert msg.header.from_.organ_id
    assert [p.code for p in problems] == ([STRICT_VERDICT[name]] if name in STRICT_VERDICT else [])


@pytest.mark.parametrize(("name", "code"), STATUS_FILES.items())
def test_status_codes(name: str, code: str) -> None:
    msg = parse(read(name))
    assert isinstance(msg, StatusMessage)
    assert msg.header.status_code == code
    assert msg.trace is None


def test_status_fields() -> None:
    msg = parse(read("status_rejection_02.edxml"))
    assert isinstance(msg, StatusMessage)
    h = msg.header
    assert h.from_.organ_id == "000.00.00.H41"
    assert h.from_.organ_name == "UBND Tỉnh Nghệ An"
    assert h.response_for.organ_id == "000.00.00.G22"
    assert h.response_for.code == "7816/VPCP-TTĐT"
    assert h.response_for.promulgation_date == dt.date(2015, 9, 30)
    assert h.response_for.document_id == "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT"
    assert h.staff_info is not None
    assert h.staff_info.staff == "Nguyen thi ngoc tram"
    assert h.description == "Văn thư - Phòng Văn thư - Lưu trữ: Từ chối không tiếp nhận văn bản điện tử"
    assert h.timestamp == dt.datetime(2015, 9, 20, 11, 8, 36)


def test_update_package() -> None:
    msg = parse(read("edoc_update.edxml"))
    assert isinstance(msg, DocumentPackage)
    h = msg.header
    assert h.from_.organ_id == "000.00.00.G22"
    assert [t.organ_id for t in h.to] == ["000.00.00.H41", "000.00.00.H14", "000.00.00.G17"]
    assert h.document_id == "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT"
    assert h.code is not None
    assert (h.code.code_number, h.code.code_notation) == ("7816", "VPCP-TTĐT")
    assert h.promulgation_info is not None
    assert h.promulgation_info.promulgation_date == dt.date(2018, 9, 28)
    assert h.other_info is not None
    assert h.other_info.direction is False
    assert h.other_info.appendixes == ("Công văn về việc kết nối, liên thông phần mềm quản lý văn bản",)
    assert h.to_places == ("Cac bo va co quan ngang bo", "Uy ban nhan dan cac tinh, TP")
    assert h.steering_type == 1
    b = msg.bussiness
    assert b.bussiness_doc_type == 2
    assert b.paper == 0
    assert b.bussiness_doc_reason == "Cập nhật văn bản điện tử"
    assert b.bussiness_document_info is not None
    assert b.bussiness_document_info.document_info == 1
    assert [(r.organ_id, r.receiver_type) for r in b.bussiness_document_info.receiver_list] == [
        ("000.00.00.H41", 0),
        ("000.00.00.H14", 1),
    ]
    assert msg.trace.trace_headers[0].timestamp == dt.datetime(2018, 9, 28, 0, 0, 0)


def test_replacement_package() -> None:
    msg = parse(read("edoc_replacement.edxml"))
    assert isinstance(msg, DocumentPackage)
    assert msg.bussiness.bussiness_doc_type == 3
    assert msg.bussiness.document_id is None
    replaced = msg.bussiness.replacement_info_list
    assert replaced is not None
    assert len(replaced) == 2
    assert replaced[0].document_id == "000.00.00.G22,2014/01/30,7806/VPCP-TTĐT"
    assert replaced[0].organ_id_list == ("000.00.00.H41", "000.00.00.H14")


def test_revocation_package() -> None:
    msg = parse(read("edoc_revocation.edxml"))
    assert isinstance(msg, DocumentPackage)
    assert msg.bussiness.bussiness_doc_type == 1
    assert msg.bussiness.replacement_info_list is None
    assert msg.bussiness.bussiness_document_info is None
    (ref,) = msg.header.response_for
    assert ref.document_id == "000.00.04.G14,2012/08/06,267/VPCP-TTĐT"
    assert ref.code == "267/VPCP-TTĐT"


@pytest.mark.parametrize("name", ["edoc_update.edxml", "edoc_replacement.edxml", "edoc_revocation.edxml"])
def test_inline_attachment_is_a_zip(name: str) -> None:
    """``AttachmentEncoded`` is un-prefixed (default namespace) and ``ContentTransferEncoded`` prefixed."""
    msg = parse(read(name))
    assert isinstance(msg, DocumentPackage)
    (att,) = msg.attachments
    (ref,) = msg.manifest
    assert att.content_id == ref.content_id == "cid:209"
    assert att.attachment_name == ref.attachment_name == "1896_QD-TTg_m_294779.doc"
    assert att.content_type == "application/zip"
    assert att.data.startswith(b"PK\x03\x04")
    assert len(att.data) > 200_000
    assert ref.size is None
    assert ref.sha256 is None


def test_edoc_with_placeholder_instead_of_base64() -> None:
    """edoc.edxml: undeclared ``edXML:`` prefix on AttachmentEncoded, ``xlink:href`` in the manifest,
    an empty ResponseFor, elements out of order, comments — and a JMeter placeholder for the data."""
    with pytest.raises(GatewayError) as info:
        parse(read("edoc.edxml"))
    assert info.value.code == "edxml.bad_base64"
    assert "cid:36b8a92e-f054-11e7-842b-005056b672fc" in info.value.detail
    msg, _ = parse_lenient(read("edoc.edxml"))
    assert isinstance(msg, DocumentPackage)
    (att,) = msg.attachments
    assert att.attachment_name == "GUIDE_INSTALL OPENVPN.SIGNED.PDF"
    assert att.content_type == "application/pdf"
    assert att.data == b""
    (ref,) = msg.manifest
    assert ref.content_type is None  # commented out in the sample
    assert ref.description == "Description 1"
    h = msg.header
    assert h.document_id == "9fbfbad2-f1f8-4256-a2eb-50fb1061cddb"  # after SteeringType in the file
    assert h.response_for == (h.response_for[0],)
    assert h.response_for[0].organ_id is None
    assert h.response_for[0].document_id is None
    assert h.to[0].organ_id == "000.00.15.H51"
    assert h.document_type is not None
    assert h.document_type.type_detail is None
    assert msg.trace.trace_headers[0].organ_id == "01.02.G22"
    assert msg.trace.bussiness is None


def test_edoc_new_legacy_recipient() -> None:
    msg, problems = parse_lenient(read("edoc_new.edxml"))
    assert [p.code for p in problems] == ["xml.malformed"]
    assert "1212" in problems[0].detail
    assert isinstance(msg, DocumentPackage)
    assert msg.header.to[0].organ_id == "28.22.H17"
    assert (
        msg.header.to[0].organization_in_charge
        == " UBND xã Hòa Sơn - UBND huyện Hòa Vang - Thành phố Đà Nẵng"
    )
    assert msg.attachments[0].data.startswith(b"PK")
    assert parse(read("edoc_new.edxml")[4:]) == msg


INSPECTION = {
    "edoc.edxml": [
        ("edxml.bad_base64", "${__StringFromFile"),
        ("field.document_id", "9fbfbad2"),
        ("field.organ_id", "01.02.G22"),
    ],
    "edoc_new.edxml": [
        ("xml.malformed", "1212"),
        ("field.organ_id", "28.22.H17"),
        ("field.document_id_mismatch", "agency 000.00.00.G22 ≠ 002.00.20.H13"),
        ("field.document_id", "2014/02/30"),
    ],
    "edoc_update.edxml": [
        ("field.document_id_mismatch", "date 2015/09/30 ≠ 2018/09/28"),
        ("field.document_id", "2014/02/30"),
    ],
    "edoc_replacement.edxml": [("field.document_id_mismatch", "date 2015/09/30 ≠ 2018/09/28")],
    "edoc_revocation.edxml": [
        ("field.document_id_mismatch", "DocumentId '000.00.00.G22,2015/09/30"),
        ("field.document_id_mismatch", "ResponseFor[1]/DocumentId"),
    ],
    "status.edxml": [("field.document_id_mismatch", "date 2015/09/30 ≠ 2018/09/28")],
}


@pytest.mark.parametrize("name", all_samples())
def test_inspection_lists_precise_problems(name: str) -> None:
    result = inspect_package(read(name), today=TODAY)
    assert result.message is not None
    expected = INSPECTION.get(name, [])
    assert [p.code for p in result.problems] == [code for code, _ in expected]
    for problem, (_, fragment) in zip(result.problems, expected, strict=True):
        assert fragment in problem.detail
    assert result.ok is (not expected)


def test_lenient_agency_codes_admit_legacy() -> None:
    result = inspect_package(read("edoc_new.edxml"), today=TODAY, strict_organ_id=False)
    assert "field.organ_id" not in result.codes


def test_future_date_relative_to_today() -> None:
    result = inspect_package(read("edoc_replacement.edxml"), today=dt.date(2018, 9, 27))
    assert "field.future_date" in result.codes


@pytest.mark.parametrize(
    "name", ["edoc_update.edxml", "edoc_replacement.edxml", "edoc_revocation.edxml", "status.edxml"]
)
def test_samples_survive_our_build(name: str) -> None:
    """What we read from a real package, we write back in a form that reads the same."""
    msg = parse(read(name))
    assert parse(build(msg)) == msg
