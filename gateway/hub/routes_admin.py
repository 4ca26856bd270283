"""``/v1/admin/*``: the operator's API for the directory, certificate pins and node identities.

Only the hub operator may call it: the hub's own certificate or one whose SHA-256 is listed in
``admin_fingerprints``. Changes go to the database (shared by every hub process) and are merged over the
directory file; each process picks them up at its next reload tick, the answering one at once.
"""

from __future__ import annotations

from aiohttp import web

from gateway.errors import RequestError
from gateway.hub.app import HUB, Hub
from gateway.hub.routes_directory import agency_json, read_json_object
from gateway.trust.directory import LEVELS, Agency
from gateway.trust.pki import is_organ_id
from gateway.trust.store import format_fingerprint, parse_fingerprint

routes = web.RouteTableDef()


def _organ_id(value: object) -> str:
    if not isinstance(value, str) or not is_organ_id(value.strip().upper()):
        raise RequestError("request.bad", f"not an agency code (V1V2V3.Z1Z2.Y1Y2.X1X2X3): {value!r}")
    return value.strip().upper()


def _fingerprint(value: object) -> str:
    if not isinstance(value, str):
        raise RequestError("request.bad", "a SHA-256 fingerprint (hex) is required")
    try:
        return parse_fingerprint(value).hex()
    except Exception:
        raise RequestError("request.bad", f"not a SHA-256 fingerprint: {value!r}") from None


async def _refresh(hub: Hub, *, file_changed: bool = False) -> None:
    from gateway.hub.app import sync_directory

    await sync_directory(hub.repo, hub.runtime, file_changed=file_changed)


@routes.put("/v1/admin/agencies/{organ_id}")
async def put_agency(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    await hub.admin(request)
    organ_id = _organ_id(request.match_info["organ_id"])
    payload = await read_json_object(request)
    name, level, parent = payload.get("name"), payload.get("level"), payload.get("parent")
    if not isinstance(name, str) or not name.strip():
        raise RequestError("request.bad", "name is required")
    if level not in LEVELS:
        raise RequestError("request.bad", f"level must be one of {', '.join(LEVELS)}")
    if parent is not None:
        parent = _organ_id(parent)
        if parent not in hub.runtime.directory:
            raise RequestError("request.bad", f"the parent {parent} is not in the directory")
    current = hub.runtime.directory.get(organ_id)
    agency = Agency(
        organ_id=organ_id,
        name=name.strip(),
        level=level,
        parent=parent,
        pinned_fingerprints=current.pinned_fingerprints if current else (),
    )
    await hub.repo.admin("put_agency", agency=agency)
    await _refresh(hub)
    return web.json_response(agency_json(agency))


@routes.delete("/v1/admin/agencies/{organ_id}")
async def delete_agency(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    await hub.admin(request)
    organ_id = _organ_id(request.match_info["organ_id"])
    removed = await hub.repo.admin("delete_agency", organ_id=organ_id)
    await _refresh(hub)
    return web.json_response({"organ_id": organ_id, "removed": bool(removed)})


@routes.post("/v1/admin/agencies/{organ_id}/pins")
async def post_pin(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    await hub.admin(request)
    organ_id = _organ_id(request.match_info["organ_id"])
    payload = await read_json_object(request)
    fp = _fingerprint(payload.get("fingerprint"))
    agency = hub.runtime.directory.get(organ_id)
    if agency is None:
        raise RequestError("request.bad", f"{organ_id} is not in the directory")
    await hub.repo.admin("add_pin", agency=agency, fingerprint=fp)
    await _refresh(hub)
    return web.json_response({"organ_id": organ_id, "fingerprint": format_fingerprint(bytes.fromhex(fp))})


@routes.delete("/v1/admin/agencies/{organ_id}/pins/{fingerprint}")
async def delete_pin(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    await hub.admin(request)
    organ_id = _organ_id(request.match_info["organ_id"])
    fp = _fingerprint(request.match_info["fingerprint"])
    agency = hub.runtime.directory.get(organ_id)
    if agency is None:
        raise RequestError("request.bad", f"{organ_id} is not in the directory")
    removed = await hub.repo.admin("remove_pin", agency=agency, fingerprint=fp)
    await _refresh(hub)
    return web.json_response({"organ_id": organ_id, "removed": bool(removed)})


@routes.get("/v1/admin/node-identities")
async def get_node_identities(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    await hub.admin(request)
    rows = await hub.repo.admin("list_node_identities")
    return web.json_response({"node_identities": [{"fingerprint": f, "organ_id": o} for f, o in rows]})


@routes.post("/v1/admin/node-identities")
async def post_node_identity(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    await hub.admin(request)
    payload = await read_json_object(request)
    fp = _fingerprint(payload.get("fingerprint"))
    organ_id = _organ_id(payload.get("organ_id"))
    if organ_id not in hub.runtime.directory:
        raise RequestError("request.bad", f"{organ_id} is not in the directory")
    await hub.repo.admin("add_node_identity", fingerprint=fp, organ_id=organ_id)
    return web.json_response({"fingerprint": fp, "organ_id": organ_id}, status=201)


@routes.delete("/v1/admin/node-identities/{fingerprint}/{organ_id}")
async def delete_node_identity(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    await hub.admin(request)
    fp = _fingerprint(request.match_info["fingerprint"])
    organ_id = _organ_id(request.match_info["organ_id"])
    removed = await hub.repo.admin("remove_node_identity", fingerprint=fp, organ_id=organ_id)
    return web.json_response({"fingerprint": fp, "organ_id": organ_id, "removed": bool(removed)})


@routes.post("/v1/admin/reload")
async def post_reload(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    await hub.admin(request)
    swapped = hub.runtime.reload(force=True)
    await _refresh(hub, file_changed=swapped)
    return web.json_response(
        {"reloaded": swapped, "generation": hub.runtime.generation, "error": hub.runtime.last_error}
    )
