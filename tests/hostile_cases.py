"""The hostile input corpus: every case is a request body, who sends it, and the problem the hub must answer.

Two sources:

* ``tests/hostile/xml/*.xml``, byte-exact attack files (XXE, entity expansion, DTDs, XInclude, PIs,
  encodings, malformed XML) with their expected answers in ``tests/hostile/expected.toml``;
* the generators below, which need the test PKI: each builds a *validly signed* package with the real
  signer (:mod:`gateway.signature.sign`) and then attacks it, re-signing correctly with
  :func:`signature_helpers.resign` where the attack must survive the cryptography so that only the
  profile, the trust store or the carriage rules can stop it.

The corpus is run against the real hub over mutual TLS by ``tests/test_hostile_corpus.py``; the unit-level
tests of the same checks are ``tests/test_edxml_xmlparser.py``, ``tests/test_signature_attacks.py``,
``tests/test_multipart_reader.py`` and ``tests/test_trust_store.py``.
"""

from __future__ import annotations

import base64
import copy
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hub_helpers import DEPARTMENT, FINANCE, MINISTRY, PROVINCE, UNLISTED, document, sign
from hub_helpers import status as status_for
from lxml import etree
from pki_fixtures import PkiSet
from signature_helpers import DS, E, dump, resign, set_certificates, signature_of, tree

from gateway.edxml.build import build
from gateway.edxml.model import EXT_NS
from gateway.edxml.multipart import to_multipart

HOSTILE = Path(__file__).parent / "hostile"
EDXML = "application/edxml+xml"
BOUNDARY = "edxml-hostile-0123456789"
MULTIPART = f'multipart/related; type="{EDXML}"; boundary="{BOUNDARY}"; start="<edxml>"'
ATTACHMENT = b"%PDF-1.7\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"
GX = f"{{{EXT_NS}}}"


@dataclass(frozen=True, kw_only=True)
class Case:
    """One hostile request and the answer it must get (and, implicitly: nothing stored, hub still up)."""

    name: str
    klass: str
    body: bytes
    status: int
    code: str
    who: str = PROVINCE
    content_type: str = EDXML
    path: str = "/v1/packages"


# --- files ------------------------------------------------------------------------------------------


def file_cases() -> list[Case]:
    expected = tomllib.loads((HOSTILE / "expected.toml").read_text(encoding="utf-8"))
    files = sorted(p.name for p in (HOSTILE / "xml").glob("*.xml"))
    if sorted(expected) != files:
        raise AssertionError(f"expected.toml and xml/ disagree: {sorted(set(files) ^ set(expected))}")
    return [
        Case(
            name=f"file:{name}",
            klass="xml",
            body=(HOSTILE / "xml" / name).read_bytes(),
            status=expected[name]["status"],
            code=expected[name]["code"],
        )
        for name in files
    ]


def generated_xml_cases() -> list[Case]:
    """XML attacks too large or too repetitive to keep as files."""
    ns = b"http://www.mic.gov.vn/TBT/QCVN_102_2016"
    quadratic = (
        b'<!DOCTYPE edXML [<!ENTITY x "'
        + b"x" * 50_000
        + b'">]><edXML xmlns="'
        + ns
        + b'">'
        + b"&x;" * 5_000
        + b"</edXML>"
    )
    return [
        Case(name="quadratic-blowup", klass="xml", body=quadratic, status=400, code="xml.entity_forbidden"),
        Case(
            name="deep-nesting-10000",
            klass="xml",
            body=b"<a>" * 10_000 + b"</a>" * 10_000,
            status=400,
            code="xml.too_deep",
        ),
        Case(
            name="deep-nesting-inside-a-signed-package",
            klass="xml",
            body=_deep_subject(),
            status=400,
            code="xml.too_deep",
        ),
        Case(
            name="many-attributes-in-one-element",
            klass="xml",
            body=b"<edXML " + b" ".join(b'a%d="x"' % i for i in range(20_000)) + b"/>",
            status=422,
            code="edxml.not_edxml",
        ),
    ]


def _deep_subject() -> bytes:
    data = build(document())
    return data.replace(b"<edXML:Subject>", b"<edXML:Subject>" + b"<b>" * 80 + b"</b>" * 80, 1)


# --- signature profile and wrapping ------------------------------------------------------------------


class Signed:
    """Fresh signed packages by the province (RSA-2048), as trees, in both reference modes."""

    def __init__(self, pki: PkiSet) -> None:
        self.pki = pki
        self.key = pki.agencies[PROVINCE].key

    def tree(self, reference: str = "document", *, attachment: bytes | None = ATTACHMENT) -> etree._Element:
        return tree(self.bytes(reference, attachment=attachment))

    def bytes(self, reference: str = "document", *, attachment: bytes | None = ATTACHMENT) -> bytes:
        return sign(document(attachment=attachment), self.pki.agencies[PROVINCE], reference=reference)


def _envelope(root: etree._Element) -> etree._Element:
    found = root.find(f"{E}edXMLEnvelope")
    assert found is not None
    return found


def _unsign(node: etree._Element) -> etree._Element:
    sig = signature_of(node)
    sig.getparent().remove(sig)
    return node


def _forge_subject(envelope: etree._Element) -> None:
    envelope.find(f".//{E}Subject").text = "Chuyển ngay 5 tỷ đồng vào tài khoản sau"


def signature_cases(pki: PkiSet) -> list[Case]:
    s = Signed(pki)
    cases: list[tuple[str, str, bytes, str]] = []  # (class, name, body, code)

    def add(klass: str, name: str, body: bytes | etree._Element, code: str) -> None:
        cases.append((klass, name, dump(body) if isinstance(body, etree._Element) else body, code))

    # presence and place
    add("signature", "unsigned", build(document()), "signature.missing")
    root = s.tree()
    signature_of(root).tag = f"{E}Signature"
    add("signature", "signature-in-edxml-namespace", root, "signature.wrong_namespace")
    root = s.tree()
    _envelope(root).find(f"{E}edXMLBody").append(copy.deepcopy(signature_of(root)))
    add("signature", "two-signatures", root, "signature.multiple")
    for where in ("root", "body", "not-last"):
        root = s.tree()
        sig = signature_of(root)
        if where == "root":
            root.append(sig)
        elif where == "body":
            _envelope(root).find(f"{E}edXMLBody").append(sig)
        else:
            sig.addnext(etree.Element(f"{E}Extra"))
        add("signature", f"signature-out-of-place-{where}", root, "signature.location")

    # algorithm downgrade, re-signed correctly with the forbidden choice
    for sig_alg, digest, code in (
        ("rsa-sha1", "sha1", "signature.sha1"),
        ("rsa-sha256", "sha1", "signature.sha1"),
        ("rsa-sha1", "sha256", "signature.sha1"),
        ("rsa-md5", "md5", "signature.md5"),
        ("rsa-sha256", "md5", "signature.md5"),
        ("hmac-sha256", "sha256", "signature.hmac"),
        ("hmac-sha256", "md5", "signature.hmac"),
        ("rsa-sha512", "sha512", "signature.algorithm"),
        ("rsa-sha256", "sha512", "signature.algorithm"),
    ):
        add(
            "algorithm",
            f"{sig_alg}+{digest}",
            resign(s.tree(), s.key, sig_alg=sig_alg, digest=digest),
            code,
        )
    add(
        "algorithm",
        "ecdsa-method-with-an-rsa-certificate",
        resign(s.tree(), pki.agencies[FINANCE].key, sig_alg="ecdsa-sha256"),
        "signature.algorithm",
    )
    add(
        "algorithm",
        "hmac-keyed-with-the-certificate",
        resign(
            s.tree(),
            s.key,
            sig_alg="hmac-sha256",
            hmac_key=pki.agencies[PROVINCE].cert.public_bytes(_der()),
        ),
        "signature.hmac",
    )
    add(
        "algorithm",
        "inclusive-c14n-signed-info",
        resign(s.tree(), s.key, c14n="inc"),
        "signature.canonicalization",
    )
    add(
        "algorithm",
        "inclusive-c14n-transform",
        resign(s.tree(), s.key, transforms=("enveloped", "inc")),
        "signature.canonicalization",
    )
    for transforms in (
        ("enveloped", "xpath", "exc"),
        ("enveloped", "xslt"),
        ("enveloped", "base64", "exc"),
        ("exc",),
        ("exc", "enveloped"),
        ("enveloped", "exc", "exc"),
    ):
        add(
            "algorithm",
            "transforms-" + "+".join(transforms),
            resign(s.tree(), s.key, transforms=transforms),
            "signature.transform",
        )

    # references
    root = s.tree()
    _envelope(root).find(f"{E}edXMLBody").set("Id", "body")
    add("wrapping", "reference-to-the-body", resign(root, s.key, uri="#body"), "signature.reference")
    root = s.tree("envelope")
    root.find(f".//{E}MessageHeader").set("Id", "mh")
    add("wrapping", "reference-to-the-message-header", resign(root, s.key, uri="#mh"), "signature.reference")
    for uri in (
        "http://127.0.0.1:9/evil.xml",
        "file:///etc/passwd",
        "#xpointer(/)",
        "#xpointer(id('x'))",
        "#nowhere",
        "#",
    ):
        root = s.tree()
        signature_of(root).find(f"{DS}SignedInfo/{DS}Reference").set("URI", uri)
        add("wrapping", f"reference-uri-{uri}", root, "signature.reference")
    root = s.tree()
    ref = signature_of(root).find(f"{DS}SignedInfo/{DS}Reference")
    ref.addnext(copy.deepcopy(ref))
    add("wrapping", "two-references", root, "signature.reference_count")

    # signature wrapping (XSW): the signed content is kept somewhere, forged content is shown
    root = s.tree("envelope")
    original = _envelope(root)
    forged = copy.deepcopy(original)
    forged.set("Id", "forged")
    _forge_subject(forged)
    hidden = _unsign(copy.deepcopy(original))
    root.replace(original, forged)
    root.find(f"{E}AttachmentEncoded").append(hidden)
    add("wrapping", "xsw-signed-envelope-hidden-in-attachments", root, "signature.wrapping")

    root = s.tree("envelope")
    original = _envelope(root)
    hidden = _unsign(copy.deepcopy(original))
    _forge_subject(original)
    root.find(f"{E}AttachmentEncoded").append(hidden)
    add("wrapping", "xsw-duplicate-id-forged-first", root, "signature.wrapping")

    root = s.tree("envelope")
    original = _envelope(root)
    hidden = _unsign(copy.deepcopy(original))
    _forge_subject(original)
    holder = etree.SubElement(root, f"{E}Extension")
    holder.append(hidden)
    add("wrapping", "xsw-duplicate-id-hidden-after-the-attachments", root, "signature.wrapping")

    env_id = _envelope(s.tree("envelope")).get("Id")
    for attr in ("ID", "id", "{http://www.w3.org/XML/1998/namespace}id", "{urn:evil}Id"):
        root = s.tree("envelope")
        root.find(f"{E}AttachmentEncoded").set(attr, _envelope(root).get("Id"))
        add(
            "wrapping",
            f"duplicate-id-as-{etree.QName(attr).localname}-{attr[:6]}",
            root,
            "signature.wrapping",
        )
    del env_id

    root = s.tree("envelope")
    root.set("Id", _envelope(root).get("Id"))
    add("wrapping", "duplicate-id-on-the-root", root, "signature.wrapping")

    for position in ("first", "last"):
        root = s.tree()
        forged = _unsign(copy.deepcopy(_envelope(root)))
        _forge_subject(forged)
        if position == "first":
            root.insert(0, forged)
        else:
            root.append(forged)
        add("wrapping", f"second-envelope-{position}", root, "signature.wrapping")

    root = s.tree()
    header = _envelope(root).find(f"{E}edXMLHeader")
    forged_header = _unsign(copy.deepcopy(header))
    _forge_subject(forged_header)
    header.addprevious(forged_header)
    add("wrapping", "second-header-in-the-envelope", root, "signature.wrapping")

    root = s.tree("envelope")
    decoy = _unsign(copy.deepcopy(_envelope(root)))
    decoy.set("Id", "decoy")
    root.find(f"{E}AttachmentEncoded").append(decoy)
    add(
        "wrapping",
        "reference-to-an-envelope-in-the-attachments",
        resign(root, s.key, uri="#decoy"),
        "signature.wrapping",
    )

    root = s.tree("envelope")
    new_root = etree.Element(f"{E}edXML", nsmap={None: E[1:-1]})
    forged = _unsign(copy.deepcopy(_envelope(root)))
    forged.set("Id", "forged")
    _forge_subject(forged)
    new_root.append(forged)
    etree.SubElement(new_root, f"{E}AttachmentEncoded").append(_envelope(root))
    add("wrapping", "envelope-mode-document-re-rooted", new_root, "signature.location")

    root = s.tree()
    new_root = etree.Element(f"{E}edXML", nsmap={None: E[1:-1]})
    forged = _unsign(copy.deepcopy(_envelope(root)))
    _forge_subject(forged)
    new_root.append(forged)
    new_root.append(copy.deepcopy(signature_of(root)))
    forged.find(f"{E}edXMLHeader").append(new_root[-1])
    etree.SubElement(new_root, f"{E}AttachmentEncoded").append(_unsign(_envelope(root)))
    add("wrapping", "document-mode-document-re-rooted", new_root, "signature.digest_mismatch")

    root = s.tree()
    holder = root.find(f"{E}AttachmentEncoded")
    extra = copy.deepcopy(holder[0])
    extra.find(f"{E}ContentId").text = "cid:extra"
    holder.append(extra)
    add("wrapping", "extra-attachment-document-mode", root, "signature.digest_mismatch")

    root = s.tree()
    root.find(f".//{E}Subject").text += "!"
    add("wrapping", "subject-changed-after-signing", root, "signature.digest_mismatch")

    root = s.tree()
    root.find(f".//{E}To/{E}OrganId").text = FINANCE
    add("wrapping", "recipient-changed-after-signing", root, "signature.digest_mismatch")

    # values, keys and certificates
    root = s.tree()
    value = signature_of(root).find(f"{DS}SignatureValue")
    raw = bytearray(base64.b64decode(value.text))
    raw[10] ^= 1
    value.text = base64.b64encode(bytes(raw)).decode()
    add("signature", "signature-value-bit-flipped", root, "signature.invalid")
    root = s.tree()
    signature_of(root).find(f"{DS}SignatureValue").text = "not base64 !!"
    add("signature", "signature-value-not-base64", root, "signature.invalid")
    add(
        "signature",
        "certificate-swapped-for-another-agency",
        set_certificates(s.tree(), [pki.agencies[MINISTRY].cert]),
        "signature.invalid",
    )
    root = s.tree()
    key_info = signature_of(root).find(f"{DS}KeyInfo")
    key_info.remove(key_info.find(f"{DS}X509Data"))
    numbers = pki.agencies[PROVINCE].cert.public_key().public_numbers()
    rsa_value = etree.SubElement(etree.SubElement(key_info, f"{DS}KeyValue"), f"{DS}RSAKeyValue")
    etree.SubElement(rsa_value, f"{DS}Modulus").text = _b64int(numbers.n)
    etree.SubElement(rsa_value, f"{DS}Exponent").text = _b64int(numbers.e)
    add("signature", "key-value-only", root, "signature.key_value_only")
    root = s.tree()
    key_info = signature_of(root).find(f"{DS}KeyInfo")
    rsa_value = etree.SubElement(etree.SubElement(key_info, f"{DS}KeyValue"), f"{DS}RSAKeyValue")
    etree.SubElement(rsa_value, f"{DS}Modulus").text = base64.b64encode(b"\x01" * 256).decode()
    etree.SubElement(rsa_value, f"{DS}Exponent").text = "AQAB"
    add("signature", "key-value-disagreeing-with-the-certificate", root, "signature.invalid")
    root = s.tree()
    signature_of(root).remove(signature_of(root).find(f"{DS}KeyInfo"))
    add("signature", "no-key-info", root, "signature.no_certificate")
    root = s.tree()
    data = signature_of(root).find(f"{DS}KeyInfo/{DS}X509Data")
    for el in list(data):
        data.remove(el)
    etree.SubElement(data, f"{DS}X509SubjectName").text = "UID=000.00.00.H53,CN=Tay Ninh"
    add("signature", "x509-subject-name-only", root, "signature.no_certificate")
    add(
        "signature",
        "truncated-certificate",
        set_certificates(s.tree(), ["MIIFqTCCBJG"]),
        "signature.bad_certificate",
    )
    for name, alg in (("weak_rsa1024", "rsa-sha256"), ("weak_ec_p384", "ecdsa-sha256")):
        bad = pki.bad(name)
        add(
            "trust",
            f"weak-key-{name}",
            resign(set_certificates(s.tree(), [bad.cert]), bad.key, sig_alg=alg),
            "signature.weak_key",
        )

    return [
        Case(name=name, klass=klass, body=body, status=422, code=code) for klass, name, body, code in cases
    ]


def _b64int(n: int) -> str:
    return base64.b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).decode()


def _der() -> object:
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


# --- trust: who signed it ---------------------------------------------------------------------------

TRUST = {
    "expired": "certificate.expired",
    "not_yet_valid": "certificate.not_yet_valid",
    "revoked": "certificate.revoked",
    "no_digital_signature": "certificate.key_usage",
    "foreign": "certificate.untrusted",
    "self_signed": "certificate.untrusted",
    "no_agency": "certificate.no_agency",
    "under_revoked_intermediate": "certificate.revoked",
    "under_expired_intermediate": "certificate.expired",
}
"""Bad signers of :mod:`pki_fixtures` (all naming the province) → the code at the hub's *now*."""


def trust_cases(pki: PkiSet) -> list[Case]:
    cases = [
        Case(
            name=f"signer-{name}",
            klass="trust",
            body=sign(document(attachment=ATTACHMENT), pki.bad(name)),
            status=422,
            code=code,
        )
        for name, code in TRUST.items()
    ]
    cases += [
        Case(
            name="signed-by-another-agency",
            klass="trust",
            body=sign(document(), pki.agencies[FINANCE]),
            status=422,
            code="certificate.agency_mismatch",
        ),
        Case(
            name="signed-by-the-hub-certificate",
            klass="trust",
            body=sign(document(), pki.hub),
            status=422,
            code="certificate.no_agency",
        ),
        Case(
            name="signed-by-a-ca-key",
            klass="trust",
            body=sign(document(), pki.intermediate),
            status=422,
            code="certificate.untrusted",
        ),
        Case(
            name="envelope-mode-signed-by-a-revoked-certificate",
            klass="trust",
            body=sign(document(attachment=ATTACHMENT), pki.bad("revoked"), reference="envelope"),
            status=422,
            code="certificate.revoked",
        ),
    ]
    return cases


# --- inline attachments (envelope mode) ------------------------------------------------------------


def attachment_cases(pki: PkiSet) -> list[Case]:
    s = Signed(pki)
    out: list[Case] = []

    def add(name: str, root: etree._Element | bytes, code: str) -> None:
        body = dump(root) if isinstance(root, etree._Element) else root
        out.append(Case(name=name, klass="attachment", body=body, status=422, code=code))

    def encoded(root: etree._Element) -> etree._Element:
        return root.find(f"{E}AttachmentEncoded/{E}Attachment/{E}ContentTransferEncoded")

    root = s.tree("envelope")
    encoded(root).text = base64.b64encode(ATTACHMENT.replace(b"%%EOF", b"%%EOX")).decode()
    add("inline-attachment-changed-envelope-mode", root, "edxml.attachment_digest")
    root = s.tree("envelope")
    encoded(root).text = base64.b64encode(ATTACHMENT[:-1]).decode()
    add("inline-attachment-truncated-envelope-mode", root, "edxml.attachment_digest")
    root = s.tree("envelope")
    root.remove(root.find(f"{E}AttachmentEncoded"))
    add("inline-attachment-removed-envelope-mode", root, "edxml.attachment_missing")
    root = s.tree("envelope")
    holder = root.find(f"{E}AttachmentEncoded")
    extra = copy.deepcopy(holder[0])
    extra.find(f"{E}ContentId").text = "cid:smuggled"
    holder.append(extra)
    add("inline-attachment-unlisted-envelope-mode", root, "edxml.attachment_unlisted")
    root = s.tree("envelope")
    holder = root.find(f"{E}AttachmentEncoded")
    holder.append(copy.deepcopy(holder[0]))
    add("inline-attachment-twice-envelope-mode", root, "edxml.attachment_duplicate")
    root = s.tree("envelope")
    encoded(root).text = "!!!! not base64 ****"
    add("inline-attachment-not-base64", root, "edxml.bad_base64")
    root = s.tree("envelope")
    for el in root.iter(f"{GX}Size", f"{GX}SHA256"):
        el.getparent().remove(el)
    add("manifest-without-digests-envelope-mode", resign(root, s.key), "edxml.manifest_digest_missing")
    root = s.tree("document")
    encoded(root).text = base64.b64encode(ATTACHMENT.replace(b"%%EOF", b"%%EOX")).decode()
    add("inline-attachment-changed-document-mode", root, "signature.digest_mismatch")
    return out


# --- multipart carriage ----------------------------------------------------------------------------


def _parts(pki: PkiSet, reference: str = "envelope") -> tuple[bytes, bytes]:
    """(signed edXML start part, attachment bytes) of a fresh envelope-mode package."""
    single = Signed(pki).bytes(reference)
    _, chunks = to_multipart(single, boundary=BOUNDARY)
    body = b"".join(chunks)
    start = body.index(b"\r\n\r\n") + 4
    end = body.index(b"\r\n--" + BOUNDARY.encode(), start)
    return body[start:end], ATTACHMENT


def frame(
    parts: list[tuple[str, bytes]],
    *,
    boundary: str = BOUNDARY,
    preamble: bytes = b"",
    epilogue: bytes = b"\r\n",
    close: bool = True,
) -> bytes:
    """A multipart body from (header block, data) pairs; headers are written as given (CRLF-separated)."""
    dash = b"--" + boundary.encode("latin-1")
    out = bytearray(preamble)
    for i, (headers, data) in enumerate(parts):
        out += (b"\r\n" if i else b"") + dash + b"\r\n" + headers.encode("latin-1") + b"\r\n\r\n" + data
    if close:
        out += b"\r\n" + dash + b"--" + epilogue
    return bytes(out)


START = "Content-Type: application/edxml+xml\r\nContent-ID: <edxml>"
PART = "Content-ID: <att-1>\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: binary"


def multipart_cases(pki: PkiSet) -> list[Case]:
    edxml, att = _parts(pki)
    good = [(START, edxml), (PART, att)]
    out: list[Case] = []

    def add(
        name: str,
        body: bytes,
        status: int,
        code: str,
        content_type: str = MULTIPART,
        klass: str = "multipart",
    ) -> None:
        out.append(
            Case(name=name, klass=klass, body=body, status=status, code=code, content_type=content_type)
        )

    body = frame(good)
    add(
        "multipart-mixed-not-related",
        body,
        415,
        "request.unsupported_media_type",
        f"multipart/mixed; boundary={BOUNDARY}",
    )
    add(
        "type-parameter-not-edxml",
        body,
        415,
        "multipart.content_type",
        f'multipart/related; type="text/plain"; boundary={BOUNDARY}',
    )
    add(
        "content-type-unparsable",
        body,
        415,
        "multipart.content_type",
        'multipart/related; boundary="unterminated',
    )
    add("boundary-missing", body, 400, "multipart.boundary", f'multipart/related; type="{EDXML}"')
    add(
        "boundary-too-long",
        frame(good, boundary="b" * 71),
        400,
        "multipart.boundary",
        f"multipart/related; boundary={'b' * 71}",
    )
    add(
        "boundary-with-forbidden-character",
        body,
        400,
        "multipart.boundary",
        'multipart/related; boundary="a@b"',
    )
    add("boundary-ending-in-space", body, 400, "multipart.boundary", 'multipart/related; boundary="ab "')
    add("empty-body", b"", 400, "input.empty")
    add("preamble-with-text", frame(good, preamble=b"hello\r\n"), 400, "multipart.preamble")
    add("epilogue-with-text", frame(good, epilogue=b"\r\nsmuggled bytes"), 400, "multipart.preamble")
    add(
        "delimiter-with-extra-characters",
        body.replace(
            b"\r\n--" + BOUNDARY.encode() + b"\r\nContent-ID",
            b"\r\n--" + BOUNDARY.encode() + b"X\r\nContent-ID",
        ),
        400,
        "multipart.malformed",
    )
    add(
        "header-line-without-colon",
        frame([(START, edxml), (PART + "\r\nno colon here", att)]),
        400,
        "multipart.malformed",
    )
    add(
        "header-not-utf8",
        frame([(START, edxml), (PART + "\r\nX-Name: \xff\xfe", att)]),
        400,
        "multipart.malformed",
    )
    add(
        "headers-too-large",
        frame([(START, edxml), (PART + "\r\nX-Pad: " + "a" * 9000, att)]),
        400,
        "multipart.headers_too_large",
    )
    add(
        "part-without-content-id",
        frame([(START, edxml), ("Content-Type: application/pdf", att)]),
        400,
        "multipart.part_headers",
    )
    add(
        "part-with-two-content-types",
        frame([(START, edxml), (PART + "\r\nContent-Type: text/plain", att)]),
        400,
        "multipart.part_headers",
    )
    add(
        "part-base64-encoded",
        frame([(START, edxml), (PART.replace("binary", "base64"), base64.b64encode(att))]),
        400,
        "multipart.part_headers",
    )
    add("truncated-inside-a-part", frame(good, close=False)[:-100], 400, "multipart.truncated")
    add(
        "truncated-inside-part-headers",
        frame(good, close=False) + b"\r\n--" + BOUNDARY.encode() + b"\r\nContent-ID: <x",
        400,
        "multipart.truncated",
    )
    add("truncated-without-closing-delimiter", frame(good, close=False), 400, "multipart.truncated")
    many = [(START, edxml)] + [(f"Content-ID: <p{i}>", b"x") for i in range(1001)]
    add("too-many-parts", frame(many), 413, "multipart.too_many_parts")
    add("same-part-twice", frame([*good, (PART, att)]), 400, "multipart.duplicate_part")
    add(
        "part-claiming-the-start-id",
        frame([*good, ("Content-ID: <edxml>", att)]),
        400,
        "multipart.duplicate_part",
    )
    add("attachment-first", frame([(PART, att), (START, edxml)]), 422, "multipart.start_missing")
    add("no-part-at-all", b"--" + BOUNDARY.encode() + b"--\r\n", 422, "multipart.start_missing")
    add(
        "start-part-not-edxml",
        frame([(START.replace(EDXML, "application/pdf"), edxml), (PART, att)]),
        422,
        "multipart.start_missing",
    )
    add(
        "part-unlisted",
        frame([*good, ("Content-ID: <smuggled>", b"MZ\x90\x00")]),
        422,
        "edxml.attachment_unlisted",
        klass="attachment",
    )
    add("part-missing", frame([(START, edxml)]), 422, "edxml.attachment_missing", klass="attachment")
    changed = att.replace(b"%%EOF", b"%%EOX")
    add(
        "part-changed",
        frame([(START, edxml), (PART, changed)]),
        422,
        "edxml.attachment_digest",
        klass="attachment",
    )
    add(
        "part-truncated",
        frame([(START, edxml), (PART, att[:-1])]),
        422,
        "edxml.attachment_digest",
        klass="attachment",
    )
    add(
        "part-extended",
        frame([(START, edxml), (PART, att + b"\x00")]),
        422,
        "edxml.attachment_digest",
        klass="attachment",
    )
    doc_mode = Signed(pki).bytes("document", attachment=None)
    add(
        "document-mode-signature-with-parts",
        frame([(START, doc_mode), (PART, att)]),
        422,
        "multipart.not_envelope_signed",
    )
    single_envelope = Signed(pki).bytes("envelope")
    ref_cid = "att-1"
    add(
        "attachment-both-inline-and-as-part",
        frame([(START, single_envelope), (PART.replace("att-1", ref_cid), att)]),
        422,
        "edxml.attachment_duplicate",
        klass="attachment",
    )
    add(
        "start-part-xxe",
        frame([(START, (HOSTILE / "xml" / "xxe-file.xml").read_bytes()), (PART, att)]),
        400,
        "xml.entity_forbidden",
        klass="xml",
    )
    add(
        "start-part-billion-laughs",
        frame([(START, (HOSTILE / "xml" / "billion-laughs.xml").read_bytes())]),
        400,
        "xml.entity_forbidden",
        klass="xml",
    )
    add(
        "start-part-unsigned",
        frame([(START, build(document(), include_attachments=False))]),
        422,
        "signature.missing",
        klass="signature",
    )
    add(
        "start-part-changed",
        frame([(START, edxml.replace("Về việc".encode(), "Vì việc".encode(), 1)), (PART, att)]),
        422,
        "signature.digest_mismatch",
        klass="signature",
    )
    root = tree(edxml)
    for el in root.iter(f"{GX}Size", f"{GX}SHA256"):
        el.getparent().remove(el)
    add(
        "start-part-manifest-without-digests",
        frame([(START, dump(resign(root, pki.agencies[PROVINCE].key))), (PART, att)]),
        422,
        "edxml.manifest_digest_missing",
        klass="attachment",
    )
    return out


# --- who sends it ----------------------------------------------------------------------------------


def identity_cases(pki: PkiSet) -> list[Case]:
    province = pki.agencies[PROVINCE]
    return [
        Case(
            name="from-not-the-mtls-identity",
            klass="identity",
            body=sign(document(), province),
            who=DEPARTMENT,
            status=403,
            code="auth.forbidden",
        ),
        Case(
            name="from-not-the-mtls-identity-multipart",
            klass="identity",
            body=frame([(START, _parts(pki)[0]), (PART, ATTACHMENT)]),
            content_type=MULTIPART,
            who=FINANCE,
            status=403,
            code="auth.forbidden",
        ),
        Case(
            name="from-the-hub-identity",
            klass="identity",
            body=sign(document(), province),
            who="hub",
            status=403,
            code="auth.forbidden",
        ),
        Case(
            name="unknown-recipient",
            klass="identity",
            body=sign(document(recipients=(DEPARTMENT, UNLISTED)), province),
            status=422,
            code="directory.unknown_recipient",
        ),
        Case(
            name="status-endpoint-xxe",
            klass="xml",
            path="/v1/status",
            body=(HOSTILE / "xml" / "xxe-file.xml").read_bytes(),
            status=400,
            code="xml.entity_forbidden",
        ),
        Case(
            name="status-endpoint-billion-laughs",
            klass="xml",
            path="/v1/status",
            body=(HOSTILE / "xml" / "billion-laughs.xml").read_bytes(),
            status=400,
            code="xml.entity_forbidden",
        ),
        Case(
            name="status-endpoint-unsigned",
            klass="signature",
            path="/v1/status",
            body=build(status_for(doc=document(), sender=DEPARTMENT, code="01")),
            who=DEPARTMENT,
            status=422,
            code="signature.missing",
        ),
        Case(
            name="status-endpoint-signed-by-a-revoked-certificate",
            klass="trust",
            path="/v1/status",
            body=sign(status_for(doc=document(), sender=PROVINCE, code="13"), pki.bad("revoked")),
            status=422,
            code="certificate.revoked",
        ),
        Case(
            name="status-endpoint-undefined-code",
            klass="lifecycle",
            path="/v1/status",
            body=sign(status_for(doc=document(), sender=DEPARTMENT, code="07"), pki.agencies[DEPARTMENT]),
            who=DEPARTMENT,
            status=422,
            code="field.status_code",
        ),
        Case(
            name="wrong-media-type",
            klass="identity",
            body=sign(document(), province),
            content_type="application/json",
            status=415,
            code="request.unsupported_media_type",
        ),
    ]


# --- everything -------------------------------------------------------------------------------------

GENERATORS: tuple[Callable[[PkiSet], list[Case]], ...] = (
    lambda pki: file_cases(),
    lambda pki: generated_xml_cases(),
    signature_cases,
    trust_cases,
    attachment_cases,
    multipart_cases,
    identity_cases,
)


def all_cases(pki: PkiSet) -> list[Case]:
    cases = [case for make in GENERATORS for case in make(pki)]
    names = [c.name for c in cases]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise AssertionError(f"duplicate case names: {sorted(duplicates)}")
    return cases
