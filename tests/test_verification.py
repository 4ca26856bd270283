"""verify_package: signature → signed model → attachments → trust → fields, each failure with its code."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from lxml import etree
from signature_helpers import SENDER, E, dump, package, resign, set_certificates, tree

from gateway.edxml.model import AttachmentDigest, DocumentPackage
from gateway.errors import GatewayError
from gateway.signature.sign import sign_message
from gateway.trust.store import fingerprint
from gateway.verification import inspect_package, verify_package

pytest_plugins = ["pki_fixtures"]


def sign(pki, msg=None, *, reference="document", signer=None):
    s = signer or pki.province_rsa
    return sign_message(msg or package(), key=s.key, cert=s.cert, chain=s.chain, reference=reference)


def code_of(data, pki, at, **kw):
    with pytest.raises(GatewayError) as err:
        verify_package(data, trust=pki.store, at=at, **kw)
    return err.value.code


@pytest.mark.parametrize("reference", ["document", "envelope"])
def test_verified_package(pki, signing_time, reference):
    msg = package(attachments=2)
    data = sign(pki, msg, reference=reference)
    verified = verify_package(data, trust=pki.store, at=signing_time)
    assert verified.organ_id == SENDER
    assert verified.reference == reference
    assert verified.sha256 == hashlib.sha256(data).hexdigest()
    assert verified.chain.leaf == pki.province_rsa.cert
    assert isinstance(verified.message, DocumentPackage)
    assert verified.message.header == msg.header
    assert [a.data for a in verified.message.attachments] == [a.data for a in msg.attachments]


def test_multipart_parts_measured_by_the_caller(pki, signing_time):
    msg = package(attachments=2)
    data = sign(pki, dataclasses.replace(msg), reference="envelope")
    root = tree(data)
    root.remove(root.find(f"{E}AttachmentEncoded"))
    start_part = dump(root)
    parts = {
        a.content_id: AttachmentDigest(
            content_id=a.content_id.removeprefix("cid:"),
            size=len(a.data),
            sha256=hashlib.sha256(a.data).hexdigest(),
        )
        for a in msg.attachments
    }
    verified = verify_package(start_part, trust=pki.store, at=signing_time, attachments=parts)
    assert verified.message.attachments == ()
    assert len(verified.message.manifest) == 2

    first = next(iter(parts))
    bad = {**parts, first: dataclasses.replace(parts[first], size=parts[first].size + 1)}
    assert code_of(start_part, pki, signing_time, attachments=bad) == "edxml.attachment_digest"
    missing = dict(list(parts.items())[1:])
    assert code_of(start_part, pki, signing_time, attachments=missing) == "edxml.attachment_missing"
    extra = {**parts, "cid:other": AttachmentDigest(content_id="other", size=1, sha256="0" * 64)}
    assert code_of(start_part, pki, signing_time, attachments=extra) == "edxml.attachment_unlisted"


def test_parts_cannot_accompany_a_document_signature(pki, signing_time):
    part = AttachmentDigest(content_id="att-0", size=1, sha256="0" * 64)
    data = sign(pki)
    assert code_of(data, pki, signing_time, attachments={"att-0": part}) == "multipart.not_envelope_signed"


def _with_extra_attachment(data: bytes, content_id: str) -> bytes:
    root = tree(data)
    holder = root.find(f"{E}AttachmentEncoded")
    extra = etree.fromstring(etree.tostring(holder[0]))
    extra.find(f"{E}ContentId").text = content_id
    holder.append(extra)
    return dump(root)


def test_envelope_mode_unlisted_inline_attachment(pki, signing_time):
    data = _with_extra_attachment(sign(pki, reference="envelope"), "cid:smuggled")
    assert code_of(data, pki, signing_time) == "edxml.attachment_unlisted"


def test_envelope_mode_changed_inline_attachment(pki, signing_time):
    root = tree(sign(pki, reference="envelope"))
    encoded = root.find(f".//{E}ContentTransferEncoded")
    encoded.text = "QUJD" + encoded.text[4:]
    assert code_of(dump(root), pki, signing_time) == "edxml.attachment_digest"


def test_envelope_mode_missing_attachment(pki, signing_time):
    root = tree(sign(pki, reference="envelope"))
    holder = root.find(f"{E}AttachmentEncoded")
    holder.remove(holder[0])
    assert code_of(dump(root), pki, signing_time) == "edxml.attachment_missing"


def test_envelope_mode_unsigned_part_is_still_read_strictly(pki, signing_time):
    """Only the attachments come from outside the signed envelope, but they are read as strictly as ever."""
    root = tree(sign(pki, reference="envelope"))
    holder = root.find(f"{E}AttachmentEncoded")
    root.append(etree.fromstring(etree.tostring(holder)))  # a second AttachmentEncoded
    assert code_of(dump(root), pki, signing_time) == "edxml.unexpected_element"
    root = tree(sign(pki, reference="envelope"))
    holder = root.find(f"{E}AttachmentEncoded")
    holder.append(etree.fromstring(etree.tostring(holder[0])))  # the same attachment twice
    assert code_of(dump(root), pki, signing_time) == "edxml.attachment_duplicate"
    root = tree(sign(pki, reference="envelope"))
    root.find(f".//{E}ContentTransferEncoded").text = "not base64!"
    assert code_of(dump(root), pki, signing_time) == "edxml.bad_base64"


@pytest.mark.parametrize(
    ("forged", "code"),
    [
        (b"<edXMLEnvelope><edXMLHeader/></edXMLEnvelope>", "signature.wrapping"),
        (b'<edXMLEnvelope xmlns=""><edXMLHeader/></edXMLEnvelope>', "edxml.unexpected_element"),
    ],
)
def test_envelope_mode_second_envelope_outside_the_signature(pki, signing_time, forged, code):
    """A second envelope beside the signed one: wrapping if the profile sees it (edXML namespace), else the
    reader refuses it (it matches local names); neither picks one of the two."""
    data = sign(pki, reference="envelope").replace(b"</edXML>", forged + b"</edXML>")
    assert code_of(data, pki, signing_time) == code


@pytest.mark.parametrize("engine", ["c14n", "signxml"])
def test_envelope_mode_model_from_the_signed_envelope(pki, signing_time, engine):
    msg = package(attachments=2)
    verified = verify_package(
        sign(pki, msg, reference="envelope"), trust=pki.store, at=signing_time, engine=engine
    )
    assert verified.message.header == msg.header
    assert [a.data for a in verified.message.attachments] == [a.data for a in msg.attachments]


def test_envelope_mode_manifest_without_digests(pki, signing_time):
    """An envelope signature over a manifest without size/SHA-256 would leave attachments uncovered."""
    root = tree(sign(pki, reference="envelope"))
    for el in root.iter("{urn:lgsp-gateway:edxml-ext:1}*"):
        el.getparent().remove(el)
    resign(root, pki.province_rsa.key)
    assert code_of(dump(root), pki, signing_time) == "edxml.manifest_digest_missing"


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("expired", "certificate.expired"),
        ("not_yet_valid", "certificate.not_yet_valid"),
        ("revoked", "certificate.revoked"),
        ("no_digital_signature", "certificate.key_usage"),
        ("foreign", "certificate.untrusted"),
        ("self_signed", "certificate.untrusted"),
        ("no_agency", "certificate.no_agency"),
        ("under_revoked_intermediate", "certificate.revoked"),
    ],
)
def test_bad_certificates(pki, signing_time, name, code):
    assert code_of(sign(pki, signer=pki.bad(name)), pki, signing_time) == code


@pytest.mark.parametrize(("name", "alg"), [("weak_rsa1024", "rsa-sha256"), ("weak_ec_p384", "ecdsa-sha256")])
def test_weak_key(pki, signing_time, name, alg):
    bad = pki.bad(name)
    root = resign(set_certificates(tree(sign(pki)), [bad.cert, *bad.chain]), bad.key, sig_alg=alg)
    assert code_of(dump(root), pki, signing_time) == "signature.weak_key"


def test_certificate_of_another_agency(pki, signing_time):
    assert code_of(sign(pki, signer=pki.ministry_rsa), pki, signing_time) == "certificate.agency_mismatch"


def test_pinned_certificates(pki, signing_time):
    data = sign(pki)
    verified = verify_package(
        data, trust=pki.store, at=signing_time, pinned=[fingerprint(pki.province_rsa.cert)]
    )
    assert verified.chain.fingerprint == fingerprint(pki.province_rsa.cert)
    other = [fingerprint(pki.ministry_rsa.cert)]
    assert code_of(data, pki, signing_time, pinned=other) == "certificate.not_pinned"


def test_fields_are_validated_after_trust(pki, signing_time):
    msg = package(subject="x" * 501)
    assert code_of(sign(pki, msg), pki, signing_time) == "field.too_long"


def test_signature_is_checked_before_trust(pki, signing_time):
    root = tree(sign(pki, signer=pki.expired))
    root.find(f".//{E}Subject").text = "changed"
    assert code_of(dump(root), pki, signing_time) == "signature.digest_mismatch"


def test_inspect_ok_and_unverified_fields(pki, signing_time):
    data = sign(pki)
    ok = inspect_package(data, trust=pki.store, at=signing_time)
    assert (ok.ok, ok.code, ok.trust_checked) == (True, None, True)
    assert ok.verified is not None
    assert ok.verified.organ_id == SENDER
    assert ok.unverified_message is not None

    no_trust = inspect_package(data, at=signing_time)
    assert (no_trust.ok, no_trust.trust_checked, no_trust.reference) == (True, False, "document")


def test_inspect_never_raises_for_bad_input(pki, signing_time):
    for data in (b"", b"<not-xml", b"<a/>", b"\x00" * 10, sign(pki)[:-20]):
        result = inspect_package(data, trust=pki.store, at=signing_time)
        assert not result.ok
        assert result.code
