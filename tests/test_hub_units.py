"""Pure parts of the hub: metrics exposition, receipt round trip, TLS context, config loading, errors."""

from __future__ import annotations

import datetime as dt
import os
import ssl
import subprocess

import pytest
from hub_helpers import hub_config, verify_hub_signed, write_config_toml, write_hub_files
from pki_fixtures import build_pki

from gateway.errors import ConfigError
from gateway.hub import receipts
from gateway.hub.config import load_config
from gateway.hub.metrics import Metrics
from gateway.hub.signing import HubSigner
from gateway.hub.tls import server_context
from gateway.trust.store import TrustStore

AT = dt.datetime(2026, 3, 6, 9, 0, tzinfo=dt.UTC)  # a Friday


def test_metrics_add_up_the_workers_snapshots(tmp_path) -> None:
    a, b = Metrics(tmp_path), Metrics(tmp_path)
    a.count_accepted("package", "single")
    a.count_rejected("signature.sha1")
    a.observe_verification(0.003)
    b.snapshot()
    (tmp_path / "999999.json").write_text(
        '{"accepted": [["package", "single", 2]], "rejected": {"signature.sha1": 1}, '
        '"hist_counts": [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], "hist_sum": 0.004}'
    )
    text = a.render({"000.00.31.H53": 3})
    assert 'gateway_packages_accepted_total{kind="package",form="single"} 3' in text
    assert 'gateway_packages_rejected_total{reason="signature.sha1"} 2' in text
    assert "gateway_verification_seconds_count 2" in text
    assert 'gateway_verification_seconds_bucket{le="+Inf"} 2' in text
    assert 'gateway_inbox_depth{agency="000.00.31.H53"} 3' in text


def test_receipt_round_trip_and_independent_verification(tmp_path) -> None:
    files = write_hub_files(build_pki(), tmp_path)
    signer = HubSigner.load(files.hub_cert, files.hub_key)
    receipt = receipts.Receipt(
        kind="package",
        hub=signer.name,
        hub_time=AT,
        sha256="ab" * 32,
        size=10,
        package_id="ab" * 32,
        document_id="000.00.00.H53,2026/03/05,1/UBND-VP",
        sender="000.00.00.H53",
        carriage="single",
        electronic=True,
        verdict="verified",
        recipients=receipts.recipients_queued(["000.00.31.H53"]),
    )
    data = signer.sign(receipts.build_receipt(receipt))
    checked = verify_hub_signed(data, trust=TrustStore.load(files.trust_dir), at=AT)
    assert receipts.parse_receipt(checked.signed_root) == receipt
    (tmp_path / "r.xml").write_bytes(data)
    out = subprocess.run(
        [
            "xmlsec1",
            "--verify",
            "--trusted-pem",
            str(files.trust_dir / "root.pem"),
            "--untrusted-pem",
            str(files.trust_dir / "issuing.pem"),
            str(tmp_path / "r.xml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    tampered = data.replace(b"000.00.31.H53", b"000.00.32.H53")
    with pytest.raises(Exception, match="signature"):
        verify_hub_signed(tampered, trust=TrustStore.load(files.trust_dir), at=AT)


def test_server_context_is_modern_and_requires_client_certificates(tmp_path) -> None:
    pki = build_pki()
    files = write_hub_files(pki, tmp_path)
    store = TrustStore.load(files.trust_dir)
    ctx = server_context(
        cert_file=files.hub_cert,
        key_file=files.hub_key,
        ca_certs=[*store.roots, *store.intermediates],
        crls=store.crls,
    )
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF
    assert all(
        "CBC" not in c["name"] and "RSA-" not in c["name"][:4]
        for c in ctx.get_ciphers()
        if c["protocol"] == "TLSv1.2"
    )
    with pytest.raises(ConfigError):  # a key that does not belong to the certificate
        server_context(
            cert_file=files.hub_cert, key_file=files.client("000.00.00.H53")[1], ca_certs=store.roots
        )


def test_config_file_and_environment(tmp_path, monkeypatch) -> None:
    """``gateway hub serve --config`` reads the settings file; ``GATEWAY_*`` variables override it."""
    for name in [n for n in os.environ if n.startswith("GATEWAY_")]:
        monkeypatch.delenv(name)
    files = write_hub_files(build_pki(), tmp_path)
    path = write_config_toml(hub_config(files, "sqlite+aiosqlite:///x.db"), tmp_path / "hub.toml")
    monkeypatch.setenv("GATEWAY_MAX_BODY_BYTES", "1234000")
    monkeypatch.setenv("GATEWAY_LENIENT_LEGACY", "true")
    monkeypatch.setenv("GATEWAY_ADMIN_FINGERPRINTS", "AB:CD,ef01")
    config = load_config(path)
    assert (config.max_body, config.lenient_legacy, config.trust_dir) == (1234000, True, files.trust_dir)
    assert config.admin_fingerprints == ("abcd", "ef01")
    assert config.blob_dir == files.root / "data" / "blobs"
    path.write_text(path.read_text() + "bogus = 1\n")
    with pytest.raises(ConfigError, match="bogus"):
        load_config(path)


@pytest.mark.parametrize(("setting", "expected"), [("uvloop", "uvloop"), ("asyncio", "asyncio")])
def test_the_hub_runs_on_the_event_loop_its_settings_name(tmp_path, monkeypatch, setting, expected) -> None:
    import asyncio

    from gateway.hub.server import run_loop

    monkeypatch.setenv("GATEWAY_EVENT_LOOP", setting)
    files = write_hub_files(build_pki(), tmp_path)
    toml = write_config_toml(hub_config(files, f"sqlite+aiosqlite:///{tmp_path}/h.db"), tmp_path / "h.toml")
    config = load_config(toml)
    assert config.event_loop == setting
    seen: list[str] = []

    async def main() -> None:
        seen.append(type(asyncio.get_running_loop()).__module__.split(".")[0])

    run_loop(main(), event_loop=config.event_loop)
    assert seen == [expected]
