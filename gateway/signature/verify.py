"""Verify the one enveloped signature of an edXML package (DESIGN §3) and return what it covers.

:func:`verify_signature` parses the bytes with the hardened parser, strips comments (they are not signed
under exclusive C14N, and a comment inside a text node must not be able to shorten what is shown), checks
the signature's structure against the profile (:mod:`gateway.signature.profile`), and only then runs the
cryptography in one of two engines that give the same verdicts:

``c14n`` (the default)
    the profile's operations done directly: exclusive C14N of SignedInfo (libxml2 through lxml) verified
    with ``cryptography``, then the enveloped-signature transform (the Signature node removed) and the
    exclusive C14N of the referenced node streamed into SHA-256. One pass over the tree, no copies: the
    node whose canonical form was digested is what the caller reads.
``signxml``
    signxml's :class:`~signxml.XMLVerifier`, pinned to the profile (location narrowed to edXMLHeader,
    one reference, SHA-256 RSA/ECDSA only, X.509 required, the certificate passed explicitly, our parser).
    It serialises and re-parses the document about six times per verification, which halves throughput
    at every size (docs/signature.md has the figures), so it is the independent cross-check the tests
    run every verdict through, not the production path.

Either way the caller gets :attr:`VerifiedSignature.signed_root`: exactly the node set that was digested
(the document or the envelope, without the Signature and without comments), never anything outside it.
Trust in the signer (chain, time, revocation, agency) is a separate decision: :meth:`TrustStore.validate`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import signxml
from cryptography import x509
from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from lxml import etree
from signxml import SignatureConfiguration, XMLVerifier
from signxml.algorithms import DigestAlgorithm, SignatureMethod

from gateway.edxml.model import NS
from gateway.edxml.xmlparser import DEFAULT_LIMITS, XmlLimits, make_parser, parse_xml
from gateway.errors import InputError, SignatureError
from gateway.signature.profile import (
    ECDSA_SHA256,
    RSA_SHA256,
    Reference,
    SignatureProfile,
    inspect_signature,
)

Engine = Literal["c14n", "signxml"]

DEFAULT_ENGINE: Engine = "c14n"

_ENVELOPE = f"{{{NS}}}edXMLEnvelope"
_ROOT = f"{{{NS}}}edXML"

_SIGNXML_CONFIG = SignatureConfiguration(
    require_x509=True,
    location=f"./{_ENVELOPE}/{{{NS}}}edXMLHeader/",
    expect_references=1,
    signature_methods=frozenset({SignatureMethod.RSA_SHA256, SignatureMethod.ECDSA_SHA256}),
    digest_algorithms=frozenset({DigestAlgorithm.SHA256}),
    ignore_ambiguous_key_info=False,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedSignature:
    """A signature that verified, and what it covers.

    ``signed_root`` is the covered node set: the edXML root (``document``) or the edXMLEnvelope
    (``envelope``), without the Signature and comments; read it as a subtree (the ``c14n`` engine hands
    over the very element it canonicalised, so in ``envelope`` mode its parent is the input root, which is
    not covered). In ``envelope`` mode the inline attachments (``AttachmentEncoded``) are outside what the
    signature covers: ``unsigned_root`` is then the input tree, from which *only* attachments may be read,
    each accepted only if it matches the signed manifest's size and SHA-256
    (:func:`gateway.verification.verify_package` does that). ``None`` in ``document`` mode, where
    everything is in ``signed_root``.
    """

    signed_root: etree._Element
    reference: Reference
    signer: x509.Certificate
    extra_certs: tuple[x509.Certificate, ...]
    signature_method: str
    digest_method: str
    unsigned_root: etree._Element | None = None
    engine: Engine = DEFAULT_ENGINE


def verify_signature(
    data: bytes, *, limits: XmlLimits = DEFAULT_LIMITS, engine: Engine = DEFAULT_ENGINE
) -> VerifiedSignature:
    """Parse ``data``, check its signature against the profile and verify it; raise a GatewayError if not.

    ``engine`` selects the cryptographic engine (see the module docstring); both give the same verdicts.
    """
    root = parse_xml(data, limits=limits)
    return verify_tree(root, limits=limits, engine=engine)


def verify_tree(
    root: etree._Element, *, limits: XmlLimits = DEFAULT_LIMITS, engine: Engine = DEFAULT_ENGINE
) -> VerifiedSignature:
    """:func:`verify_signature` on a tree the caller parsed with :func:`parse_xml` (it is consumed).

    The tree is modified (comments removed; with the ``c14n`` engine the Signature too): do not use it
    afterwards except through the result.
    """
    strip_comments(root)
    profile = inspect_signature(root)
    if engine == "signxml":
        signed_root = _verify_signxml(root, profile, limits)
    else:
        signed_root = _verify_c14n(root, profile)
    _check_covers_package(signed_root, profile)
    return VerifiedSignature(
        signed_root=signed_root,
        reference=profile.reference,
        signer=profile.signer,
        extra_certs=profile.extra_certs,
        signature_method=profile.signature_method,
        digest_method=profile.digest_method,
        unsigned_root=root if profile.reference == "envelope" else None,
        engine=engine,
    )


def strip_comments(root: etree._Element) -> None:
    """Remove every comment, joining the text around it, as exclusive C14N without comments sees it."""
    for comment in list(root.iter(etree.Comment)):
        remove_keeping_tail(comment)


def remove_keeping_tail(node: etree._Element) -> None:
    """Remove ``node`` but keep the text that follows it (lxml stores it on the node as ``tail``)."""
    parent = node.getparent()
    if parent is None:
        return
    tail = node.tail or ""
    previous = node.getprevious()
    if tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(node)


# --- engine 1: signxml ------------------------------------------------------------------------------


def _verify_signxml(root: etree._Element, profile: SignatureProfile, limits: XmlLimits) -> etree._Element:
    # Validity in time is the trust store's decision (at the signing time), so signxml is asked to check
    # the certificate at a moment it is surely valid; it is given the certificate explicitly and never
    # builds or trusts a chain itself.
    config = replace(_SIGNXML_CONFIG, verification_time=profile.signer.not_valid_before_utc)
    try:
        result = XMLVerifier().verify(
            root,
            x509_cert=profile.signer,
            parser=make_parser(limits),
            id_attribute="Id",
            expect_config=config,
        )
    except signxml.exceptions.InvalidDigest as exc:
        raise SignatureError("signature.digest_mismatch", str(exc)) from exc
    except signxml.exceptions.InvalidCertificate as exc:
        raise SignatureError("signature.bad_certificate", str(exc)) from exc
    except (signxml.exceptions.InvalidSignature, CryptoInvalidSignature) as exc:
        raise SignatureError("signature.invalid", str(exc) or "the signature value does not verify") from exc
    except etree.DocumentInvalid as exc:
        raise SignatureError("signature.invalid", f"the Signature is not valid XML-DSig: {exc}") from exc
    except etree.XMLSyntaxError as exc:
        raise InputError("xml.malformed", str(exc)) from exc
    except (signxml.exceptions.SignXMLException, ValueError, TypeError) as exc:
        raise SignatureError("signature.invalid", f"the signature cannot be verified: {exc}") from exc
    if isinstance(result, list) or result.signed_xml is None:
        raise SignatureError("signature.wrapping", "the signed content is not one XML element")
    return result.signed_xml


# --- engine 2: direct exclusive C14N ----------------------------------------------------------------


class _Sha256Sink:
    """A file-like object that hashes what lxml writes to it (C14N output never exists as one string)."""

    __slots__ = ("hash",)

    def __init__(self) -> None:
        self.hash = hashlib.sha256()

    def write(self, chunk: bytes) -> int:
        self.hash.update(chunk)
        return len(chunk)


def _c14n(node: etree._Element, prefixes: Sequence[str] | None) -> bytes:
    return etree.tostring(
        node, method="c14n", exclusive=True, with_comments=False, inclusive_ns_prefixes=prefixes or None
    )


def _verify_c14n(root: etree._Element, profile: SignatureProfile) -> etree._Element:
    """Verify SignatureValue, then the digest of the referenced node; return that node.

    The node is canonicalised in place (the enveloped-signature transform removes the Signature first)
    and its C14N streamed into SHA-256. It is returned as it is, not re-read from its canonical bytes:
    its elements, attributes and text are what the C14N wrote (comments are gone), so a re-parse would
    only copy it.
    """
    signed_info = _c14n(profile.signed_info, profile.signed_info_prefixes)
    _verify_value(profile, signed_info)
    remove_keeping_tail(profile.signature)  # the enveloped-signature transform
    signed_root = root if profile.reference == "document" else profile.envelope
    sink = _Sha256Sink()
    etree.ElementTree(signed_root).write_c14n(
        sink, exclusive=True, with_comments=False, inclusive_ns_prefixes=profile.reference_prefixes
    )
    if not hmac.compare_digest(sink.hash.digest(), profile.digest_value):
        raise SignatureError("signature.digest_mismatch", "the digest of the signed content does not match")
    return signed_root


def _verify_value(profile: SignatureProfile, signed_info: bytes) -> None:
    key = profile.signer.public_key()
    value = profile.signature_value
    try:
        if profile.signature_method == RSA_SHA256 and isinstance(key, rsa.RSAPublicKey):
            key.verify(value, signed_info, padding.PKCS1v15(), hashes.SHA256())
        elif profile.signature_method == ECDSA_SHA256 and isinstance(key, ec.EllipticCurvePublicKey):
            half = (key.curve.key_size + 7) // 8
            if len(value) != 2 * half:
                raise SignatureError(
                    "signature.invalid",
                    f"an ECDSA P-256 SignatureValue has {2 * half} bytes, not {len(value)}",
                )
            r, s = int.from_bytes(value[:half], "big"), int.from_bytes(value[half:], "big")
            key.verify(utils.encode_dss_signature(r, s), signed_info, ec.ECDSA(hashes.SHA256()))
        else:  # pragma: no cover - the profile check matched method and key already
            raise SignatureError("signature.algorithm", "the signature method does not fit the key")
    except CryptoInvalidSignature as exc:
        raise SignatureError("signature.invalid", "the signature value does not verify") from exc


# --- after either engine ----------------------------------------------------------------------------


def _check_covers_package(signed_root: etree._Element, profile: SignatureProfile) -> None:
    """What was verified must be the package's own content, in the place the profile says."""
    if profile.reference == "document":
        ok = signed_root.tag == _ROOT and next(signed_root.iterchildren(_ENVELOPE), None) is not None
    else:
        ok = signed_root.tag == _ENVELOPE and signed_root.get("Id") == profile.envelope_id
    if not ok:
        raise SignatureError("signature.wrapping", "the signed content is not the package's content")
