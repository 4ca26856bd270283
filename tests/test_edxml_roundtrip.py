"""build → parse is the identity on the model, and build writes what real hubs write."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from lxml import etree
from strategies import TODAY, document_packages, status_messages

from gateway.edxml.build import build, build_tree
from gateway.edxml.model import (
    DS_NS,
    EXT_NS,
    NS,
    Attachment,
    Code,
    DocumentPackage,
    ManifestReference,
    MessageHeader,
    Organization,
    OtherInfo,
    ResponseFor,
    StatusHeader,
    StatusMessage,
)
from gateway.edxml.parse import parse, parse_element
from gateway.edxml.validate import violations
from gateway.edxml.xmlparser import parse_xml
from gateway.errors import GatewayError

ROUND_TRIP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@ROUND_TRIP
@given(document_packages())
def test_document_round_trip(pkg: DocumentPackage) -> None:
    assert parse(build(pkg)) == pkg
    assert violations(pkg, today=TODAY) == []


@ROUND_TRIP
@given(document_packages(extension=True))
def test_document_round_trip_with_manifest_extension(pkg: DocumentPackage) -> None:
    assert parse(build(pkg)) == pkg
    assert all(r.size is not None and r.sha256 is not None for r in pkg.manifest)


@ROUND_TRIP
@given(document_packages(with_attachments=False, extension=True))
def test_multipart_envelope_round_trip(pkg: DocumentPackage) -> None:
    """Without AttachmentEncoded, a bare envelope reads back; the attachments come separately."""
    root = parse_xml(build(pkg, include_attachments=False, envelope_id="edxml-envelope"))
    envelope = root.find(f"{{{NS}}}edXMLEnvelope")
    assert envelope is not None
    assert envelope.get("Id") == "edxml-envelope"
    assert parse_element(root) == pkg
    assert parse_element(envelope) == pkg


@ROUND_TRIP
@given(document_packages())
def test_without_attachments_drops_only_attachments(pkg: DocumentPackage) -> None:
    data = build(pkg, include_attachments=False)
    assert b"AttachmentEncoded" not in data
    assert parse(data) == dataclasses.replace(pkg, attachments=())
    envelope = parse_xml(data).find(f"{{{NS}}}edXMLEnvelope")
    assert envelope is not None
    assert parse_element(envelope, attachments=pkg.attachments) == pkg


@ROUND_TRIP
@given(status_messages())
def test_status_round_trip(msg: StatusMessage) -> None:
    assert parse(build(msg)) == msg
    assert violations(msg, today=TODAY) == []


@ROUND_TRIP
@given(document_packages() | status_messages())
def test_placeholder_and_envelope_id_are_not_content(msg: DocumentPackage | StatusMessage) -> None:
    assert parse(build(msg, signature_placeholder=True, envelope_id="e1")) == msg


# --- the shape of what we write ---------------------------------------------------------------------


def small_package(**changes: object) -> DocumentPackage:
    pkg = DocumentPackage(
        header=MessageHeader(
            from_=Organization(organ_id="000.00.00.G22", organ_name="Văn phòng Chính phủ"),
            to=(Organization(organ_id="000.00.00.H41"),),
            document_id="000.00.00.G22,2024/05/06,12/VPCP-TTĐT",
            code=Code(code_number="12", code_notation="VPCP-TTĐT"),
            subject="Về việc thử",
        ),
        manifest=(
            ManifestReference(content_id="cid:1", content_type="application/pdf", size=3, sha256="ab" * 32),
        ),
        attachments=(Attachment(content_id="cid:1", data=b"abc"),),
    )
    return dataclasses.replace(pkg, **changes)


def test_shape_matches_the_samples() -> None:
    data = build(small_package())
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<edXML xmlns="' + NS.encode())
    root = etree.fromstring(data)
    assert root.tag == f"{{{NS}}}edXML"
    assert root.prefix is None
    assert root.nsmap["edXML"] == NS
    assert all(el.prefix == "edXML" for el in root.iterdescendants() if el.tag.startswith(f"{{{NS}}}"))
    assert b"<edXML:edXMLEnvelope>" in data  # declared once, on the root
    assert b"<edXML:ContentTransferEncoded>YWJj</edXML:ContentTransferEncoded>" in data
    assert root.find(f"{{{NS}}}edXMLEnvelope/{{{NS}}}edXMLBody/{{{NS}}}edXMLManifest").get("version") == "1.0"
    ref = root.find(f".//{{{NS}}}Reference")
    assert [etree.QName(c).localname for c in ref] == ["ContentId", "ContentType", "Size", "SHA256"]
    assert ref[2].prefix == "gw"
    assert ref.find(f"{{{EXT_NS}}}Size").text == "3"
    assert ref.find(f"{{{EXT_NS}}}SHA256").text == "ab" * 32


def test_manifest_extension_elements_are_read_by_their_namespace() -> None:
    root = build_tree(small_package())
    ref = root.find(f".//{{{NS}}}Reference")
    etree.SubElement(ref, "{urn:other}Size").text = "999"  # a foreign Size is not ours: ignored
    etree.SubElement(ref, "Size").text = "998"  # nor an unqualified one (edXML has no Size element)
    manifest = parse_element(root).manifest  # type: ignore[union-attr]
    assert (manifest[0].size, manifest[0].sha256) == (3, "ab" * 32)
    etree.SubElement(ref, f"{{{EXT_NS}}}Size").text = "3"
    with pytest.raises(GatewayError) as err:
        parse_element(root)
    assert err.value.code == "edxml.unexpected_element"


def test_message_header_order() -> None:
    root = build_tree(small_package())
    header = root.find(f".//{{{NS}}}MessageHeader")
    assert [etree.QName(c).localname for c in header] == ["From", "To", "DocumentId", "Code", "Subject"]
    trace = root.find(f".//{{{NS}}}TraceHeaderList")
    assert trace is not None


def test_dates_and_booleans_on_the_wire() -> None:
    msg = StatusMessage(
        header=StatusHeader(
            from_=Organization(organ_id="000.00.00.H41"),
            response_for=ResponseFor(promulgation_date=dt.date(2024, 5, 6), document_id="x"),
            status_code="01",
            timestamp=dt.datetime(2024, 5, 7, 8, 9, 10),
        )
    )
    data = build(msg)
    assert b"<edXML:PromulgationDate>2024/05/06</edXML:PromulgationDate>" in data
    assert b"<edXML:Timestamp>2024/05/07 08:09:10</edXML:Timestamp>" in data
    header = dataclasses.replace(small_package().header, other_info=OtherInfo(direction=False))
    assert b"<edXML:Direction>false</edXML:Direction>" in build(small_package(header=header))


def test_signature_placeholder_is_last_in_the_header_and_signxml_fills_it() -> None:
    root = build_tree(small_package(), signature_placeholder=True)
    header = root.find(f"{{{NS}}}edXMLEnvelope/{{{NS}}}edXMLHeader")
    last = header[-1]
    assert last.tag == f"{{{DS_NS}}}Signature"
    assert last.get("Id") == "placeholder"
    assert last.prefix == "ds"
    assert len(last) == 0
    assert len(root.findall(f".//{{{DS_NS}}}Signature[@Id='placeholder']")) == 1


def test_signxml_uses_the_placeholder() -> None:
    """signxml fills our placeholder in place rather than appending a signature to the root."""
    signxml = pytest.importorskip("signxml")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    signer = signxml.XMLSigner(
        signature_algorithm="ecdsa-sha256",
        digest_algorithm="sha256",
        c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#",
    )
    signed = signer.sign(
        build_tree(small_package(), signature_placeholder=True),
        key=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        cert=[cert.public_bytes(serialization.Encoding.PEM).decode()],
    )
    header = signed.find(f"{{{NS}}}edXMLEnvelope/{{{NS}}}edXMLHeader")
    assert header[-1].tag == f"{{{DS_NS}}}Signature"
    assert header[-1].get("Id") is None
    assert header[-1].find(f"{{{DS_NS}}}SignatureValue") is not None
    assert len(signed.findall(f".//{{{DS_NS}}}Signature")) == 1
    data = etree.tostring(signed, xml_declaration=True, encoding="UTF-8")
    assert parse(data) == small_package()  # the parser skips the signature


def test_text_is_kept_exactly() -> None:
    header = dataclasses.replace(small_package().header, subject="  hai  dòng\n\tthứ hai  ", content="<&>\"'")
    pkg = small_package(header=header)
    assert parse(build(pkg)) == pkg


def test_text_xml_cannot_carry_is_refused() -> None:
    header = dataclasses.replace(small_package().header, subject="bell \x07")
    with pytest.raises(GatewayError) as info:
        build(small_package(header=header))
    assert info.value.code == "xml.malformed"
