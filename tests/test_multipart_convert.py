"""Single file ⇄ multipart without breaking the signature, checked by the real verifier and by xmlsec1."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from pki_fixtures import SIGNING_TIME, PkiSet
from strategies import document_packages

from gateway.edxml.model import (
    NS,
    Attachment,
    Bussiness,
    Code,
    DocumentPackage,
    ManifestReference,
    MessageHeader,
    Organization,
    PromulgationInfo,
    TraceHeader,
    TraceHeaderList,
)
from gateway.edxml.multipart import (
    MemorySink,
    iter_multipart,
    match_parts,
    read_multipart_bytes,
    to_multipart,
    to_single_file,
)
from gateway.edxml.parse import parse
from gateway.errors import GatewayError
from gateway.signature.sign import sign_message
from gateway.verification import inspect_package, verify_package

pytest_plugins = ["pki_fixtures"]

SENDER = "000.00.31.H53"  # pki.district_ec: ECDSA P-256, cheap to sign in property tests
XMLSEC1 = shutil.which("xmlsec1")


def package(
    attachments: list[tuple[str, bytes]], *, subject: str = "V/v thử nghiệm liên thông"
) -> DocumentPackage:
    date = dt.date(2026, 3, 1)
    return DocumentPackage(
        header=MessageHeader(
            from_=Organization(organ_id=SENDER, organ_name="UBND huyện Tân Biên"),
            to=(Organization(organ_id="000.00.00.H53", organ_name="UBND tỉnh Tây Ninh"),),
            document_id=f"{SENDER},2026/03/01,12/UBND-VP",
            code=Code(code_number="12", code_notation="UBND-VP"),
            promulgation_info=PromulgationInfo(place="Tân Biên", promulgation_date=date),
            subject=subject,
        ),
        trace=TraceHeaderList(
            trace_headers=(TraceHeader(organ_id=SENDER, timestamp=dt.datetime(2026, 3, 1, 8, 0)),),
            bussiness=Bussiness(bussiness_doc_type=0, paper=0),
        ),
        manifest=tuple(
            ManifestReference(
                content_id=f"cid:{cid}",
                content_type="application/pdf",
                description=f"Tệp đính kèm {cid} <&>",
                attachment_name=f"{cid}.pdf",
            )
            for cid, _ in attachments
        ),
        attachments=tuple(
            Attachment(
                content_id=f"cid:{cid}", attachment_name=f"{cid}.pdf", content_type="application/pdf", data=d
            )
            for cid, d in attachments
        ),
    )


def sign(pki: PkiSet, msg: DocumentPackage, reference: str = "envelope") -> bytes:
    signer = pki.agencies[SENDER]
    return sign_message(msg, key=signer.key, cert=signer.cert, chain=signer.chain, reference=reference)


def verify(data: bytes, trust_store, attachments=None):
    return verify_package(data, trust=trust_store, at=SIGNING_TIME, attachments=attachments)


def receive(ct: str, body: bytes) -> tuple[bytes, dict[str, bytes], dict]:
    """What a receiver does: stream, match with the manifest of the edXML part, keep the parts."""
    result = read_multipart_bytes(body, ct, sink_factory=MemorySink, chunk_size=4099)
    msg = parse(result.edxml)
    assert isinstance(msg, DocumentPackage)
    digests = match_parts(msg.manifest, result.parts)
    return result.edxml, {p.content_id: p.handle.data for p in result.parts}, digests


@pytest.fixture(scope="module")
def xmlsec_trust(pki: PkiSet, tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("xmlsec")
    root = folder / "root.pem"
    root.write_bytes(pki.root.cert.public_bytes(Encoding.PEM))
    return ["--trusted-pem", str(root)]


def xmlsec1_verify(data: bytes, trust_args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Debian's xmlsec1 as an independent verifier; the envelope's ``Id`` is declared as an ID."""
    assert XMLSEC1 is not None
    path = tmp_path / "package.edxml"
    path.write_bytes(data)
    return subprocess.run(
        [XMLSEC1, "--verify", *trust_args, "--id-attr:Id", f"{NS}:edXMLEnvelope", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


ATTACHMENTS = [("cv-12.pdf", b"%PDF-1.7 " + bytes(range(256)) * 40), ("phu-luc", b""), ("x@y", b"\r\n--\r\n")]


def test_single_to_multipart_to_single_keeps_the_signature(pki, trust_store, tmp_path, xmlsec_trust):
    single = sign(pki, package(ATTACHMENTS))
    verify(single, trust_store)

    ct, body = to_multipart(single)
    edxml, parts, digests = receive(ct, b"".join(body))
    assert b"AttachmentEncoded" not in edxml
    assert parts == {cid: data for cid, data in ATTACHMENTS}
    verified = verify(edxml, trust_store, attachments=digests)
    assert verified.reference == "envelope"
    assert [r.content_id for r in verified.message.manifest] == [f"cid:{c}" for c, _ in ATTACHMENTS]

    again = to_single_file(edxml, {f"cid:{cid}": io.BytesIO(data) for cid, data in parts.items()})
    checked = verify(again, trust_store)
    assert [(a.content_id, a.data) for a in checked.message.attachments] == [
        (f"cid:{c}", d) for c, d in ATTACHMENTS
    ]
    assert [(a.attachment_name, a.description, a.content_type) for a in checked.message.attachments] == [
        (r.attachment_name, r.description, r.content_type) for r in checked.message.manifest
    ]
    # The round trip is stable: splitting the rebuilt single file gives the same edXML part.
    ct2, body2 = to_multipart(again)
    assert receive(ct2, b"".join(body2))[0] == edxml
    if XMLSEC1:
        for data in (single, again):
            done = xmlsec1_verify(data, xmlsec_trust, tmp_path)
            assert done.returncode == 0, done.stderr
            assert "OK" in done.stdout + done.stderr


def test_signed_as_multipart_then_single_file(pki, trust_store, tmp_path, xmlsec_trust):
    """The sender signs the edXML part directly (no inline attachments ever existed)."""
    msg = package(ATTACHMENTS)
    manifest = tuple(
        replace(ref, size=len(data), sha256=hashlib.sha256(data).hexdigest())
        for ref, (_, data) in zip(msg.manifest, ATTACHMENTS, strict=True)
    )
    edxml = sign(pki, replace(msg, manifest=manifest, attachments=()))
    ct, body = iter_multipart(
        edxml, [(ref, data) for ref, (_, data) in zip(manifest, ATTACHMENTS, strict=True)]
    )
    got, parts, digests = receive(ct, b"".join(body))
    assert got == edxml
    verify(edxml, trust_store, attachments=digests)
    single = to_single_file(edxml, parts)
    verify(single, trust_store)
    if XMLSEC1:
        done = xmlsec1_verify(single, xmlsec_trust, tmp_path)
        assert done.returncode == 0, done.stderr


def test_xmlsec1_sees_a_tampered_envelope(pki, tmp_path, xmlsec_trust):
    """The independent verifier is not vacuous: a changed subject fails it."""
    if not XMLSEC1:
        pytest.skip("xmlsec1 is not installed")
    single = sign(pki, package(ATTACHMENTS[:1]))
    tampered = single.replace("thử nghiệm".encode(), "THỬ NGHIỆM".encode())
    assert tampered != single
    assert xmlsec1_verify(tampered, xmlsec_trust, tmp_path).returncode != 0


_attachment_lists = st.lists(
    st.tuples(st.from_regex(r"[A-Za-z0-9._-]{1,10}", fullmatch=True), st.binary(max_size=3000)),
    max_size=4,
    unique_by=lambda t: t[0],
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    attachments=_attachment_lists,
    subject=st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40),
)
def test_conversions_round_trip_property(pki, trust_store, attachments, subject):
    single = sign(pki, package(attachments, subject=subject.strip() or "x"))
    ct, body = to_multipart(single, chunk_size=1000)
    edxml, parts, digests = receive(ct, b"".join(body))
    verify(edxml, trust_store, attachments=digests)
    again = to_single_file(edxml, parts)
    checked = verify(again, trust_store)
    assert [(a.content_id, a.data) for a in checked.message.attachments] == [
        (f"cid:{c}", d) for c, d in attachments
    ]


# --- what the conversions refuse -----------------------------------------------------------------


def code_of(call, *args, **kwargs) -> str:
    with pytest.raises(GatewayError) as info:
        call(*args, **kwargs)
    return info.value.code


def test_document_reference_signature_cannot_be_split(pki):
    single = sign(pki, package(ATTACHMENTS[:1]), reference="document")
    assert code_of(to_multipart, single) == "multipart.not_envelope_signed"
    no_attachments = sign(pki, package([]), reference="document")
    assert code_of(to_single_file, no_attachments, {"a": b""}) == "multipart.not_envelope_signed"


def test_to_single_file_checks_parts_against_the_manifest(pki):
    single = sign(pki, package(ATTACHMENTS[:2]))
    ct, body = to_multipart(single)
    edxml, parts, _ = receive(ct, b"".join(body))
    first, second = ATTACHMENTS[0][0], ATTACHMENTS[1][0]
    assert code_of(to_single_file, edxml, {**parts, first: b"changed"}) == "edxml.attachment_digest"
    assert code_of(to_single_file, edxml, {first: parts[first]}) == "edxml.attachment_missing"
    assert code_of(to_single_file, edxml, {**parts, "extra": b""}) == "multipart.part_unlisted"
    assert code_of(to_single_file, edxml, {**parts, f"cid:{second}": b""}) == "multipart.duplicate_part"
    assert code_of(to_single_file, single, parts) == "edxml.unexpected_element"
    assert code_of(to_single_file, b"<other/>", {}) == "edxml.not_edxml"


def test_to_multipart_checks_inline_attachments_against_the_manifest(pki, trust_store):
    single = sign(pki, package(ATTACHMENTS[:1]))
    root = etree.fromstring(single)
    encoded = root.find(f"{{{NS}}}AttachmentEncoded/{{{NS}}}Attachment/{{{NS}}}ContentTransferEncoded")
    encoded.text = "QUJD"  # "ABC": outside the signature in envelope mode, caught by the manifest digest
    tampered = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    assert code_of(verify, tampered, trust_store) == "edxml.attachment_digest"
    assert code_of(to_multipart, tampered) == "edxml.attachment_digest"


def test_manifest_without_digests_cannot_be_split():
    unsigned = etree.tostring(
        etree.fromstring(
            f'<edXML xmlns="{NS}"><edXMLEnvelope><edXMLHeader><MessageHeader>'
            f"<From><OrganId>{SENDER}</OrganId></From><To><OrganId>000.00.00.H53</OrganId></To>"
            "</MessageHeader></edXMLHeader><edXMLBody><edXMLManifest><Reference><ContentId>cid:a</ContentId>"
            "</Reference></edXMLManifest></edXMLBody></edXMLEnvelope><AttachmentEncoded><Attachment>"
            "<ContentId>cid:a</ContentId><ContentTransferEncoded>QUJD</ContentTransferEncoded></Attachment>"
            "</AttachmentEncoded></edXML>"
        )
    )
    assert code_of(to_multipart, unsigned) == "edxml.manifest_digest_missing"


def test_status_message_passes_through(pki):
    unsigned = (
        f'<edXML xmlns="{NS}"><edXMLEnvelope><edXMLHeader><MessageHeader>'
        f"<From><OrganId>{SENDER}</OrganId></From><ResponseFor><OrganId>000.00.00.H53</OrganId></ResponseFor>"
        "<StatusCode>01</StatusCode></MessageHeader></edXMLHeader></edXMLEnvelope></edXML>"
    ).encode()
    ct, body = to_multipart(unsigned)
    result = read_multipart_bytes(b"".join(body), ct, sink_factory=MemorySink)
    assert result.parts == ()
    assert to_single_file(result.edxml, {}) == result.edxml


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(msg=document_packages())
def test_random_packages_survive_both_conversions(pki, msg):
    """Any valid package (the shared strategies: Vietnamese text, tabs and newlines in names, missing
    optional fields) signed by envelope reference keeps a valid signature through both conversions.
    Senders are random, so trust is not checked here (``inspect_package`` without a store)."""
    signer = pki.agencies[SENDER]
    single = sign_message(msg, key=signer.key, cert=signer.cert, chain=signer.chain, reference="envelope")
    ct, body = to_multipart(single, chunk_size=100)
    edxml, parts, digests = receive(ct, b"".join(body))
    split = inspect_package(edxml, attachments=digests)
    assert split.ok, (split.code, split.detail)
    joined = inspect_package(to_single_file(edxml, parts))
    assert joined.ok, (joined.code, joined.detail)
    original = parse(single)
    assert isinstance(original, DocumentPackage)
    assert parse(to_single_file(edxml, parts)) == original
