"""The web pages through aiohttp's test client, mounted at /ui/ like the hub does, on a seeded SQLite store.

What a user relies on: pages need a session; a POST without the CSRF token is refused; a clerk sees its
own agency's documents and gets 404 (not 403) for anyone else's; auditors see figures and metadata but
not package bytes; the CSV export is the rate engine's figures; the drill-down lists exactly the
exchanges behind a figure.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import re
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from web_fixtures import (
    COMMUNE,
    DEPT,
    DISTRICT,
    DISTRICT2,
    NOW,
    PASSWORD,
    PROVINCE,
    Seeded,
    hub_like_app,
    open_seeded,
)

from gateway.store.accounts import set_disabled
from gateway.store.blobs import BlobStore
from gateway.store.db import Database
from gateway.store.rate import exchanges_count, rate_report

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Env:
    def __init__(self, client: TestClient, db: Database, blobs: BlobStore, seeded: Seeded) -> None:
        self.client = client
        self.db = db
        self.blobs = blobs
        self.seeded = seeded


@pytest.fixture
async def env(tmp_path) -> AsyncIterator[Env]:
    db, blobs, seeded = await open_seeded(tmp_path)
    client = TestClient(TestServer(hub_like_app(db, blobs)))
    await client.start_server()
    try:
        yield Env(client, db, blobs, seeded)
    finally:
        await client.close()
        await db.close()


async def csrf_of(client: TestClient, path: str = "/ui/login") -> str:
    response = await client.get(path)
    match = CSRF.search(await response.text())
    assert match, "the page has no CSRF field"
    return match.group(1)


async def sign_in(client: TestClient, username: str, password: str = PASSWORD) -> None:
    token = await csrf_of(client)
    response = await client.post(
        "/ui/login",
        data={"csrf": token, "username": username, "password": password},
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()


def clerk_pages(seeded: Seeded, package_id: int) -> list[str]:
    return [
        f"/ui/dispatches/{package_id}",
        f"/ui/dispatches/{package_id}/verdict.json",
        f"/ui/dispatches/{package_id}/receipt.xml",
        f"/ui/dispatches/{package_id}/package",
    ]


ALL_PAGES = [
    "/ui/",
    "/ui/dispatches",
    "/ui/overdue",
    "/ui/rate",
    "/ui/rate.csv",
    "/ui/rate/exchanges",
    "/ui/users",
]


# --- sign-in, sessions, CSRF ---------------------------------------------------------------------------


async def test_every_page_requires_a_session(env: Env) -> None:
    for path in [*ALL_PAGES[1:], *clerk_pages(env.seeded, env.seeded.province_to_all)]:
        response = await env.client.get(path, allow_redirects=False)
        assert response.status == 303, path
        assert response.headers["Location"].startswith("/ui/login?next="), path
    response = await env.client.get("/ui/", allow_redirects=False)
    assert response.headers["Location"] == "/ui/login"


async def test_login_post_without_or_with_a_wrong_csrf_token_is_refused(env: Env) -> None:
    form = {"username": "vanthu.tanbien", "password": PASSWORD}
    response = await env.client.post("/ui/login", data=form, allow_redirects=False)
    assert response.status == 403
    assert "gw_session" not in response.cookies
    await csrf_of(env.client)  # sets the double-submit cookie
    response = await env.client.post("/ui/login", data={**form, "csrf": "forged"}, allow_redirects=False)
    assert response.status == 403
    assert "gw_session" not in response.cookies


async def test_logout_needs_the_session_csrf_token_and_ends_the_session(env: Env) -> None:
    await sign_in(env.client, "vanthu.tanbien")
    response = await env.client.post("/ui/logout", data={}, allow_redirects=False)
    assert response.status == 403
    assert (await env.client.get("/ui/dispatches", allow_redirects=False)).status == 200  # still signed in
    response = await env.client.post(
        "/ui/logout", data={"csrf": "x" * 43}, allow_redirects=False
    )  # a token, but not this session's
    assert response.status == 403
    token = await csrf_of(env.client, "/ui/dispatches")
    response = await env.client.post("/ui/logout", data={"csrf": token}, allow_redirects=False)
    assert response.status == 303
    assert (await env.client.get("/ui/dispatches", allow_redirects=False)).status == 303


async def test_a_cross_origin_post_is_refused_even_with_the_token(env: Env) -> None:
    token = await csrf_of(env.client)
    response = await env.client.post(
        "/ui/login",
        data={"csrf": token, "username": "kiemtra", "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
        allow_redirects=False,
    )
    assert response.status == 403


async def test_session_cookie_flags_and_a_fresh_token_per_sign_in(env: Env) -> None:
    token = await csrf_of(env.client)
    response = await env.client.post(
        "/ui/login",
        data={"csrf": token, "username": "kiemtra", "password": PASSWORD},
        allow_redirects=False,
    )
    cookie = response.cookies["gw_session"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/ui/"
    assert not cookie["secure"]  # plain HTTP here; see test_cookies_are_secure_over_tls
    first = cookie.value
    await sign_in(env.client, "kiemtra")
    jar = env.client.session.cookie_jar.filter_cookies(env.client.make_url("/ui/"))
    assert jar["gw_session"].value != first


async def test_wrong_passwords_lock_the_account_for_a_while(env: Env) -> None:
    for _ in range(5):
        token = await csrf_of(env.client)
        response = await env.client.post(
            "/ui/login", data={"csrf": token, "username": "kiemtra", "password": "wrong password!"}
        )
        assert response.status == 401
        assert "Sai tên đăng nhập hoặc mật khẩu" in await response.text()
    token = await csrf_of(env.client)
    response = await env.client.post(
        "/ui/login", data={"csrf": token, "username": "kiemtra", "password": PASSWORD}, allow_redirects=False
    )
    assert response.status == 401  # the right password, but locked: the same message


async def test_unknown_user_gets_the_same_answer(env: Env) -> None:
    token = await csrf_of(env.client)
    response = await env.client.post(
        "/ui/login", data={"csrf": token, "username": "nobody", "password": PASSWORD}
    )
    assert response.status == 401
    assert "Sai tên đăng nhập hoặc mật khẩu" in await response.text()


async def test_disabling_a_user_ends_their_session(env: Env) -> None:
    await sign_in(env.client, "vanthu.tanbien")
    assert (await env.client.get("/ui/dispatches", allow_redirects=False)).status == 200
    await set_disabled(env.db, "vanthu.tanbien")
    assert (await env.client.get("/ui/dispatches", allow_redirects=False)).status == 303


async def test_next_is_kept_but_never_leaves_the_site(env: Env) -> None:
    for target, expected in (
        ("/ui/overdue", "/ui/overdue"),
        ("//evil.example/ui/", "/ui/"),
        ("https://evil.example/", "/ui/"),
    ):
        token = await csrf_of(env.client)
        response = await env.client.post(
            "/ui/login",
            data={"csrf": token, "username": "quantri", "password": PASSWORD, "next": target},
            allow_redirects=False,
        )
        assert response.headers["Location"] == expected


async def test_security_headers(env: Env) -> None:
    await sign_in(env.client, "vanthu.tanbien")
    response = await env.client.get(f"/ui/dispatches/{env.seeded.province_to_all}")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src" not in csp or "'unsafe-inline'" not in csp
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script" not in await response.text()
    login = await env.client.get("/ui/login")
    assert login.headers["X-Frame-Options"] == "DENY"


async def test_language_switch_is_remembered_in_the_session(env: Env) -> None:
    await sign_in(env.client, "vanthu.tanbien")
    assert "Văn bản đi và đến" in await (await env.client.get("/ui/dispatches")).text()
    assert "Dispatches sent and received" in await (await env.client.get("/ui/dispatches?lang=en")).text()
    assert "Dispatches sent and received" in await (await env.client.get("/ui/dispatches")).text()
    assert "Văn bản đi và đến" in await (await env.client.get("/ui/dispatches?lang=vi")).text()


# --- clerks ------------------------------------------------------------------------------------------


async def test_clerk_sees_its_agencys_dispatches_only(env: Env) -> None:
    await sign_in(env.client, "vanthu.tanbien")
    text = await (await env.client.get("/ui/dispatches")).text()
    for number in ("12/UBND-VP", "45/UBND", "46/UBND", "31/UBND-NC"):
        assert number in text
    for hidden in ("7/SNV-VP", "99/UBND-TC", "30/UBND-KT", "Tân Châu</td>"):
        assert hidden not in text
    # ?organ= does not widen a clerk's scope
    text = await (await env.client.get(f"/ui/dispatches?organ={DISTRICT2}")).text()
    assert "99/UBND-TC" not in text


async def test_clerk_search_by_number_subject_and_date(env: Env) -> None:
    await sign_in(env.client, "vanthu.tanbien")

    async def numbers(query: str) -> set[str]:
        text = await (await env.client.get(f"/ui/dispatches?{query}")).text()
        return set(re.findall(r'<a href="/ui/dispatches/\d+">([^<]+)</a>', text))

    assert await numbers("number=UBND-VP") == {"12/UBND-VP"}
    assert await numbers("subject=tiếp công dân") == {"45/UBND"}
    assert await numbers("from=2027-03-01&to=2027-03-31") == {"46/UBND", "31/UBND-NC"}
    assert await numbers("dir=sent") == {"45/UBND", "46/UBND"}
    assert await numbers("dir=received") == {"12/UBND-VP", "31/UBND-NC"}
    assert (await env.client.get("/ui/dispatches?from=yesterday")).status == 400


async def test_clerk_gets_404_for_every_page_of_another_agencys_dispatch(env: Env) -> None:
    await sign_in(env.client, "vanthu.tanbien")
    missing = await env.client.get("/ui/dispatches/987654")
    assert missing.status == 404
    for package_id in (env.seeded.dept_paper, env.seeded.other_district, env.seeded.recent):
        for path in clerk_pages(env.seeded, package_id):
            response = await env.client.get(path)
            assert response.status == 404, path
            assert "Không tìm thấy" in await response.text()
    for path in clerk_pages(env.seeded, 987654):
        assert (await env.client.get(path)).status == 404


async def test_clerk_timeline_as_sender_and_as_recipient(env: Env) -> None:
    await sign_in(env.client, "vanthu.tanbien")
    # as a recipient: only its own line, with its statuses and labels
    text = await (await env.client.get(f"/ui/dispatches/{env.seeded.province_to_all}")).text()
    assert f'id="timeline-{DISTRICT}"' in text
    assert f'id="timeline-{DISTRICT2}"' not in text
    assert f'id="timeline-{DEPT}"' not in text
    assert "Đã đến" in text
    assert "Đã tiếp nhận" in text
    # as the sender: every recipient
    text = await (await env.client.get(f"/ui/dispatches/{env.seeded.overdue_sent}")).text()
    assert f'id="timeline-{DISTRICT2}"' in text
    assert "Quá hạn" in text
    english = await (await env.client.get(f"/ui/dispatches/{env.seeded.province_to_all}?lang=en")).text()
    assert "Accepted and registered" in english


async def test_admin_sees_every_line_with_the_overdue_flag(env: Env) -> None:
    await sign_in(env.client, "quantri")
    text = await (await env.client.get(f"/ui/dispatches/{env.seeded.province_to_all}")).text()
    for organ in (DISTRICT, DISTRICT2, DEPT):
        assert f'id="timeline-{organ}"' in text
    dept = text.split(f'id="timeline-{DEPT}"')[1].split("</section>")[0]
    assert "flag overdue" in dept
    refused = text.split(f'id="timeline-{DISTRICT2}"')[1].split("</section>")[0]
    assert "Từ chối tiếp nhận" in refused
    assert "Không thuộc thẩm quyền" in refused


async def test_clerk_overdue_list(env: Env) -> None:
    await sign_in(env.client, "vanthu.tanbien")
    text = await (await env.client.get("/ui/overdue")).text()
    sent = text.split('id="overdue_sent"')[1].split("</table>")[0]
    received = text.split('id="overdue_received"')[1].split("</table>")[0]
    assert "46/UBND" in sent
    assert "31/UBND-NC" in received
    assert "12/UBND-VP" not in text  # confirmed in time by district 31; the department is not its business


async def test_clerk_downloads_package_bytes_verdict_and_receipt(env: Env) -> None:
    await sign_in(env.client, "vanthu.tanbien")
    pid = env.seeded.province_to_all
    response = await env.client.get(f"/ui/dispatches/{pid}/package")
    assert response.status == 200
    body = await response.read()
    assert b"12/UBND-VP" in body
    assert "attachment" in response.headers["Content-Disposition"]
    assert response.headers["Cache-Control"] == "no-store"
    verdict = json.loads(await (await env.client.get(f"/ui/dispatches/{pid}/verdict.json")).text())
    assert verdict["sender"] == PROVINCE
    assert verdict["recipients"] == [DISTRICT, DISTRICT2, DEPT]
    assert verdict["signature"]["valid"] is True
    assert verdict["electronic"] is True
    assert verdict["sha256"] == hashlib.sha256(body).hexdigest()
    receipt = await env.client.get(f"/ui/dispatches/{pid}/receipt.xml")
    assert (await receipt.read()).startswith(b"<HubReceipt>")


async def test_clerk_cannot_open_auditor_or_admin_pages(env: Env) -> None:
    await sign_in(env.client, "vanthu.tanbien")
    for path in ("/ui/rate", "/ui/rate.csv", "/ui/rate/exchanges", "/ui/users"):
        assert (await env.client.get(path)).status == 403, path


# --- auditors and admins -----------------------------------------------------------------------------


async def test_auditor_sees_metadata_of_all_but_not_package_bytes(env: Env) -> None:
    await sign_in(env.client, "kiemtra")
    text = await (await env.client.get("/ui/dispatches")).text()
    assert "99/UBND-TC" in text
    assert "7/SNV-VP" in text
    page = await (await env.client.get(f"/ui/dispatches/{env.seeded.other_district}")).text()
    assert 'id="download-package"' not in page
    assert 'id="download-verdict"' in page
    response = await env.client.get(f"/ui/dispatches/{env.seeded.other_district}/package")
    assert response.status == 403
    assert (await env.client.get(f"/ui/dispatches/{env.seeded.other_district}/verdict.json")).status == 200
    assert (await env.client.get("/ui/overdue")).status == 403
    assert (await env.client.get("/ui/users")).status == 403


async def test_admin_downloads_and_lists_users(env: Env) -> None:
    await sign_in(env.client, "quantri")
    # this package's bytes are kept in the database (a small body), not in the blob store
    response = await env.client.get(f"/ui/dispatches/{env.seeded.other_district}/package")
    assert response.status == 200
    body = await response.read()
    assert b"99/UBND-TC" in body
    assert not env.blobs.path_of(hashlib.sha256(body).hexdigest()).exists()
    text = await (await env.client.get("/ui/users")).text()
    for name in ("vanthu.tanbien", "vanthu.tanchau", "kiemtra", "quantri"):
        assert name in text
    assert "Ủy ban nhân dân huyện Tân Biên" in text
    overdue = await (await env.client.get(f"/ui/overdue?organ={DISTRICT}")).text()
    assert "46/UBND" in overdue


RANGE = {"from": "2027-01-01", "to": "2027-03-10"}


async def test_csv_export_equals_the_rate_figures(env: Env) -> None:
    await sign_in(env.client, "kiemtra")
    for by in ("level_pair", "sender", "recipient", "month"):
        response = await env.client.get("/ui/rate.csv", params={**RANGE, "by": by})
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/csv")
        assert "attachment" in response.headers["Content-Disposition"]
        rows = list(csv.DictReader(io.StringIO((await response.read()).decode("utf-8-sig"))))
        expected = await rate_report(
            env.db, date_from=dt.date(2027, 1, 1), date_to=dt.date(2027, 3, 10), by=(by,)
        )
        assert [r[by] for r in rows] == ["|".join(e.key) for e in expected]
        for got, want in zip(rows, expected, strict=True):
            for bucket, count in want.counts.items():
                assert int(got[bucket.value]) == count
            assert int(got["total"]) == want.total
            assert int(got["denominator"]) == want.denominator
            assert (got["rate"] or None) == (None if want.rate is None else f"{want.rate:.6f}")
        assert sum(int(r["total"]) for r in rows) == 10  # 9 exchanges + 1 paper-only dispatch


async def test_csv_export_follows_the_filters(env: Env) -> None:
    await sign_in(env.client, "kiemtra")
    response = await env.client.get("/ui/rate.csv", params={**RANGE, "by": "recipient", "sender": PROVINCE})
    rows = list(csv.DictReader(io.StringIO((await response.read()).decode("utf-8-sig"))))
    assert {r["recipient"] for r in rows} == {DISTRICT, DISTRICT2, DEPT, COMMUNE}
    assert (await env.client.get("/ui/rate.csv", params={**RANGE, "by": "colour"})).status == 400
    assert (await env.client.get("/ui/rate.csv", params={**RANGE, "level_pair": "x→y"})).status == 400


async def test_dashboard_shows_tables_and_charts_with_data(env: Env) -> None:
    await sign_in(env.client, "kiemtra")
    text = await (await env.client.get("/ui/rate", params=RANGE)).text()
    assert 'id="chart-monthly"' in text
    assert 'id="chart-buckets"' in text
    points = re.findall(r'<circle class="point"[^>]*data-value="([0-9.]+)"', text)
    segments = re.findall(r'<rect class="segment"[^>]*data-value="(\d+)"', text)
    assert points
    assert sum(int(s) for s in segments) == 10
    by_pair = await rate_report(env.db, date_from=dt.date(2027, 1, 1), date_to=dt.date(2027, 3, 10))
    table = text.split('id="by-level-pair"')[1].split("</table>")[0]
    for row in by_pair:
        assert f'data-key="{row.key[0]}"' in table
    english = await (await env.client.get("/ui/rate", params={**RANGE, "lang": "en"})).text()
    assert "Fully electronic" in english


async def test_every_drill_down_link_lists_exactly_the_figure(env: Env) -> None:
    await sign_in(env.client, "kiemtra")
    text = await (await env.client.get("/ui/rate", params=RANGE)).text()
    links = set(re.findall(r'href="(/ui/rate/exchanges\?[^"]+)"', text))
    assert len(links) > 10
    import html
    from urllib.parse import parse_qs, urlsplit

    for link in links:
        link = html.unescape(link)
        query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
        expected = await exchanges_count(
            env.db,
            date_from=dt.date.fromisoformat(query["from"]),
            date_to=dt.date.fromisoformat(query["to"]),
            bucket=query.get("bucket"),
            level_pair=query.get("level_pair"),
            sender=query.get("sender"),
            recipient=query.get("recipient"),
            month=query.get("month"),
        )
        page = await (await env.client.get(link)).text()
        assert page.count("<tr data-bucket=") == expected, link
        if "bucket" in query:
            assert set(re.findall(r'<tr data-bucket="(\w+)"', page)) == {query["bucket"]}


async def test_drill_down_gives_the_reason(env: Env) -> None:
    await sign_in(env.client, "kiemtra")
    page = await (await env.client.get("/ui/rate/exchanges", params={**RANGE, "bucket": "refused"})).text()
    assert "Bên nhận đã từ chối văn bản" in page
    page = await (await env.client.get("/ui/rate/exchanges", params={**RANGE, "bucket": "paper_only"})).text()
    assert "Giấy mời họp" in page
    assert (await env.client.get("/ui/rate/exchanges", params={"bucket": "lost"})).status == 400


def test_now_is_a_wednesday_in_march() -> None:
    """The dataset's clock: deadlines in the tests depend on it."""
    assert NOW.weekday() == 2


def _self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "web.crt", tmp_path / "web.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def test_cookies_are_secure_over_tls(tmp_path) -> None:
    """Served over TLS, the session cookie is Secure and HSTS is sent."""
    import ssl

    import aiohttp
    from aiohttp import web

    cert_path, key_path = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_path, key_path)
    client_ctx = ssl.create_default_context(cafile=str(cert_path))
    db, blobs, _ = await open_seeded(tmp_path)
    runner = web.AppRunner(hub_like_app(db, blobs))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"https://127.0.0.1:{port}"
    try:
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(
            cookie_jar=jar, connector=aiohttp.TCPConnector(ssl=client_ctx)
        ) as http:
            page = await http.get(f"{base}/ui/login")
            assert page.headers["Strict-Transport-Security"].startswith("max-age=")
            token = CSRF.search(await page.text()).group(1)  # type: ignore[union-attr]
            response = await http.post(
                f"{base}/ui/login",
                data={"csrf": token, "username": "kiemtra", "password": PASSWORD},
                allow_redirects=False,
            )
            assert response.status == 303
            cookie = response.cookies["gw_session"]
            assert cookie["secure"] is True
            assert cookie["httponly"] is True
    finally:
        await runner.cleanup()
        await db.close()


async def test_standalone_from_settings_opens_its_own_database(tmp_path) -> None:
    """Without db=, the app opens the settings' database and blob folder, and closes them with itself."""
    from aiohttp import web

    from gateway.settings import load_settings
    from gateway.web import create_web_app

    db, _, seeded = await open_seeded(tmp_path)
    await db.close()
    settings = load_settings(
        None,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}",
        blob_dir=tmp_path / "blobs",
        data_dir=tmp_path,
    )
    parent = web.Application()
    parent.add_subapp("/ui/", create_web_app(settings, clock=lambda: NOW))
    async with TestClient(TestServer(parent)) as client:
        await sign_in(client, "vanthu.tanbien")
        response = await client.get(f"/ui/dispatches/{seeded.province_to_all}/package")
        assert response.status == 200
        assert b"12/UBND-VP" in await response.read()
