"""The hub's XML limits are settings passed to verification (``xml_max_depth``, ``xml_max_text_bytes``).

One real hub subprocess with small limits (text nodes of 64 KiB, nesting of 16) under a body limit of
2 MiB: an inline attachment over the text limit is ``xml.text_too_large`` through the hub (with the
defaults the body limit would come first), the same bytes as a multipart part are fine (parts are not
XML), and a deep document is ``xml.too_deep`` on both endpoints. Nothing is stored for a refusal.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hub_helpers import (
    DEPARTMENT,
    PROVINCE,
    Client,
    HubFiles,
    HubProcess,
    client_context,
    document,
    hub_config,
    sign,
    snapshot,
    write_config_toml,
    write_hub_files,
)
from pki_fixtures import PkiSet, build_pki

from gateway.edxml.multipart import to_multipart
from gateway.hub.config import HubConfig

TEXT_LIMIT = 64 * 1024
DEPTH_LIMIT = 16


@dataclass
class Limited:
    pki: PkiSet
    files: HubFiles
    config: HubConfig
    client: Client

    def stored(self) -> dict[str, object]:
        return snapshot(self.config.database_url, self.config.data_dir)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Limited]:
    pki = build_pki()
    root = tmp_path_factory.mktemp("limits")
    files = write_hub_files(pki, root)
    config = hub_config(
        files,
        f"sqlite+aiosqlite:///{root / 'hub.db'}",
        verify_processes=1,
        max_body=2 * 1024 * 1024,
        xml_max_text_bytes=TEXT_LIMIT,
        xml_max_depth=DEPTH_LIMIT,
    )
    process = HubProcess(write_config_toml(config, root / "hub.toml"))
    client = Client(config.port, client_context(files, PROVINCE))
    try:
        yield Limited(pki, files, config, client)
    finally:
        client.close()
        process.stop()


def test_the_settings_reach_the_hub() -> None:
    from gateway.hub.config import hub_config as from_settings
    from gateway.settings import load_settings

    config = from_settings(load_settings(None, xml_max_depth=20, xml_max_text_bytes=4096))
    assert (config.xml_max_depth, config.xml_max_text_bytes) == (20, 4096)
    defaults = from_settings(load_settings(None))
    assert (defaults.xml_max_depth, defaults.xml_max_text_bytes) == (64, 100 * 1024 * 1024)


def test_a_package_within_the_limits_is_accepted(hub: Limited) -> None:
    data = sign(document(recipients=(DEPARTMENT,), padding=TEXT_LIMIT // 2), hub.pki.agencies[PROVINCE])
    assert hub.client.post_package(data).status == 202


def test_an_inline_attachment_over_the_text_limit_is_refused(hub: Limited) -> None:
    data = sign(document(recipients=(DEPARTMENT,), padding=TEXT_LIMIT), hub.pki.agencies[PROVINCE])
    assert len(data) < hub.config.max_body  # the body limit is not what refuses it
    before = hub.stored()
    reply = hub.client.post_package(data)
    assert (reply.status, reply.code) == (400, "xml.text_too_large"), reply.body[:300]
    assert hub.stored() == before
    assert hub.client.get(f"/v1/packages/{hashlib.sha256(data).hexdigest()}").status == 404


def test_the_same_attachment_as_a_multipart_part_is_accepted(hub: Limited) -> None:
    doc = document(recipients=(DEPARTMENT,), padding=TEXT_LIMIT)
    content_type, chunks = to_multipart(sign(doc, hub.pki.agencies[PROVINCE], reference="envelope"))
    assert hub.client.post_package(b"".join(chunks), content_type).status == 202


def _deep(depth: int) -> bytes:
    inner = b"<a>" * (depth - 1) + b"x" + b"</a>" * (depth - 1)
    return b'<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">' + inner + b"</edXML>"


@pytest.mark.parametrize("path", ["/v1/packages", "/v1/status"])
def test_nesting_over_the_depth_limit_is_refused(hub: Limited, path: str) -> None:
    before = hub.stored()
    reply = hub.client.request(
        "POST", path, _deep(DEPTH_LIMIT + 4), {"Content-Type": "application/edxml+xml"}
    )
    assert (reply.status, reply.code) == (400, "xml.too_deep"), reply.body[:300]
    within = hub.client.request("POST", path, _deep(DEPTH_LIMIT), {"Content-Type": "application/edxml+xml"})
    assert within.code != "xml.too_deep"  # refused later, for what it is not (an edXML package)
    assert hub.stored() == before
