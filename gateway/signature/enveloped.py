"""Whole-document enveloped signatures with the profile of DESIGN §3, for XML that is not edXML.

The hub signs its receipts and status notices this way, and nodes verify them with the same core:
``Reference URI=""`` (the whole document), enveloped-signature then exclusive C14N, SHA-256,
RSA-SHA256 (≥ 2048 bits) or ECDSA-P256-SHA256 chosen by the key, ``X509Data`` with the signing certificate
then its chain, and the ``ds:Signature`` as the last child of the element at ``location`` (the root by
default). Verification runs the same structural checks as packages (:func:`profile.inspect_enveloped`)
and the same direct-C14N engine as :func:`gateway.signature.verify.verify_signature`; trust in the signer
is, as there, the caller's separate decision (:meth:`TrustStore.validate`).

:func:`sign_enveloped` writes the signature directly (exclusive C14N by libxml2, the value by
``cryptography``) instead of through signxml, which costs about 0.7 ms per document, more than verifying
the package a receipt answers. Its output verifies with signxml and with ``xmlsec1`` (tested).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from gateway.edxml.model import DS_NS
from gateway.edxml.xmlparser import DEFAULT_LIMITS, XmlLimits, parse_xml
from gateway.errors import SignatureError
from gateway.signature.profile import ENVELOPED, EXC_C14N, RSA_SHA256, SHA256, inspect_enveloped
from gateway.signature.sign import PrivateKey, _signature_method
from gateway.signature.verify import VerifiedSignature, _verify_c14n, strip_comments

_DS = f"{{{DS_NS}}}"


def _c14n(node: etree._Element) -> bytes:
    return etree.tostring(node, method="c14n", exclusive=True, with_comments=False)


def sign_enveloped(
    xml: bytes | etree._Element,
    *,
    key: PrivateKey,
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
    location: str = "./",
) -> bytes:
    """Sign the whole document (``Reference URI=""``); the signature becomes the last child at ``location``.

    ``xml`` is bytes (parsed with the hardened parser) or a tree, which is then modified in place. The key
    must belong to ``cert`` and be strong enough for the profile (else ``signature.weak_key``).
    """
    return EnvelopedSigner(key=key, cert=cert, chain=chain).sign(xml, location=location)


class EnvelopedSigner:
    """:func:`sign_enveloped` for one identity, checked and encoded once (the key against the certificate,
    the signature method, the certificates' base64), for a signer that signs many documents (the hub)."""

    __slots__ = ("_certificates", "_key", "_method")

    def __init__(
        self, *, key: PrivateKey, cert: x509.Certificate, chain: Sequence[x509.Certificate] = ()
    ) -> None:
        self._key = key
        self._method = _signature_method(key, cert).value
        self._certificates = tuple(
            base64.b64encode(c.public_bytes(Encoding.DER)).decode("ascii") for c in (cert, *chain)
        )

    def sign(self, xml: bytes | etree._Element, *, location: str = "./") -> bytes:
        method, key = self._method, self._key
        root = parse_xml(xml) if isinstance(xml, bytes) else xml
        if next(root.iter(_DS + "Signature"), None) is not None:
            raise SignatureError("signature.multiple", "the document is already signed")
        parent = root if location.strip() in ("./", ".", "") else root.find(location.strip()[2:].rstrip("/"))
        if parent is None:
            raise SignatureError("signature.location", f"no element at {location!r} to hold the signature")
        digest = base64.b64encode(hashlib.sha256(_c14n(root)).digest()).decode("ascii")
        signature = etree.SubElement(parent, _DS + "Signature", nsmap={"ds": DS_NS})
        info = etree.SubElement(signature, _DS + "SignedInfo")
        etree.SubElement(info, _DS + "CanonicalizationMethod", Algorithm=EXC_C14N)
        etree.SubElement(info, _DS + "SignatureMethod", Algorithm=method)
        ref = etree.SubElement(info, _DS + "Reference", URI="")
        transforms = etree.SubElement(ref, _DS + "Transforms")
        etree.SubElement(transforms, _DS + "Transform", Algorithm=ENVELOPED)
        etree.SubElement(transforms, _DS + "Transform", Algorithm=EXC_C14N)
        etree.SubElement(ref, _DS + "DigestMethod", Algorithm=SHA256)
        etree.SubElement(ref, _DS + "DigestValue").text = digest
        signed_info = _c14n(info)
        if method == RSA_SHA256:
            raw = key.sign(signed_info, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[call-arg]
        else:
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            r, s = utils.decode_dss_signature(key.sign(signed_info, ec.ECDSA(hashes.SHA256())))
            raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        etree.SubElement(signature, _DS + "SignatureValue").text = base64.b64encode(raw).decode("ascii")
        data = etree.SubElement(etree.SubElement(signature, _DS + "KeyInfo"), _DS + "X509Data")
        for text in self._certificates:
            etree.SubElement(data, _DS + "X509Certificate").text = text
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def verify_enveloped(
    data: bytes, *, location: str = "./", limits: XmlLimits = DEFAULT_LIMITS
) -> VerifiedSignature:
    """Parse ``data`` and verify its one whole-document signature; raise a GatewayError if it fails.

    The result's ``signed_root`` is what was digested (the document without the Signature and comments);
    read the document from it, never from the input. ``signer`` and ``extra_certs`` go to the trust store.
    """
    root = parse_xml(data, limits=limits)
    strip_comments(root)
    profile = inspect_enveloped(root, location=location)
    signed_root = _verify_c14n(root, profile)
    return VerifiedSignature(
        signed_root=signed_root,
        reference=profile.reference,
        signer=profile.signer,
        extra_certs=profile.extra_certs,
        signature_method=profile.signature_method,
        digest_method=profile.digest_method,
    )
