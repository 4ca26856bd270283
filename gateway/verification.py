"""Bytes → a trusted, verified package: the one pipeline the CLI, the hub and the nodes call.

Order (each step trusts only what the previous one established):

1. :func:`~gateway.signature.verify.verify_signature`: hardened parse, the profile's structural checks,
   the cryptography; yields the *signed* node set;
2. the model is read from that signed node set only (never from the input tree); in ``envelope`` mode
   inline attachments come from outside it and are admitted one by one against the signed manifest's
   size and SHA-256, multipart parts by the digests the caller measured while streaming them;
3. :meth:`TrustStore.validate` of the signer at ``at``, for the agency in the *signed* ``From/OrganId``;
4. field validation (codes and limits) of the signed model.

:func:`inspect_package` runs the same pipeline but never raises for a bad package: it returns the
verdict and, best effort, what the untrusted input says (clearly marked as unverified).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from gateway.edxml.inspection import inspect_package as inspect_codec
from gateway.edxml.model import Attachment, AttachmentDigest, DocumentPackage, Message, StatusMessage
from gateway.edxml.multipart import normalize_content_id
from gateway.edxml.parse import parse_element
from gateway.edxml.validate import validate
from gateway.edxml.xmlparser import DEFAULT_LIMITS, XmlLimits
from gateway.errors import GatewayError, PackageError
from gateway.signature.profile import Reference
from gateway.signature.verify import DEFAULT_ENGINE, Engine, VerifiedSignature, verify_signature
from gateway.trust.store import TrustStore, ValidatedChain

VIETNAM = dt.timezone(dt.timedelta(hours=7), "ICT")


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedPackage:
    """A package whose signature verified, whose signer is trusted for its sender, and whose fields are valid.

    Every field of ``message`` comes from what the signature covers. ``sha256`` is the hex SHA-256 of the
    exact bytes received (what the hub's receipt quotes).
    """

    message: DocumentPackage | StatusMessage
    chain: ValidatedChain
    organ_id: str
    reference: Reference
    sha256: str
    signature: VerifiedSignature


@dataclass(frozen=True, slots=True, kw_only=True)
class Inspection:
    """What :func:`inspect_package` found: the verdict, and the package as far as it could be read.

    ``ok`` is true only if every step that was asked for passed (``trust_checked`` says whether the
    trust step ran: it needs a trust store). ``code``/``detail`` give the first failure. ``verified`` is
    set when the package passed. ``unverified_message`` is read from the *input tree*, without regard to
    the signature: show it as "what the package claims", never as fact; ``problems`` lists what made the
    best-effort read stumble.
    """

    ok: bool
    code: str | None
    detail: str | None
    sha256: str
    size: int
    trust_checked: bool
    verified: VerifiedPackage | None = None
    reference: Reference | None = None
    signer_subject: str | None = None
    unverified_message: Message | None = None
    problems: tuple[GatewayError, ...] = ()


def verify_package(
    data: bytes,
    *,
    trust: TrustStore,
    at: dt.datetime,
    attachments: Mapping[str, AttachmentDigest] | None = None,
    today: dt.date | None = None,
    pinned: Collection[bytes | str] | None = None,
    limits: XmlLimits = DEFAULT_LIMITS,
    engine: Engine = DEFAULT_ENGINE,
) -> VerifiedPackage:
    """Verify ``data`` completely or raise the :class:`GatewayError` of the first step that fails.

    ``at``: the signing (or receipt) time the certificate is judged at, timezone-aware. ``attachments``:
    multipart parts already measured by the caller, by content id (``envelope`` mode only). ``today``:
    the date the "not in the future" rules use; default: ``at`` in Vietnam time. ``pinned``: SHA-256
    fingerprints the directory pins for the sender.
    """
    digest = hashlib.sha256(data).hexdigest()
    signature = verify_signature(data, limits=limits, engine=engine)
    message = _signed_message(signature, attachments)
    organ_id = message.header.from_.organ_id
    chain = trust.validate(
        signature.signer, at=at, extra_intermediates=signature.extra_certs, organ_id=organ_id, pinned=pinned
    )
    validate(message, today=today if today is not None else at.astimezone(VIETNAM).date())
    return VerifiedPackage(
        message=message,
        chain=chain,
        organ_id=organ_id,
        reference=signature.reference,
        sha256=digest,
        signature=signature,
    )


def _signed_message(
    signature: VerifiedSignature, supplied: Mapping[str, AttachmentDigest] | None
) -> DocumentPackage | StatusMessage:
    """The model from the signed node set, with attachments admitted by the rules of the reference mode."""
    if signature.reference == "document":
        if supplied:
            raise PackageError(
                "multipart.not_envelope_signed",
                "the signature covers the whole document, so attachments cannot travel as parts",
            )
        message = parse_element(signature.signed_root)
        if isinstance(message, DocumentPackage):
            _check_inline_against_manifest(message, message.attachments, require_digests=False)
        return message
    assert signature.unsigned_root is not None
    # One read of the input root: header and manifest from the signed envelope, only AttachmentEncoded
    # from outside it, each attachment then admitted against the signed manifest.
    message = parse_element(signature.unsigned_root, envelope=signature.signed_root)
    if isinstance(message, StatusMessage):
        if supplied:
            raise PackageError("edxml.attachment_unlisted", "a status message lists no attachments")
        return message
    _check_inline_against_manifest(message, message.attachments, require_digests=True)
    _check_supplied(message, message.attachments, supplied or {})
    return message


def _check_inline_against_manifest(
    message: DocumentPackage, inline: tuple[Attachment, ...], *, require_digests: bool
) -> None:
    listed = {normalize_content_id(ref.content_id): ref for ref in message.manifest}
    if require_digests:
        for ref in message.manifest:
            if ref.size is None or ref.sha256 is None:
                raise PackageError(
                    "edxml.manifest_digest_missing",
                    f"{ref.content_id}: an envelope signature covers attachments only by size and SHA-256",
                )
    seen: set[str] = set()
    for att in inline:
        cid = normalize_content_id(att.content_id)
        if cid in seen:
            raise PackageError("edxml.attachment_duplicate", f"attachment {att.content_id!r} appears twice")
        seen.add(cid)
        ref = listed.get(cid)
        if ref is None:
            raise PackageError(
                "edxml.attachment_unlisted", f"attachment {att.content_id!r} is not in the manifest"
            )
        if ref.size is not None and ref.size != len(att.data):
            raise PackageError(
                "edxml.attachment_digest",
                f"attachment {att.content_id!r}: {len(att.data)} bytes, the signed manifest says {ref.size}",
            )
        if ref.sha256 is not None and ref.sha256.lower() != hashlib.sha256(att.data).hexdigest():
            raise PackageError(
                "edxml.attachment_digest",
                f"attachment {att.content_id!r}: its SHA-256 differs from the signed manifest's",
            )


def _check_supplied(
    message: DocumentPackage, inline: tuple[Attachment, ...], supplied: Mapping[str, AttachmentDigest]
) -> None:
    listed = {normalize_content_id(ref.content_id): ref for ref in message.manifest}
    present = {normalize_content_id(att.content_id) for att in inline}
    measured = {normalize_content_id(key): value for key, value in supplied.items()}
    for cid, part in measured.items():
        ref = listed.get(cid)
        if ref is None:
            raise PackageError("edxml.attachment_unlisted", f"part <{cid}> is not in the manifest")
        if cid in present:
            raise PackageError("edxml.attachment_duplicate", f"attachment {cid!r} is both inline and a part")
        if part.size != ref.size or part.sha256.lower() != (ref.sha256 or "").lower():
            raise PackageError(
                "edxml.attachment_digest",
                f"part <{cid}>: {part.size} bytes, SHA-256 {part.sha256}; the signed manifest says "
                f"{ref.size} bytes, SHA-256 {ref.sha256}",
            )
    for cid, ref in listed.items():
        if cid not in present and cid not in measured:
            raise PackageError(
                "edxml.attachment_missing", f"{ref.content_id} is listed but neither inline nor supplied"
            )


def inspect_package(
    data: bytes,
    *,
    trust: TrustStore | None = None,
    at: dt.datetime | None = None,
    attachments: Mapping[str, AttachmentDigest] | None = None,
    today: dt.date | None = None,
    pinned: Collection[bytes | str] | None = None,
    limits: XmlLimits = DEFAULT_LIMITS,
) -> Inspection:
    """The verdict on ``data`` and what it claims; never raises for a bad package.

    Without ``trust`` the signature and fields are checked but not the signer's trust
    (``trust_checked=False``). ``at`` defaults to now.
    """
    digest = hashlib.sha256(data).hexdigest()
    when = at if at is not None else dt.datetime.now(dt.UTC)
    day = today if today is not None else when.astimezone(VIETNAM).date()
    codec = inspect_codec(data, today=day, limits=limits)
    base = {
        "sha256": digest,
        "size": len(data),
        "unverified_message": codec.message,
        "problems": codec.problems,
    }
    try:
        if trust is None:
            signature = verify_signature(data, limits=limits)
            message = _signed_message(signature, attachments)
            validate(message, today=day)
            return Inspection(
                ok=True,
                code=None,
                detail=None,
                trust_checked=False,
                reference=signature.reference,
                signer_subject=signature.signer.subject.rfc4514_string(),
                **base,
            )
        verified = verify_package(
            data, trust=trust, at=when, attachments=attachments, today=day, pinned=pinned, limits=limits
        )
    except GatewayError as exc:
        return Inspection(ok=False, code=exc.code, detail=exc.detail, trust_checked=trust is not None, **base)
    return Inspection(
        ok=True,
        code=None,
        detail=None,
        trust_checked=True,
        verified=verified,
        reference=verified.reference,
        signer_subject=verified.chain.leaf.subject.rfc4514_string(),
        **base,
    )
