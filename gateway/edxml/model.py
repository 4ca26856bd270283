"""The edXML model (QCVN 102:2016/BTTTT): frozen, keyword-only dataclasses and nothing else.

Names follow the wire format (DESIGN §2), in snake case; ``Bussiness`` keeps the standard's spelling
where it names an element. Optional text is ``None`` when the element is absent or empty, never ``""``,
so that ``parse(build(m)) == m`` holds. Text is kept exactly as sent (no stripping): what was signed is
what is shown.

Dates are :class:`datetime.date`; timestamps are naive :class:`datetime.datetime` in Vietnam local time
(UTC+7, no daylight saving), the way the wire format writes them (``yyyy/MM/dd HH:mm:ss``).

Codes (OrganId, DocumentId, StatusCode, …) are plain ``str``/``int`` here; :mod:`gateway.edxml.codes`
checks them. The model must hold what real, messy packages carry so that they can be inspected and given
a precise verdict instead of failing to load.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
# Extension namespace for what the multipart carriage form adds to a manifest Reference (size, SHA-256).
EXT_NS = "urn:lgsp-gateway:edxml-ext:1"


@dataclass(frozen=True, slots=True, kw_only=True)
class Organization:
    """``From`` or ``To``: an agency, identified by its code (mã định danh)."""

    organ_id: str
    organization_in_charge: str | None = None
    organ_name: str | None = None
    organ_add: str | None = None
    email: str | None = None
    telephone: str | None = None
    fax: str | None = None
    website: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Code:
    """Số và ký hiệu: the document number and its notation (e.g. ``123`` / ``UBND-VP``)."""

    code_number: str
    code_notation: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PromulgationInfo:
    place: str | None = None
    promulgation_date: dt.date | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DocumentType:
    type: int | None = None
    type_detail: int | None = None
    type_name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SignerInfo:
    competence: str | None = None
    position: str | None = None
    full_name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OtherInfo:
    priority: int | None = None
    sphere_of_promulgation: str | None = None
    typer_notation: str | None = None
    promulgation_amount: int | None = None
    page_amount: int | None = None
    # ``true``/``false`` on the wire (the samples write ``<Direction>false</Direction>``); a bool, not an int.
    direction: bool | None = None
    appendixes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseFor:
    """A reference to an earlier document (in a document: the one answered; in a status: the one reported)."""

    organ_id: str | None = None
    code: str | None = None
    promulgation_date: dt.date | None = None
    document_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StaffInfo:
    department: str | None = None
    staff: str | None = None
    mobile: str | None = None
    email: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceHeader:
    organ_id: str
    timestamp: dt.datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Receiver:
    organ_id: str
    receiver_type: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BussinessDocumentInfo:
    """What an update (BussinessDocType 2) changes: the document information and/or its receivers."""

    document_info: int | None = None
    document_receiver: int | None = None
    receiver_list: tuple[Receiver, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplacementInfo:
    """A document replaced by this one (BussinessDocType 3), and at which agencies."""

    document_id: str
    organ_id_list: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Bussiness:
    """``Bussiness`` (sic): the business purpose of the package and whether paper was also sent."""

    document_id: str | None = None
    bussiness_doc_type: int = 0
    bussiness_doc_reason: str | None = None
    paper: int = 0
    bussiness_document_info: BussinessDocumentInfo | None = None
    replacement_info_list: tuple[ReplacementInfo, ...] | None = None
    staff_info: StaffInfo | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceHeaderList:
    trace_headers: tuple[TraceHeader, ...] = ()
    bussiness: Bussiness | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ManifestReference:
    """One attachment as the manifest lists it.

    ``size`` and ``sha256`` (lower-case hex) are the gateway's extension (namespace :data:`EXT_NS`): a
    signature over the envelope covers the attachments through them, which is what makes the multipart
    form possible. Standard packages leave them ``None``.
    """

    content_id: str
    content_type: str | None = None
    description: str | None = None
    attachment_name: str | None = None
    size: int | None = None
    sha256: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    """An inline attachment (single-file form). ``data`` is the decoded bytes."""

    content_id: str
    attachment_name: str | None = None
    description: str | None = None
    content_type: str | None = None
    data: bytes = field(default=b"", repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageHeader:
    """The header of a document package."""

    from_: Organization
    to: tuple[Organization, ...]
    document_id: str | None = None
    code: Code | None = None
    promulgation_info: PromulgationInfo | None = None
    document_type: DocumentType | None = None
    subject: str | None = None
    content: str | None = None
    signer_info: SignerInfo | None = None
    due_date: dt.date | None = None
    to_places: tuple[str, ...] = ()
    other_info: OtherInfo | None = None
    response_for: tuple[ResponseFor, ...] = ()
    steering_type: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DocumentPackage:
    """A dispatch: header, trace, manifest and (single-file form) inline attachments.

    In the multipart form ``attachments`` is empty and the bytes travel as parts; the manifest then
    carries each part's size and SHA-256.
    """

    header: MessageHeader
    trace: TraceHeaderList = field(default_factory=TraceHeaderList)
    manifest: tuple[ManifestReference, ...] = ()
    attachments: tuple[Attachment, ...] = ()

    @property
    def bussiness(self) -> Bussiness:
        return self.trace.bussiness or Bussiness()


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusHeader:
    """The header of a status message (thông điệp trạng thái)."""

    from_: Organization
    response_for: ResponseFor
    status_code: str
    staff_info: StaffInfo | None = None
    description: str | None = None
    timestamp: dt.datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusMessage:
    header: StatusHeader
    trace: TraceHeaderList | None = None


Message = DocumentPackage | StatusMessage


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachmentDigest:
    """What was measured of one attachment's bytes, to be compared with its signed manifest Reference.

    ``content_id`` is normalised: without the ``cid:`` prefix and without angle brackets. ``sha256`` is
    lower-case hex. The multipart reader produces these while it streams the parts to storage, so the
    verifier never needs the bytes themselves.
    """

    content_id: str
    size: int
    sha256: str
