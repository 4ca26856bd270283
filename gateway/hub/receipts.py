"""The hub receipt: a small XML document the hub signs: "I received exactly these bytes, and routed them".

Design (documented for integrators in ``docs/api.md``)::

    <HubReceipt xmlns="urn:lgsp-gateway:receipt:1" Version="1" Kind="package">
      <Hub>LGSP Tây Ninh</Hub>                                   subject CN of the hub certificate
      <HubTime>2026-03-02T16:30:00.123+07:00</HubTime>           when the hub committed it (UTC+7)
      <Received Algorithm="sha256" Size="10240">9f86…</Received> SHA-256 of the exact request body
      <PackageId>9f86…</PackageId>                                the id in /v1/packages/{id}
      <DocumentId>000.00.00.H53,2026/03/02,123/UBND-VP</DocumentId>
      <Sender>000.00.00.H53</Sender>
      <Carriage>single</Carriage>                                 single | multipart | status
      <Verdict Electronic="true">verified</Verdict>               or Electronic="false" + reason code
      <Recipients>
        <Recipient OrganId="000.00.31.H53" Result="queued"/>     queued: in that agency's inbox
      </Recipients>
      <Status Code="03" From="000.00.31.H53" Result="applied"/>  Kind="status" and "status-notice"
      <ds:Signature>…</ds:Signature>                              enveloped, last child
    </HubReceipt>

It is signed with the same XML-DSig profile as packages (enveloped, exclusive C14N, SHA-256, X509Data with
the hub certificate), so a node verifies it with the same core and the hub's CA from its trust anchors.
The receipt is built and signed once, stored with the package, and returned byte for byte on a repeat.

A **status notice** (``Kind="status-notice"``) is how the hub forwards a recipient's status to the
sender's inbox: the same envelope with ``<Status …>`` and the recipient's original, signed status message
base64-encoded in ``<Original>``, so the sender can check both the hub's and the recipient's signatures.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from lxml import etree

from gateway.errors import PackageError

RECEIPT_NS = "urn:lgsp-gateway:receipt:1"
VERSION = "1"
VN_TZ = dt.timezone(dt.timedelta(hours=7), "ICT")

Kind = Literal["package", "status", "status-notice"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RecipientResult:
    organ_id: str
    result: str = "queued"
    """``queued`` (in the agency's inbox); other values are reserved for forwarding to a parent hub."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusResult:
    code: str
    sender: str
    """The agency that sent the status (its ``From``)."""
    result: str = "applied"
    """``applied`` (the exchange moved) or ``repeated`` (the same status was already applied)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    """The fields of a receipt (what :func:`build_receipt` writes and :func:`parse_receipt` reads)."""

    kind: Kind
    hub: str
    hub_time: dt.datetime
    sha256: str
    size: int
    package_id: str
    document_id: str | None
    sender: str
    carriage: str
    electronic: bool
    verdict: str
    recipients: tuple[RecipientResult, ...] = ()
    status: StatusResult | None = None
    original: bytes | None = None


def _q(tag: str) -> str:
    return f"{{{RECEIPT_NS}}}{tag}"


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    el = etree.SubElement(parent, _q(tag), attrib=attrs)
    if text is not None:
        el.text = text
    return el


def format_time(at: dt.datetime) -> str:
    """ISO 8601 in Vietnam time with milliseconds: unambiguous and what a clerk reads."""
    if at.tzinfo is None:
        raise ValueError("hub time must be timezone-aware")
    return at.astimezone(VN_TZ).isoformat(timespec="milliseconds")


def build_receipt(receipt: Receipt) -> etree._Element:
    """The unsigned receipt element; sign it with the hub's key before it leaves the hub."""
    root = etree.Element(_q("HubReceipt"), nsmap={None: RECEIPT_NS}, Version=VERSION, Kind=receipt.kind)
    _sub(root, "Hub", receipt.hub)
    _sub(root, "HubTime", format_time(receipt.hub_time))
    _sub(root, "Received", receipt.sha256, Algorithm="sha256", Size=str(receipt.size))
    _sub(root, "PackageId", receipt.package_id)
    if receipt.document_id is not None:
        _sub(root, "DocumentId", receipt.document_id)
    _sub(root, "Sender", receipt.sender)
    _sub(root, "Carriage", receipt.carriage)
    _sub(root, "Verdict", receipt.verdict, Electronic="true" if receipt.electronic else "false")
    if receipt.recipients:
        recipients = _sub(root, "Recipients")
        for r in receipt.recipients:
            _sub(recipients, "Recipient", OrganId=r.organ_id, Result=r.result)
    if receipt.status is not None:
        s = receipt.status
        _sub(root, "Status", Code=s.code, From=s.sender, Result=s.result)
    if receipt.original is not None:
        _sub(root, "Original", base64.b64encode(receipt.original).decode("ascii"))
    return root


def _text(root: etree._Element, tag: str, *, required: bool = True) -> str | None:
    el = root.find(_q(tag))
    if el is None or el.text is None:
        if required:
            raise PackageError("edxml.missing_element", f"the receipt has no {tag}")
        return None
    return el.text


def parse_receipt(root: etree._Element) -> Receipt:
    """Read a receipt element. Pass the element the signature verifier returned as signed, never the input."""
    if root.tag != _q("HubReceipt"):
        raise PackageError("edxml.not_edxml", f"not a hub receipt: {root.tag}")
    received = root.find(_q("Received"))
    verdict = root.find(_q("Verdict"))
    if received is None or verdict is None:
        raise PackageError("edxml.missing_element", "the receipt lacks Received or Verdict")
    status_el = root.find(_q("Status"))
    original = _text(root, "Original", required=False)
    try:
        hub_time = dt.datetime.fromisoformat(_text(root, "HubTime") or "")
        size = int(received.get("Size", ""))
    except ValueError as exc:
        raise PackageError("edxml.bad_timestamp", "the receipt's HubTime or Size is malformed") from exc
    return Receipt(
        kind=root.get("Kind", "package"),  # type: ignore[arg-type]
        hub=_text(root, "Hub") or "",
        hub_time=hub_time,
        sha256=received.text or "",
        size=size,
        package_id=_text(root, "PackageId") or "",
        document_id=_text(root, "DocumentId", required=False),
        sender=_text(root, "Sender") or "",
        carriage=_text(root, "Carriage") or "",
        electronic=verdict.get("Electronic") == "true",
        verdict=verdict.text or "",
        recipients=tuple(
            RecipientResult(organ_id=el.get("OrganId", ""), result=el.get("Result", ""))
            for el in root.iterfind(f"{_q('Recipients')}/{_q('Recipient')}")
        ),
        status=None
        if status_el is None
        else StatusResult(
            code=status_el.get("Code", ""),
            sender=status_el.get("From", ""),
            result=status_el.get("Result", ""),
        ),
        original=base64.b64decode(original) if original else None,
    )


def recipients_queued(organ_ids: Sequence[str]) -> tuple[RecipientResult, ...]:
    return tuple(RecipientResult(organ_id=o, result="queued") for o in organ_ids)
