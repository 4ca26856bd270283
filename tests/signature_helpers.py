"""Helpers for the signature tests: a valid package, and a low-level re-signer for attack variants.

:func:`resign` rewrites a signed document's SignedInfo with arbitrary algorithms, transforms and URI and
re-computes digest and signature *correctly* for them, so that an attack is cryptographically sound and
only the profile can reject it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from lxml import etree

from gateway.edxml.model import (
    DS_NS,
    NS,
    Attachment,
    Bussiness,
    Code,
    DocumentPackage,
    ManifestReference,
    MessageHeader,
    Organization,
    PromulgationInfo,
    TraceHeaderList,
)

DS = f"{{{DS_NS}}}"
E = f"{{{NS}}}"
ALG = {
    "rsa-sha256": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "rsa-sha1": "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
    "rsa-md5": "http://www.w3.org/2001/04/xmldsig-more#rsa-md5",
    "rsa-sha512": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    "ecdsa-sha256": "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    "hmac-sha256": "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256",
    "sha256": "http://www.w3.org/2001/04/xmlenc#sha256",
    "sha1": "http://www.w3.org/2000/09/xmldsig#sha1",
    "md5": "http://www.w3.org/2001/04/xmldsig-more#md5",
    "sha512": "http://www.w3.org/2001/04/xmlenc#sha512",
    "exc": "http://www.w3.org/2001/10/xml-exc-c14n#",
    "inc": "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    "enveloped": "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
    "xpath": "http://www.w3.org/TR/1999/REC-xpath-19991116",
    "xslt": "http://www.w3.org/TR/1999/REC-xslt-19991116",
    "base64": "http://www.w3.org/2000/09/xmldsig#base64",
}
_HASHES = {"sha256": hashlib.sha256, "sha1": hashlib.sha1, "md5": hashlib.md5, "sha512": hashlib.sha512}

SENDER = "000.00.00.H53"
DOCUMENT_ID = f"{SENDER},2026/03/01,12/UBND-VP"
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 20


def package(
    *, sender: str = SENDER, subject: str = "Về việc triển khai liên thông văn bản", attachments: int = 1
) -> DocumentPackage:
    """A valid new document from ``sender`` to a department, with ``attachments`` inline attachments."""
    atts = tuple(
        Attachment(
            content_id=f"cid:att-{i}",
            attachment_name=f"van-ban-{i}.pdf",
            content_type="application/pdf",
            data=PDF + os.urandom(64),
        )
        for i in range(attachments)
    )
    refs = tuple(
        ManifestReference(
            content_id=a.content_id, content_type=a.content_type, attachment_name=a.attachment_name
        )
        for a in atts
    )
    return DocumentPackage(
        header=MessageHeader(
            from_=Organization(organ_id=sender, organ_name="Ủy ban nhân dân tỉnh Tây Ninh"),
            to=(Organization(organ_id="000.00.02.H53", organ_name="Sở Nội vụ"),),
            document_id=f"{sender},2026/03/01,12/UBND-VP",
            code=Code(code_number="12", code_notation="UBND-VP"),
            promulgation_info=PromulgationInfo(place="Tây Ninh", promulgation_date=dt.date(2026, 3, 1)),
            subject=subject,
        ),
        trace=TraceHeaderList(
            bussiness=Bussiness(document_id=f"{sender},2026/03/01,12/UBND-VP", bussiness_doc_type=0, paper=0)
        ),
        manifest=refs,
        attachments=atts,
    )


def tree(data: bytes) -> etree._Element:
    return etree.fromstring(data, etree.XMLParser(huge_tree=True, resolve_entities=False))


def dump(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def signature_of(root: etree._Element) -> etree._Element:
    found = root.find(f".//{DS}Signature")
    assert found is not None
    return found


def _remove(node: etree._Element) -> None:
    parent = node.getparent()
    assert parent is not None
    if node.tail:
        prev = node.getprevious()
        if prev is not None:
            prev.tail = (prev.tail or "") + node.tail
        else:
            parent.text = (parent.text or "") + node.tail
    parent.remove(node)


def resign(
    root: etree._Element,
    key: object,
    *,
    sig_alg: str = "rsa-sha256",
    digest: str = "sha256",
    c14n: str = "exc",
    transforms: tuple[str, ...] = ("enveloped", "exc"),
    uri: str | None = None,
    hmac_key: bytes = b"secret",
) -> etree._Element:
    """Rewrite the Signature's SignedInfo and re-sign correctly for the given (possibly forbidden) choices."""
    sig = signature_of(root)
    si = sig.find(f"{DS}SignedInfo")
    si.find(f"{DS}CanonicalizationMethod").set("Algorithm", ALG[c14n])
    si.find(f"{DS}SignatureMethod").set("Algorithm", ALG[sig_alg])
    ref = si.find(f"{DS}Reference")
    if uri is not None:
        ref.set("URI", uri)
    tr = ref.find(f"{DS}Transforms")
    for t in list(tr):
        tr.remove(t)
    for name in transforms:
        etree.SubElement(tr, f"{DS}Transform", Algorithm=ALG[name])
    ref.find(f"{DS}DigestMethod").set("Algorithm", ALG[digest])
    # digest over the referenced node without the signature, canonicalised as the last c14n transform says
    target_uri = ref.get("URI")
    copy = tree(dump(root))
    _remove(signature_of(copy))
    node = copy if target_uri == "" else copy.xpath("//*[@Id=$i]", i=target_uri[1:])[0]
    exclusive = "inc" not in transforms
    canon = etree.tostring(node, method="c14n", exclusive=exclusive)
    ref.find(f"{DS}DigestValue").text = base64.b64encode(_HASHES[digest](canon).digest()).decode()
    signed_info = etree.tostring(si, method="c14n", exclusive=c14n == "exc")
    value = _sign(key, sig_alg, signed_info, hmac_key)
    sig.find(f"{DS}SignatureValue").text = base64.b64encode(value).decode()
    return root


def _sign(key: object, sig_alg: str, data: bytes, hmac_key: bytes) -> bytes:
    if sig_alg.startswith("hmac"):
        return hmac.new(hmac_key, data, hashlib.sha256).digest()
    h = {"sha256": hashes.SHA256(), "sha1": hashes.SHA1(), "md5": hashes.MD5(), "sha512": hashes.SHA512()}[
        sig_alg.split("-")[1]
    ]
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), h)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    r, s = utils.decode_dss_signature(key.sign(data, ec.ECDSA(h)))
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def set_certificates(root: etree._Element, certs: list[object]) -> etree._Element:
    """Replace the X509Data certificates (x509.Certificate objects, or raw base64 text)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    data = signature_of(root).find(f"{DS}KeyInfo/{DS}X509Data")
    for el in list(data):
        data.remove(el)
    for cert in certs:
        text = cert if isinstance(cert, str) else base64.b64encode(cert.public_bytes(Encoding.DER)).decode()
        etree.SubElement(data, f"{DS}X509Certificate").text = text
    return root
