"""TLS and keys (issue 7, item 5), with real hub and node processes.

* The server contexts (API and web): TLS 1.2 or 1.3 only; TLS 1.2 suites are ECDHE with AEAD (no RSA key
  exchange, no CBC, no SHA-1 MAC), checked on the contexts and by real handshakes.
* The hub refuses to start — one line on stderr, exit 1, no traceback — with a key that does not match its
  certificate, a certificate expired or not yet valid, or a key file readable by group or others (unless
  ``allow_readable_key_files``); the node refuses a readable agency key the same way.
* Reload without restart: a renewed hub certificate is served to the next connections (both ports), and
  a CRL revoking a client applies in the application even where the handshake does not check CRLs.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hub_helpers import (
    DEPARTMENT,
    PROVINCE,
    Client,
    HubFiles,
    HubProcess,
    client_context,
    free_port,
    hub_config,
    write_config_toml,
    write_hub_files,
    write_identity,
)
from node_helpers import write_node
from pki_fixtures import PkiSet, build_pki

from gateway.hub.config import HubConfig
from gateway.hub.tls import server_context, web_server_context
from gateway.trust.pki import issue_hub_cert, make_crl
from gateway.trust.store import TrustStore

ROOT = Path(__file__).resolve().parents[1]


# --- the contexts and real handshakes ---------------------------------------------------------------


def _contexts(files: HubFiles) -> list[ssl.SSLContext]:
    store = TrustStore.load(files.trust_dir)
    return [
        server_context(
            cert_file=files.hub_cert,
            key_file=files.hub_key,
            ca_certs=[*store.roots, *store.intermediates],
            crls=store.crls,
        ),
        web_server_context(cert_file=files.hub_cert, key_file=files.hub_key),
    ]


def test_both_contexts_offer_only_modern_suites(tmp_path: Path) -> None:
    files = write_hub_files(build_pki(), tmp_path)
    for ctx in _contexts(files):
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
        assert ctx.options & ssl.OP_NO_COMPRESSION
        suites = ctx.get_ciphers()
        assert any(c["protocol"] == "TLSv1.3" for c in suites)
        tls12 = [c for c in suites if c["protocol"] == "TLSv1.2"]
        assert tls12
        for c in tls12:
            assert c["kea"] == "kx-ecdhe", c["name"]  # forward secrecy: no RSA key exchange
            assert c["aead"], c["name"]  # no CBC
            assert c["digest"] is None, c["name"]  # AEAD suites carry no separate MAC (no SHA-1 HMAC)


@dataclass
class Running:
    pki: PkiSet
    files: HubFiles
    config: HubConfig
    root: Path


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A hub whose trust folder has no root CRL at start: handshake CRL checking is off (OpenSSL would
    refuse every client of a CA without a CRL), so revocation is the application's job alone."""
    pki = build_pki()
    root = tmp_path_factory.mktemp("tlskeys")
    files = write_hub_files(pki, root)
    (files.trust_dir / "root.crl").unlink()
    config = hub_config(
        files, f"sqlite+aiosqlite:///{root / 'hub.db'}", web_port=free_port(), verify_processes=1
    )
    process = HubProcess(write_config_toml(config, root / "hub.toml"))
    try:
        yield Running(pki, files, config, root)
    finally:
        process.stop()


def _handshake(port: int, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def _client_ctx(
    hub: Running, *, maximum: ssl.TLSVersion | None = None, ciphers: str | None = None
) -> ssl.SSLContext:
    ctx = client_context(hub.files, DEPARTMENT)
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    if maximum is not None:
        ctx.maximum_version = maximum
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    return ctx


@pytest.mark.parametrize("listener", ["api", "web"])
def test_real_handshakes_negotiate_tls13_and_refuse_old_protocols_and_rsa_key_exchange(
    hub: Running, listener: str
) -> None:
    port = hub.config.port if listener == "api" else hub.config.web_port
    assert port
    with _handshake(port, _client_ctx(hub)) as tls:
        assert tls.version() == "TLSv1.3"
    with _handshake(port, _client_ctx(hub, maximum=ssl.TLSVersion.TLSv1_2)) as tls:
        assert tls.version() == "TLSv1.2"
        name, _, _ = tls.cipher()  # type: ignore[misc]
        assert name.startswith("ECDHE-"), name
        assert "GCM" in name or "CHACHA20" in name, name
    for ciphers in ("AES128-GCM-SHA256:AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA"):
        ctx = _client_ctx(hub, maximum=ssl.TLSVersion.TLSv1_2, ciphers=ciphers)
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            _handshake(port, ctx).close()


# --- refusing to start ------------------------------------------------------------------------------


def _start(config_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.hub.server", "--config", str(config_file)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def _refused(result: subprocess.CompletedProcess[str], *phrases: str) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error config.invalid: "), lines[0]
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    assert "ready" not in result.stdout
    return lines[0]


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> tuple[PkiSet, HubFiles, Path]:
    pki = build_pki()
    root = tmp_path_factory.mktemp("refuse")
    return pki, write_hub_files(pki, root), root


def _config_with(
    bad: tuple[PkiSet, HubFiles, Path], name: str, cert: Path, key: Path, **extra: object
) -> Path:
    _, files, root = bad
    config = hub_config(files, f"sqlite+aiosqlite:///{root / name}.db", tls_cert=cert, tls_key=key, **extra)
    return write_config_toml(config, root / f"{name}.toml")


def test_the_hub_refuses_a_key_that_does_not_match_its_certificate(bad) -> None:  # type: ignore[no-untyped-def]
    _, files, _ = bad
    other_key = files.client(PROVINCE)[1]
    _refused(_start(_config_with(bad, "mismatch", files.hub_cert, other_key)), "does not match")


@pytest.mark.parametrize(("which", "phrase"), [("expired", "expired on"), ("not_yet_valid", "not valid yet")])
def test_the_hub_refuses_a_certificate_outside_its_validity(bad, which: str, phrase: str) -> None:  # type: ignore[no-untyped-def]
    pki, _, root = bad
    cert, key = write_identity(root / "bad-hub", which, pki.bad(which))
    _refused(_start(_config_with(bad, which, cert, key)), phrase, str(cert))


def test_the_hub_refuses_a_key_file_others_can_read_unless_allowed(bad) -> None:  # type: ignore[no-untyped-def]
    pki, _, root = bad
    cert, key = write_identity(root / "readable", "hub", pki.hub)
    os.chmod(key, 0o640)
    line = _refused(_start(_config_with(bad, "readable", cert, key)), "readable by group or others", "0640")
    assert "allow_readable_key_files" in line
    allowed = _config_with(bad, "allowed", cert, key, allow_readable_key_files=True)
    with allowed.open("a") as fh:
        fh.write("allow_readable_key_files = true\n")
    process = HubProcess(allowed)  # starts: the operator said so
    process.stop()


def test_the_node_refuses_an_agency_key_file_others_can_read(bad, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pki, files, _ = bad
    node = write_node(tmp_path, PROVINCE, pki, files, "https://127.0.0.1:9")
    key = Path(str(node.config).replace("node.toml", "certs/key.pem"))
    os.chmod(key, 0o644)
    result = subprocess.run(
        [str(Path(sys.executable).parent / "gateway"), "node", "outbox", "--config", str(node.config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "readable by group or others" in result.stderr
    assert "allow_readable_key_files" in result.stderr


# --- reload without restart -------------------------------------------------------------------------


def _served_serial(hub: Running, port: int) -> int:
    with _handshake(port, client_context(hub.files, DEPARTMENT)) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _replace(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_suffix(".new")
    tmp.write_bytes(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def test_a_renewed_hub_certificate_is_served_without_a_restart(hub: Running) -> None:
    from gateway.trust.files import key_pem, pem_of

    assert hub.config.web_port
    old = hub.pki.hub.cert.serial_number
    assert _served_serial(hub, hub.config.port) == old
    now = dt.datetime.now(dt.UTC)
    renewed = issue_hub_cert(
        hub.pki.intermediate,
        name="LGSP Tây Ninh",
        not_before=now - dt.timedelta(minutes=5),
        not_after=now + dt.timedelta(days=365),
    )
    # the key first (the hub keeps the old pair while they disagree), then the certificate
    _replace(hub.files.hub_key, key_pem(renewed.key), 0o600)
    _replace(hub.files.hub_cert, pem_of([renewed.cert, *renewed.chain[:-1]]))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if _served_serial(hub, hub.config.port) == renewed.cert.serial_number:
            break
        time.sleep(0.3)
    else:
        pytest.fail("the API port still served the old certificate 15 s after the renewal")
    assert _served_serial(hub, hub.config.web_port) == renewed.cert.serial_number
    client = Client(hub.config.port, client_context(hub.files, PROVINCE))
    assert client.get("/healthz").status == 200
    client.close()


def test_a_crl_revoking_a_client_applies_in_the_application_without_a_restart(hub: Running) -> None:
    victim = hub.pki.agencies[DEPARTMENT]
    client = Client(hub.config.port, client_context(hub.files, DEPARTMENT))
    assert client.get("/v1/inbox").status == 200
    now = dt.datetime.now(dt.UTC)
    crl = make_crl(
        hub.pki.intermediate,
        [
            (hub.pki.bad("revoked").cert.serial_number, now - dt.timedelta(days=400)),
            (victim.cert.serial_number, now),
        ],
        this_update=now - dt.timedelta(minutes=1),
        next_update=now + dt.timedelta(days=7),
        crl_number=2,
    )
    crl_file = hub.files.trust_dir / "issuing.crl"
    original = crl_file.read_bytes()
    try:
        _replace(crl_file, crl.public_bytes(Encoding.PEM))
        deadline = time.monotonic() + 15
        reply = None
        while time.monotonic() < deadline:
            client.close()  # a new connection each time: the handshake still succeeds (no CRL check there)
            reply = client.get("/v1/inbox")
            if reply.status != 200:
                break
            time.sleep(0.3)
        assert reply is not None
        # the trust error of the caller's certificate, as for a signer (docs/api.md)
        assert (reply.status, reply.code) == (422, "certificate.revoked"), reply.body[:300]
        other = Client(hub.config.port, client_context(hub.files, PROVINCE))
        assert other.get("/v1/inbox").status == 200
        other.close()
    finally:
        _replace(crl_file, original)
        client.close()
