"""The hub's web listener: the pages for browsers on a second port, HTTPS without client certificates.

One real hub subprocess (SQLite) with ``web_port`` set; a package sent through the mTLS API, web accounts
added to the same database; then the two ports are checked to serve only what they should.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import re
import shutil
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hub_helpers import (
    DISTRICT,
    PROVINCE,
    Client,
    HubFiles,
    HubProcess,
    WebSession,
    client_context,
    document,
    free_port,
    hub_config,
    sign,
    web_context,
    write_config_toml,
    write_hub_files,
)
from pki_fixtures import build_pki

from gateway.hub.config import HubConfig

PASSWORD = "mật-khẩu-đủ-dài-2027"


@dataclass
class WebHub:
    files: HubFiles
    config: HubConfig
    process: HubProcess
    package_id: str
    subject: str

    def api(self, who: str | None = PROVINCE) -> Client:
        return Client(self.config.port, client_context(self.files, who))

    def web(self) -> WebSession:
        assert self.config.web_port
        return WebSession(self.config.web_port, self.files)


async def _add_users(url: str) -> None:
    from gateway.store.accounts import add_user
    from gateway.store.db import open_database
    from gateway.web.passwords import hash_password

    db = open_database(url)
    try:
        hashed = hash_password(PASSWORD)
        for username, role, organ in (("vanthu.tanbien", "clerk", DISTRICT), ("kiemtra", "auditor", None)):
            await add_user(
                db,
                username=username,
                password_hash=hashed,
                role=role,
                organ_id=organ,
                now=dt.datetime.now(dt.UTC),
            )
    finally:
        await db.close()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebHub]:
    pki = build_pki()
    root = tmp_path_factory.mktemp("webhub")
    files = write_hub_files(pki, root)
    url = f"sqlite+aiosqlite:///{root / 'hub.db'}"
    config = hub_config(files, url, web_port=free_port(), verify_processes=1)
    process = HubProcess(write_config_toml(config, root / "hub.toml"))
    try:
        asyncio.run(_add_users(url))
        subject = "Về việc thử trang web qua cổng riêng"
        data = sign(
            document(sender=PROVINCE, recipients=(DISTRICT,), subject=subject), pki.agencies[PROVINCE]
        )
        client = Client(config.port, client_context(files, PROVINCE))
        assert client.post_package(data).status == 202
        client.close()
        yield WebHub(files, config, process, hashlib.sha256(data).hexdigest(), subject)
    finally:
        process.stop()


def test_the_web_port_serves_the_sign_in_page_without_a_client_certificate(hub: WebHub) -> None:
    web = hub.web()
    page = web.get("/ui/login")
    assert page.status == 200
    assert page.headers["content-type"].startswith("text/html")
    assert b'name="password"' in page.body
    assert "Secure" in page.headers["set-cookie"]  # the pre-sign-in CSRF cookie, over TLS
    assert page.headers["strict-transport-security"]
    root = web.request("GET", "/")
    assert (root.status, root.headers["location"]) == (302, "/ui/")
    web.close()


def test_the_web_port_serves_no_api_and_the_api_port_no_pages(hub: WebHub) -> None:
    web = hub.web()
    for path in (
        "/v1/inbox",
        f"/v1/packages/{hub.package_id}",
        "/healthz",
        "/openapi.json",
        "/v1/admin/nodes",
    ):
        assert web.get(path).status == 404, path
    web.close()
    api = hub.api()
    for path in ("/ui/login", "/ui/", "/ui/static/style.css"):
        assert api.get(path).status == 404, path
    assert api.get("/healthz").status == 200
    api.close()


def test_a_clerk_signs_in_over_the_web_port_and_sees_what_the_api_received(hub: WebHub) -> None:
    web = hub.web()
    signed_in = web.sign_in("vanthu.tanbien", PASSWORD)
    assert signed_in.status in (302, 303), signed_in.body[:300]
    listing = web.get("/ui/dispatches")
    assert listing.status == 200
    assert hub.subject in listing.body.decode()
    found = re.search(rb'href="/ui/dispatches/(\d+)"', listing.body)
    assert found is not None
    detail = web.get(f"/ui/dispatches/{found.group(1).decode()}")
    assert detail.status == 200
    assert hub.subject in detail.body.decode()
    web.close()


def test_the_web_port_does_not_ask_for_a_client_certificate(hub: WebHub) -> None:
    """A client that has one may present it, but the server never requests it (no CertificateRequest):
    the handshake with a certificate-less context succeeds, and the API port refuses the same context."""
    import socket

    assert hub.config.web_port
    with (
        socket.create_connection(("127.0.0.1", hub.config.web_port), timeout=10) as raw,
        web_context(hub.files).wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    api = Client(hub.config.port, web_context(hub.files))
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        api.get("/healthz")


CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]


def test_a_real_browser_signs_in_on_the_real_hub(hub: WebHub) -> None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed")
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        pytest.skip("chromium is not installed")
    base = f"https://localhost:{hub.config.web_port}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            # The test CA is not in chromium's store: accept the hub's certificate as a user would
            # after installing the provincial CA.
            context = browser.new_context(ignore_https_errors=True, locale="vi-VN")
            page = context.new_page()
            page.goto(base + "/")
            assert page.url.endswith("/ui/login") or "/ui/login" in page.url
            page.fill("input[name=username]", "vanthu.tanbien")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_load_state()
            assert page.url.endswith("/ui/dispatches")
            assert hub.subject in page.content()
            artifacts = Path(__file__).resolve().parent.parent / "test-artifacts"
            artifacts.mkdir(exist_ok=True)
            page.screenshot(path=str(artifacts / "web-real-hub-dispatches.png"), full_page=True)
            context.close()
        finally:
            browser.close()
