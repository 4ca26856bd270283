"""Whole-document enveloped signatures for non-edXML documents (the hub's receipts): same profile checks."""

from __future__ import annotations

import subprocess

import pytest
from lxml import etree
from pki_fixtures import build_pki

from gateway.errors import SignatureError
from gateway.signature.enveloped import sign_enveloped, verify_enveloped
from gateway.trust.files import pem_of

DOC = b'<Note xmlns="urn:example"><To>000.00.31.H53</To><Body>xin ch\xc3\xa0o</Body></Note>'


@pytest.fixture(scope="module")
def pki():
    return build_pki()


def signed(pki, xml: bytes = DOC) -> bytes:
    issued = pki.hub
    return sign_enveloped(xml, key=issued.key, cert=issued.cert, chain=issued.chain[:-1])


def test_round_trip_and_xmlsec1(pki, tmp_path) -> None:
    data = signed(pki)
    verified = verify_enveloped(data)
    assert verified.signer == pki.hub.cert
    assert verified.signed_root.findtext("{urn:example}Body") == "xin chào"
    assert verified.signed_root.find("{http://www.w3.org/2000/09/xmldsig#}Signature") is None
    (tmp_path / "doc.xml").write_bytes(data)
    (tmp_path / "root.pem").write_bytes(pem_of([pki.root.cert]))
    (tmp_path / "issuing.pem").write_bytes(pem_of([pki.intermediate.cert]))
    out = subprocess.run(
        ["xmlsec1", "--verify", "--trusted-pem", str(tmp_path / "root.pem"), "--untrusted-pem",
         str(tmp_path / "issuing.pem"), str(tmp_path / "doc.xml")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr


def test_tampering_and_profile_violations(pki) -> None:
    data = signed(pki)
    with pytest.raises(SignatureError) as info:
        verify_enveloped(data.replace(b"000.00.31.H53", b"000.00.32.H53"))
    assert info.value.code == "signature.digest_mismatch"
    with pytest.raises(SignatureError) as info:
        verify_enveloped(DOC)
    assert info.value.code == "signature.missing"
    sha1 = data.replace(b"xmlenc#sha256", b"xmldsig#sha1")
    with pytest.raises(SignatureError) as info:
        verify_enveloped(sha1)
    assert info.value.code == "signature.sha1"
    root = etree.fromstring(data)
    root.insert(0, root[-1])  # the signature moved first: no longer the last child
    with pytest.raises(SignatureError) as info:
        verify_enveloped(etree.tostring(root))
    assert info.value.code == "signature.location"
    with pytest.raises(SignatureError) as info:
        verify_enveloped(data, location="./{urn:example}Body/")
    assert info.value.code == "signature.location"
    with pytest.raises(SignatureError) as info:
        sign_enveloped(data, key=pki.hub.key, cert=pki.hub.cert)
    assert info.value.code == "signature.multiple"


def test_signature_at_a_location_below_the_root(pki) -> None:
    data = sign_enveloped(DOC, key=pki.hub.key, cert=pki.hub.cert, location="./{urn:example}Body/")
    verified = verify_enveloped(data, location="./{urn:example}Body/")
    assert verified.signed_root.findtext("{urn:example}To") == "000.00.31.H53"
    with pytest.raises(SignatureError) as info:
        verify_enveloped(data)
    assert info.value.code == "signature.location"
