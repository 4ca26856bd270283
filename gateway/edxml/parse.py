"""edXML bytes (or a tree) → the frozen model. Pure: no I/O.

Tolerant where real packages are messy but harmless (DESIGN §2, the interop samples): children in any
order, comments, indentation, empty optional elements (→ ``None``), edXML elements written with the
``edXML:`` prefix, under a default namespace, or with no namespace at all (``AttachmentEncoded`` and its
children often are), unknown extra elements and attributes (``xlink:href``, ``version``). The
``Signature`` element is skipped wherever it is and in whatever namespace: checking it is
:mod:`gateway.signature`'s job.

Strict where a wrong guess would change meaning: a repeated single-valued element is
``edxml.unexpected_element`` (which of the two is the real Subject?), required elements are
``edxml.missing_element``, and every date, number and base64 block must be well-formed.

:func:`parse_lenient` exists for ``inspect``: it collects value-level problems (bad dates, numbers,
base64, junk before the XML declaration) as a list instead of stopping at the first, so an operator sees
the header of a broken package together with everything wrong with it.
"""

from __future__ import annotations

import binascii
import datetime as dt
import functools
import re
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import pybase64
from lxml import etree

from gateway.edxml import codes
from gateway.edxml.model import (
    EXT_NS,
    NS,
    Attachment,
    Bussiness,
    BussinessDocumentInfo,
    Code,
    DocumentPackage,
    DocumentType,
    ManifestReference,
    Message,
    MessageHeader,
    Organization,
    OtherInfo,
    PromulgationInfo,
    Receiver,
    ReplacementInfo,
    ResponseFor,
    SignerInfo,
    StaffInfo,
    StatusHeader,
    StatusMessage,
    TraceHeader,
    TraceHeaderList,
)
from gateway.edxml.xmlparser import DEFAULT_LIMITS, XmlLimits, parse_xml
from gateway.errors import GatewayError, InputError, PackageError

T = TypeVar("T")

ROOT_TAG = f"{{{NS}}}edXML"
ENVELOPE_TAG = f"{{{NS}}}edXMLEnvelope"
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_INTEGER = re.compile(r"[+-]?\d+")
_B64_WHITESPACE = b" \t\r\n"
_B64_SPACE_AT_EDGES = re.compile(rb"[ \t\r\n]")
_B64_PROBE = 128  # longer than a wrapped base64 line (76), so wrapping is seen in the first probe


def parse(data: bytes, *, limits: XmlLimits = DEFAULT_LIMITS) -> Message:
    """Parse a single-file package or a status message; the first problem raises."""
    return parse_element(parse_xml(data, limits=limits))


def parse_element(
    root: etree._Element,
    *,
    attachments: Sequence[Attachment] | None = None,
    envelope: etree._Element | None = None,
) -> Message:
    """Read the model from an ``edXML`` root or a bare ``edXMLEnvelope``.

    A bare envelope is what an envelope-reference signature (multipart form) covers; its attachments
    travel as parts and are passed in as ``attachments``. Passing ``attachments`` for a root that also
    carries ``AttachmentEncoded`` is ambiguous and refused.

    ``envelope``: for an ``edXML`` root whose signature covers only its envelope, the signed envelope
    (:attr:`~gateway.signature.verify.VerifiedSignature.signed_root`). Header and manifest are then read
    from it, and only ``AttachmentEncoded`` from the root, whose own envelope must still be there, once;
    everything is checked in the order of a plain read.
    """
    return _Reader(None).message(root, attachments, envelope)


def parse_lenient(
    data: bytes, *, limits: XmlLimits = DEFAULT_LIMITS
) -> tuple[Message, tuple[GatewayError, ...]]:
    """Parse as far as possible, returning the model and the value-level problems met on the way.

    Bad dates, numbers, timestamps and base64 become ``None`` (an attachment's data ``b""``), each with
    its problem recorded. Bytes before the XML declaration (``1212<?xml …`` in a real sample) are
    recorded as ``xml.malformed`` and skipped. What cannot be read around (not XML, not edXML, a
    required element missing) still raises.
    """
    problems: list[GatewayError] = []
    try:
        root = parse_xml(data, limits=limits)
    except InputError as exc:
        start = data.find(b"<?xml", 0, 1024) if exc.code == "xml.malformed" else -1
        if start <= 0:
            raise
        junk = data[:start]
        problems.append(
            InputError(
                "xml.malformed",
                f"{len(junk)} byte(s) before the XML declaration ({junk[:40]!r}); read from the declaration",
            )
        )
        root = parse_xml(data[start:], limits=limits)
    message = _Reader(problems).message(root, None)
    return message, tuple(problems)


# --- reading ----------------------------------------------------------------------------------------


_EXT_PREFIX = f"{{{EXT_NS}}}"


@functools.lru_cache(maxsize=512)
def _child_key(tag: str) -> str | None:
    """How :class:`_Node` files a child: an edXML element (edXML namespace or none) by its local name, an
    element of the gateway's extension namespace by its full tag (it cannot clash with a local name),
    anything else not at all. Cached, since packages use a few dozen tags over and over."""
    if tag[0] == "{":
        ns, _, local = tag[1:].partition("}")
        if ns == NS:
            return local
        return tag if ns == EXT_NS else None
    prefix, colon, local = tag.rpartition(":")
    if not colon:
        return tag
    # A literal prefix survives only when it was undeclared (see xmlparser). Real packages write
    # ``edXML:AttachmentEncoded`` beside an envelope that alone declares ``edXML``: that is ours.
    return local if prefix == "edXML" else None


# The keys of the first tags seen (a package's few dozen, again and again), read with one dict lookup.
# Bounded, so that unknown tags from hostile input cannot grow it; beyond the bound, _child_key decides.
_CHILD_KEYS: dict[str, str] = {}
_CHILD_KEYS_MAX = 512


def _text_of(el: etree._Element) -> str:
    """The element's character content, joined across comments (``a<!-- -->b`` is ``ab``)."""
    text = el.text or ""
    if len(el):
        for child in el:
            if not isinstance(child.tag, str):
                text += child.tail or ""
    return text


class _Node:
    """One edXML element with its children indexed (see :func:`_child_key`).

    Its path (for error details) is built only when an error needs it: reading a package builds a few
    dozen nodes and formats no path at all.
    """

    __slots__ = ("el", "first", "more", "name", "parent", "reader")

    def __init__(self, reader: _Reader, el: etree._Element, name: str, parent: _Node | None = None) -> None:
        self.reader, self.el, self.name, self.parent = reader, el, name, parent
        # The first child of each key, and every child of the keys that repeat (rare: To, Reference, …).
        first: dict[str, etree._Element] = {}
        more: dict[str, list[etree._Element]] | None = None
        keys = _CHILD_KEYS
        for child in el[:]:  # slicing builds the list in C: cheaper than lxml's child iterator
            tag = child.tag
            key = keys.get(tag)
            if key is None:
                if not isinstance(tag, str):
                    continue  # a comment or processing instruction
                key = _child_key(tag)
                if key is None:
                    continue  # a foreign element
                if len(keys) < _CHILD_KEYS_MAX:
                    keys[tag] = key
            if key in first:
                if more is None:
                    more = {}
                more.setdefault(key, [first[key]]).append(child)
            else:
                first[key] = child
        self.first, self.more = first, more

    @property
    def path(self) -> str:
        return self.name if self.parent is None else f"{self.parent.path}/{self.name}"

    def all(self, name: str) -> list[etree._Element]:
        """Every child filed under ``name``, in document order."""
        if self.more is not None and name in self.more:
            return self.more[name]
        el = self.first.get(name)
        return [] if el is None else [el]

    def _repeated(self, name: str) -> None:
        assert self.more is not None
        times = len(self.more[name])
        self.reader.soft(
            PackageError("edxml.unexpected_element", f"{self.path}/{name} appears {times} times"), None
        )

    def one(self, name: str) -> etree._Element | None:
        """The child filed under ``name``; a repeated one is ``edxml.unexpected_element``."""
        el = self.first.get(name)
        if el is not None and self.more is not None and name in self.more:
            self._repeated(name)
        return el

    def child(self, name: str) -> _Node | None:
        el = self.first.get(name)
        if el is None:
            return None
        if self.more is not None and name in self.more:
            self._repeated(name)
        return _Node(self.reader, el, name, self)

    def required(self, name: str) -> _Node:
        node = self.child(name)
        if node is None:
            raise PackageError("edxml.missing_element", f"{self.path}/{name} is missing")
        return node

    def children(self, name: str) -> list[_Node]:
        return [_Node(self.reader, el, name, self) for el in self.all(name)]

    def text(self, name: str) -> str | None:
        """Optional text: absent or empty is ``None``; otherwise exactly as sent."""
        el = self.first.get(name)
        if el is None:
            return None
        if self.more is not None and name in self.more:
            self._repeated(name)
        return (_text_of(el) if len(el) else el.text) or None

    def required_text(self, name: str) -> str:
        """Text of a required element; the element must exist, emptiness is for validation to report."""
        el = self.one(name)
        if el is None:
            raise PackageError("edxml.missing_element", f"{self.path}/{name} is missing")
        return _text_of(el)

    def value(self, name: str, convert: Callable[[str], T]) -> T | None:
        text = self.text(name)
        if text is None or not text.strip():
            return None
        try:
            return convert(text)
        except GatewayError as exc:
            return self.reader.soft(type(exc)(exc.code, f"{self.path}/{name}: {exc.detail}"), None)

    def integer(self, name: str) -> int | None:
        return self.value(name, _to_int)

    def date(self, name: str) -> dt.date | None:
        return self.value(name, codes.parse_date)

    def timestamp(self, name: str) -> dt.datetime | None:
        return self.value(name, codes.parse_timestamp)


def _to_int(text: str) -> int:
    raw = text.strip()
    if not _INTEGER.fullmatch(raw):
        raise PackageError("edxml.bad_integer", f"{text!r} is not a whole number")
    return int(raw)


def _to_bool(text: str) -> bool:
    raw = text.strip().lower()
    if raw in ("true", "1"):
        return True
    if raw in ("false", "0"):
        return False
    raise PackageError("edxml.bad_integer", f"{text!r} is not true/false (or 1/0)")


def decode_base64(text: str) -> bytes:
    """Strict base64 after removing whitespace (line-wrapped or not); pybase64 for speed (DESIGN §8).

    Whitespace is removed only when there is some: a large attachment is usually one unwrapped line, and
    copying 20 MB to remove nothing costs more than the decoding. Without whitespace at either end or in
    the first line the text is decoded as it is; strict decoding refuses any whitespace, so a text with
    some in the middle only fails over to the stripping path, never decodes differently.
    """
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise PackageError("edxml.bad_base64", "non-ASCII characters in base64 content") from None
    if not _B64_SPACE_AT_EDGES.search(raw[:_B64_PROBE]) and not _B64_SPACE_AT_EDGES.search(raw[-_B64_PROBE:]):
        try:
            return pybase64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            pass  # whitespace further in, or not base64: the general path decides and says why
    raw = raw.translate(None, _B64_WHITESPACE)
    try:
        return pybase64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        sample = raw[:40].decode("ascii")
        raise PackageError("edxml.bad_base64", f"{exc} (content starts {sample!r})") from exc


class _Reader:
    """Walks the tree; ``problems is None`` means strict (raise), else collect and fall back."""

    def __init__(self, problems: list[GatewayError] | None) -> None:
        self.problems = problems

    def soft(self, exc: GatewayError, fallback: T) -> T:
        if self.problems is None:
            raise exc
        self.problems.append(exc)
        return fallback

    # --- top level ---

    def message(
        self,
        root: etree._Element,
        attachments: Sequence[Attachment] | None,
        signed_envelope: etree._Element | None = None,
    ) -> Message:
        envelope, inline, header = self.frame(root, attachments, signed_envelope)
        message_header = header.required("MessageHeader")
        trace_node = header.child("TraceHeaderList")
        if message_header.one("StatusCode") is not None:
            return StatusMessage(
                header=self.status_header(message_header),
                trace=self.trace(trace_node) if trace_node is not None else None,
            )
        found = self.attachments(inline) if inline is not None else tuple(attachments or ())
        self.check_unique((a.content_id for a in found), "AttachmentEncoded/Attachment")
        body = envelope.child("edXMLBody")
        manifest_node = body.child("edXMLManifest") if body is not None else None
        manifest = self.manifest(manifest_node) if manifest_node is not None else ()
        self.check_unique((r.content_id for r in manifest), "edXMLManifest/Reference")
        return DocumentPackage(
            header=self.message_header(message_header),
            trace=self.trace(trace_node) if trace_node is not None else TraceHeaderList(),
            manifest=manifest,
            attachments=found,
        )

    def frame(
        self,
        root: etree._Element,
        attachments: Sequence[Attachment] | None,
        signed_envelope: etree._Element | None = None,
    ) -> tuple[_Node, _Node | None, _Node]:
        """The envelope, the ``AttachmentEncoded`` (if any) and the header of a root or a bare envelope."""
        if not isinstance(root.tag, str) or root.tag not in (ROOT_TAG, ENVELOPE_TAG):
            raise PackageError(
                "edxml.not_edxml", f"root element is {root.tag!r}, expected edXML in namespace {NS}"
            )
        if signed_envelope is not None and (root.tag != ROOT_TAG or signed_envelope.tag != ENVELOPE_TAG):
            raise PackageError("edxml.not_edxml", "a signed envelope is read only beside an edXML root")
        if root.tag == ENVELOPE_TAG:
            envelope = _Node(self, root, "edXMLEnvelope")
            inline = None
        else:
            top = _Node(self, root, "edXML")
            if signed_envelope is None:
                envelope = top.required("edXMLEnvelope")
            elif top.one("edXMLEnvelope") is None:
                raise PackageError("edxml.missing_element", "edXML/edXMLEnvelope is missing")
            else:
                envelope = _Node(self, signed_envelope, "edXMLEnvelope", top)
            inline = top.child("AttachmentEncoded")
        if inline is not None and attachments is not None:
            raise PackageError(
                "edxml.unexpected_element", "AttachmentEncoded is present while attachments were supplied"
            )
        return envelope, inline, envelope.required("edXMLHeader")

    def check_unique(self, ids: Iterable[str], where: str) -> None:
        seen: set[str] = set()
        for content_id in ids:
            if content_id in seen:
                self.soft(PackageError("edxml.attachment_duplicate", f"{where}: {content_id!r} twice"), None)
            seen.add(content_id)

    # --- document header ---

    def message_header(self, n: _Node) -> MessageHeader:
        code = n.child("Code")
        promulgation = n.child("PromulgationInfo")
        doc_type = n.child("DocumentType")
        signer = n.child("SignerInfo")
        to_places = n.child("ToPlaces")
        other = n.child("OtherInfo")
        return MessageHeader(
            from_=self.organization(n.required("From")),
            to=tuple(self.organization(t) for t in n.children("To")),
            document_id=n.text("DocumentId"),
            code=Code(
                code_number=code.required_text("CodeNumber"), code_notation=code.required_text("CodeNotation")
            )
            if code is not None
            else None,
            promulgation_info=PromulgationInfo(
                place=promulgation.text("Place"), promulgation_date=promulgation.date("PromulgationDate")
            )
            if promulgation is not None
            else None,
            document_type=DocumentType(
                type=doc_type.integer("Type"),
                type_detail=doc_type.integer("TypeDetail"),
                type_name=doc_type.text("TypeName"),
            )
            if doc_type is not None
            else None,
            subject=n.text("Subject"),
            content=n.text("Content"),
            signer_info=SignerInfo(
                competence=signer.text("Competence"),
                position=signer.text("Position"),
                full_name=signer.text("FullName"),
            )
            if signer is not None
            else None,
            due_date=n.date("DueDate"),
            to_places=_texts(to_places, "Place"),
            other_info=self.other_info(other) if other is not None else None,
            response_for=tuple(self.response_for(r) for r in n.children("ResponseFor")),
            steering_type=n.integer("SteeringType"),
        )

    def organization(self, n: _Node) -> Organization:
        return Organization(
            organ_id=n.required_text("OrganId"),
            organization_in_charge=n.text("OrganizationInCharge"),
            organ_name=n.text("OrganName"),
            organ_add=n.text("OrganAdd"),
            email=n.text("Email"),
            telephone=n.text("Telephone"),
            fax=n.text("Fax"),
            website=n.text("Website"),
        )

    def other_info(self, n: _Node) -> OtherInfo:
        return OtherInfo(
            priority=n.integer("Priority"),
            sphere_of_promulgation=n.text("SphereOfPromulgation"),
            typer_notation=n.text("TyperNotation"),
            promulgation_amount=n.integer("PromulgationAmount"),
            page_amount=n.integer("PageAmount"),
            direction=n.value("Direction", _to_bool),
            appendixes=_texts(n.child("Appendixes"), "Appendix"),
        )

    def response_for(self, n: _Node) -> ResponseFor:
        return ResponseFor(
            organ_id=n.text("OrganId"),
            code=n.text("Code"),
            promulgation_date=n.date("PromulgationDate"),
            document_id=n.text("DocumentId"),
        )

    def staff_info(self, n: _Node | None) -> StaffInfo | None:
        if n is None:
            return None
        return StaffInfo(
            department=n.text("Department"),
            staff=n.text("Staff"),
            mobile=n.text("Mobile"),
            email=n.text("Email"),
        )

    # --- trace ---

    def trace(self, n: _Node) -> TraceHeaderList:
        bussiness = n.child("Bussiness")
        return TraceHeaderList(
            trace_headers=tuple(
                TraceHeader(organ_id=t.required_text("OrganId"), timestamp=t.timestamp("Timestamp"))
                for t in n.children("TraceHeader")
            ),
            bussiness=self.bussiness(bussiness) if bussiness is not None else None,
        )

    def bussiness(self, n: _Node) -> Bussiness:
        info = n.child("BussinessDocumentInfo")
        replacements = n.child("ReplacementInfoList")
        doc_type = n.integer("BussinessDocType")
        paper = n.integer("Paper")
        return Bussiness(
            document_id=n.text("DocumentId"),
            bussiness_doc_type=0 if doc_type is None else doc_type,
            bussiness_doc_reason=n.text("BussinessDocReason"),
            paper=0 if paper is None else paper,
            bussiness_document_info=self.document_info(info) if info is not None else None,
            replacement_info_list=tuple(
                ReplacementInfo(
                    document_id=r.required_text("DocumentId"),
                    organ_id_list=_texts(r.child("OrganIdList"), "OrganId"),
                )
                for r in replacements.children("ReplacementInfo")
            )
            if replacements is not None
            else None,
            staff_info=self.staff_info(n.child("StaffInfo")),
        )

    def document_info(self, n: _Node) -> BussinessDocumentInfo:
        receivers = n.child("ReceiverList")
        return BussinessDocumentInfo(
            document_info=n.integer("DocumentInfo"),
            document_receiver=n.integer("DocumentReceiver"),
            receiver_list=tuple(
                Receiver(organ_id=r.required_text("OrganId"), receiver_type=r.integer("ReceiverType"))
                for r in receivers.children("Receiver")
            )
            if receivers is not None
            else (),
        )

    # --- status ---

    def status_header(self, n: _Node) -> StatusHeader:
        return StatusHeader(
            from_=self.organization(n.required("From")),
            response_for=self.response_for(n.required("ResponseFor")),
            status_code=n.required_text("StatusCode"),
            staff_info=self.staff_info(n.child("StaffInfo")),
            description=n.text("Description"),
            timestamp=n.timestamp("Timestamp"),
        )

    # --- manifest and attachments ---

    def manifest(self, n: _Node) -> tuple[ManifestReference, ...]:
        return tuple(self.reference(r) for r in n.children("Reference"))

    def reference(self, n: _Node) -> ManifestReference:
        content_id = n.required_text("ContentId")
        size_el = _ext(n, "Size")
        sha_el = _ext(n, "SHA256")
        size: int | None = None
        if size_el is not None:
            try:
                size = _to_int(_text_of(size_el))
                if size < 0:
                    raise PackageError("edxml.bad_integer", f"negative size {size}")
            except PackageError as exc:
                size = self.soft(PackageError(exc.code, f"{n.path}/Size: {exc.detail}"), None)
        sha256: str | None = None
        if sha_el is not None:
            text = _text_of(sha_el).strip()
            if _SHA256_HEX.fullmatch(text):
                sha256 = text.lower()
            else:
                self.soft(
                    PackageError(
                        "edxml.attachment_digest", f"{n.path}/SHA256 of {content_id!r} is not 64 hex digits"
                    ),
                    None,
                )
        return ManifestReference(
            content_id=content_id,
            content_type=n.text("ContentType"),
            description=n.text("Description"),
            attachment_name=n.text("AttachmentName"),
            size=size,
            sha256=sha256,
        )

    def attachments(self, n: _Node) -> tuple[Attachment, ...]:
        return tuple(self.attachment(a) for a in n.children("Attachment"))

    def attachment(self, n: _Node) -> Attachment:
        content_id = n.required_text("ContentId")
        encoded = n.required_text("ContentTransferEncoded")
        try:
            data = decode_base64(encoded)
        except PackageError as exc:
            data = self.soft(PackageError(exc.code, f"attachment {content_id!r}: {exc.detail}"), b"")
        return Attachment(
            content_id=content_id,
            attachment_name=n.text("AttachmentName"),
            description=n.text("Description"),
            content_type=n.text("ContentType"),
            data=data,
        )


def _texts(n: _Node | None, name: str) -> tuple[str, ...]:
    """Repeated text children (``ToPlaces/Place``, ``Appendixes/Appendix``); empty ones are dropped."""
    if n is None:
        return ()
    return tuple(t for t in (_text_of(el) for el in n.all(name)) if t)


def _ext(n: _Node, name: str) -> etree._Element | None:
    found = n.all(_EXT_PREFIX + name)
    if len(found) > 1:
        n.reader.soft(
            PackageError("edxml.unexpected_element", f"{n.path}/{name} appears {len(found)} times"), None
        )
    return found[0] if found else None
