"""The OpenAPI document matches the routes, and a property-based client finds no 5xx anywhere.

The second test needs ``schemathesis`` (a dev dependency); it drives the real hub subprocess over mTLS
with two identities (an agency and the operator) and fails on any server error or undocumented status.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hub_helpers import PROVINCE, HubProcess, hub_config, write_config_toml, write_hub_files
from pki_fixtures import build_pki

from gateway.hub.app import create_app
from gateway.hub.openapi import document


def _routes(tmp_path) -> set[tuple[str, str]]:
    files = write_hub_files(build_pki(), tmp_path)
    app = create_app(hub_config(files, f"sqlite+aiosqlite:///{tmp_path}/x.db"))  # routes only: nothing starts
    found = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS"):
            continue
        info = route.resource.get_info() if route.resource else {}
        found.add((route.method.lower(), info.get("path") or info.get("formatter")))
    return found


def test_every_route_is_documented_and_every_documented_path_is_routed(tmp_path) -> None:
    documented = {(m, p) for p, ops in document()["paths"].items() for m in ops}
    assert _routes(tmp_path) == documented


def test_document_is_valid_openapi_31() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1")
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["responses"], (method, path)
            params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert params == {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}, (method, path)


schemathesis = pytest.importorskip("schemathesis")
requests = pytest.importorskip("requests")

from hypothesis import HealthCheck, settings  # noqa: E402

schema = schemathesis.openapi.from_dict(document())


@pytest.fixture(scope="module")
def live_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, object]]:
    root = tmp_path_factory.mktemp("hub-openapi")
    files = write_hub_files(build_pki(), root)
    config = hub_config(files, f"sqlite+aiosqlite:///{root}/hub.db", max_body=1024 * 1024, long_poll_max=0.2)
    hub = HubProcess(write_config_toml(config, root / "hub.toml"))
    try:
        yield f"https://127.0.0.1:{config.port}", files
    finally:
        hub.stop()


@pytest.fixture(params=[PROVINCE, "hub"])
def session(request: pytest.FixtureRequest, live_hub) -> Iterator[object]:
    _, files = live_hub
    s = requests.Session()
    s.cert = tuple(str(p) for p in files.client(request.param))
    s.verify = str(files.ca_file)
    yield s
    s.close()


@pytest.mark.filterwarnings("ignore:Skipped test cases with unsupported payload media types")
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_answers_5xx(case, live_hub, session) -> None:
    from schemathesis.checks import not_a_server_error, status_code_conformance

    base_url, _ = live_hub
    response = case.call(
        base_url=base_url, session=session, verify=session.verify, cert=session.cert, timeout=30
    )
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance])
