"""Field rules (validate/violations) and structural errors of the parser, one code each."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import given, settings
from strategies import TODAY, document_packages

from gateway.edxml.build import build
from gateway.edxml.model import (
    NS,
    Attachment,
    Bussiness,
    Code,
    DocumentPackage,
    ManifestReference,
    MessageHeader,
    Organization,
    OtherInfo,
    PromulgationInfo,
    ReplacementInfo,
    ResponseFor,
    StatusHeader,
    StatusMessage,
    TraceHeaderList,
)
from gateway.edxml.parse import parse, parse_element, parse_lenient
from gateway.edxml.validate import LIMITS, validate, violations
from gateway.edxml.xmlparser import parse_xml
from gateway.errors import FieldError, GatewayError, PackageError

SENDER = "000.00.00.G22"
DATE = dt.date(2024, 5, 6)


def package(**header_changes: object) -> DocumentPackage:
    header = MessageHeader(
        from_=Organization(organ_id=SENDER),
        to=(Organization(organ_id="000.00.00.H41"), Organization(organ_id="000.00.31.H41")),
        document_id=f"{SENDER},2024/05/06,12/VPCP-TTĐT",
        code=Code(code_number="12", code_notation="VPCP-TTĐT"),
        promulgation_info=PromulgationInfo(place="Hà Nội", promulgation_date=DATE),
        subject="Về việc thử",
    )
    return DocumentPackage(header=dataclasses.replace(header, **header_changes))


def with_bussiness(pkg: DocumentPackage, **changes: object) -> DocumentPackage:
    return dataclasses.replace(pkg, trace=TraceHeaderList(bussiness=Bussiness(**changes)))


def codes(msg: DocumentPackage | StatusMessage, today: dt.date = TODAY) -> list[str]:
    return [v.code for v in violations(msg, today=today)]


def test_valid_package() -> None:
    validate(package(), today=TODAY)
    assert violations(package(), today=TODAY) == []


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("CodeNumber", lambda s: {"code": Code(code_number=s, code_notation="A")}),
        ("CodeNotation", lambda s: {"code": Code(code_number="1", code_notation=s)}),
        ("Subject", lambda s: {"subject": s}),
        ("Content", lambda s: {"content": s}),
        ("Place", lambda s: {"promulgation_info": PromulgationInfo(place=s)}),
        ("OrganName", lambda s: {"from_": Organization(organ_id=SENDER, organ_name=s)}),
        ("OrganAdd", lambda s: {"to": (Organization(organ_id="000.00.00.H41", organ_add=s),)}),
    ],
)
def test_every_limit(name: str, make: object) -> None:
    limit = LIMITS[name]
    at_limit = package(**make("Đ" * limit))  # type: ignore[operator]
    assert "field.too_long" not in codes(at_limit)
    over = violations(package(**make("Đ" * (limit + 1))), today=TODAY)  # type: ignore[operator]
    too_long = [v for v in over if v.code == "field.too_long"]
    assert len(too_long) == 1
    assert name in too_long[0].detail
    assert str(limit) in too_long[0].detail


def test_limits_are_the_standard_ones() -> None:
    assert LIMITS == {
        "CodeNumber": 11,
        "CodeNotation": 30,
        "Subject": 500,
        "Content": 500,
        "Place": 50,
        "OrganName": 200,
        "OrganAdd": 500,
    }


def test_future_promulgation_date() -> None:
    assert codes(package(), today=DATE) == []
    assert codes(package(), today=DATE - dt.timedelta(days=1)) == ["field.future_date"]


def test_duplicate_and_missing_recipients() -> None:
    twice = (Organization(organ_id="000.00.00.H41"), Organization(organ_id="000.00.00.H41", organ_name="x"))
    assert codes(package(to=twice)) == ["field.duplicate_recipient"]
    assert codes(package(to=())) == ["field.no_recipient"]


def test_agency_codes_everywhere() -> None:
    assert codes(package(from_=Organization(organ_id="28.22.H17"))) == [
        "field.organ_id",
        "field.document_id_mismatch",
    ]
    assert codes(package(from_=Organization(organ_id=""))) == ["field.required"]
    legacy_to = package(to=(Organization(organ_id="28.22.H17"),))
    assert codes(legacy_to) == ["field.organ_id"]
    assert violations(legacy_to, today=TODAY, strict_organ_id=False) == []


def test_required_fields_of_a_new_document() -> None:
    assert codes(package(code=None, document_id=None)) == ["field.required"]
    assert codes(package(subject=None)) == ["field.required"]
    assert codes(package(code=Code(code_number="", code_notation="A"), document_id=None)) == [
        "field.required"
    ]
    recall = with_bussiness(package(subject=None), bussiness_doc_type=1)
    assert codes(recall) == []


def test_update_and_replacement_need_their_details() -> None:
    assert codes(with_bussiness(package(), bussiness_doc_type=2)) == ["field.required"]
    assert codes(with_bussiness(package(), bussiness_doc_type=3)) == ["field.required"]
    replacing = with_bussiness(
        package(),
        bussiness_doc_type=3,
        replacement_info_list=(
            ReplacementInfo(document_id="nonsense", organ_id_list=("000.00.00.H41", "x")),
        ),
    )
    assert codes(replacing) == ["field.document_id", "field.organ_id"]


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"bussiness_doc_type": 4}, "field.business_doc_type"),
        ({"bussiness_doc_type": -1}, "field.business_doc_type"),
        ({"paper": 2}, "field.paper"),
        ({"document_id": "000.00.00.G22,2014/02/30,7806/VPCP-TTĐT"}, "field.document_id"),
    ],
)
def test_bussiness_ranges(changes: dict[str, object], code: str) -> None:
    assert codes(with_bussiness(package(), **changes)) == [code]


@pytest.mark.parametrize("priority", [-1, 5, 9])
def test_priority_range(priority: int) -> None:
    assert codes(package(other_info=OtherInfo(priority=priority))) == ["field.priority"]


@pytest.mark.parametrize(
    ("document_id", "fragment"),
    [
        ("000.00.00.G17,2024/05/06,12/VPCP-TTĐT", "agency"),
        (f"{SENDER},2024/05/07,12/VPCP-TTĐT", "date"),
        (f"{SENDER},2024/05/06,13/VPCP-TTĐT", "code"),
        (f"{SENDER},2024/05/06,12/VPCP", "code"),
    ],
)
def test_document_id_must_agree(document_id: str, fragment: str) -> None:
    (problem,) = violations(package(document_id=document_id), today=TODAY)
    assert problem.code == "field.document_id_mismatch"
    assert fragment in problem.detail


def test_document_id_shape() -> None:
    assert codes(package(document_id="9fbfbad2-f1f8-4256-a2eb-50fb1061cddb")) == ["field.document_id"]


def test_response_for_date_must_agree() -> None:
    ref = ResponseFor(
        organ_id="000.00.00.H41", promulgation_date=DATE, document_id=f"{SENDER},2015/09/30,1/A"
    )
    assert codes(package(response_for=(ref,))) == ["field.document_id_mismatch"]


def test_manifest_and_attachments_must_agree() -> None:
    data = b"hello"
    ref = ManifestReference(content_id="cid:a", size=5, sha256="0" * 64)
    pkg = dataclasses.replace(
        package(),
        manifest=(ref, ManifestReference(content_id="cid:b")),
        attachments=(Attachment(content_id="cid:a", data=data), Attachment(content_id="cid:c", data=b"")),
    )
    assert codes(pkg) == ["edxml.attachment_digest", "edxml.attachment_unlisted", "edxml.attachment_missing"]
    multipart = dataclasses.replace(pkg, attachments=())
    assert codes(multipart) == []


def status(**changes: object) -> StatusMessage:
    header = StatusHeader(
        from_=Organization(organ_id="000.00.00.H41"),
        response_for=ResponseFor(organ_id=SENDER, document_id=f"{SENDER},2024/05/06,12/A", code="12/A"),
        status_code="01",
        timestamp=dt.datetime(2024, 5, 7, 8, 0, 0),
    )
    return StatusMessage(header=dataclasses.replace(header, **changes))


@pytest.mark.parametrize("code", ["01", "02", "03", "04", "05", "06", "13", "15", "16"])
def test_defined_status_codes(code: str) -> None:
    assert codes(status(status_code=code, description="lý do")) == []


@pytest.mark.parametrize("code", ["07", "08", "09", "10", "11", "12", "14", "", "x"])
def test_undefined_status_codes(code: str) -> None:
    assert codes(status(status_code=code)) == ["field.status_code"]


def test_refusal_needs_a_reason_and_status_needs_a_document_and_time() -> None:
    assert codes(status(status_code="02")) == ["field.required"]
    assert codes(status(timestamp=None)) == ["field.required"]
    assert codes(status(response_for=ResponseFor(organ_id=SENDER))) == ["field.required"]


def test_validate_raises_the_first() -> None:
    with pytest.raises(FieldError) as info:
        validate(package(to=(), subject=None), today=TODAY)
    assert info.value.code == "field.no_recipient"


@settings(max_examples=50, deadline=None)
@given(document_packages())
def test_generated_packages_are_valid(pkg: DocumentPackage) -> None:
    validate(pkg, today=TODAY)


# --- structural errors of the parser ----------------------------------------------------------------


def doc(body: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + body).encode()


MINIMAL = """<edXML xmlns="{ns}"><edXMLEnvelope><edXMLHeader><MessageHeader>
<From><OrganId>000.00.00.G22</OrganId></From>{extra}
</MessageHeader>{trace}</edXMLHeader></edXMLEnvelope>{after}</edXML>"""


def minimal(extra: str = "", after: str = "", ns: str = NS, trace: str = "") -> bytes:
    return doc(MINIMAL.format(ns=ns, extra=extra, after=after, trace=trace))


def parse_code(data: bytes) -> str:
    with pytest.raises(GatewayError) as info:
        parse(data)
    assert isinstance(info.value, PackageError)
    return info.value.code


def test_minimal_parses() -> None:
    pkg = parse(minimal())
    assert isinstance(pkg, DocumentPackage)
    assert pkg.header.from_.organ_id == SENDER
    assert pkg.header.to == ()


def test_not_edxml() -> None:
    assert parse_code(doc("<html/>")) == "edxml.not_edxml"
    assert parse_code(minimal(ns="urn:other")) == "edxml.not_edxml"


@pytest.mark.parametrize(
    "body",
    [
        f'<edXML xmlns="{NS}"/>',
        f'<edXML xmlns="{NS}"><edXMLEnvelope/></edXML>',
        f'<edXML xmlns="{NS}"><edXMLEnvelope><edXMLHeader/></edXMLEnvelope></edXML>',
        f'<edXML xmlns="{NS}"><edXMLEnvelope><edXMLHeader><MessageHeader/></edXMLHeader>'
        "</edXMLEnvelope></edXML>",
    ],
)
def test_missing_elements(body: str) -> None:
    assert parse_code(doc(body)) == "edxml.missing_element"


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        (
            "<PromulgationInfo><PromulgationDate>2014/02/30</PromulgationDate></PromulgationInfo>",
            "edxml.bad_date",
        ),
        ("<DueDate>30-09-2015</DueDate>", "edxml.bad_date"),
        ("<SteeringType>một</SteeringType>", "edxml.bad_integer"),
        ("<OtherInfo><Priority>1.5</Priority></OtherInfo>", "edxml.bad_integer"),
        ("<OtherInfo><Direction>maybe</Direction></OtherInfo>", "edxml.bad_integer"),
        ("<Subject>a</Subject><Subject>b</Subject>", "edxml.unexpected_element"),
        ("<Code><CodeNumber>1</CodeNumber></Code>", "edxml.missing_element"),
    ],
)
def test_bad_values(extra: str, code: str) -> None:
    assert parse_code(minimal(extra)) == code


@pytest.mark.parametrize(
    "second",
    [
        '<Subject xmlns="">b</Subject>',
        "<edXML:Subject>b</edXML:Subject>",
        f'<x:Subject xmlns:x="{NS}">b</x:Subject>',
    ],
)
def test_one_element_written_two_ways_is_repeated(second: str) -> None:
    """The edXML namespace, no namespace and an undeclared ``edXML:`` prefix all name the same element."""
    data = minimal("<Subject>a</Subject>" + second)
    assert parse_code(data) == "edxml.unexpected_element"
    msg, problems = parse_lenient(data)
    assert msg.header.subject == "a"  # lenient: the first in document order, and the problem recorded
    assert [p.code for p in problems] == ["edxml.unexpected_element"]


def test_many_unknown_elements() -> None:
    """Unknown elements are skipped however many distinct ones a package brings."""
    extra = "".join(f"<Unknown{i}>x</Unknown{i}><u:Other{i} xmlns:u='urn:u'/>" for i in range(700))
    pkg = parse(minimal(extra + "<Subject>s</Subject>"))
    assert isinstance(pkg, DocumentPackage)
    assert pkg.header.subject == "s"
    pkg = parse(minimal(extra + "<Subject>t</Subject>"))
    assert pkg.header.subject == "t"  # type: ignore[union-attr]


def test_bad_timestamp() -> None:
    trace = "<TraceHeaderList><TraceHeader><OrganId>x</OrganId><Timestamp>2018-09-28T00:00:00</Timestamp>"
    trace += "</TraceHeader></TraceHeaderList>"
    assert parse_code(minimal(trace=trace)) == "edxml.bad_timestamp"


def attachment(cid: str, content: str) -> str:
    encoded = f"<ContentTransferEncoded>{content}</ContentTransferEncoded>"
    return f"<Attachment><ContentId>{cid}</ContentId>{encoded}</Attachment>"


def test_base64_with_whitespace_and_no_namespace() -> None:
    """Line-wrapped base64 is fine; so is an AttachmentEncoded in no namespace at all."""
    after = '<AttachmentEncoded xmlns="">' + attachment("cid:1", "aGVs\n  bG8=\n") + "</AttachmentEncoded>"
    pkg = parse(minimal(after=after))
    assert isinstance(pkg, DocumentPackage)
    assert pkg.attachments[0].data == b"hello"


@pytest.mark.parametrize("content", ["${__StringFromFile(test.txt,,,)}", "aGVsbG8", "aGVs*bG8=", "Đ"])
def test_bad_base64(content: str) -> None:
    after = "<AttachmentEncoded>" + attachment("cid:1", content) + "</AttachmentEncoded>"
    assert parse_code(minimal(after=after)) == "edxml.bad_base64"


def test_duplicate_attachment() -> None:
    after = "<AttachmentEncoded>" + attachment("cid:1", "") + attachment("cid:1", "") + "</AttachmentEncoded>"
    assert parse_code(minimal(after=after)) == "edxml.attachment_duplicate"


def test_lenient_collects_every_value_problem() -> None:
    extra = "<DueDate>never</DueDate><SteeringType>x</SteeringType>"
    after = "<AttachmentEncoded>" + attachment("cid:1", "!!") + "</AttachmentEncoded>"
    msg, problems = parse_lenient(minimal(extra, after))
    assert [p.code for p in problems] == ["edxml.bad_base64", "edxml.bad_date", "edxml.bad_integer"]
    assert isinstance(msg, DocumentPackage)
    assert msg.header.due_date is None
    assert msg.attachments[0].data == b""


def test_tolerance_order_comments_unknown_and_signature() -> None:
    extra = """<!-- a comment --><Unknown><Deep/></Unknown>
    <Subject>Về<!-- split -->việc</Subject><To><OrganId>000.00.00.H41</OrganId><Extra/></To>
    <Content></Content><DocumentType><TypeName>  </TypeName></DocumentType>"""
    signatures = '<Signature xmlns="urn:anything"><SignedInfo/></Signature>'
    signatures += (
        '<Signature><SignedInfo/></Signature><ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"/>'
    )
    data = minimal(extra, trace=signatures)
    pkg = parse(data)
    assert isinstance(pkg, DocumentPackage)
    assert pkg.header.subject == "Vềviệc"
    assert pkg.header.to[0].organ_id == "000.00.00.H41"
    assert pkg.header.content is None
    assert pkg.header.document_type is not None
    assert pkg.header.document_type.type_name == "  "


def test_supplied_attachments_conflict_with_inline_ones() -> None:
    after = "<AttachmentEncoded>" + attachment("cid:1", "") + "</AttachmentEncoded>"
    with pytest.raises(PackageError) as info:
        parse_element(parse_xml(minimal(after=after)), attachments=())
    assert info.value.code == "edxml.unexpected_element"


def test_status_detected_by_status_code() -> None:
    extra = "<ResponseFor><DocumentId>x</DocumentId></ResponseFor><StatusCode>01</StatusCode>"
    msg = parse(minimal(extra))
    assert isinstance(msg, StatusMessage)
    assert msg.header.status_code == "01"
    assert parse_code(minimal("<StatusCode>01</StatusCode>")) == "edxml.missing_element"


def test_build_of_parsed_minimal_is_stable() -> None:
    pkg = parse(minimal())
    assert parse(build(pkg)) == pkg


@pytest.mark.parametrize(
    "text",
    [
        "aGVsbG8gd29ybGQ=",  # one line: decoded as it is
        "aGVsbG8g\nd29ybGQ=",  # wrapped
        "  aGVsbG8gd29ybGQ=\n",  # indented
        "a" * 200 + "\n" + "a" * 200 + "aGVsbG8gd29ybGQ=",  # space only mid-way
    ],
)
def test_decode_base64_with_and_without_whitespace(text: str) -> None:
    import pybase64

    from gateway.edxml.parse import decode_base64

    assert decode_base64(text) == pybase64.b64decode("".join(text.split()), validate=True)


@pytest.mark.parametrize("text", ["aGVsbG8", "aGVs*bG8=", "a" * 300 + " *" + "a" * 300, "Đ"])
def test_decode_base64_refuses_what_is_not_base64(text: str) -> None:
    from gateway.edxml.parse import decode_base64

    with pytest.raises(PackageError) as info:
        decode_base64(text)
    assert info.value.code == "edxml.bad_base64"
