"""The hub's CLI groups (``gateway hub``, ``gateway admin``) on their own typer apps."""

from __future__ import annotations

import json

from hub_helpers import DISTRICT, hub_config, write_config_toml, write_hub_files
from pki_fixtures import build_pki
from typer.testing import CliRunner

from gateway.cli import admin, hub

runner = CliRunner()


def test_hub_openapi_and_config(tmp_path) -> None:
    out = runner.invoke(hub.app, ["openapi"])
    assert out.exit_code == 0
    assert "/v1/packages" in json.loads(out.stdout)["paths"]
    files = write_hub_files(build_pki(), tmp_path)
    toml = write_config_toml(hub_config(files, f"sqlite+aiosqlite:///{tmp_path}/h.db"), tmp_path / "hub.toml")
    out = runner.invoke(hub.app, ["config", "--config", str(toml)])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["trust_dir"] == str(files.trust_dir)


def test_admin_agencies_pins_and_node_identities(tmp_path) -> None:
    files = write_hub_files(build_pki(), tmp_path)
    toml = str(
        write_config_toml(hub_config(files, f"sqlite+aiosqlite:///{tmp_path}/h.db"), tmp_path / "hub.toml")
    )
    new = "000.00.08.H53"
    args = ["agency-put", new, "--name", "Sở Xây dựng", "--level", "department", "--config", toml]
    assert runner.invoke(admin.app, args).exit_code == 0
    cert_file = str(files.client(DISTRICT)[0])
    assert runner.invoke(admin.app, ["pin", new, cert_file, "--config", toml]).exit_code == 0
    listed = runner.invoke(admin.app, ["agencies", "--config", toml]).stdout
    assert new in listed
    assert "Sở Xây dựng" in listed
    assert runner.invoke(admin.app, ["node-add", cert_file, new, "--config", toml]).exit_code == 0
    nodes = runner.invoke(admin.app, ["nodes", "--config", toml]).stdout
    assert new in nodes
    assert (
        runner.invoke(admin.app, ["node-remove", cert_file, new, "--config", toml]).stdout.strip()
        == "removed 1"
    )
