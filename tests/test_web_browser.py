"""The web pages in a real browser: Playwright driving Debian's chromium (``/usr/bin/chromium``).

The hub-like app (the pages mounted at ``/ui/``) runs on a localhost port in a thread, over a seeded
SQLite store. Screenshots go to ``test-artifacts/`` (gitignored) for people to look at.

Without chromium or the ``playwright`` package the tests are skipped on a laptop and **fail** under
``CI=true``, so CI cannot pass without having run them. No browser is downloaded (``playwright install``
is never run): the system chromium is launched through ``executable_path``.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from web_fixtures import DISTRICT, PASSWORD, ServerThread

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright; no browser download needed)"
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        return f"chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    reason = _missing()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"browser tests cannot run in CI: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with ServerThread(tmp_path_factory.mktemp("web")) as running:
        yield running


@pytest.fixture
def page(browser, server):  # type: ignore[no-untyped-def]
    context = browser.new_context(
        accept_downloads=True, locale="vi-VN", viewport={"width": 1280, "height": 900}
    )
    tab = context.new_page()
    try:
        yield tab
    finally:
        context.close()


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"web-{name}.png"), full_page=True)


def sign_in(page, server: ServerThread, username: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(server.base + "login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def test_clerk_signs_in_opens_a_timeline_and_is_refused_another_agencys_dispatch(page, server) -> None:
    sign_in(page, server, "vanthu.tanbien")
    assert page.url.endswith("/ui/dispatches")
    assert page.locator("h1").inner_text().startswith("Văn bản đi và đến")
    assert "Ủy ban nhân dân huyện Tân Biên" in page.locator("header").inner_text()
    rows = page.locator("#dispatches tbody tr")
    assert rows.count() == 4
    shot(page, "clerk-dispatches")

    page.click("text=12/UBND-VP")
    page.wait_for_load_state()
    timeline = page.locator(f'[id="timeline-{DISTRICT}"]')
    assert timeline.count() == 1
    text = timeline.inner_text()
    assert "Đã đến" in text
    assert "Đã tiếp nhận" in text
    assert page.locator("section.timeline").count() == 1  # a recipient sees its own line only
    shot(page, "clerk-timeline")

    with page.expect_download() as download_info:
        page.click("#download-verdict")
    verdict = Path(download_info.value.path()).read_text(encoding="utf-8")
    assert '"electronic": true' in verdict

    page.goto(server.base + "overdue")
    assert "46/UBND" in page.locator("#overdue_sent").inner_text()
    assert "31/UBND-NC" in page.locator("#overdue_received").inner_text()
    shot(page, "clerk-overdue")

    assert server.seeded is not None
    response = page.goto(server.base + f"dispatches/{server.seeded.other_district}")
    assert response is not None
    assert response.status == 404
    assert "Không tìm thấy" in page.locator("#error-message").inner_text()
    shot(page, "clerk-refused")
    response = page.goto(server.base + "rate")
    assert response is not None
    assert response.status == 403


def test_auditor_sees_the_charts_drills_down_and_exports_csv(page, server) -> None:
    sign_in(page, server, "kiemtra")
    page.goto(server.base + "rate?from=2027-01-01&to=2027-03-10")
    monthly = page.locator("svg#chart-monthly")
    assert monthly.is_visible()
    points = monthly.locator("circle.point")
    assert points.count() >= 3
    values = [float(points.nth(i).get_attribute("data-value") or "nan") for i in range(points.count())]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert monthly.locator("path").count() >= 1
    bars = page.locator("svg#chart-buckets")
    segments = bars.locator("rect.segment")
    assert segments.count() >= 4
    assert sum(int(segments.nth(i).get_attribute("data-value") or 0) for i in range(segments.count())) == 10
    box = bars.bounding_box()
    assert box is not None
    assert box["width"] > 200
    assert box["height"] > 80
    total = page.locator("#rate-total").inner_text()
    assert "%" in total
    shot(page, "auditor-dashboard")

    with page.expect_download() as download_info:
        page.click("#csv-by-level-pair")
    download = download_info.value
    assert download.suggested_filename.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text(encoding="utf-8-sig"))))
    assert sum(int(r["total"]) for r in rows) == 10
    table = page.locator("#by-level-pair tbody tr")
    assert table.count() == len(rows)
    for i, row in enumerate(rows):
        assert table.nth(i).get_attribute("data-key") == row["level_pair"]
        assert (
            table.nth(i)
            .locator("td.rate")
            .inner_text()
            .replace(",", ".")
            .startswith("–" if not row["rate"] else f"{float(row['rate']) * 100:.1f}")
        )

    page.locator("#by-level-pair tfoot a").first.click()
    page.wait_for_load_state()
    assert page.locator("#exchanges tbody tr").count() >= 1
    assert page.locator("h1").inner_text() == "Các lượt trao đổi và lý do"
    shot(page, "auditor-drilldown")

    page.goto(server.base + "rate?from=2027-01-01&to=2027-03-10&lang=en")
    assert page.locator("h1").inner_text() == "Share of fully electronic exchanges"
    shot(page, "auditor-dashboard-en")
