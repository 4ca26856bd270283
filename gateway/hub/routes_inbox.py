"""``/v1/inbox`` and ``/v1/status``: what an agency receives, and the statuses it answers with.

Inbox semantics (docs/api.md): an item stays in the inbox until the agency acknowledges it; ``GET``
returns the oldest unacknowledged items first, so a node that crashed before acknowledging simply gets the
same items again (at-least-once delivery, deduplicated by ``item_id``). ``?wait=N`` long-polls up to N
seconds (at most ``long_poll_max``) when the inbox is empty.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time

from aiohttp import web

from gateway.errors import AuthError, RequestError, UnsupportedMediaType
from gateway.hub import body, worker
from gateway.hub.app import HUB, Hub
from gateway.hub.identity import Caller, may_act_for
from gateway.hub.ports import InboxItem
from gateway.hub.routes_packages import SINGLE_TYPES

routes = web.RouteTableDef()

POLL_TICK = 0.25
"""How often a long-poll rechecks the database (another hub process may have queued something)."""
STATUS_MAX_BODY = 4 * 1024 * 1024
MAX_ITEM_ID = 2**31 - 1


def _agency(request: web.Request, caller: Caller) -> str:
    """The agency whose inbox is meant: ``?agency=`` if given (a node for several), else the caller's own."""
    asked = request.query.get("agency")
    if asked:
        asked = asked.strip().upper()
        if not may_act_for(caller, asked):
            raise AuthError("auth.forbidden", f"this certificate may not read the inbox of {asked}")
        return asked
    agencies = sorted(caller.agencies())
    if len(agencies) != 1:
        raise RequestError(
            "request.bad", "this certificate acts for several agencies (or none): name one with ?agency="
        )
    return agencies[0]


def _int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RequestError("request.bad", f"{name} must be a whole number") from None
    if not lo <= value <= hi:
        raise RequestError("request.bad", f"{name} must be between {lo} and {hi}")
    return value


def _item(i: InboxItem) -> dict[str, object]:
    out: dict[str, object] = {
        "item_id": i.item_id,
        "kind": i.kind,
        "package_id": i.package_id,
        "document_id": i.document_id,
        "sender": i.sender,
        "created_at": i.created_at.isoformat(),
    }
    if i.kind == "package":
        out["href"] = f"/v1/packages/{i.package_id}"
    else:
        out["status_code"] = i.status_code
        out["status_from"] = i.status_from
        out["notice"] = base64.b64encode(i.notice_xml or b"").decode("ascii")
    return out


@routes.get("/v1/inbox")
async def get_inbox(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    caller = await hub.caller(request)
    agency = _agency(request, caller)
    limit = _int(request, "limit", 100, 1, 1000)
    wait = min(float(_int(request, "wait", 0, 0, 3600)), hub.config.long_poll_max)
    items = await hub.repo.inbox(agency, limit=limit)
    deadline = time.monotonic() + wait
    while not items and time.monotonic() < deadline:
        event = hub.inbox_events.setdefault(agency, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), min(POLL_TICK, max(0.0, deadline - time.monotonic())))
        items = await hub.repo.inbox(agency, limit=limit)
    return web.json_response({"agency": agency, "items": [_item(i) for i in items]})


@routes.post("/v1/inbox/ack")
async def post_ack(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    caller = await hub.caller(request)
    agency = _agency(request, caller)
    body.check_declared_length(request, 1 << 20)
    try:
        payload = await request.json()
        ids = payload["item_ids"]
        if not isinstance(ids, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 < i <= MAX_ITEM_ID for i in ids
        ):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise RequestError("request.bad", 'send {"item_ids": [1, 2, …]} (positive item ids)') from None
    if len(ids) > 1000:
        raise RequestError("request.bad", "at most 1000 items per acknowledgement")
    acked = await hub.repo.ack(agency, ids)
    return web.json_response({"agency": agency, "acknowledged": acked})


async def _status(hub: Hub, request: web.Request) -> web.Response:
    caller = await hub.caller(request)
    if request.content_type not in SINGLE_TYPES:
        raise UnsupportedMediaType(
            "request.unsupported_media_type", "send the status message as application/edxml+xml"
        )
    limit = min(hub.config.max_body, STATUS_MAX_BODY)
    spool = await body.receive(
        request,
        limit=limit,
        tmp_dir=hub.config.tmp_dir,
        spool_threshold=limit,
        read_timeout=hub.config.read_timeout,
    )
    data = spool.read()
    at = hub.clock()
    verdict = await hub.run(worker.verify_status, hub.job(at=at, data=data, sha256=spool.sha256))
    hub.metrics.observe_verification(verdict.verify_seconds)
    if not may_act_for(caller, verdict.sender):
        raise AuthError(
            "auth.forbidden",
            f"the client certificate may not send statuses for {verdict.sender}",
            sender=verdict.sender,
        )
    result = await hub.repo.apply_status(verdict=verdict, raw=data, at=at)
    if not result.repeated:
        hub.metrics.count_accepted("status", "status")
        hub.notify_inbox(result.notified)
    return web.Response(
        status=200 if result.repeated else 202,
        body=result.receipt_xml,
        content_type="application/xml",
        headers={"X-Exchange-State": result.state},
    )


@routes.post("/v1/status")
async def post_status(request: web.Request) -> web.Response:
    return await _status(request.app[HUB], request)
