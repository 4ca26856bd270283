"""Field rules of QCVN 102:2016 and of the hubs that enforce it (DESIGN §2), over the parsed model.

Parsing answers "can this be read?"; validation answers "may this be accepted?". They are separate so
that ``inspect`` can show a messy real package in full together with *every* problem
(:func:`violations`), while the hub stops at the first (:func:`validate`).

Lengths are counted in characters (Unicode code points), the unit the standard's limits are written in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterable

from gateway.edxml.codes import (
    BussinessDocType,
    DocumentId,
    OrganId,
    Paper,
    Priority,
    StatusCode,
    format_date,
)
from gateway.edxml.model import (
    DocumentPackage,
    Message,
    Organization,
    ResponseFor,
    StatusMessage,
)
from gateway.errors import FieldError, GatewayError, PackageError

LIMITS: dict[str, int] = {
    "CodeNumber": 11,
    "CodeNotation": 30,
    "Subject": 500,
    "Content": 500,
    "Place": 50,
    "OrganName": 200,
    "OrganAdd": 500,
}
"""Maximum lengths in characters, by element name."""

# Status codes whose Description is the reason the recipient must give (từ chối ... kèm lý do).
REASON_REQUIRED = frozenset({StatusCode.REFUSED})


def validate(msg: Message, *, today: dt.date, strict_organ_id: bool = True) -> None:
    """Raise the first violation, if any (the hub's acceptance check)."""
    found = violations(msg, today=today, strict_organ_id=strict_organ_id)
    if found:
        raise found[0]


def violations(msg: Message, *, today: dt.date, strict_organ_id: bool = True) -> list[GatewayError]:
    """Every problem of ``msg``, in document order, each a :class:`GatewayError` with its own code.

    ``today`` is the receiver's date in Vietnam (UTC+7): nothing here reads a clock.
    ``strict_organ_id=False`` admits legacy agency codes such as ``28.22.H17``.
    """
    checker = _Checker(today=today, strict_organ_id=strict_organ_id)
    if isinstance(msg, StatusMessage):
        checker.status(msg)
    else:
        checker.document(msg)
    return checker.found


class _Checker:
    def __init__(self, *, today: dt.date, strict_organ_id: bool) -> None:
        self.today = today
        self.strict = strict_organ_id
        self.found: list[GatewayError] = []

    # --- primitives ---

    def add(self, code: str, detail: str) -> None:
        self.found.append(FieldError(code, detail))

    def attempt(self, check: Callable[[], object], where: str) -> object | None:
        try:
            return check()
        except FieldError as exc:
            self.failed(exc, where)
            return None

    def failed(self, exc: FieldError, where: str) -> None:
        self.found.append(FieldError(exc.code, f"{where}: {exc.detail}"))

    def length(self, where: str, name: str, value: str | None) -> None:
        if value is not None and len(value) > LIMITS[name]:
            self.add("field.too_long", f"{where} is {len(value)} characters; {name} allows {LIMITS[name]}")

    def required(self, where: str, value: object) -> bool:
        if value is None or value == "" or value == ():
            self.add("field.required", f"{where} is required")
            return False
        return True

    def organ_id(self, where: str, value: str | None) -> None:
        if not value:
            self.add("field.required", f"{where} is required")
            return
        try:  # (the codes checked most often are checked without attempt's closure)
            OrganId.check(value, strict=self.strict)
        except FieldError as exc:
            self.failed(exc, where)

    def document_id(self, where: str, value: str) -> DocumentId | None:
        try:
            return DocumentId.parse(value, strict_organ_id=self.strict)
        except FieldError as exc:
            self.failed(exc, where)
            return None

    def organization(self, where: str, org: Organization) -> None:
        self.organ_id(f"{where}/OrganId", org.organ_id)
        self.length(f"{where}/OrganName", "OrganName", org.organ_name)
        self.length(f"{where}/OrganAdd", "OrganAdd", org.organ_add)

    def agreement(
        self,
        where: str,
        doc_id: DocumentId,
        *,
        organ_id: str | None,
        date: dt.date | None,
        code_number: str | None,
        code_notation: str | None,
    ) -> None:
        """A DocumentId repeats the sender, date and number: say which part disagrees."""
        parts = []
        if organ_id and doc_id.organ_id != organ_id:
            parts.append(f"agency {doc_id.organ_id} ≠ {organ_id}")
        if date is not None and doc_id.promulgation_date != date:
            parts.append(f"date {format_date(doc_id.promulgation_date)} ≠ {format_date(date)}")
        code = (code_number, code_notation)
        if None not in code and (doc_id.code_number, doc_id.code_notation) != code:
            parts.append(f"code {doc_id.code} ≠ {code_number}/{code_notation}")
        if parts:
            self.add("field.document_id_mismatch", f"{where} {str(doc_id)!r}: " + "; ".join(parts))

    def response_for(self, where: str, ref: ResponseFor) -> None:
        if ref.organ_id:
            self.organ_id(f"{where}/OrganId", ref.organ_id)
        if ref.document_id:
            doc_id = self.document_id(f"{where}/DocumentId", ref.document_id)
            if doc_id is not None:
                number, slash, notation = (ref.code or "").partition("/")
                # ResponseFor/OrganId is not compared: in the samples it names the agency the response is
                # addressed to (a status 13 from the sender carries the recipient's code there).
                self.agreement(
                    f"{where}/DocumentId",
                    doc_id,
                    organ_id=None,
                    date=ref.promulgation_date,
                    code_number=number if slash else None,
                    code_notation=notation if slash else None,
                )

    # --- documents ---

    def document(self, pkg: DocumentPackage) -> None:
        h = pkg.header
        bussiness = pkg.bussiness
        self.organization("From", h.from_)
        if not h.to:
            self.add("field.no_recipient", "the package has no To")
        seen: set[str] = set()
        for i, to in enumerate(h.to, 1):
            self.organization(f"To[{i}]", to)
            if to.organ_id in seen:
                self.add("field.duplicate_recipient", f"To[{i}] {to.organ_id} is listed more than once")
            seen.add(to.organ_id)

        doc_type = self.attempt(
            lambda: BussinessDocType.parse(bussiness.bussiness_doc_type), "Bussiness/BussinessDocType"
        )
        self.attempt(lambda: Paper.parse(bussiness.paper), "Bussiness/Paper")

        if doc_type in (BussinessDocType.NEW, BussinessDocType.REPLACE):
            self.required("Code", h.code)
            self.required("Subject", h.subject)
        if h.code is not None:
            if self.required("Code/CodeNumber", h.code.code_number):
                self.length("Code/CodeNumber", "CodeNumber", h.code.code_number)
            if self.required("Code/CodeNotation", h.code.code_notation):
                self.length("Code/CodeNotation", "CodeNotation", h.code.code_notation)
        date = h.promulgation_info.promulgation_date if h.promulgation_info else None
        if h.promulgation_info is not None:
            self.length("PromulgationInfo/Place", "Place", h.promulgation_info.place)
            if date is not None and date > self.today:
                self.add(
                    "field.future_date",
                    f"PromulgationDate {format_date(date)} is after today, {format_date(self.today)}",
                )
        self.length("Subject", "Subject", h.subject)
        self.length("Content", "Content", h.content)

        if h.document_id is not None:
            doc_id = self.document_id("DocumentId", h.document_id)
            if doc_id is not None:
                self.agreement(
                    "DocumentId",
                    doc_id,
                    organ_id=h.from_.organ_id,
                    date=date,
                    code_number=h.code.code_number if h.code else None,
                    code_notation=h.code.code_notation if h.code else None,
                )
        if h.other_info is not None and h.other_info.priority is not None:
            priority = h.other_info.priority
            self.attempt(lambda: Priority.parse(priority), "OtherInfo/Priority")
        for i, ref in enumerate(h.response_for, 1):
            self.response_for(f"ResponseFor[{i}]", ref)

        for i, trace in enumerate(pkg.trace.trace_headers, 1):
            self.organ_id(f"TraceHeader[{i}]/OrganId", trace.organ_id)
        if bussiness.document_id is not None:
            self.document_id("Bussiness/DocumentId", bussiness.document_id)
        if doc_type is BussinessDocType.UPDATE:
            self.required("Bussiness/BussinessDocumentInfo", bussiness.bussiness_document_info)
        if bussiness.bussiness_document_info is not None:
            for i, r in enumerate(bussiness.bussiness_document_info.receiver_list, 1):
                self.organ_id(f"BussinessDocumentInfo/Receiver[{i}]/OrganId", r.organ_id)
        if doc_type is BussinessDocType.REPLACE:
            self.required("Bussiness/ReplacementInfoList", bussiness.replacement_info_list)
        for i, rep in enumerate(bussiness.replacement_info_list or (), 1):
            where = f"ReplacementInfo[{i}]"
            if self.required(f"{where}/DocumentId", rep.document_id):
                self.document_id(f"{where}/DocumentId", rep.document_id)
            for j, organ in enumerate(rep.organ_id_list, 1):
                self.organ_id(f"{where}/OrganId[{j}]", organ)
        self.attachments(pkg)

    def attachments(self, pkg: DocumentPackage) -> None:
        """Manifest and inline attachments must agree; the multipart form has none inline."""
        listed = {r.content_id: r for r in pkg.manifest}
        _duplicates(self, (r.content_id for r in pkg.manifest), "edXMLManifest")
        _duplicates(self, (a.content_id for a in pkg.attachments), "AttachmentEncoded")
        present = {a.content_id for a in pkg.attachments}
        for att in pkg.attachments:
            ref = listed.get(att.content_id)
            if ref is None:
                self.found.append(
                    PackageError(
                        "edxml.attachment_unlisted", f"attachment {att.content_id!r} is not in the manifest"
                    )
                )
                continue
            if ref.size is not None and ref.size != len(att.data):
                self.found.append(
                    PackageError(
                        "edxml.attachment_digest",
                        f"attachment {att.content_id!r} has {len(att.data)} bytes; the manifest: {ref.size}",
                    )
                )
            if ref.sha256 is not None and hashlib.sha256(att.data).hexdigest() != ref.sha256:
                self.found.append(
                    PackageError("edxml.attachment_digest", f"attachment {att.content_id!r}: SHA-256 differs")
                )
        if pkg.attachments:
            for content_id in listed:
                if content_id not in present:
                    self.found.append(
                        PackageError(
                            "edxml.attachment_missing",
                            f"the manifest lists {content_id!r}; it is not attached",
                        )
                    )

    # --- status messages ---

    def status(self, msg: StatusMessage) -> None:
        h = msg.header
        self.organization("From", h.from_)
        self.response_for("ResponseFor", h.response_for)
        self.required("ResponseFor/DocumentId", h.response_for.document_id)
        status = self.attempt(lambda: StatusCode.parse(h.status_code), "StatusCode")
        if status in REASON_REQUIRED:
            self.required(f"Description (the reason for status {h.status_code})", h.description)
        self.required("Timestamp", h.timestamp)
        if msg.trace is not None:
            for i, trace in enumerate(msg.trace.trace_headers, 1):
                self.organ_id(f"TraceHeader[{i}]/OrganId", trace.organ_id)


def _duplicates(checker: _Checker, ids: Iterable[str], where: str) -> None:
    seen: set[str] = set()
    for content_id in ids:
        if content_id in seen:
            checker.found.append(PackageError("edxml.attachment_duplicate", f"{where}: {content_id!r} twice"))
        seen.add(content_id)
