"""Helpers for the node tests: one real hub subprocess (SQLite, mTLS) and agency nodes driven by the real
``gateway`` CLI in their own processes, each with its own certificate folder, store and DMS drop folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub_helpers import HubFiles, HubProcess, hub_config, write_config_toml, write_hub_files
from pki_fixtures import PkiSet, build_pki

from gateway.hub.config import HubConfig
from gateway.trust.files import write_issued

REPO = Path(__file__).resolve().parents[1]

# Runs ``gateway`` with the node modules mounted (until gateway/cli/__init__.py mounts them itself).
CLI = """
import importlib, sys
import gateway.cli as cli
_orig = cli._mount
def _mount():
    _orig()
    have = {g.name for g in cli.app.registered_groups}
    for name in ("node", "receipts", "overdue"):
        if name not in have:
            module = importlib.import_module(f"gateway.cli.{name}")
            cli.app.add_typer(module.app, name=name, help=module.__doc__)
cli._mount = _mount
sys.argv[0] = "gateway"
cli.main()
"""


@dataclass
class NodeDir:
    organ_id: str
    root: Path
    config: Path
    drop: Path

    def cli(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-c", CLI, *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
            env={**os.environ, "COLUMNS": "200"},
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"gateway {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def json(self, *args: str, check: bool = True) -> Any:
        return json.loads(self.cli(*args, "--json", check=check).stdout)

    def start(self) -> subprocess.Popen[bytes]:
        """``gateway node run`` as a long-running process (waits for its ``ready`` line)."""
        log = open(self.root / "run.log", "ab")  # noqa: SIM115 - the process owns it
        proc = subprocess.Popen(
            [sys.executable, "-c", CLI, "node", "run", "--config", str(self.config), "-v"],
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=REPO,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == b"ready", line
        return proc

    def dropped(self) -> list[dict[str, Any]]:
        if not self.drop.exists():
            return []
        return [
            json.loads((d / "document.json").read_text())
            for d in sorted(self.drop.iterdir())
            if d.is_dir() and not d.name.startswith(".")
        ]


@dataclass
class Exchange:
    pki: PkiSet
    files: HubFiles
    config: HubConfig
    hub_toml: Path
    hub: HubProcess
    nodes: dict[str, NodeDir]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.config.port}"

    def restart_hub(self) -> None:
        self.hub.stop()
        self.hub = start_hub(self.hub_toml)


class _HubFromSource(HubProcess):
    """The hub started from another source tree (``GATEWAY_TEST_HUB_SRC``, e.g. ``git archive HEAD``), so
    the node tests can run against a known hub while the hub in the working tree is being changed."""

    def __init__(self, config_file: Path, source: Path) -> None:
        import time

        self.log = config_file.with_suffix(".log")
        self._fh = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "PYTHONPATH": str(source)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.hub.server", "--config", str(config_file), "--workers", "1"],
            stdout=subprocess.PIPE,
            stderr=self._fh,
            cwd=source,
            env=env,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.strip() == b"ready":
                return
            if not line and self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"the hub did not start; see {self.log}")


def start_hub(config_file: Path) -> HubProcess:
    source = os.environ.get("GATEWAY_TEST_HUB_SRC")
    return _HubFromSource(config_file, Path(source)) if source else HubProcess(config_file)


def write_node(root: Path, organ_id: str, pki: PkiSet, files: HubFiles, url: str, **extra: Any) -> NodeDir:
    folder = root / f"node-{organ_id}"
    certs = folder / "certs"
    write_issued(certs, pki.agencies[organ_id])
    drop = folder / "drop"
    values: dict[str, Any] = {
        "organ_id": organ_id,
        "organ_name": f"Cơ quan {organ_id}",
        "cert_dir": str(certs),
        "hub_url": url,
        "trust_dir": str(files.trust_dir),
        "data_dir": str(folder / "data"),
        "drop_dir": str(drop),
        "poll_wait": 1,
        "retry_base": 0.2,
        "retry_max": 1.0,
        "request_timeout": 20,
        **extra,
    }
    lines = ["[node]"] + [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    config = folder / "node.toml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return NodeDir(organ_id=organ_id, root=folder, config=config, drop=drop)


def write_hub_toml(config: HubConfig, path: Path) -> Path:
    """The hub settings, only keys every hub version knows (the hub's own helper follows its changes)."""
    values = {
        "database_url": config.database_url,
        "data_dir": str(config.data_dir),
        "tls_cert": str(config.tls_cert),
        "tls_key": str(config.tls_key),
        "trust_dir": str(config.trust_dir),
        "directory_file": str(config.directory_file),
        "host": config.host,
        "port": config.port,
        "verify_processes": 1,
        "reload_interval": 0.5,
        "long_poll_max": config.long_poll_max,
    }
    path.write_text(
        "[hub]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()), encoding="utf-8"
    )
    return path


def start_exchange(root: Path, organ_ids: tuple[str, ...], **node_extra: Any) -> Exchange:
    pki = build_pki()
    files = write_hub_files(pki, root / "hub")
    config = hub_config(files, f"sqlite+aiosqlite:///{root}/hub/hub.db", long_poll_max=5.0)
    if os.environ.get("GATEWAY_TEST_HUB_SRC"):
        hub_toml = write_hub_toml(config, root / "hub" / "hub.toml")
    else:  # the hub's own helper knows the settings of the hub in this tree
        hub_toml = write_config_toml(config, root / "hub" / "hub.toml")
    hub = start_hub(hub_toml)
    url = f"https://127.0.0.1:{config.port}"
    nodes = {o: write_node(root, o, pki, files, url, **node_extra) for o in organ_ids}
    return Exchange(pki=pki, files=files, config=config, hub_toml=hub_toml, hub=hub, nodes=nodes)


def fresh_number() -> str:
    return str(uuid.uuid4().int % 10**9)
