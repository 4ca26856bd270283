"""Interop with an independent implementation: Debian's ``xmlsec1`` (libxmlsec1).

What we sign, xmlsec1 verifies against the test PKI; what xmlsec1 signs from a profile template, we
verify; a one-byte change is caught by both. Without ``xmlsec1`` these tests skip, except in CI
(``CI=true``), where a missing ``xmlsec1`` is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from signature_helpers import SENDER, package

from gateway.edxml.build import build
from gateway.edxml.model import NS
from gateway.errors import GatewayError
from gateway.signature.sign import sign_message, with_manifest_digests
from gateway.signature.verify import verify_signature
from gateway.verification import verify_package

pytest_plugins = ["pki_fixtures"]

SIGNERS = {"rsa": "000.00.00.H53", "ec": "000.00.31.H53"}
ID_ATTR = ["--id-attr:Id", f"{NS}:edXMLEnvelope"]

TEMPLATE = """<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
<ds:SignedInfo>
<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
<ds:SignatureMethod Algorithm="{method}"/>
<ds:Reference URI="{uri}">
<ds:Transforms>
<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
</ds:Transforms>
<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
<ds:DigestValue/>
</ds:Reference>
</ds:SignedInfo>
<ds:SignatureValue/>
<ds:KeyInfo><ds:X509Data><ds:X509Certificate/></ds:X509Data></ds:KeyInfo>
</ds:Signature>"""
METHODS = {
    "rsa": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "ec": "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
}


@pytest.fixture(scope="session")
def xmlsec1() -> str:
    path = shutil.which("xmlsec1")
    if path is None:
        message = "xmlsec1 (Debian package xmlsec1) is not installed; interop with it is not tested"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def pki_files(pki, tmp_path: Path) -> dict[str, Path]:
    files = {"root": pki.root.cert, "intermediate": pki.intermediate.cert}
    out = {}
    for name, cert in files.items():
        out[name] = tmp_path / f"{name}.pem"
        out[name].write_bytes(cert.public_bytes(Encoding.PEM))
    return out


def xmlsec_verify(
    xmlsec1: str, files: dict[str, Path], data: bytes, tmp_path: Path, *, envelope: bool
) -> bool:
    target = tmp_path / "package.xml"
    target.write_bytes(data)
    command = [
        xmlsec1,
        "--verify",
        "--enabled-reference-uris",
        "empty,same-doc" if envelope else "empty",
        "--enabled-key-data",
        "x509",
        "--trusted-pem",
        str(files["root"]),
        "--untrusted-pem",
        str(files["intermediate"]),
        *(ID_ATTR if envelope else []),
        str(target),
    ]
    done = subprocess.run(command, capture_output=True, timeout=60, check=False)
    return done.returncode == 0


def flip_one_byte(data: bytes, marker: bytes, offset: int) -> bytes:
    """Change the ASCII letter/digit at ``offset`` after ``marker`` to another one (stays valid base64)."""
    at = data.index(marker) + len(marker) + offset
    old = data[at : at + 1]
    assert re.fullmatch(rb"[A-Za-z0-9]", old), old
    new = b"B" if old != b"B" else b"C"
    return data[:at] + new + data[at + 1 :]


@pytest.mark.parametrize("reference", ["document", "envelope"])
@pytest.mark.parametrize("kind", list(SIGNERS))
def test_xmlsec1_verifies_what_we_sign(xmlsec1, pki, pki_files, tmp_path, kind, reference):
    signer = pki.agencies[SIGNERS[kind]]
    data = sign_message(
        package(sender=SIGNERS[kind]),
        key=signer.key,
        cert=signer.cert,
        chain=signer.chain,
        reference=reference,
    )
    assert xmlsec_verify(xmlsec1, pki_files, data, tmp_path, envelope=reference == "envelope")


def test_xmlsec1_rejects_a_foreign_signer(xmlsec1, pki, pki_files, tmp_path):
    """Sanity check of the harness: the same command fails for a chain outside the trusted root."""
    signer = pki.foreign
    data = sign_message(package(), key=signer.key, cert=signer.cert, chain=signer.chain)
    assert not xmlsec_verify(xmlsec1, pki_files, data, tmp_path, envelope=False)


@pytest.mark.parametrize("reference", ["document", "envelope"])
@pytest.mark.parametrize("kind", list(SIGNERS))
def test_we_verify_what_xmlsec1_signs(xmlsec1, pki, tmp_path, kind, reference):
    signer = pki.agencies[SIGNERS[kind]]
    msg = package(sender=SIGNERS[kind])
    envelope_id = "env-1" if reference == "envelope" else None
    if envelope_id:
        msg = with_manifest_digests(msg)
    xml = build(msg, signature_placeholder=True, envelope_id=envelope_id).decode()
    placeholder = re.search(r"<ds:Signature[^>]*Id=\"placeholder\"[^>]*/>", xml)
    assert placeholder is not None
    uri = f"#{envelope_id}" if envelope_id else ""
    template = xml.replace(placeholder.group(0), TEMPLATE.format(method=METHODS[kind], uri=uri))
    (tmp_path / "template.xml").write_text(template, encoding="utf-8")
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(signer.key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    cert_file = tmp_path / "cert.pem"
    cert_file.write_bytes(signer.cert.public_bytes(Encoding.PEM))
    command = [
        xmlsec1,
        "--sign",
        "--privkey-pem",
        f"{key_file},{cert_file}",
        *(ID_ATTR if envelope_id else []),
        "--output",
        str(tmp_path / "signed.xml"),
        str(tmp_path / "template.xml"),
    ]
    done = subprocess.run(command, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode()
    data = (tmp_path / "signed.xml").read_bytes()
    for engine in ("signxml", "c14n"):
        verified = verify_signature(data, engine=engine)
        assert verified.reference == reference
        assert verified.signer == signer.cert


@pytest.mark.parametrize("where", ["subject", "attachment"])
def test_one_byte_change_caught_by_both(xmlsec1, pki, pki_files, tmp_path, where):
    signer = pki.province_rsa
    data = sign_message(package(), key=signer.key, cert=signer.cert, chain=signer.chain)
    assert xmlsec_verify(xmlsec1, pki_files, data, tmp_path, envelope=False)
    if where == "subject":
        changed = flip_one_byte(data, b"<edXML:Subject>", 0)  # "Về …" → "Bề …"
    else:
        changed = flip_one_byte(data, b"ContentTransferEncoded>", 200)
    assert changed != data
    assert not xmlsec_verify(xmlsec1, pki_files, changed, tmp_path, envelope=False)
    for engine in ("signxml", "c14n"):
        with pytest.raises(GatewayError) as err:
            verify_signature(changed, engine=engine)
        assert err.value.code == "signature.digest_mismatch"


def test_envelope_mode_attachment_change_is_caught_by_the_manifest(xmlsec1, pki, pki_files, tmp_path):
    """In envelope mode the attachment bytes are covered through the signed manifest, not the XML digest:
    xmlsec1 (which knows nothing of the manifest) still accepts the signature, our pipeline does not."""
    signer = pki.province_rsa
    data = sign_message(package(), key=signer.key, cert=signer.cert, chain=signer.chain, reference="envelope")
    changed = flip_one_byte(data, b"ContentTransferEncoded>", 200)
    assert xmlsec_verify(xmlsec1, pki_files, changed, tmp_path, envelope=True)
    with pytest.raises(GatewayError) as err:
        verify_package(changed, trust=pki.store, at=signer.cert.not_valid_before_utc.replace(year=2026))
    assert err.value.code == "edxml.attachment_digest"
    assert SENDER in data.decode()
