"""The docker/ topology is a valid compose file with the services DESIGN §6 names.

No Docker engine runs on the CI machines, so the file is checked by `docker compose config` (or Debian's
`docker-compose config`), which validates and resolves it without an engine; the same topology runs as
plain processes in the scale-out test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

DOCKER = Path(__file__).resolve().parent.parent / "docker"


def _compose() -> list[str] | None:
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0
    ):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.fixture(scope="module")
def compose() -> list[str]:
    found = _compose()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("neither `docker compose` nor `docker-compose` is installed (.ci/run installs it)")
        pytest.skip("install docker-compose (Debian) to validate docker/compose.yaml")
    return found


def test_compose_file_is_valid_and_has_the_topology(compose: list[str]) -> None:
    cmd = [*compose, "-f", str(DOCKER / "compose.yaml"), "config"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    services = subprocess.run(
        [*cmd, "--services"], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert set(services) >= {"postgres", "migrate", "hub1", "hub2", "nginx", "node-province", "node-district"}


def test_hubs_share_blobs_and_nginx_passes_tls_through() -> None:
    text = (DOCKER / "compose.yaml").read_text(encoding="utf-8")
    assert "blobs:/var/lib/gateway" in text
    nginx = (DOCKER / "nginx.conf").read_text(encoding="utf-8")
    # Stream (layer 4) proxying: nginx must not terminate TLS, or hubs would lose the client certificate.
    assert "stream {" in nginx
    assert "ssl_certificate" not in nginx
    assert "server hub1:8443" in nginx
    assert "server hub2:8443" in nginx


def test_image_runs_as_non_root_from_a_multi_stage_build() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    assert dockerfile.count("FROM ") >= 2
    assert "USER gateway" in dockerfile
    assert json.loads(dockerfile.split("ENTRYPOINT ", 1)[1].splitlines()[0]) == ["gateway"]
