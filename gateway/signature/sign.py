"""Sign edXML packages with the profile of DESIGN §3, using signxml.

Enveloped XML-DSig; exclusive C14N for SignedInfo and as the transform after enveloped-signature;
RSA-SHA256 (RSA ≥ 2048) or ECDSA-P256-SHA256 chosen by the key; SHA-256 digest; ``KeyInfo/X509Data``
with the signing certificate first, then the intermediates given. The ``ds:Signature`` is the last child
of ``edXMLHeader`` (where the builder puts its placeholder).

Two reference modes (docs/signature.md):

``document``
    ``Reference URI=""``: the standard single-file form; the signature covers everything, inline
    attachments included.
``envelope``
    ``Reference URI="#<Id of edXMLEnvelope>"``: the signature covers header and manifest, and through the
    manifest's size and SHA-256 of every attachment (gateway extension) the attachments themselves. The
    attachments can then travel inline *or* as raw multipart parts without breaking the signature.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from lxml import etree
from signxml import XMLSigner
from signxml.algorithms import (
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureConstructionMethod,
    SignatureMethod,
)

from gateway.edxml.build import build
from gateway.edxml.model import DS_NS, NS, DocumentPackage, ManifestReference, Message
from gateway.edxml.multipart import normalize_content_id
from gateway.edxml.xmlparser import DEFAULT_LIMITS, XmlLimits, make_parser, parse_xml
from gateway.errors import PackageError, SignatureError
from gateway.signature.profile import MIN_RSA_BITS, Reference

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

DEFAULT_ENVELOPE_ID = "edXMLEnvelope-1"
"""The Id :func:`sign_message` gives the envelope in ``envelope`` mode when the caller names none."""

_HEADER_PATH = f"{{{NS}}}edXMLEnvelope/{{{NS}}}edXMLHeader"
_SIGNATURE = f"{{{DS_NS}}}Signature"


class _Signer(XMLSigner):
    """signxml's signer with our parser: its own refuses the text nodes of large inline attachments."""

    def __init__(self, *, parser: etree.XMLParser, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._gateway_parser = parser

    @property
    def parser(self) -> etree.XMLParser:
        return self._gateway_parser


def sign_message(
    msg: Message,
    *,
    key: PrivateKey,
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
    reference: Reference = "document",
    envelope_id: str | None = None,
) -> bytes:
    """Build ``msg`` with the builder and sign it; in ``envelope`` mode fill the manifest digests first."""
    if reference == "envelope":
        envelope_id = envelope_id or DEFAULT_ENVELOPE_ID
        if isinstance(msg, DocumentPackage):
            msg = with_manifest_digests(msg)
    xml = build(msg, signature_placeholder=True, envelope_id=envelope_id)
    return sign_xml(xml, key=key, cert=cert, chain=chain, reference=reference)


def with_manifest_digests(msg: DocumentPackage) -> DocumentPackage:
    """``msg`` with every manifest Reference's size and SHA-256 taken from its inline attachment.

    A Reference that already carries them must agree with the attachment (``edxml.attachment_digest``);
    one without them needs its attachment inline (``edxml.attachment_missing``); an attachment the
    manifest does not list cannot be covered (``edxml.attachment_unlisted``).
    """
    inline: dict[str, bytes] = {}
    for att in msg.attachments:
        cid = normalize_content_id(att.content_id)
        if cid in inline:
            raise PackageError("edxml.attachment_duplicate", f"attachment {att.content_id!r} appears twice")
        inline[cid] = att.data
    listed = {normalize_content_id(ref.content_id) for ref in msg.manifest}
    unlisted = sorted(set(inline) - listed)
    if unlisted:
        raise PackageError("edxml.attachment_unlisted", f"attachment {unlisted[0]!r} is not in the manifest")
    refs: list[ManifestReference] = []
    for ref in msg.manifest:
        data = inline.get(normalize_content_id(ref.content_id))
        if data is None:
            if ref.size is None or ref.sha256 is None:
                raise PackageError(
                    "edxml.attachment_missing",
                    f"{ref.content_id}: no attachment to measure size and SHA-256 of",
                )
            refs.append(ref)
            continue
        size, sha256 = len(data), hashlib.sha256(data).hexdigest()
        if (ref.size is not None and ref.size != size) or (
            ref.sha256 is not None and ref.sha256.lower() != sha256
        ):
            raise PackageError(
                "edxml.attachment_digest", f"{ref.content_id}: the manifest disagrees with the bytes"
            )
        refs.append(dataclasses.replace(ref, size=size, sha256=sha256))
    return dataclasses.replace(msg, manifest=tuple(refs))


def sign_xml(
    xml_with_placeholder: bytes,
    *,
    key: PrivateKey,
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
    reference: Reference = "document",
    limits: XmlLimits = DEFAULT_LIMITS,
) -> bytes:
    """Sign an edXML document; the signature replaces ``<ds:Signature Id="placeholder"/>`` in edXMLHeader.

    Without a placeholder the signature is appended to edXMLHeader. In ``envelope`` mode the edXMLEnvelope
    must carry an ``Id`` attribute.
    """
    method = _signature_method(key, cert)
    root = parse_xml(xml_with_placeholder, limits=limits)
    header = root.find(_HEADER_PATH)
    if header is None:
        raise PackageError("edxml.missing_element", "edXMLEnvelope/edXMLHeader")
    signatures = list(root.iter(_SIGNATURE))
    placeholders = [s for s in signatures if s.get("Id") == "placeholder" and len(s) == 0]
    if len(signatures) != len(placeholders) or len(placeholders) > 1:
        raise SignatureError("signature.multiple", "the document is already signed")
    if not placeholders:
        etree.SubElement(header, _SIGNATURE, Id="placeholder", nsmap={"ds": DS_NS})
    elif placeholders[0].getparent() is not header or any(
        isinstance(el.tag, str) for el in placeholders[0].itersiblings()
    ):
        raise SignatureError("signature.location", "the placeholder must be the last child of edXMLHeader")
    if reference == "envelope":
        envelope_id = root.find(f"{{{NS}}}edXMLEnvelope").get("Id")  # type: ignore[union-attr]
        if not envelope_id:
            raise PackageError("edxml.missing_element", "envelope mode needs an Id on edXMLEnvelope")
        reference_uri: str | None = f"#{envelope_id}"
    else:
        if any(root.get(name) is not None for name in ("Id", "ID")):
            raise PackageError("edxml.unexpected_element", "the edXML root must not carry an Id")
        reference_uri = None  # signxml then writes URI="" for the whole document
    signer = _Signer(
        parser=make_parser(limits),
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm=method,
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    signed = signer.sign(root, key=key, cert=[cert, *chain], reference_uri=reference_uri, id_attribute="Id")
    return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")


def _signature_method(key: PrivateKey, cert: x509.Certificate) -> SignatureMethod:
    """The profile's method for ``key``; the key must be strong enough and belong to ``cert``."""
    spki = PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(Encoding.DER, spki) != cert.public_key().public_bytes(
        Encoding.DER, spki
    ):
        raise ValueError("the private key does not belong to the certificate")
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise SignatureError("signature.weak_key", f"RSA key of {key.key_size} bits; at least 2048")
        return SignatureMethod.RSA_SHA256
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise SignatureError("signature.weak_key", f"EC curve {key.curve.name}; only P-256 is accepted")
        return SignatureMethod.ECDSA_SHA256
    raise SignatureError("signature.algorithm", f"a {type(key).__name__} cannot sign in this profile")
