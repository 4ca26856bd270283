"""Pure helpers of the node: build dispatches and status messages, sign them, choose the carriage form,
and read a received package (either form) into a verified model and its files.

No I/O beyond what the caller hands in; no aiohttp, no database.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.edxml.codes import DocumentId, compose_document_id
from gateway.edxml.model import (
    Attachment,
    Bussiness,
    BussinessDocumentInfo,
    Code,
    DocumentPackage,
    DocumentType,
    ManifestReference,
    MessageHeader,
    Organization,
    OtherInfo,
    PromulgationInfo,
    ReplacementInfo,
    ResponseFor,
    SignerInfo,
    StaffInfo,
    StatusHeader,
    StatusMessage,
    TraceHeader,
    TraceHeaderList,
)
from gateway.edxml.multipart import MemorySink, read_multipart_bytes, to_multipart
from gateway.errors import GatewayError, PackageError
from gateway.signature.sign import sign_message
from gateway.trust.pki import Issued
from gateway.trust.store import TrustStore
from gateway.verification import VerifiedPackage, verify_package

VN = dt.timezone(dt.timedelta(hours=7), "ICT")
SINGLE = "application/edxml+xml"


def vn_now() -> dt.datetime:
    return dt.datetime.now(VN)


@dataclass(frozen=True, slots=True, kw_only=True)
class FileSpec:
    name: str
    data: bytes = field(repr=False)
    content_type: str = "application/pdf"
    description: str | None = None

    @classmethod
    def of(cls, name: str, data: bytes) -> FileSpec:
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return cls(name=name, data=data, content_type=ctype)


@dataclass(frozen=True, slots=True, kw_only=True)
class Dispatch:
    """What a clerk fills in for a dispatch (công văn đi)."""

    sender: str
    sender_name: str | None = None
    recipients: tuple[str, ...]
    number: str
    notation: str
    subject: str
    date: dt.date | None = None
    place: str | None = None
    doc_type: int | None = None
    type_name: str | None = None
    content: str | None = None
    signer: str | None = None
    position: str | None = None
    competence: str | None = None
    priority: int = 0
    paper: int = 0
    due_date: dt.date | None = None
    files: tuple[FileSpec, ...] = ()
    business_doc_type: int = 0
    reason: str | None = None
    replaces: tuple[str, ...] = ()
    """For a replacement (3): DocumentIds of the documents it replaces."""

    @property
    def document_id(self) -> str:
        return compose_document_id(
            organ_id=self.sender,
            promulgation_date=self.date or vn_now().date(),
            code_number=self.number,
            code_notation=self.notation,
        )


def build_document(d: Dispatch) -> DocumentPackage:
    """The edXML model of a dispatch; recall (1), update (2) and replacement (3) set Bussiness fields."""
    day = d.date or vn_now().date()
    document_id = d.document_id
    attachments = tuple(
        Attachment(
            content_id=f"cid:{i}",
            attachment_name=f.name,
            description=f.description or f.name,
            content_type=f.content_type,
            data=f.data,
        )
        for i, f in enumerate(d.files, 1)
    )
    manifest = tuple(
        ManifestReference(
            content_id=a.content_id,
            content_type=a.content_type,
            description=a.description,
            attachment_name=a.attachment_name,
        )
        for a in attachments
    )
    info = None
    if d.business_doc_type == 2:
        info = BussinessDocumentInfo(document_info=1, document_receiver=0)
    replacements = None
    if d.business_doc_type == 3 and d.replaces:
        replacements = tuple(ReplacementInfo(document_id=r, organ_id_list=d.recipients) for r in d.replaces)
    return DocumentPackage(
        header=MessageHeader(
            from_=Organization(organ_id=d.sender, organ_name=d.sender_name),
            to=tuple(Organization(organ_id=r) for r in d.recipients),
            document_id=document_id,
            code=Code(code_number=d.number, code_notation=d.notation),
            promulgation_info=PromulgationInfo(place=d.place, promulgation_date=day),
            document_type=DocumentType(type=d.doc_type, type_name=d.type_name)
            if d.doc_type is not None or d.type_name
            else None,
            subject=d.subject,
            content=d.content,
            signer_info=SignerInfo(competence=d.competence, position=d.position, full_name=d.signer)
            if d.signer or d.position
            else None,
            due_date=d.due_date,
            other_info=OtherInfo(priority=d.priority),
        ),
        trace=TraceHeaderList(
            trace_headers=(
                TraceHeader(organ_id=d.sender, timestamp=vn_now().replace(tzinfo=None, microsecond=0)),
            ),
            bussiness=Bussiness(
                document_id=document_id,
                bussiness_doc_type=d.business_doc_type,
                bussiness_doc_reason=d.reason,
                paper=d.paper,
                bussiness_document_info=info,
                replacement_info_list=replacements,
            ),
        ),
        manifest=manifest,
        attachments=attachments,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Signed:
    data: bytes = field(repr=False)
    content_type: str
    carriage: str
    document_id: str
    recipients: tuple[str, ...]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def sign_document(pkg: DocumentPackage, identity: Issued, *, multipart_threshold: int) -> Signed:
    """Sign by document reference in the single-file form, or, when the attachments exceed the threshold,
    by envelope reference (manifest digests) and carry it multipart."""
    chain = [c for c in identity.chain if c.subject != c.issuer]
    total = sum(len(a.data) for a in pkg.attachments)
    large = bool(pkg.attachments) and total > multipart_threshold
    signed = sign_message(
        pkg, key=identity.key, cert=identity.cert, chain=chain, reference="envelope" if large else "document"
    )
    recipients = tuple(o.organ_id for o in pkg.header.to)
    document_id = pkg.header.document_id or ""
    if not large:
        return Signed(
            data=signed,
            content_type=SINGLE,
            carriage="single",
            document_id=document_id,
            recipients=recipients,
        )
    content_type, chunks = to_multipart(signed)
    return Signed(
        data=b"".join(chunks),
        content_type=content_type,
        carriage="multipart",
        document_id=document_id,
        recipients=recipients,
    )


def build_status(
    *,
    sender: str,
    sender_name: str | None,
    document_id: str,
    code: str,
    description: str | None,
    staff: str | None = None,
) -> StatusMessage:
    """A status message about ``document_id``; ``ResponseFor/OrganId`` is the document's sender."""
    doc = DocumentId.parse(document_id)
    return StatusMessage(
        header=StatusHeader(
            from_=Organization(organ_id=sender, organ_name=sender_name),
            response_for=ResponseFor(
                organ_id=doc.organ_id,
                code=doc.code,
                promulgation_date=doc.promulgation_date,
                document_id=document_id,
            ),
            status_code=code,
            staff_info=StaffInfo(staff=staff) if staff else None,
            description=description,
            timestamp=vn_now().replace(tzinfo=None, microsecond=0),
        )
    )


def sign_status(msg: StatusMessage, identity: Issued) -> bytes:
    chain = [c for c in identity.chain if c.subject != c.issuer]
    return sign_message(msg, key=identity.key, cert=identity.cert, chain=chain, reference="document")


# --- receiving --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Received:
    """A package fetched from the hub, as this node judged it."""

    sha256: str
    ok: bool
    code: str | None
    detail: str | None
    verified: VerifiedPackage | None
    files: tuple[FileSpec, ...] = ()


def judge_package(
    data: bytes, content_type: str, *, expected_sha256: str, trust: TrustStore, at: dt.datetime
) -> Received:
    """Verify a received package ourselves (signature, signer trusted for the signed ``From``, fields),
    whatever the hub said. Never raises for a bad package: the verdict is data."""
    sha = hashlib.sha256(data).hexdigest()
    try:
        media = content_type.split(";", 1)[0].strip().lower()
        if media == "multipart/related":
            result = read_multipart_bytes(data, content_type, sink_factory=MemorySink)
            verified = verify_package(result.edxml, trust=trust, at=at, attachments=result.digests())
            parts = {p.content_id: p.handle.data for p in result.parts}
        else:
            verified = verify_package(data, trust=trust, at=at)
            parts = {}
        if sha != expected_sha256:
            # The signature holds but these are not the bytes the hub registered: refuse anyway.
            raise PackageError(
                "node.package_digest", f"SHA-256 {sha[:16]}… is not the package id {expected_sha256[:16]}…"
            )
        message = verified.message
        if not isinstance(message, DocumentPackage):
            raise PackageError("edxml.not_edxml", "a status message arrived as a package")
        files = _files(message, parts)
    except GatewayError as exc:
        return Received(sha256=sha, ok=False, code=exc.code, detail=exc.detail, verified=None)
    except Exception as exc:
        return Received(
            sha256=sha, ok=False, code="edxml.not_edxml", detail=f"unreadable: {exc}", verified=None
        )
    return Received(sha256=sha, ok=True, code=None, detail=None, verified=verified, files=files)


def _files(message: DocumentPackage, parts: dict[str, bytes]) -> tuple[FileSpec, ...]:
    from gateway.edxml.multipart import normalize_content_id

    inline = {normalize_content_id(a.content_id): a for a in message.attachments}
    out: list[FileSpec] = []
    for i, ref in enumerate(message.manifest, 1):
        cid = normalize_content_id(ref.content_id)
        att = inline.get(cid)
        data = att.data if att is not None else parts.get(cid, b"")
        name = ref.attachment_name or (att.attachment_name if att else None) or f"attachment-{i}"
        out.append(
            FileSpec(name=name, data=data, content_type=ref.content_type or "application/octet-stream")
        )
    return tuple(out)


def metadata_of(pkg: DocumentPackage) -> dict[str, Any]:
    """The JSON-ready metadata a DMS needs, read from the signed model."""
    h = pkg.header
    b = pkg.bussiness
    other = h.other_info
    return {
        "document_id": h.document_id,
        "from": {"organ_id": h.from_.organ_id, "organ_name": h.from_.organ_name},
        "to": [o.organ_id for o in h.to],
        "code_number": h.code.code_number if h.code else None,
        "code_notation": h.code.code_notation if h.code else None,
        "promulgation_date": h.promulgation_info.promulgation_date.isoformat()
        if h.promulgation_info and h.promulgation_info.promulgation_date
        else None,
        "place": h.promulgation_info.place if h.promulgation_info else None,
        "document_type": h.document_type.type if h.document_type else None,
        "type_name": h.document_type.type_name if h.document_type else None,
        "subject": h.subject,
        "content": h.content,
        "signer": h.signer_info.full_name if h.signer_info else None,
        "position": h.signer_info.position if h.signer_info else None,
        "priority": other.priority if other else None,
        "due_date": h.due_date.isoformat() if h.due_date else None,
        "business_doc_type": b.bussiness_doc_type if b else 0,
        "business_doc_reason": b.bussiness_doc_reason if b else None,
        "paper": b.paper if b else 0,
        "replaces": [r.document_id for r in (b.replacement_info_list or ())] if b else [],
    }


def dispatch_from_package(pkg: DocumentPackage, **changes: Any) -> Dispatch:
    """A dispatch with the fields of an existing package (for updates and replacements), then ``changes``."""
    h = pkg.header
    base = Dispatch(
        sender=h.from_.organ_id,
        sender_name=h.from_.organ_name,
        recipients=tuple(o.organ_id for o in h.to),
        number=h.code.code_number if h.code else "",
        notation=h.code.code_notation if h.code else "",
        subject=h.subject or "",
        date=h.promulgation_info.promulgation_date if h.promulgation_info else None,
        place=h.promulgation_info.place if h.promulgation_info else None,
        doc_type=h.document_type.type if h.document_type else None,
        type_name=h.document_type.type_name if h.document_type else None,
        content=h.content,
        signer=h.signer_info.full_name if h.signer_info else None,
        position=h.signer_info.position if h.signer_info else None,
        competence=h.signer_info.competence if h.signer_info else None,
        priority=(h.other_info.priority if h.other_info else None) or 0,
        paper=pkg.bussiness.paper if pkg.bussiness else 0,
        due_date=h.due_date,
        files=tuple(
            FileSpec(
                name=a.attachment_name or a.content_id,
                data=a.data,
                content_type=a.content_type or "application/pdf",
            )
            for a in pkg.attachments
        ),
    )
    return replace(base, **changes)


def files_named(files: Sequence[FileSpec]) -> list[str]:
    return [f.name for f in files]
