"""What runs in the verification pool: verify a package or status, and sign the hub's receipt for it.

lxml holds the GIL while parsing and canonicalising, so verification scales with processes, not threads
(DESIGN §8). Each pool process keeps, in this module, the trust store of the generation it was last asked
about and the hub's signing key: jobs carry the trust folder and a generation number, and a process whose
generation is older reloads the folder. This is per-process cache, not application state: the hub's
objects live in the app (:mod:`gateway.hub.app`).

Jobs and results are plain picklable dataclasses (:mod:`gateway.hub.ports`); a rejection travels back as
the :class:`~gateway.errors.GatewayError` itself, raised here and re-raised in the hub process (it pickles
with its code and extra fields, see ``GatewayError.__reduce__``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError, SignatureError, TrustError
from gateway.hub import receipts
from gateway.hub.ports import StatusVerdict, Verdict
from gateway.store.packages import PackageRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    trust_dir: str
    generation: int
    at: dt.datetime
    lenient: bool
    data: bytes | None = None
    path: str | None = None
    sha256: str = ""
    size: int = 0
    carriage: str = "single"
    attachments: tuple[tuple[str, int, str], ...] = ()
    """Multipart: (content id, size, sha256) of each part as measured."""
    xml_max_bytes: int = 100 * 1024 * 1024
    xml_max_depth: int = 64
    xml_max_text_bytes: int = 100 * 1024 * 1024

    @property
    def limits(self) -> Any:
        """The parser's limits for this job (the hub's settings)."""
        from gateway.edxml.xmlparser import XmlLimits

        return XmlLimits(
            max_bytes=self.xml_max_bytes,
            max_depth=self.xml_max_depth,
            max_text_bytes=self.xml_max_text_bytes,
        )


@dataclass(slots=True)
class _ProcessState:
    generation: int = -1
    trust: Any = None
    signer: Any = None
    hub_name: str = "hub"
    extra: dict[str, Any] = field(default_factory=dict)


_STATE = _ProcessState()


def init_process(cert_file: str, key_file: str) -> None:
    """Pool initializer: load the hub's signing identity once per process."""
    from gateway.hub.signing import HubSigner

    _STATE.signer = HubSigner.load(Path(cert_file), Path(key_file))
    _STATE.hub_name = _STATE.signer.name


def warm() -> int:
    """A no-op to start a pool process (and its imports) before the first request."""
    import gateway.verification  # noqa: F401

    return 1


class CachedTrust:
    """A trust store that remembers, for :data:`TRUST_CACHE_SECONDS`, the signers it validated.

    Path building and CRL lookup cost about half a millisecond, as much as checking the signature of a
    10 KB package, and an agency signs thousands of packages with one certificate. A success is reused
    only for the same certificate, agency and pins, within the cache window and the chain's validity;
    failures are never cached; a reloaded trust folder (new generation) starts an empty cache.
    """

    def __init__(self, store: Any) -> None:
        self.store = store
        self._hits: dict[tuple[Any, ...], tuple[dt.datetime, dt.datetime, Any]] = {}

    def validate(self, cert: Any, *, at: dt.datetime, organ_id: str | None = None, **kw: Any) -> Any:
        pinned = kw.get("pinned")
        key = (
            cert.fingerprint_sha256 if hasattr(cert, "fingerprint_sha256") else cert,
            organ_id,
            frozenset(pinned) if pinned else None,
        )
        hit = self._hits.get(key)
        if hit is not None and hit[0] <= at <= hit[1]:
            return hit[2]
        result = self.store.validate(cert, at=at, organ_id=organ_id, **kw)
        until = min(
            [at + dt.timedelta(seconds=TRUST_CACHE_SECONDS), *(c.not_valid_after_utc for c in result.chain)]
        )
        if len(self._hits) > 10_000:
            self._hits.clear()
        self._hits[key] = (at, until, result)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


TRUST_CACHE_SECONDS = 60


def _trust(job: Job) -> Any:
    if _STATE.generation != job.generation or _STATE.trust is None:
        from gateway.trust.store import TrustStore

        _STATE.trust = CachedTrust(TrustStore.load(job.trust_dir))
        _STATE.generation = job.generation
    return _STATE.trust


def _is_legacy(exc: GatewayError) -> bool:
    """Failures lenient mode admits: the signature or the signer, never the structure of the package."""
    return isinstance(exc, SignatureError | TrustError)


def _lenient(exc: GatewayError, job: Job, data: bytes, attachments: Any) -> Any:
    """Lenient mode: the message as the input says it, for a signature/trust failure; else re-raise."""
    if not (job.lenient and _is_legacy(exc)):
        raise exc
    from gateway import verification

    message = verification.inspect_package(
        data, attachments=attachments, limits=job.limits
    ).unverified_message
    if message is None:
        raise exc
    return message


def verify_document(job: Job) -> Verdict:
    """Verify a document package; return its verdict with a signed receipt (recipients ``queued``)."""
    from gateway import verification
    from gateway.edxml.model import AttachmentDigest, DocumentPackage

    started = time.perf_counter()
    data = job.data if job.data is not None else Path(job.path or "").read_bytes()
    attachments = (
        {cid: AttachmentDigest(content_id=cid, size=size, sha256=sha) for cid, size, sha in job.attachments}
        if job.carriage == "multipart"
        else None
    )
    trust = _trust(job)
    reason: str | None = None
    signer_fp: str | None = None
    try:
        verified = verification.verify_package(
            data, trust=trust, at=job.at, attachments=attachments, limits=job.limits
        )
        message = verified.message
        signer_fp = verified.chain.fingerprint.hex()
    except GatewayError as exc:
        message = _lenient(exc, job, data, attachments)
        reason = exc.code
    if not isinstance(message, DocumentPackage):
        from gateway.errors import PackageError

        raise PackageError(
            "edxml.unexpected_element", "this is a status message: send it to /v1/status, not /v1/packages"
        )
    header = message.header
    bussiness = message.bussiness
    document_id = header.document_id or bussiness.document_id or ""
    recipients = tuple(o.organ_id.upper() for o in header.to)
    sender = header.from_.organ_id.upper()
    electronic = reason is None
    record = dataclasses.replace(
        PackageRecord.from_message(
            message,
            sha256=job.sha256,
            size=job.size,
            form="multipart" if job.carriage == "multipart" else "single",
            signature_verdict=reason or "valid",
            signer_fingerprint=signer_fp,
            attachments=(),  # the body is kept whole, as one blob; its parts are not stored apart
        ),
        sender=sender,
        recipients=recipients,
    )
    receipt = receipts.Receipt(
        kind="package",
        hub=_STATE.hub_name,
        hub_time=job.at,
        sha256=job.sha256,
        size=job.size,
        package_id=job.sha256,
        document_id=document_id,
        sender=sender,
        carriage=job.carriage,
        electronic=electronic,
        verdict="verified" if electronic else reason or "unverified",
        recipients=receipts.recipients_queued(recipients),
    )
    return Verdict(
        document_id=document_id,
        sender=sender,
        recipients=recipients,
        electronic=electronic,
        reason=reason,
        record=record,
        receipt_xml=_STATE.signer.sign(receipts.build_receipt(receipt)),
        verify_seconds=time.perf_counter() - started,
    )


def verify_status(job: Job) -> StatusVerdict:
    """Verify a status message (same profile, same trust; lenient mode admits unsigned statuses)."""
    from gateway import verification
    from gateway.edxml.model import StatusMessage
    from gateway.errors import PackageError

    started = time.perf_counter()
    data = job.data if job.data is not None else Path(job.path or "").read_bytes()
    trust = _trust(job)
    reason: str | None = None
    try:
        message = verification.verify_package(data, trust=trust, at=job.at, limits=job.limits).message
    except GatewayError as exc:
        message = _lenient(exc, job, data, None)
        reason = exc.code
    if not isinstance(message, StatusMessage):
        raise PackageError("edxml.unexpected_element", "this is a document package: send it to /v1/packages")
    header = message.header
    response_for = header.response_for
    if not response_for.document_id:
        raise PackageError("edxml.missing_element", "the status has no ResponseFor/DocumentId")
    sender = header.from_.organ_id.upper()
    sha = hashlib.sha256(data).hexdigest()
    common = {
        "hub": _STATE.hub_name,
        "hub_time": job.at,
        "sha256": sha,
        "size": len(data),
        "package_id": sha,
        "document_id": response_for.document_id,
        "sender": sender,
        "carriage": "status",
        "electronic": reason is None,
        "verdict": "verified" if reason is None else reason,
        "status": receipts.StatusResult(code=header.status_code, sender=sender, result="applied"),
    }
    receipt = receipts.Receipt(kind="status", **common)
    notice = receipts.Receipt(kind="status-notice", original=data, **common)
    return StatusVerdict(
        sender=sender,
        document_id=response_for.document_id,
        document_sender=(response_for.organ_id or response_for.document_id.split(",")[0]).upper(),
        status_code=header.status_code,
        description=header.description,
        timestamp=header.timestamp,
        electronic=reason is None,
        reason=reason,
        message_sha256=sha,
        receipt_xml=_STATE.signer.sign(receipts.build_receipt(receipt)),
        notice_xml=_STATE.signer.sign(receipts.build_receipt(notice)),
        verify_seconds=time.perf_counter() - started,
    )
