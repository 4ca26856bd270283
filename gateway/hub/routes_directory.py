"""``/v1/agencies`` (the directory, for any authenticated caller) and ``/v1/paper-dispatches``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from gateway.errors import AuthError, RequestError
from gateway.hub import body
from gateway.hub.app import HUB
from gateway.hub.identity import may_act_for
from gateway.trust.directory import Agency

routes = web.RouteTableDef()


def agency_json(a: Agency) -> dict[str, Any]:
    return {
        "organ_id": a.organ_id,
        "name": a.name,
        "level": a.level,
        "parent": a.parent,
        "pinned_fingerprints": list(a.pinned_fingerprints),
    }


@routes.get("/v1/agencies")
async def get_agencies(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    await hub.caller(request)
    level = request.query.get("level")
    agencies = [a for a in hub.runtime.directory if level is None or a.level == level]
    return web.json_response({"agencies": [agency_json(a) for a in agencies]})


PAPER_FIELDS = {"sender", "recipient", "document_id", "sent_on"}


async def read_json_object(request: web.Request, limit: int = 1 << 20) -> dict[str, Any]:
    body.check_declared_length(request, limit)
    try:
        payload = await request.json()
    except ValueError:
        raise RequestError("request.bad", "the body is not JSON") from None
    if not isinstance(payload, dict):
        raise RequestError("request.bad", "the body must be a JSON object")
    return payload


@routes.post("/v1/paper-dispatches")
async def post_paper_dispatch(request: web.Request) -> web.Response:
    """Record a document sent on paper only (metadata), so the rate counts every document (DESIGN §5)."""
    hub = request.app[HUB]
    caller = await hub.caller(request)
    payload = await read_json_object(request)
    missing = sorted(f for f in PAPER_FIELDS if not isinstance(payload.get(f), str) or not payload[f])
    if missing:
        raise RequestError("request.bad", f"missing or empty: {', '.join(missing)}", fields=missing)
    sender = payload["sender"].strip().upper()
    if not (caller.is_admin or may_act_for(caller, sender)):
        raise AuthError("auth.forbidden", f"this certificate may not record dispatches of {sender}")
    try:
        dt.date.fromisoformat(payload["sent_on"])
    except ValueError:
        raise RequestError("request.bad", "sent_on must be an ISO date (yyyy-mm-dd)") from None
    stored = await hub.repo.add_paper_dispatch(data={**payload, "sender": sender}, at=hub.clock())
    return web.json_response(stored, status=201)
