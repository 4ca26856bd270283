"""Hypothesis strategies for the edXML model, for every test that needs packages or status messages.

What they generate is *valid*: it passes :func:`gateway.edxml.validate.violations` with ``today=TODAY``
(strict agency codes, field limits, a DocumentId that agrees with sender, date and code, unique
recipients, manifest and attachments that agree). Text is XML-safe (no control characters, no ``\\r``
that a parser would normalise, no surrogates) and optional strings are never ``""`` (the model's
convention: absent or empty is ``None``). Tests that need broken packages break one field with
``dataclasses.replace``.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from hypothesis import strategies as st

from gateway.edxml.codes import StatusCode, compose_document_id
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

TODAY = dt.date(2026, 1, 1)
"""The ``today`` under which generated messages are valid (no promulgation date after it)."""

_XML_CHARS = st.characters(
    blacklist_categories=("Cs", "Cc"),  # surrogates; control characters (incl. \r, \x85)
    blacklist_characters="\ufffe\uffff",
) | st.sampled_from("\t\n")


def xml_text(*, max_size: int = 40) -> st.SearchStrategy[str]:
    """Non-empty text any XML 1.0 document can carry unchanged (Vietnamese, emoji, tabs, newlines)."""
    return st.text(_XML_CHARS, min_size=1, max_size=max_size)


def opt(strategy: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.none() | strategy


def organ_ids() -> st.SearchStrategy[str]:
    """Strict agency codes ``V1V2V3.Z1Z2.Y1Y2.X1X2X3``."""
    return st.builds(
        lambda v, z, y, letter, n: f"{v:03d}.{z:02d}.{y:02d}.{letter}{n:02d}",
        st.integers(0, 999),
        st.integers(0, 99),
        st.integers(0, 99),
        st.sampled_from("GHK"),
        st.integers(0, 99),
    )


def dates(min_value: dt.date = dt.date(2000, 1, 1), max_value: dt.date = TODAY) -> st.SearchStrategy[dt.date]:
    return st.dates(min_value=min_value, max_value=max_value)


def timestamps() -> st.SearchStrategy[dt.datetime]:
    """Naive local times with whole seconds (the wire carries no sub-seconds)."""
    return st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2030, 12, 31)).map(
        lambda t: t.replace(microsecond=0)
    )


code_numbers = st.text("0123456789", min_size=1, max_size=6) | st.from_regex(
    r"[0-9]{1,5}[a-z]{0,3}", fullmatch=True
)
code_notations = st.from_regex(r"[A-ZĐ]{2,6}(-[A-ZĐ]{2,6}){0,2}(/[A-ZĐ]{2,4})?", fullmatch=True)


@st.composite
def document_ids(draw: st.DrawFn, organ_id: str | None = None) -> str:
    return compose_document_id(
        organ_id=organ_id or draw(organ_ids()),
        promulgation_date=draw(dates()),
        code_number=draw(code_numbers),
        code_notation=draw(code_notations),
    )


def organizations(organ_id: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[Organization]:
    return st.builds(
        Organization,
        organ_id=organ_id or organ_ids(),
        organization_in_charge=opt(xml_text()),
        organ_name=opt(xml_text(max_size=200)),
        organ_add=opt(xml_text(max_size=60)),
        email=opt(xml_text()),
        telephone=opt(xml_text()),
        fax=opt(xml_text()),
        website=opt(xml_text()),
    )


def staff_infos() -> st.SearchStrategy[StaffInfo]:
    return st.builds(
        StaffInfo,
        department=opt(xml_text()),
        staff=opt(xml_text()),
        mobile=opt(xml_text()),
        email=opt(xml_text()),
    )


@st.composite
def response_fors(draw: st.DrawFn) -> ResponseFor:
    """A reference to an earlier document whose DocumentId agrees with its date and code."""
    organ = draw(organ_ids())
    date = draw(dates())
    number, notation = draw(code_numbers), draw(code_notations)
    doc_id = compose_document_id(
        organ_id=organ, promulgation_date=date, code_number=number, code_notation=notation
    )
    return ResponseFor(
        organ_id=draw(opt(st.just(organ))),
        code=draw(opt(st.just(f"{number}/{notation}"))),
        promulgation_date=draw(opt(st.just(date))),
        document_id=doc_id,
    )


@st.composite
def attachment_sets(
    draw: st.DrawFn, *, extension: bool | None = None
) -> tuple[tuple[ManifestReference, ...], tuple[Attachment, ...]]:
    """A manifest and its inline attachments, with the size/SHA-256 extension on all, none or some."""
    count = draw(st.integers(0, 3))
    refs, atts = [], []
    for i in range(count):
        data = draw(st.binary(max_size=300))
        content_id = f"cid:{i}-{draw(st.uuids())}"
        with_ext = draw(st.booleans()) if extension is None else extension
        name = draw(opt(xml_text()))
        content_type = draw(opt(st.sampled_from(["application/pdf", "application/zip", "text/plain"])))
        description = draw(opt(xml_text()))
        refs.append(
            ManifestReference(
                content_id=content_id,
                content_type=content_type,
                description=description,
                attachment_name=name,
                size=len(data) if with_ext else None,
                sha256=hashlib.sha256(data).hexdigest() if with_ext else None,
            )
        )
        atts.append(
            Attachment(
                content_id=content_id,
                attachment_name=name,
                description=description,
                content_type=content_type,
                data=data,
            )
        )
    return tuple(refs), tuple(atts)


@st.composite
def document_packages(
    draw: st.DrawFn, *, with_attachments: bool = True, extension: bool | None = None
) -> DocumentPackage:
    """A valid dispatch; ``with_attachments=False`` gives the multipart form's envelope (manifest only)."""
    sender = draw(organizations())
    recipients = draw(st.lists(organizations(), min_size=1, max_size=4, unique_by=lambda o: o.organ_id))
    date = draw(dates())
    code = Code(code_number=draw(code_numbers), code_notation=draw(code_notations))
    doc_id = compose_document_id(
        organ_id=sender.organ_id,
        promulgation_date=date,
        code_number=code.code_number,
        code_notation=code.code_notation,
    )
    doc_type = draw(st.integers(0, 3))
    manifest, attachments = draw(attachment_sets(extension=extension))
    header = MessageHeader(
        from_=sender,
        to=tuple(recipients),
        document_id=draw(opt(st.just(doc_id))),
        code=code,
        promulgation_info=PromulgationInfo(place=draw(opt(xml_text(max_size=50))), promulgation_date=date),
        document_type=draw(
            opt(
                st.builds(
                    DocumentType,
                    type=opt(st.integers(0, 99)),
                    type_detail=opt(st.integers(0, 99)),
                    type_name=opt(xml_text()),
                )
            )
        ),
        subject=draw(xml_text(max_size=500)),
        content=draw(opt(xml_text(max_size=500))),
        signer_info=draw(
            opt(
                st.builds(
                    SignerInfo,
                    competence=opt(xml_text()),
                    position=opt(xml_text()),
                    full_name=opt(xml_text()),
                )
            )
        ),
        due_date=draw(opt(dates(max_value=dt.date(2030, 1, 1)))),
        to_places=tuple(draw(st.lists(xml_text(), max_size=3))),
        other_info=draw(
            opt(
                st.builds(
                    OtherInfo,
                    priority=opt(st.integers(0, 4)),
                    sphere_of_promulgation=opt(xml_text()),
                    typer_notation=opt(xml_text()),
                    promulgation_amount=opt(st.integers(0, 10_000)),
                    page_amount=opt(st.integers(0, 10_000)),
                    direction=opt(st.booleans()),
                    appendixes=st.lists(xml_text(), max_size=3).map(tuple),
                )
            )
        ),
        response_for=tuple(draw(st.lists(response_fors(), max_size=2))),
        steering_type=draw(opt(st.integers(0, 9))),
    )
    replacement = None
    if doc_type == 3 or draw(st.booleans()):
        replacement = tuple(
            draw(
                st.lists(
                    st.builds(
                        ReplacementInfo,
                        document_id=document_ids(),
                        organ_id_list=st.lists(organ_ids(), max_size=3).map(tuple),
                    ),
                    min_size=1 if doc_type == 3 else 0,
                    max_size=2,
                )
            )
        )
    info = None
    if doc_type == 2 or draw(st.booleans()):
        info = BussinessDocumentInfo(
            document_info=draw(opt(st.integers(0, 1))),
            document_receiver=draw(opt(st.integers(0, 1))),
            receiver_list=tuple(
                draw(
                    st.lists(
                        st.builds(Receiver, organ_id=organ_ids(), receiver_type=opt(st.integers(0, 1))),
                        max_size=3,
                    )
                )
            ),
        )
    bussiness = Bussiness(
        document_id=draw(opt(st.just(doc_id))),
        bussiness_doc_type=doc_type,
        bussiness_doc_reason=draw(opt(xml_text())),
        paper=draw(st.integers(0, 1)),
        bussiness_document_info=info,
        replacement_info_list=replacement,
        staff_info=draw(opt(staff_infos())),
    )
    trace = TraceHeaderList(
        trace_headers=tuple(
            draw(
                st.lists(
                    st.builds(TraceHeader, organ_id=organ_ids(), timestamp=opt(timestamps())), max_size=3
                )
            )
        ),
        bussiness=bussiness,
    )
    return DocumentPackage(
        header=header,
        trace=trace,
        manifest=manifest,
        attachments=attachments if with_attachments else (),
    )


@st.composite
def status_messages(draw: st.DrawFn) -> StatusMessage:
    code = draw(st.sampled_from(list(StatusCode)))
    header = StatusHeader(
        from_=draw(organizations()),
        response_for=draw(response_fors()),
        status_code=code.value,
        staff_info=draw(opt(staff_infos())),
        description=draw(
            xml_text(max_size=200) if code is StatusCode.REFUSED else opt(xml_text(max_size=200))
        ),
        timestamp=draw(timestamps()),
    )
    trace = draw(
        opt(
            st.builds(
                TraceHeaderList,
                trace_headers=st.lists(
                    st.builds(TraceHeader, organ_id=organ_ids(), timestamp=opt(timestamps())), max_size=2
                ).map(tuple),
            )
        )
    )
    return StatusMessage(header=header, trace=trace)


def messages() -> st.SearchStrategy[DocumentPackage | StatusMessage]:
    return document_packages() | status_messages()
