"""The authorization matrix (issue 7, item 3): every API endpoint × every identity, every web page × every
role, against one real hub subprocess (mutual TLS on the API port, the web pages on the web port).

The tables below *are* the specification (docs/security.md §2a repeats them): each cell is the status
the hub must answer. ``FAIL`` marks a TLS handshake that must fail (nothing reaches the API); ``LOGIN`` a
redirect to the sign-in page. The API table is checked against the OpenAPI document, so a new endpoint
without a row fails :func:`test_the_api_matrix_covers_every_endpoint`; the web table against the web
app's routes likewise.

The world: a package P from PROVINCE (the sender) to DEPARTMENT (a recipient); FINANCE is unrelated; a
node certificate that names no agency is registered (by the operator) as a node for PROVINCE; the hub's
own certificate is the operator. Requests with side effects build fresh inputs for every cell (a new
package, a new status on a new package, a new paper dispatch), so cells do not depend on each other.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import re
import ssl
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from hub_helpers import (
    DEPARTMENT,
    FINANCE,
    PROVINCE,
    UNLISTED,
    Client,
    HubFiles,
    HubProcess,
    WebSession,
    client_context,
    document,
    free_port,
    hub_config,
    sign,
    status,
    today_vn,
    write_config_toml,
    write_hub_files,
)
from pki_fixtures import PkiSet, build_pki

from gateway.trust.pki import Issued, issue_hub_cert

FAIL = "handshake fails"
LOGIN = "redirect to sign-in"
"""(and "303 <path>": a redirect there)"""
PASSWORD = "mật-khẩu-đủ-dài-2027"

IDENTITIES = ("sender", "recipient", "unrelated", "node", "admin", "revoked", "none")
"""sender PROVINCE; recipient DEPARTMENT; unrelated FINANCE; node: a certificate naming no agency,
registered as a node for PROVINCE; admin: the hub's own certificate; revoked: a revoked agency
certificate; none: no client certificate."""
CERT_OF = {
    "sender": PROVINCE,
    "recipient": DEPARTMENT,
    "unrelated": FINANCE,
    "admin": "hub",
    "revoked": "revoked",
}

ROLES = ("anonymous", "clerk_sender", "clerk_recipient", "clerk_unrelated", "auditor", "admin")
USERS = {
    "clerk_sender": ("vanthu.tinh", "clerk", PROVINCE),
    "clerk_recipient": ("vanthu.so", "clerk", DEPARTMENT),
    "clerk_unrelated": ("vanthu.taichinh", "clerk", FINANCE),
    "auditor": ("kiemtra", "auditor", None),
    "admin": ("quantri", "admin", None),
}


# --- the world -----------------------------------------------------------------------------------


@dataclass
class World:
    pki: PkiSet
    files: HubFiles
    api_port: int
    web_port: int
    node: Issued
    package_id: str = ""
    web_id: str = ""
    clients: dict[str, Client] = field(default_factory=dict)
    sessions: dict[str, WebSession] = field(default_factory=dict)

    def client(self, who: str) -> Client:
        if who not in self.clients:
            if who == "none":
                ctx = ssl.create_default_context(cafile=str(self.files.ca_file))
            else:
                ctx = client_context(self.files, "node" if who == "node" else CERT_OF[who])
            self.clients[who] = Client(self.api_port, ctx)
        return self.clients[who]

    def signed_package(self, sender: str = PROVINCE) -> bytes:
        return sign(document(sender=sender, recipients=(DEPARTMENT,)), self.pki.agencies[sender])

    def send(self) -> tuple[Any, str]:
        """A new package from the sender to the recipient, through the API."""
        doc = document(sender=PROVINCE, recipients=(DEPARTMENT,))
        data = sign(doc, self.pki.agencies[PROVINCE])
        reply = self.client("sender").post_package(data)
        assert reply.status == 202, reply.body[:300]
        return doc, hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    pki = build_pki()
    root = tmp_path_factory.mktemp("authz")
    node = issue_hub_cert(pki.intermediate, name="Node of the provincial DMS")
    files = write_hub_files(pki, root, extra={"node": node})
    url = f"sqlite+aiosqlite:///{root / 'hub.db'}"
    config = hub_config(files, url, web_port=free_port(), verify_processes=1, reload_interval=1.0)
    process = HubProcess(write_config_toml(config, root / "hub.toml"))
    assert config.web_port
    w = World(pki, files, config.port, config.web_port, node)
    try:
        fingerprint = hashlib.sha256(node.cert.public_bytes(Encoding.DER)).hexdigest()
        registered = w.client("admin").post_json(
            "/v1/admin/node-identities", {"fingerprint": fingerprint, "organ_id": PROVINCE}
        )
        assert registered.status == 201, registered.body
        _, w.package_id = w.send()
        asyncio.run(_add_users(url))
        for role, (username, _, _) in USERS.items():
            session = WebSession(w.web_port, files)
            assert session.sign_in(username, PASSWORD).status == 303
            w.sessions[role] = session
        w.sessions["anonymous"] = WebSession(w.web_port, files)
        listing = w.sessions["admin"].get("/ui/dispatches").body.decode()
        found = re.search(r'href="/ui/dispatches/(\d+)"', listing)
        assert found is not None
        w.web_id = found.group(1)
        yield w
    finally:
        for c in w.clients.values():
            c.close()
        for s in w.sessions.values():
            s.close()
        process.stop()


async def _add_users(url: str) -> None:
    from gateway.store.accounts import add_user
    from gateway.store.db import open_database
    from gateway.web.passwords import hash_password

    db = open_database(url)
    try:
        hashed = hash_password(PASSWORD)
        for username, role, organ in USERS.values():
            now = dt.datetime.now(dt.UTC)
            await add_user(db, username=username, password_hash=hashed, role=role, organ_id=organ, now=now)
    finally:
        await db.close()


# --- the API matrix --------------------------------------------------------------------------------

Request = tuple[str, str, bytes | None, dict[str, str]]
JSON = {"Content-Type": "application/json"}
EDXML = {"Content-Type": "application/edxml+xml"}


def _get(path: str) -> Callable[[World, str], Request]:
    return lambda w, who: ("GET", path.format(p=w.package_id), None, {})


def _json(
    method: str, path: str, payload: Callable[[World], Any] | None = None
) -> Callable[[World, str], Request]:
    return lambda w, who: (method, path, json.dumps(payload(w) if payload else {}).encode(), JSON)


def _new_package(w: World, who: str) -> Request:
    return ("POST", "/v1/packages", w.signed_package(PROVINCE), EDXML)


def _new_status(w: World, who: str) -> Request:
    """The recipient's 01 on a fresh package, sent by ``who`` (only the recipient may)."""
    doc, _ = w.send() if who not in ("revoked", "none") else (document(), "")
    return (
        "POST",
        "/v1/status",
        sign(status(sender=DEPARTMENT, doc=doc, code="01"), w.pki.agencies[DEPARTMENT]),
        EDXML,
    )


def _paper(w: World) -> dict[str, str]:
    return {
        "sender": PROVINCE,
        "recipient": DEPARTMENT,
        "document_id": f"{PROVINCE},{today_vn():%Y/%m/%d},{uuid.uuid4().int % 10**8}/UBND-VP",
        "sent_on": today_vn().isoformat(),
    }


FP = "ab" * 32
ALL_200 = {"sender": 200, "recipient": 200, "unrelated": 200, "node": 200, "admin": 200}
PARTIES = {"sender": 200, "recipient": 200, "unrelated": 404, "node": 200, "admin": 200}
OPERATOR = {"sender": 403, "recipient": 403, "unrelated": 403, "node": 403}

API: dict[tuple[str, str], tuple[Callable[[World, str], Request], dict[str, int]]] = {
    ("GET", "/healthz"): (_get("/healthz"), ALL_200),
    ("GET", "/readyz"): (_get("/readyz"), ALL_200),
    ("GET", "/metrics"): (_get("/metrics"), ALL_200),
    ("GET", "/openapi.json"): (_get("/openapi.json"), ALL_200),
    ("POST", "/v1/packages"): (
        _new_package,
        # From must be an agency the caller acts for: the sender itself or its registered node.
        {"sender": 202, "recipient": 403, "unrelated": 403, "node": 202, "admin": 403},
    ),
    ("GET", "/v1/packages/{package_id}"): (_get("/v1/packages/{p}"), PARTIES),
    ("GET", "/v1/packages/{package_id}/receipt"): (_get("/v1/packages/{p}/receipt"), PARTIES),
    ("GET", "/v1/packages/{package_id}/timeline"): (_get("/v1/packages/{p}/timeline"), PARTIES),
    # Its own inbox; the operator acts for no agency and must name one (?agency=), which it may not read.
    ("GET", "/v1/inbox"): (_get("/v1/inbox"), {**ALL_200, "admin": 400}),
    ("POST", "/v1/inbox/ack"): (
        _json("POST", "/v1/inbox/ack", lambda w: {"item_ids": [1]}),
        {**ALL_200, "admin": 400},
    ),
    ("POST", "/v1/status"): (
        _new_status,
        {"sender": 403, "recipient": 202, "unrelated": 403, "node": 403, "admin": 403},
    ),
    ("GET", "/v1/agencies"): (_get("/v1/agencies"), ALL_200),
    ("POST", "/v1/paper-dispatches"): (
        _json("POST", "/v1/paper-dispatches", _paper),
        {"sender": 201, "recipient": 403, "unrelated": 403, "node": 201, "admin": 201},
    ),
    ("PUT", "/v1/admin/agencies/{organ_id}"): (
        _json("PUT", f"/v1/admin/agencies/{UNLISTED}", lambda w: {"name": "Sở thử", "level": "department"}),
        {**OPERATOR, "admin": 200},
    ),
    ("DELETE", "/v1/admin/agencies/{organ_id}"): (
        lambda w, who: ("DELETE", "/v1/admin/agencies/000.00.08.H53", None, {}),
        {**OPERATOR, "admin": 200},
    ),
    ("POST", "/v1/admin/agencies/{organ_id}/pins"): (
        _json("POST", f"/v1/admin/agencies/{FINANCE}/pins", lambda w: {"fingerprint": FP}),
        {**OPERATOR, "admin": 200},
    ),
    ("DELETE", "/v1/admin/agencies/{organ_id}/pins/{fingerprint}"): (
        lambda w, who: ("DELETE", f"/v1/admin/agencies/{FINANCE}/pins/{FP}", None, {}),
        {**OPERATOR, "admin": 200},
    ),
    ("GET", "/v1/admin/node-identities"): (_get("/v1/admin/node-identities"), {**OPERATOR, "admin": 200}),
    ("POST", "/v1/admin/node-identities"): (
        _json("POST", "/v1/admin/node-identities", lambda w: {"fingerprint": FP, "organ_id": FINANCE}),
        {**OPERATOR, "admin": 201},
    ),
    ("DELETE", "/v1/admin/node-identities/{fingerprint}/{organ_id}"): (
        lambda w, who: ("DELETE", f"/v1/admin/node-identities/{FP}/{FINANCE}", None, {}),
        {**OPERATOR, "admin": 200},
    ),
    ("POST", "/v1/admin/reload"): (_json("POST", "/v1/admin/reload"), {**OPERATOR, "admin": 200}),
}
for _, expected in API.values():
    expected.update({"revoked": FAIL, "none": FAIL})  # type: ignore[dict-item]
    assert set(expected) == set(IDENTITIES)


def test_the_api_matrix_covers_every_endpoint() -> None:
    from gateway.hub.openapi import document as openapi

    operations = {
        (method.upper(), path)
        for path, ops in openapi()["paths"].items()
        for method in ops
        if method in ("get", "post", "put", "delete", "patch")
    }
    assert set(API) == operations


@pytest.mark.parametrize("who", IDENTITIES)
@pytest.mark.parametrize("endpoint", list(API), ids=[f"{m} {p}" for m, p in API])
def test_api(world: World, endpoint: tuple[str, str], who: str) -> None:
    build, expected = API[endpoint]
    method, path, body, headers = build(world, who)
    if expected[who] == FAIL:
        client = world.client(who)
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            client.request(method, path, body, headers)
        client.close()
        return
    reply = world.client(who).request(method, path, body, headers)
    assert reply.status == expected[who], (reply.status, reply.body[:300])
    if reply.status in (403, 404) and path.startswith("/v1/"):
        assert reply.code in ("auth.forbidden", "resource.not_found"), reply.body[:300]


# --- the web matrix ---------------------------------------------------------------------------------

PAGE_ALL = {"clerk_sender": 200, "clerk_recipient": 200, "clerk_unrelated": 200, "auditor": 200, "admin": 200}
PAGE_PARTY = {**PAGE_ALL, "clerk_unrelated": 404}
PAGE_FIGURES = {
    "clerk_sender": 403,
    "clerk_recipient": 403,
    "clerk_unrelated": 403,
    "auditor": 200,
    "admin": 200,
}

WEB: dict[str, dict[str, int | str]] = {
    "/ui/login": {"anonymous": 200, **PAGE_ALL},
    "/ui/": {  # a role's start page
        "anonymous": LOGIN,
        **{r: "303 /ui/dispatches" for r in ("clerk_sender", "clerk_recipient", "clerk_unrelated")},
        "auditor": "303 /ui/rate",
        "admin": "303 /ui/rate",
    },
    "/ui/dispatches": {"anonymous": LOGIN, **PAGE_ALL},
    "/ui/dispatches/{id}": {"anonymous": LOGIN, **PAGE_PARTY},
    "/ui/dispatches/{id}/verdict.json": {"anonymous": LOGIN, **PAGE_PARTY},
    "/ui/dispatches/{id}/receipt.xml": {"anonymous": LOGIN, **PAGE_PARTY},
    "/ui/dispatches/{id}/package": {"anonymous": LOGIN, **PAGE_PARTY, "auditor": 403},
    "/ui/overdue": {"anonymous": LOGIN, **PAGE_ALL, "auditor": 403},
    "/ui/rate": {"anonymous": LOGIN, **PAGE_FIGURES},
    "/ui/rate.csv": {"anonymous": LOGIN, **PAGE_FIGURES},
    "/ui/rate/exchanges": {"anonymous": LOGIN, **PAGE_FIGURES},
    "/ui/users": {"anonymous": LOGIN, **PAGE_FIGURES, "auditor": 403},
    "/ui/static/style.css": {"anonymous": 200, **PAGE_ALL},
}
for _expected in WEB.values():
    assert set(_expected) == set(ROLES)


def test_the_web_matrix_covers_every_page() -> None:
    from gateway.web import create_web_app

    app = create_web_app()  # nothing is opened until it starts
    pages = set()
    for resource in app.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter") or info.get("prefix", "")
        path = re.sub(r"\{id[^}]*\}", "{id}", path)
        if path.startswith("/static"):
            path = "/static/style.css"
        pages.add("/ui" + path)
    pages.discard("/ui/logout")  # a POST: tested below with and without a session
    assert set(WEB) == pages


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("page", list(WEB))
def test_web(world: World, page: str, role: str) -> None:
    expected = WEB[page][role]
    reply = world.sessions[role].request("GET", page.replace("{id}", world.web_id))
    if expected == LOGIN:
        assert reply.status == 303, reply.status
        assert reply.headers["location"].startswith("/ui/login"), reply.headers["location"]
    elif isinstance(expected, str):
        status_code, location = expected.split()
        assert (reply.status, reply.headers["location"]) == (int(status_code), location)
    else:
        assert reply.status == expected, (reply.status, reply.body[:200])


def test_web_port_answers_no_api_for_any_role(world: World) -> None:
    for session in world.sessions.values():
        assert session.request("GET", f"/v1/packages/{world.package_id}").status == 404


def test_logout_without_the_session_token_is_refused_and_with_it_ends_the_session(world: World) -> None:
    session = WebSession(world.web_port, world.files)
    assert session.sign_in(USERS["auditor"][0], PASSWORD).status == 303
    assert session.post("/ui/logout", {}).status == 403
    page = session.get("/ui/rate")
    token = re.search(rb'name="csrf" value="([^"]+)"', page.body)
    assert token is not None
    assert session.post("/ui/logout", {"csrf": token.group(1).decode()}).status in (302, 303)
    assert session.request("GET", "/ui/rate").status == 303
    session.close()
