"""The signature profile of DESIGN §3, checked on the *untrusted* tree before any cryptography runs.

:func:`inspect_signature` reads the structure of the one ``ds:Signature`` of a package and either rejects
it with a precise code or returns a :class:`SignatureProfile`: where the signature is, what it references,
which algorithms it names and which certificates it carries. Only then does a verification engine
(:mod:`gateway.signature.verify`) do the cryptography, on a structure it can no longer be surprised by.

Checks run in a fixed order and the first failure decides the verdict (docs/signature.md, "Precedence"):

1. presence: ``signature.missing``, ``signature.wrong_namespace``, ``signature.multiple``;
2. place: ``signature.location`` (last element child of the root's one edXMLEnvelope/edXMLHeader),
   ``signature.wrapping`` (two envelopes or headers);
3. algorithms, the worst one named anywhere in SignedInfo: ``signature.hmac`` > ``signature.md5`` >
   ``signature.sha1`` > ``signature.algorithm``;
4. ``signature.canonicalization`` (SignedInfo must use exclusive C14N without comments);
5. ``signature.reference_count`` (exactly one Reference);
6. ``signature.reference`` / ``signature.wrapping`` (URI ``""`` or ``#<Id of the real envelope>``, Ids
   unique in the whole document);
7. ``signature.transform`` (exactly enveloped-signature then exclusive C14N; a canonicalization transform
   other than exclusive C14N is ``signature.canonicalization``);
8. key information: ``signature.key_value_only``, ``signature.no_certificate``,
   ``signature.bad_certificate``, ``signature.weak_key``, ``signature.algorithm`` (key type does not fit
   the signature method);
9. value syntax: ``signature.invalid`` (SignatureValue or DigestValue not base64).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Literal

import pybase64
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from lxml import etree

from gateway.edxml.model import DS_NS, NS
from gateway.errors import PackageError, SignatureError

Reference = Literal["document", "envelope"]
"""What the one Reference covers: the whole document (``URI=""``) or the edXMLEnvelope (``URI="#Id"``)."""

DSIG11_NS = "http://www.w3.org/2009/xmldsig11#"
EXC_C14N_NS = "http://www.w3.org/2001/10/xml-exc-c14n#"

RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"

SIGNATURE_METHODS = frozenset({RSA_SHA256, ECDSA_SHA256})
DIGEST_METHODS = frozenset({SHA256})
MIN_RSA_BITS = 2048

_C14N_FAMILY = frozenset(
    {
        "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
        "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments",
        "http://www.w3.org/2006/12/xml-c14n11",
        "http://www.w3.org/2006/12/xml-c14n11#WithComments",
        "http://www.w3.org/2001/10/xml-exc-c14n#",
        "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
        "http://www.w3.org/2010/xml-c14n2",
    }
)
# Worst first: the verdict names the most serious departure from the profile.
_ALGORITHM_SEVERITY = ("signature.hmac", "signature.md5", "signature.sha1", "signature.algorithm")
_WS = b" \t\n\r\f\v"  # what a bytes regex calls \s

_ENVELOPE = f"{{{NS}}}edXMLEnvelope"
_HEADER = f"{{{NS}}}edXMLHeader"
_ROOT = f"{{{NS}}}edXML"
_DER_KEY_VALUE = f"{{{DSIG11_NS}}}DEREncodedKeyValue"

# Every Id-like attribute (Id, ID, id in any namespace, xml:id), found by libxml2 in one walk; compiled
# once (lxml serialises calls to one XPath object, so sharing it between threads is safe).
# (The length test first spares most attributes the three comparisons.)
_ID_ATTRIBUTES = etree.XPath(
    "descendant-or-self::*/@*[string-length(local-name()) = 2]"
    "[local-name()='Id' or local-name()='ID' or local-name()='id']"
)


@cache
def _ds(name: str) -> str:
    return f"{{{DS_NS}}}{name}"


class _Children:
    """The element children of one node grouped by tag, from one pass over them.

    The profile asks each Signature node for several children by name; one pass is cheaper than a
    ``findall`` (lxml's Python ElementPath) per name, and says the same: ``all`` keeps document order.
    """

    __slots__ = ("by_tag", "first", "parent")

    def __init__(self, parent: etree._Element) -> None:
        self.parent = parent
        self.first: etree._Element | None = None
        by_tag: dict[str, list[etree._Element]] = {}
        for el in parent:
            tag = el.tag
            if isinstance(tag, str):
                if self.first is None:
                    self.first = el
                if tag in by_tag:
                    by_tag[tag].append(el)
                else:
                    by_tag[tag] = [el]
        self.by_tag = by_tag

    def all(self, tag: str) -> list[etree._Element]:
        return self.by_tag.get(tag, [])

    def find(self, tag: str) -> etree._Element | None:
        """The first child with this tag, like ``Element.find``."""
        found = self.by_tag.get(tag)
        return found[0] if found else None

    def one(self, name: str, *, first: bool = False) -> etree._Element:
        """The one ds:<name> child; with ``first`` it must also be the first element child."""
        found = self.all(_ds(name))
        if len(found) != 1:
            raise SignatureError(
                "signature.invalid", f"{etree.QName(self.parent).localname} has {len(found)} {name} elements"
            )
        if first and self.first is not found[0]:
            raise SignatureError(
                "signature.invalid", f"{name} must come first in {etree.QName(self.parent).localname}"
            )
        return found[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class SignatureProfile:
    """What the untrusted Signature says, once it passed every structural check of the profile."""

    signature: etree._Element
    signed_info: etree._Element
    reference: Reference
    envelope: etree._Element
    envelope_id: str | None
    signature_method: str
    digest_method: str
    digest_value: bytes
    signature_value: bytes
    signed_info_prefixes: tuple[str, ...] | None
    reference_prefixes: tuple[str, ...] | None
    signer: x509.Certificate
    extra_certs: tuple[x509.Certificate, ...]


def inspect_signature(root: etree._Element) -> SignatureProfile:
    """Check the package's signature structure against the profile; raise the first violation found."""
    if root.tag != _ROOT:
        raise PackageError("edxml.not_edxml", f"the root element is {root.tag}, not edXML")
    signature = _the_signature(root)
    envelope = _locate(root, signature)
    return _inspect(root, signature, envelope, lambda uri: _check_reference(root, envelope, uri))


def inspect_enveloped(root: etree._Element, *, location: str = "./") -> SignatureProfile:
    """The same profile for any XML document signed as a whole (``Reference URI=""``), such as the hub's
    receipts: one ``ds:Signature``, the last element child of the element at ``location`` (a path relative
    to the root, ``"./"`` for the root itself, like signxml's ``location``), and the same checks of
    algorithms, canonicalization, transforms, certificates and keys in the same order."""
    signature = _the_signature(root)
    parent = _at(root, location)
    if parent is None or signature.getparent() is not parent:
        where = signature.getparent()
        name = "the document root" if where is None else etree.QName(where).localname
        raise SignatureError("signature.location", f"the signature sits in {name}, not at {location!r}")
    following = next((el for el in signature.itersiblings() if isinstance(el.tag, str)), None)
    if following is not None:
        raise SignatureError(
            "signature.location",
            f"the signature is followed by {etree.QName(following).localname}; it must come last",
        )
    return _inspect(root, signature, root, lambda uri: _check_whole_document(root, uri))


def _at(root: etree._Element, location: str) -> etree._Element | None:
    path = location.strip()
    path = path[2:] if path.startswith("./") else path
    path = path.rstrip("/")
    return root if path in ("", ".") else root.find(path)


def _check_whole_document(root: etree._Element, uri: str | None) -> tuple[Reference, str | None]:
    ids = _ids(root)
    duplicated = sorted(value for value, owners in ids.items() if len(owners) > 1)
    if duplicated:
        raise SignatureError("signature.wrapping", f"Id {duplicated[0]!r} is used more than once")
    if uri != "":
        raise SignatureError("signature.reference", f"Reference URI {uri!r}; this profile takes ''")
    return "document", None


def _inspect(
    root: etree._Element,
    signature: etree._Element,
    envelope: etree._Element,
    check_reference: Callable[[str | None], tuple[Reference, str | None]],
) -> SignatureProfile:
    """Steps 3–9 of the module docstring, shared by packages and whole-document signatures."""
    in_signature = _Children(signature)
    signed_info = in_signature.one("SignedInfo", first=True)
    signature_value = in_signature.one("SignatureValue")
    in_signed_info = _Children(signed_info)
    c14n_method = in_signed_info.one("CanonicalizationMethod", first=True)
    signature_method = _algorithm(in_signed_info.one("SignatureMethod"), what="SignatureMethod")
    references = [_Children(r) for r in in_signed_info.all(_ds("Reference"))]
    digest_methods = [_digest_method(r) for r in references]
    _check_algorithms(signature_method, digest_methods)
    _check_c14n(c14n_method.get("Algorithm"), where="SignedInfo CanonicalizationMethod")
    if len(references) != 1:
        raise SignatureError(
            "signature.reference_count", f"{len(references)} references; the profile takes exactly one"
        )
    ref = references[0]
    mode, envelope_id = check_reference(ref.parent.get("URI"))
    reference_prefixes = _check_transforms(ref)
    key_info = in_signature.find(_ds("KeyInfo"))
    in_key_info = _Children(key_info) if key_info is not None else None
    signer, extra = _certificates(in_key_info)
    assert in_key_info is not None  # _certificates refuses a signature without KeyInfo
    _check_key(signer, signature_method)
    _check_key_value(in_key_info, signer)
    return SignatureProfile(
        signature=signature,
        signed_info=signed_info,
        reference=mode,
        envelope=envelope,
        envelope_id=envelope_id,
        signature_method=signature_method,
        digest_method=digest_methods[0],
        digest_value=_b64(ref.one("DigestValue").text, what="DigestValue"),
        signature_value=_b64(signature_value.text, what="SignatureValue"),
        signed_info_prefixes=_prefix_list(c14n_method),
        reference_prefixes=reference_prefixes,
        signer=signer,
        extra_certs=extra,
    )


# --- presence and place -----------------------------------------------------------------------------


def _the_signature(root: etree._Element) -> etree._Element:
    found = list(root.iter(_ds("Signature")))
    if len(found) > 1:
        raise SignatureError(
            "signature.multiple", f"{len(found)} ds:Signature elements; the profile takes one"
        )
    if found:
        return found[0]
    strays = [el for el in root.iter("{*}Signature", "Signature") if el.tag != _ds("Signature")]
    if strays:
        ns = etree.QName(strays[0]).namespace
        raise SignatureError(
            "signature.wrong_namespace",
            f"a Signature element in namespace {ns or '(none)'!s}, not {DS_NS}",
        )
    raise SignatureError("signature.missing")


def _locate(root: etree._Element, signature: etree._Element) -> etree._Element:
    """The real envelope; the signature must be the last element child of its one edXMLHeader."""
    envelopes = list(root.iterchildren(_ENVELOPE))
    if len(envelopes) != 1:
        if not envelopes:
            raise PackageError("edxml.missing_element", "edXMLEnvelope")
        raise SignatureError("signature.wrapping", f"{len(envelopes)} edXMLEnvelope elements under the root")
    envelope = envelopes[0]
    headers = list(envelope.iterchildren(_HEADER))
    if len(headers) > 1:
        raise SignatureError("signature.wrapping", f"{len(headers)} edXMLHeader elements in the envelope")
    parent = signature.getparent()
    if not headers or parent is not headers[0]:
        where = "the document root" if parent is None else etree.QName(parent).localname
        raise SignatureError("signature.location", f"the signature sits in {where}, not in edXMLHeader")
    following = next((el for el in signature.itersiblings() if isinstance(el.tag, str)), None)
    if following is not None:
        raise SignatureError(
            "signature.location",
            f"the signature is followed by {etree.QName(following).localname}; it must close edXMLHeader",
        )
    return envelope


# --- algorithms ---------------------------------------------------------------------------------------


def _algorithm(element: etree._Element, *, what: str) -> str:
    uri = element.get("Algorithm")
    if not uri:
        raise SignatureError("signature.algorithm", f"{what} names no Algorithm")
    return uri


def _digest_method(reference: _Children) -> str:
    return _algorithm(reference.one("DigestMethod"), what="DigestMethod")


def _classify(uri: str, allowed: frozenset[str]) -> str | None:
    lower = uri.lower()
    if "hmac" in lower:
        return "signature.hmac"
    if "md5" in lower:
        return "signature.md5"
    if "sha1" in lower:
        return "signature.sha1"
    if uri not in allowed:
        return "signature.algorithm"
    return None


def _check_algorithms(signature_method: str, digest_methods: list[str]) -> None:
    named = [(signature_method, _classify(signature_method, SIGNATURE_METHODS))]
    named += [(uri, _classify(uri, DIGEST_METHODS)) for uri in digest_methods]
    for code in _ALGORITHM_SEVERITY:
        bad = [uri for uri, verdict in named if verdict == code]
        if bad:
            raise SignatureError(code, f"algorithm {bad[0]} is not accepted")


def _check_c14n(uri: str | None, *, where: str) -> None:
    if uri != EXC_C14N:
        raise SignatureError("signature.canonicalization", f"{where} is {uri}; the profile takes {EXC_C14N}")


def _prefix_list(method: etree._Element) -> tuple[str, ...] | None:
    """The InclusiveNamespaces PrefixList of an exclusive C14N element, if any; nothing else may be inside."""
    children = [el for el in method if isinstance(el.tag, str)]
    if not children:
        return None
    if len(children) != 1 or children[0].tag != f"{{{EXC_C14N_NS}}}InclusiveNamespaces":
        raise SignatureError("signature.transform", "only InclusiveNamespaces may parametrise exclusive C14N")
    return tuple(children[0].get("PrefixList", "").split())


# --- reference and wrapping -------------------------------------------------------------------------


def _check_reference(
    root: etree._Element, envelope: etree._Element, uri: str | None
) -> tuple[Reference, str | None]:
    ids = _ids(root)
    duplicated = sorted(value for value, owners in ids.items() if len(owners) > 1)
    if duplicated:
        raise SignatureError("signature.wrapping", f"Id {duplicated[0]!r} is used more than once")
    if uri == "":
        return "document", None
    if uri is None or not uri.startswith("#") or uri.startswith("#xpointer(") or len(uri) < 2:
        raise SignatureError(
            "signature.reference", f"Reference URI {uri!r}; the profile takes '' or '#<envelope Id>'"
        )
    target = uri[1:]
    owners = ids.get(target, [])
    if not owners:
        raise SignatureError("signature.reference", f"Reference URI {uri!r} names no element of the package")
    owner = owners[0]
    if owner is envelope and envelope.get("Id") == target:
        return "envelope", target
    if owner.tag == _ENVELOPE or owner.find(f".//{_ENVELOPE}") is not None:
        raise SignatureError(
            "signature.wrapping", f"Reference URI {uri!r} names an envelope that is not the package's"
        )
    raise SignatureError(
        "signature.reference",
        f"Reference URI {uri!r} names {etree.QName(owner).localname}, not the package's edXMLEnvelope",
    )


def _ids(root: etree._Element) -> dict[str, list[etree._Element]]:
    """Every Id-like attribute (Id, ID, id in any namespace, xml:id) by value, as resolvers would see them.

    An element with two of them (``Id`` and ``id``) is listed once per attribute, in document order.
    """
    found: dict[str, list[etree._Element]] = {}
    for attribute in _ID_ATTRIBUTES(root):
        value = str(attribute)
        if value in found:
            found[value].append(attribute.getparent())
        else:
            found[value] = [attribute.getparent()]
    return found


def _check_transforms(reference: _Children) -> tuple[str, ...] | None:
    transforms_el = reference.find(_ds("Transforms"))
    transforms = [] if transforms_el is None else [t for t in transforms_el if isinstance(t.tag, str)]
    uris = [t.get("Algorithm") for t in transforms]
    for uri in uris:
        if uri in _C14N_FAMILY and uri != EXC_C14N:
            _check_c14n(uri, where="the Reference transform")
    if uris != [ENVELOPED, EXC_C14N] or any(t.tag != _ds("Transform") for t in transforms):
        raise SignatureError(
            "signature.transform",
            f"transforms {uris}; the profile takes exactly [{ENVELOPED}, {EXC_C14N}]",
        )
    if any(isinstance(el.tag, str) for el in transforms[0]):
        raise SignatureError("signature.transform", "the enveloped-signature transform takes no parameters")
    return _prefix_list(transforms[1])


# --- keys and certificates --------------------------------------------------------------------------


def _certificates(key_info: _Children | None) -> tuple[x509.Certificate, tuple[x509.Certificate, ...]]:
    if key_info is None:
        raise SignatureError("signature.no_certificate", "the signature has no KeyInfo")
    x509_data = key_info.all(_ds("X509Data"))
    if not x509_data:
        if key_info.all(_ds("KeyValue")) or key_info.all(_DER_KEY_VALUE):
            raise SignatureError("signature.key_value_only")
        raise SignatureError("signature.no_certificate", "KeyInfo has no X509Data")
    texts = [el.text or "" for data in x509_data for el in data.iterchildren(_ds("X509Certificate"))]
    if not texts:
        raise SignatureError("signature.no_certificate", "X509Data has no X509Certificate")
    certs: list[_Cert] = []
    for index, text in enumerate(texts):
        try:
            certs.append(_load_certificate(text))
        except UNREADABLE_CERTIFICATE as exc:
            raise SignatureError(
                "signature.bad_certificate", f"X509Certificate #{index + 1} is not a DER certificate: {exc}"
            ) from exc
    signer = _leaf(certs)
    return signer.cert, tuple(c.cert for c in certs if c is not signer)


@dataclass(frozen=True, slots=True)
class _Cert:
    cert: x509.Certificate
    subject: bytes
    issuer: bytes


UNREADABLE_CERTIFICATE: tuple[type[Exception], ...] = (
    ValueError,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)
"""What cryptography raises for a certificate it cannot read; only some of them are ValueErrors."""


@lru_cache(maxsize=1024)
def _load_certificate(text: str) -> _Cert:
    """Decode and parse an ``X509Certificate`` once: agencies send the same few certificates with every
    package.

    Keyed by the exact text (whitespace included), so a cached entry is the same immutable value a fresh
    decode and parse would give; what fails is not cached and fails again.
    """
    der = _b64(text, what="X509Certificate", code="signature.bad_certificate")
    cert = x509.load_der_x509_certificate(der)
    # cryptography parses extensions lazily: a malformed one must raise ValueError here (bad_certificate),
    # not later inside the trust store (found by fuzzing).
    cert.extensions  # noqa: B018
    return _Cert(cert=cert, subject=cert.subject.public_bytes(), issuer=cert.issuer.public_bytes())


def _leaf(certs: list[_Cert]) -> _Cert:
    """The signing certificate: the first that issued none of the others (X509Data order is free)."""
    if len(certs) == 1:
        return certs[0]
    for cert in certs:
        issued_other = any(
            other is not cert and other.issuer == cert.subject and other.subject != other.issuer
            for other in certs
        )
        if not issued_other:
            return cert
    return certs[0]


def _check_key(cert: x509.Certificate, signature_method: str) -> None:
    try:
        key = cert.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # a key of an unknown or malformed type
        raise SignatureError(
            "signature.bad_certificate", f"the certificate's key cannot be read: {exc}"
        ) from exc
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise SignatureError("signature.weak_key", f"RSA key of {key.key_size} bits; at least 2048")
        expected = RSA_SHA256
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise SignatureError("signature.weak_key", f"EC curve {key.curve.name}; only P-256 is accepted")
        expected = ECDSA_SHA256
    else:
        raise SignatureError("signature.algorithm", f"a {type(key).__name__} key is outside the profile")
    if signature_method != expected:
        raise SignatureError(
            "signature.algorithm", f"signature method {signature_method} does not fit the certificate's key"
        )


def _check_key_value(key_info: _Children, signer: x509.Certificate) -> None:
    """A KeyValue next to X509Data is ambiguous; it is tolerated only when it is the certificate's key."""
    for key_value in key_info.all(_ds("KeyValue")):
        if not _key_value_matches(key_value, signer.public_key()):
            raise SignatureError("signature.invalid", "KeyValue names another key than the certificate")
    for der in key_info.all(_DER_KEY_VALUE):
        spki = signer.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        if _b64(der.text, what="DEREncodedKeyValue") != spki:
            raise SignatureError(
                "signature.invalid", "DEREncodedKeyValue names another key than the certificate"
            )


def _key_value_matches(key_value: etree._Element, key: object) -> bool:
    rsa_value = key_value.find(_ds("RSAKeyValue"))
    if rsa_value is not None and isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        modulus, exponent = rsa_value.find(_ds("Modulus")), rsa_value.find(_ds("Exponent"))
        if modulus is None or exponent is None:
            return False
        return (
            int.from_bytes(_b64(modulus.text, what="Modulus"), "big") == numbers.n
            and int.from_bytes(_b64(exponent.text, what="Exponent"), "big") == numbers.e
        )
    ec_value = key_value.find(f"{{{DSIG11_NS}}}ECKeyValue")
    if ec_value is not None and isinstance(key, ec.EllipticCurvePublicKey):
        point = ec_value.find(f"{{{DSIG11_NS}}}PublicKey")
        expected = key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        return point is not None and _b64(point.text, what="PublicKey") == expected
    return False


def _b64(text: str | None, *, what: str, code: str = "signature.invalid") -> bytes:
    """Strict base64, whitespace ignored. pybase64 decodes (about twice as fast on certificates); what it
    refuses, the standard library decides, so the accepted set stays exactly the standard library's
    (which, unlike pybase64, tolerates excess ``=`` after the last group)."""
    raw = (text or "").encode("ascii", "replace").translate(None, _WS)
    try:
        value = pybase64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        try:
            value = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SignatureError(code, f"{what} is not valid base64") from exc
    if not value:
        raise SignatureError(code, f"{what} is empty")
    return value
