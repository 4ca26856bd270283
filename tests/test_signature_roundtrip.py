"""Sign → verify round trips: every accepted key type, both reference modes, both verification engines."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from signature_helpers import DS, SENDER, E, dump, package, signature_of, tree

from gateway.edxml.build import build
from gateway.edxml.model import DocumentPackage
from gateway.edxml.parse import parse_element
from gateway.errors import GatewayError
from gateway.signature.profile import ECDSA_SHA256, RSA_SHA256, SHA256
from gateway.signature.sign import sign_message, sign_xml, with_manifest_digests
from gateway.signature.verify import verify_signature

pytest_plugins = ["pki_fixtures"]

SIGNERS = {
    "rsa2048": ("000.00.00.H53", RSA_SHA256),
    "rsa3072": ("000.00.02.H53", RSA_SHA256),
    "ec-p256": ("000.00.31.H53", ECDSA_SHA256),
}
ENGINES = ("signxml", "c14n")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("reference", ["document", "envelope"])
@pytest.mark.parametrize("key_type", list(SIGNERS))
def test_round_trip(pki, key_type, reference, engine):
    organ_id, method = SIGNERS[key_type]
    signer = pki.agencies[organ_id]
    msg = package(sender=organ_id, attachments=2)
    data = sign_message(msg, key=signer.key, cert=signer.cert, chain=signer.chain, reference=reference)

    verified = verify_signature(data, engine=engine)

    assert verified.reference == reference
    assert verified.engine == engine
    assert verified.signer == signer.cert
    assert verified.extra_certs == signer.chain
    assert (verified.signature_method, verified.digest_method) == (method, SHA256)
    assert verified.signed_root.find(f".//{DS}Signature") is None
    signed = parse_element(verified.signed_root, attachments=() if reference == "envelope" else None)
    assert isinstance(signed, DocumentPackage)
    assert signed.header == msg.header
    if reference == "document":
        assert verified.signed_root.tag == f"{E}edXML"
        assert signed.attachments == msg.attachments
        assert verified.unsigned_root is None
    else:
        assert verified.signed_root.tag == f"{E}edXMLEnvelope"
        assert verified.unsigned_root is not None
        # the manifest carries what covers the attachments
        for ref, att in zip(signed.manifest, msg.attachments, strict=True):
            assert ref.size == len(att.data)
            assert ref.sha256 == hashlib.sha256(att.data).hexdigest()


def test_signature_is_last_child_of_header_with_profile_algorithms(pki):
    data = sign_message(package(), key=pki.province_rsa.key, cert=pki.province_rsa.cert)
    root = tree(data)
    sig = signature_of(root)
    assert sig.getparent().tag == f"{E}edXMLHeader"
    assert sig.getnext() is None
    transforms = [t.get("Algorithm") for t in sig.iter(f"{DS}Transform")]
    assert transforms == [
        "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
        "http://www.w3.org/2001/10/xml-exc-c14n#",
    ]
    assert sig.find(f"{DS}SignedInfo/{DS}Reference").get("URI") == ""
    assert sig.find(f"{DS}KeyInfo/{DS}KeyValue") is None
    assert len(sig.findall(f"{DS}KeyInfo/{DS}X509Data/{DS}X509Certificate")) == 1


def test_envelope_mode_references_the_envelope_id(pki):
    data = sign_message(package(), key=pki.district_ec.key, cert=pki.district_ec.cert, reference="envelope")
    root = tree(data)
    envelope_id = root.find(f"{E}edXMLEnvelope").get("Id")
    assert signature_of(root).find(f"{DS}SignedInfo/{DS}Reference").get("URI") == f"#{envelope_id}"


def test_sign_xml_without_placeholder_appends_to_header(pki):
    xml = build(package())
    signed = sign_xml(xml, key=pki.province_rsa.key, cert=pki.province_rsa.cert)
    assert verify_signature(signed).reference == "document"


def test_signing_twice_is_refused(pki):
    signed = sign_message(package(), key=pki.province_rsa.key, cert=pki.province_rsa.cert)
    with pytest.raises(GatewayError) as err:
        sign_xml(signed, key=pki.province_rsa.key, cert=pki.province_rsa.cert)
    assert err.value.code == "signature.multiple"


@pytest.mark.parametrize("name", ["weak_rsa1024", "weak_ec_p384"])
def test_weak_keys_cannot_sign(pki, name):
    bad = pki.bad(name)
    with pytest.raises(GatewayError) as err:
        sign_message(package(), key=bad.key, cert=bad.cert)
    assert err.value.code == "signature.weak_key"


def test_key_must_belong_to_certificate(pki):
    with pytest.raises(ValueError, match="does not belong"):
        sign_message(package(), key=pki.province_rsa.key, cert=pki.ministry_rsa.cert)


def test_manifest_digests_filled_and_checked():
    msg = package(attachments=1)
    filled = with_manifest_digests(msg)
    assert filled.manifest[0].sha256 == hashlib.sha256(msg.attachments[0].data).hexdigest()
    wrong = dataclasses.replace(msg, manifest=(dataclasses.replace(msg.manifest[0], size=1),))
    with pytest.raises(GatewayError) as err:
        with_manifest_digests(wrong)
    assert err.value.code == "edxml.attachment_digest"


def test_comments_in_signed_text_do_not_shorten_what_is_shown(pki):
    """A comment is not signed (exclusive C14N without comments); it must not cut a text node either."""
    msg = package(subject="Không đồng ý phương án")
    data = sign_message(msg, key=pki.province_rsa.key, cert=pki.province_rsa.cert)
    tampered = data.replace("Không đồng ý".encode(), "Không<!-- x --> đồng ý".encode())
    assert tampered != data
    for engine in ENGINES:
        verified = verify_signature(tampered, engine=engine)
        assert parse_element(verified.signed_root).header.subject == "Không đồng ý phương án"


@pytest.mark.parametrize("engine", ENGINES)
def test_large_single_file_package(pki, engine):
    """signxml's default parser refuses text nodes over ~10 MB; ours takes them within the limits."""
    big = dataclasses.replace(
        package(attachments=1),
    )
    att = dataclasses.replace(big.attachments[0], data=bytes(12 * 1024 * 1024))
    big = dataclasses.replace(big, attachments=(att,))
    data = sign_message(big, key=pki.district_ec.key, cert=pki.district_ec.cert)
    assert len(data) > 16 * 1024 * 1024
    verified = verify_signature(data, engine=engine)
    assert parse_element(verified.signed_root).attachments[0].data == att.data


def test_sender_is_read_from_signed_content(pki):
    data = sign_message(package(), key=pki.province_rsa.key, cert=pki.province_rsa.cert)
    verified = verify_signature(dump(tree(data)))
    assert parse_element(verified.signed_root).header.from_.organ_id == SENDER
