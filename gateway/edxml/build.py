"""The model → edXML bytes, in the shape real hubs produce. Pure: no I/O.

Shape, taken from the interop samples so that other vendors' readers accept it:

* the root is an unprefixed ``edXML`` in the edXML default namespace, and the ``edXML`` prefix is
  declared on it too; every other element is written ``edXML:Name``. Namespace-aware readers see the
  same names as in the samples; prefix-matching readers see the same prefixes;
* dates ``yyyy/MM/dd``, timestamps ``yyyy/MM/dd HH:mm:ss``, ``Direction`` as ``true``/``false``;
* children in the order of the samples (see the ``_ORDER`` comments below); absent (``None``) fields
  and empty repeated groups are omitted;
* UTF-8 with an XML declaration, indented with two spaces (whitespace between elements is not content
  for edXML, and a signature is computed over whatever bytes are finally sent);
* base64 *unwrapped*, one line per attachment, as the samples have it: fastest to write and to read,
  and no reader has to care about line lengths.

``signature_placeholder=True`` puts ``<ds:Signature Id="placeholder"/>`` as the last child of
``edXMLHeader``: signxml fills an element with exactly that ``Id`` instead of appending its signature to
the root (signxml/signer.py, ``_unpack``), which puts the enveloped signature where DESIGN §2 says.
"""

from __future__ import annotations

from collections.abc import Iterable

import pybase64
from lxml import etree

from gateway.edxml.codes import format_date, format_timestamp
from gateway.edxml.model import (
    DS_NS,
    EXT_NS,
    NS,
    Attachment,
    Bussiness,
    DocumentPackage,
    ManifestReference,
    Message,
    MessageHeader,
    Organization,
    ResponseFor,
    StaffInfo,
    StatusHeader,
    StatusMessage,
    TraceHeaderList,
)
from gateway.errors import PackageError

PREFIX = "edXML"
EXT_PREFIX = "gw"
XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
PLACEHOLDER_ID = "placeholder"


def build(
    msg: Message,
    *,
    signature_placeholder: bool = False,
    include_attachments: bool = True,
    envelope_id: str | None = None,
) -> bytes:
    """Serialise a package or status message to the bytes that are signed and sent."""
    root = build_tree(
        msg,
        signature_placeholder=signature_placeholder,
        include_attachments=include_attachments,
        envelope_id=envelope_id,
    )
    return XML_DECLARATION + etree.tostring(root, encoding="UTF-8")


def build_tree(
    msg: Message,
    *,
    signature_placeholder: bool = False,
    include_attachments: bool = True,
    envelope_id: str | None = None,
) -> etree._Element:
    """The same document as an lxml tree, for signing in place.

    ``envelope_id`` sets ``Id`` on ``edXMLEnvelope`` (what the multipart form's envelope-reference
    signature points at); ``include_attachments=False`` leaves ``AttachmentEncoded`` out (the multipart
    form carries the bytes as parts, covered through the manifest's size and SHA-256).
    """
    nsmap: dict[str | None, str] = {None: NS, PREFIX: NS}
    if isinstance(msg, DocumentPackage) and any(
        r.size is not None or r.sha256 is not None for r in msg.manifest
    ):
        nsmap[EXT_PREFIX] = EXT_NS
    root = etree.Element(f"{{{NS}}}edXML", nsmap=nsmap)  # type: ignore[arg-type]
    envelope = _el(root, "edXMLEnvelope", nsmap={PREFIX: NS})
    if envelope_id is not None:
        envelope.set("Id", envelope_id)
    header = _el(envelope, "edXMLHeader")
    try:
        if isinstance(msg, StatusMessage):
            _status_header(_el(header, "MessageHeader"), msg.header)
            if msg.trace is not None:
                _trace(_el(header, "TraceHeaderList"), msg.trace)
        else:
            _message_header(_el(header, "MessageHeader"), msg.header)
            _trace(_el(header, "TraceHeaderList"), msg.trace)
        if signature_placeholder:
            etree.SubElement(header, f"{{{DS_NS}}}Signature", nsmap={"ds": DS_NS}, Id=PLACEHOLDER_ID)
        if isinstance(msg, DocumentPackage):
            body = _el(envelope, "edXMLBody")
            manifest = _el(body, "edXMLManifest", nsmap={PREFIX: NS})
            manifest.set("version", "1.0")
            for ref in msg.manifest:
                _reference(_el(manifest, "Reference"), ref)
            if include_attachments and msg.attachments:
                encoded = _el(root, "AttachmentEncoded", nsmap={PREFIX: NS})
                for att in msg.attachments:
                    _attachment(_el(encoded, "Attachment"), att)
    except ValueError as exc:  # lxml refuses text XML cannot carry (control characters, lone surrogates)
        raise PackageError("xml.malformed", f"a field holds a character XML cannot carry: {exc}") from exc
    etree.indent(root, space="  ")
    return root


# --- helpers ----------------------------------------------------------------------------------------


def _el(parent: etree._Element, name: str, nsmap: dict[str | None, str] | None = None) -> etree._Element:
    return etree.SubElement(parent, f"{{{NS}}}{name}", nsmap=nsmap)  # type: ignore[arg-type]


def _text(parent: etree._Element, name: str, value: str | int | bool | None) -> None:
    """Append ``<edXML:name>value</edXML:name>`` unless ``value`` is ``None``."""
    if value is None:
        return
    if isinstance(value, bool):
        value = "true" if value else "false"
    _el(parent, name).text = str(value)


def _texts(parent: etree._Element, group: str, name: str, values: Iterable[str]) -> None:
    values = tuple(values)
    if values:
        holder = _el(parent, group)
        for value in values:
            _text(holder, name, value)


def _organization(el: etree._Element, org: Organization) -> None:
    # Sample order: OrganId, OrganizationInCharge, OrganName, OrganAdd, Email, Telephone, Fax, Website.
    _text(el, "OrganId", org.organ_id)
    _text(el, "OrganizationInCharge", org.organization_in_charge)
    _text(el, "OrganName", org.organ_name)
    _text(el, "OrganAdd", org.organ_add)
    _text(el, "Email", org.email)
    _text(el, "Telephone", org.telephone)
    _text(el, "Fax", org.fax)
    _text(el, "Website", org.website)


def _response_for(el: etree._Element, ref: ResponseFor) -> None:
    _text(el, "OrganId", ref.organ_id)
    _text(el, "Code", ref.code)
    _text(el, "PromulgationDate", format_date(ref.promulgation_date) if ref.promulgation_date else None)
    _text(el, "DocumentId", ref.document_id)


def _staff_info(parent: etree._Element, staff: StaffInfo | None) -> None:
    if staff is None:
        return
    el = _el(parent, "StaffInfo")
    _text(el, "Department", staff.department)
    _text(el, "Staff", staff.staff)
    _text(el, "Mobile", staff.mobile)
    _text(el, "Email", staff.email)


def _message_header(el: etree._Element, h: MessageHeader) -> None:
    # From, To+, DocumentId?, Code, PromulgationInfo, DocumentType, Subject, Content, SignerInfo, DueDate,
    # ToPlaces, OtherInfo, ResponseFor*, SteeringType.
    _organization(_el(el, "From"), h.from_)
    for to in h.to:
        _organization(_el(el, "To"), to)
    _text(el, "DocumentId", h.document_id)
    if h.code is not None:
        code = _el(el, "Code")
        _text(code, "CodeNumber", h.code.code_number)
        _text(code, "CodeNotation", h.code.code_notation)
    if h.promulgation_info is not None:
        info = _el(el, "PromulgationInfo")
        _text(info, "Place", h.promulgation_info.place)
        date = h.promulgation_info.promulgation_date
        _text(info, "PromulgationDate", format_date(date) if date else None)
    if h.document_type is not None:
        doc_type = _el(el, "DocumentType")
        _text(doc_type, "Type", h.document_type.type)
        _text(doc_type, "TypeDetail", h.document_type.type_detail)
        _text(doc_type, "TypeName", h.document_type.type_name)
    _text(el, "Subject", h.subject)
    _text(el, "Content", h.content)
    if h.signer_info is not None:
        signer = _el(el, "SignerInfo")
        _text(signer, "Competence", h.signer_info.competence)
        _text(signer, "Position", h.signer_info.position)
        _text(signer, "FullName", h.signer_info.full_name)
    _text(el, "DueDate", format_date(h.due_date) if h.due_date else None)
    _texts(el, "ToPlaces", "Place", h.to_places)
    if h.other_info is not None:
        o = h.other_info
        other = _el(el, "OtherInfo")
        _text(other, "Priority", o.priority)
        _text(other, "SphereOfPromulgation", o.sphere_of_promulgation)
        _text(other, "TyperNotation", o.typer_notation)
        _text(other, "PromulgationAmount", o.promulgation_amount)
        _text(other, "PageAmount", o.page_amount)
        _text(other, "Direction", o.direction)
        _texts(other, "Appendixes", "Appendix", o.appendixes)
    for ref in h.response_for:
        _response_for(_el(el, "ResponseFor"), ref)
    _text(el, "SteeringType", h.steering_type)


def _status_header(el: etree._Element, h: StatusHeader) -> None:
    # From, ResponseFor, StaffInfo, StatusCode, Description, Timestamp.
    _organization(_el(el, "From"), h.from_)
    _response_for(_el(el, "ResponseFor"), h.response_for)
    _staff_info(el, h.staff_info)
    _text(el, "StatusCode", h.status_code)
    _text(el, "Description", h.description)
    _text(el, "Timestamp", format_timestamp(h.timestamp) if h.timestamp else None)


def _trace(el: etree._Element, trace: TraceHeaderList) -> None:
    # TraceHeader*, Bussiness.
    for th in trace.trace_headers:
        t = _el(el, "TraceHeader")
        _text(t, "OrganId", th.organ_id)
        _text(t, "Timestamp", format_timestamp(th.timestamp) if th.timestamp else None)
    if trace.bussiness is not None:
        _bussiness(_el(el, "Bussiness"), trace.bussiness)


def _bussiness(el: etree._Element, b: Bussiness) -> None:
    # DocumentId, BussinessDocType, BussinessDocReason, Paper, BussinessDocumentInfo, ReplacementInfoList,
    # StaffInfo.
    _text(el, "DocumentId", b.document_id)
    _text(el, "BussinessDocType", b.bussiness_doc_type)
    _text(el, "BussinessDocReason", b.bussiness_doc_reason)
    _text(el, "Paper", b.paper)
    if b.bussiness_document_info is not None:
        info = b.bussiness_document_info
        i = _el(el, "BussinessDocumentInfo")
        _text(i, "DocumentInfo", info.document_info)
        _text(i, "DocumentReceiver", info.document_receiver)
        if info.receiver_list:
            receivers = _el(i, "ReceiverList")
            for r in info.receiver_list:
                rel = _el(receivers, "Receiver")
                _text(rel, "OrganId", r.organ_id)
                _text(rel, "ReceiverType", r.receiver_type)
    if b.replacement_info_list is not None:
        lst = _el(el, "ReplacementInfoList")
        for rep in b.replacement_info_list:
            r = _el(lst, "ReplacementInfo")
            _text(r, "DocumentId", rep.document_id)
            _texts(r, "OrganIdList", "OrganId", rep.organ_id_list)
    _staff_info(el, b.staff_info)


def _reference(el: etree._Element, ref: ManifestReference) -> None:
    # ContentId, ContentType, Description, AttachmentName, then the extension's Size and SHA256.
    _text(el, "ContentId", ref.content_id)
    _text(el, "ContentType", ref.content_type)
    _text(el, "Description", ref.description)
    _text(el, "AttachmentName", ref.attachment_name)
    if ref.size is not None:
        etree.SubElement(el, f"{{{EXT_NS}}}Size").text = str(ref.size)
    if ref.sha256 is not None:
        etree.SubElement(el, f"{{{EXT_NS}}}SHA256").text = ref.sha256


def _attachment(el: etree._Element, att: Attachment) -> None:
    # ContentId, AttachmentName, Description, ContentType, ContentTransferEncoded.
    _text(el, "ContentId", att.content_id)
    _text(el, "AttachmentName", att.attachment_name)
    _text(el, "Description", att.description)
    _text(el, "ContentType", att.content_type)
    _el(el, "ContentTransferEncoded").text = pybase64.b64encode(att.data).decode("ascii")
