"""``/v1/packages``: send a package, fetch its bytes, its receipt and its timeline.

The order of checks in :func:`post_package` is the contract (docs/api.md): size (declared, then while
streaming) → media type → bytes hashed to a spool → a repeat of stored bytes answers the stored receipt →
verification in the pool (signature, trust, fields) → sender binding to the mTLS identity → every
recipient in the directory → one committed transaction → 202 with the signed receipt. A small body is
written in that transaction (docs/storage.md); any failure removes the spool: nothing is stored from a
rejected request.
"""

from __future__ import annotations

from aiohttp import web

from gateway.errors import AuthError, DirectoryError, NotFound, UnsupportedMediaType
from gateway.hub import body, worker
from gateway.hub.app import HUB, Hub
from gateway.hub.identity import Caller, may_act_for
from gateway.hub.ports import StoredPackage

routes = web.RouteTableDef()

SINGLE_TYPES = frozenset({"application/edxml+xml", "application/xml", "text/xml"})
MULTIPART = "multipart/related"
RECEIPT_TYPE = "application/xml"


def receipt_response(stored: StoredPackage, *, status: int) -> web.Response:
    return web.Response(
        status=status,
        body=stored.receipt_xml,
        content_type=RECEIPT_TYPE,
        headers={
            "Location": f"/v1/packages/{stored.package_id}",
            "X-Package-Id": stored.package_id,
            "ETag": f'"{stored.package_id}"',
        },
    )


def _check_sender(hub: Hub, caller: Caller, sender: str) -> None:
    if not may_act_for(caller, sender):
        raise AuthError(
            "auth.forbidden",
            f"the client certificate ({caller.organ_id or caller.subject}) may not send for {sender}",
            sender=sender,
        )
    if sender not in hub.runtime.directory:
        raise DirectoryError("directory.unknown_agency", f"the sender {sender} is not in the directory")


def _check_recipients(hub: Hub, recipients: tuple[str, ...]) -> None:
    unknown = [r for r in recipients if r not in hub.runtime.directory]
    if unknown:
        raise DirectoryError(
            "directory.unknown_recipient",
            f"not in the directory: {', '.join(unknown)}",
            recipients=unknown,
        )


async def _receive(hub: Hub, request: web.Request, carriage: str) -> tuple[body.Spool, object | None]:
    config = hub.config
    if carriage == "single":
        spool = await body.receive(
            request,
            limit=config.max_body,
            tmp_dir=config.tmp_dir,
            spool_threshold=config.spool_threshold,
            read_timeout=config.read_timeout,
        )
        return spool, None
    from gateway.edxml.multipart import DiscardSink, MultipartReader

    # Parts need only their digests: the raw body is kept whole.
    reader = MultipartReader(request.headers.get("Content-Type", ""), sink_factory=DiscardSink)
    try:
        spool = await body.receive(
            request,
            limit=config.max_body,
            tmp_dir=config.tmp_dir,
            sink=reader.feed,
            reread=False,  # the parser saw every byte: the file is only renamed into the blob store
            read_timeout=config.read_timeout,
        )
    except BaseException:
        reader.abort()
        raise
    try:
        result = reader.close()
    except BaseException:
        spool.discard()
        raise
    return spool, result


@routes.post("/v1/packages")
async def post_package(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    body.check_declared_length(request, hub.config.max_body)
    caller = await hub.caller(request)
    media = request.content_type
    if media in SINGLE_TYPES:
        carriage = "single"
    elif media == MULTIPART:
        carriage = "multipart"
    else:
        raise UnsupportedMediaType(
            "request.unsupported_media_type",
            f"{media!r}: send application/edxml+xml or multipart/related",
        )
    spool, parts = await _receive(hub, request, carriage)
    try:
        # A large repeat is answered from the database before any verification; a small one is cheaper
        # to verify again than to look up first (the insert then finds it: 200 with the stored receipt).
        existing = await hub.repo.package(spool.sha256) if spool.path is not None else None
        if existing is not None:
            _check_sender(hub, caller, existing.sender)
            return receipt_response(existing, status=200)
        at = hub.clock()
        if carriage == "single":
            job = hub.job(
                at=at,
                data=spool.data,
                path=str(spool.path) if spool.path else None,
                sha256=spool.sha256,
                size=spool.size,
            )
        else:
            job = hub.job(
                at=at,
                data=parts.edxml,  # type: ignore[attr-defined]
                sha256=spool.sha256,
                size=spool.size,
                carriage="multipart",
                attachments=tuple((p.content_id, p.size, p.sha256) for p in parts.parts),  # type: ignore[attr-defined]
            )
        verdict = await hub.run(worker.verify_document, job)
        hub.metrics.observe_verification(verdict.verify_seconds)
        _check_sender(hub, caller, verdict.sender)
        _check_recipients(hub, verdict.recipients)
        stored, created = await hub.repo.ingest(
            verdict=verdict,
            content_type=request.headers.get("Content-Type", "application/edxml+xml"),
            body_path=spool.path,
            body=spool.data,
            received_at=at,
        )
    finally:
        spool.discard()
    if created:
        hub.metrics.count_accepted("package", carriage)
        hub.notify_inbox(stored.recipients)
    return receipt_response(stored, status=202 if created else 200)


async def _visible_package(request: web.Request) -> tuple[Hub, StoredPackage]:
    hub = request.app[HUB]
    caller = await hub.caller(request)
    stored = await hub.repo.package(request.match_info["package_id"].lower())
    # Not found and not yours answer alike: no one learns which packages exist.
    if stored is None or not (
        caller.is_admin or any(may_act_for(caller, a) for a in (stored.sender, *stored.recipients))
    ):
        raise NotFound("resource.not_found", "no such package for this caller")
    return hub, stored


@routes.get("/v1/packages/{package_id}")
async def get_package(request: web.Request) -> web.StreamResponse:
    hub, stored = await _visible_package(request)
    data = await hub.repo.package_bytes(stored.package_id)
    headers = {
        "Content-Type": stored.content_type,
        "X-Package-Sha256": stored.package_id,
        "X-Document-Id": stored.document_id,
        "ETag": f'"{stored.package_id}"',
    }
    if isinstance(data, bytes):
        return web.Response(body=data, headers=headers)
    return web.FileResponse(data, headers=headers)


@routes.get("/v1/packages/{package_id}/receipt")
async def get_receipt(request: web.Request) -> web.Response:
    _, stored = await _visible_package(request)
    return receipt_response(stored, status=200)


@routes.get("/v1/packages/{package_id}/timeline")
async def get_timeline(request: web.Request) -> web.Response:
    hub, stored = await _visible_package(request)
    rows = await hub.repo.timeline(stored.package_id, now=hub.clock())
    return web.json_response(
        {
            "package_id": stored.package_id,
            "document_id": stored.document_id,
            "sender": stored.sender,
            "received_at": stored.received_at.isoformat(),
            "electronic": stored.electronic,
            "reason": stored.reason,
            "recipients": [
                {
                    "organ_id": r.organ_id,
                    "state": r.state,
                    "overdue": r.overdue,
                    "deadline": r.deadline.isoformat() if r.deadline else None,
                    "events": [
                        {
                            "code": e.code,
                            "state": e.state,
                            "at": e.at.isoformat(),
                            "by": e.by,
                            "description": e.description,
                        }
                        for e in r.events
                    ],
                }
                for r in rows
            ],
        }
    )
