"""Operations endpoints: liveness, readiness, metrics and the OpenAPI document (no client role needed).

``/healthz``, ``/readyz``, ``/metrics`` and ``/openapi.json`` still sit behind mTLS (every connection does)
but need no particular agency: a monitoring system holds a client certificate of its own.
"""

from __future__ import annotations

from aiohttp import web

from gateway.hub.app import HUB
from gateway.hub.metrics import CONTENT_TYPE

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    checks: dict[str, object] = {}
    ok = True
    try:
        await hub.repo.ping()
        checks["database"] = "ok"
    except Exception as exc:  # readiness reports, it does not raise
        checks["database"] = f"unreachable: {type(exc).__name__}"
        ok = False
    trust = hub.runtime.trust
    checks["trust_store"] = {"roots": len(trust.roots), "crls": len(trust.crls)}
    stale = trust.stale_crls(hub.clock())
    if stale:
        ok = False
        checks["stale_crls"] = [{"issuer": c.issuer, "next_update": str(c.next_update)} for c in stale]
    if hub.runtime.last_error:
        checks["last_reload_error"] = hub.runtime.last_error
    checks["agencies"] = len(hub.runtime.directory)
    return web.json_response(
        {"status": "ready" if ok else "not ready", "checks": checks}, status=200 if ok else 503
    )


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    depth = await hub.repo.inbox_depth()
    hub.metrics.flush()
    return web.Response(body=hub.metrics.render(depth).encode(), headers={"Content-Type": CONTENT_TYPE})


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    from gateway.hub.openapi import document

    return web.json_response(document())
