"""`gateway certs` end to end, as an operator runs it: real processes, real files, real validation."""

from __future__ import annotations

import datetime as dt
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from gateway.errors import TrustError
from gateway.trust.directory import Directory
from gateway.trust.files import load_issued, read_crl
from gateway.trust.store import TrustStore

REPO = Path(__file__).resolve().parent.parent
DIRECTORY = REPO / "config" / "directory.toml"
GATEWAY = Path(sys.executable).parent / "gateway"


def run(*args: str | Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GATEWAY), "certs", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": str(Path(sys.executable).parent), "COLUMNS": "200", "LANG": "C.UTF-8"},
    )


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def initialized(tmp_path_factory) -> Path:
    """One `certs init` for the module; tests that change it work on a copy."""
    pki_dir = tmp_path_factory.mktemp("pki") / "dev"
    result = run("init", "--dir", pki_dir, "--directory", DIRECTORY)
    assert result.returncode == 0, result.stderr
    assert "PKI created" in result.stdout
    return pki_dir


@pytest.fixture
def pki_dir(initialized, tmp_path) -> Path:
    copy = tmp_path / "dev"
    shutil.copytree(initialized, copy)
    return copy


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_the_layout(initialized):
    directory = Directory.load(DIRECTORY)
    trust = initialized / "trust"
    assert sorted(p.name for p in trust.iterdir()) == [
        "intermediate.crl",
        "intermediate.pem",
        "root.crl",
        "root.pem",
    ]
    for name in ("cert.pem", "key.pem", "chain.pem"):
        assert (initialized / "hub" / name).is_file()
        for agency in directory:
            assert (initialized / "agencies" / agency.organ_id / name).is_file()
    assert sorted(p.name for p in (initialized / "ca").iterdir()) == ["intermediate.key.pem", "root.key.pem"]


def test_private_keys_are_0600_in_0700_folders(initialized):
    keys = [*initialized.glob("ca/*.key.pem"), initialized / "hub" / "key.pem"]
    keys += initialized.glob("agencies/*/key.pem")
    assert len(keys) == 2 + 1 + 12
    for key in keys:
        assert _mode(key) == 0o600, key
        assert _mode(key.parent) == 0o700, key.parent
    assert _mode(initialized) == 0o700


def test_hub_and_agency_certificates_validate_against_the_trust_folder(initialized):
    store = TrustStore.load(initialized / "trust")
    hub = load_issued(initialized / "hub")
    result = store.validate(hub.cert, at=now(), extra_intermediates=hub.chain)
    assert result.chain[-1] == store.roots[0]
    san = hub.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    # The sample directory names the hub as localhost and by the names of the docker/ topology.
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "lgsp", "hub1", "hub2"]
    assert "LGSP Tây Ninh" in hub.cert.subject.rfc4514_string()
    for agency in Directory.load(DIRECTORY):
        issued = load_issued(initialized / "agencies" / agency.organ_id)
        assert store.validate(issued.cert, at=now(), organ_id=agency.organ_id).organ_id == agency.organ_id
        assert issued.cert.public_key() == issued.key.public_key()
        assert issued.chain == (store.intermediates[0], store.roots[0])
    assert store.stale_crls(now()) == []


def test_init_refuses_to_overwrite_without_force(pki_dir):
    before = (pki_dir / "trust" / "root.pem").read_bytes()
    refused = run("init", "--dir", pki_dir, "--directory", DIRECTORY)
    assert refused.returncode == 2
    assert "--force" in refused.stderr
    assert (pki_dir / "trust" / "root.pem").read_bytes() == before
    forced = run("init", "--dir", pki_dir, "--directory", DIRECTORY, "--force", "--key-type", "ec-p256")
    assert forced.returncode == 0, forced.stderr
    assert (pki_dir / "trust" / "root.pem").read_bytes() != before
    store = TrustStore.load(pki_dir / "trust")
    issued = load_issued(pki_dir / "agencies" / "000.00.02.H53")
    assert store.validate(issued.cert, at=now(), organ_id="000.00.02.H53")


def test_revoke_by_organ_id_puts_the_serial_in_the_crl(pki_dir):
    issued = load_issued(pki_dir / "agencies" / "000.00.02.H53")
    store = TrustStore.load(pki_dir / "trust")
    store.validate(issued.cert, at=now(), organ_id="000.00.02.H53")

    result = run("revoke", "--organ-id", "000.00.02.H53", "--reason", "key-compromise", "--dir", pki_dir)
    assert result.returncode == 0, result.stderr
    crl = read_crl(pki_dir / "trust" / "intermediate.crl")
    entry = crl.get_revoked_certificate_by_serial_number(issued.cert.serial_number)
    assert entry is not None
    assert (
        entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        is x509.ReasonFlags.key_compromise
    )
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2

    reloaded = store.reload()
    with pytest.raises(TrustError) as info:
        reloaded.validate(issued.cert, at=now() + dt.timedelta(seconds=1), organ_id="000.00.02.H53")
    assert info.value.code == "certificate.revoked"
    # Other agencies are untouched; a signature made before the revocation still holds.
    other = load_issued(pki_dir / "agencies" / "000.00.03.H53")
    reloaded.validate(other.cert, at=now(), organ_id="000.00.03.H53")
    reloaded.validate(issued.cert, at=now() - dt.timedelta(minutes=2), organ_id="000.00.02.H53")


def test_revoke_by_serial_accumulates_and_is_idempotent(pki_dir):
    first = load_issued(pki_dir / "agencies" / "000.00.31.H53").cert.serial_number
    second = load_issued(pki_dir / "agencies" / "000.21.31.H53").cert.serial_number
    assert run("revoke", "--serial", f"{first:x}", "--dir", pki_dir).returncode == 0
    assert run("revoke", "--serial", f"0x{second:X}", "--dir", pki_dir).returncode == 0
    again = run("revoke", "--serial", f"{first:x}", "--dir", pki_dir)
    assert again.returncode == 0
    assert "already revoked" in again.stdout
    crl = read_crl(pki_dir / "trust" / "intermediate.crl")
    assert {r.serial_number for r in crl} == {first, second}
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 3


@pytest.mark.parametrize(
    "args",
    [
        ("revoke",),
        ("revoke", "--organ-id", "000.00.02.H53", "--serial", "ab"),
        ("revoke", "--serial", "xyz"),
        pytest.param(("revoke", "--organ-id", "000.00.02.H53", "--reason", "bored")),
        pytest.param(("issue", "--organ-id", "000.00.06.H53")),
        pytest.param(("init", "--key-type", "rsa1024")),
    ],
)
def test_usage_errors_exit_2(pki_dir, args):
    result = run(*args, "--dir", pki_dir)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_issue_a_new_agency(pki_dir):
    result = run(
        "issue", "--organ-id", "000.00.06.H53", "--name", "Sở Y tế tỉnh Tây Ninh", "--key-type", "ec-p256",
        "--days", "30", "--dir", pki_dir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    issued = load_issued(pki_dir / "agencies" / "000.00.06.H53")
    assert _mode(pki_dir / "agencies" / "000.00.06.H53" / "key.pem") == 0o600
    store = TrustStore.load(pki_dir / "trust")
    assert store.validate(issued.cert, at=now(), organ_id="000.00.06.H53").organ_id == "000.00.06.H53"
    assert issued.cert.not_valid_after_utc - now() < dt.timedelta(days=31)
    again = run("issue", "--organ-id", "000.00.06.H53", "--name", "Sở Y tế", "--dir", pki_dir)
    assert again.returncode == 2
    assert "--force" in again.stderr


def test_gateway_errors_exit_1_with_their_code(pki_dir, tmp_path):
    bad_code = run("issue", "--organ-id", "H53", "--name", "x", "--dir", pki_dir)
    assert bad_code.returncode == 1
    assert "field.organ_id" in bad_code.stderr
    no_directory = run("init", "--dir", tmp_path / "new", "--directory", tmp_path / "absent.toml")
    assert no_directory.returncode == 1
    assert "config.invalid" in no_directory.stderr
    no_pki = run("revoke", "--organ-id", "000.00.02.H53", "--dir", tmp_path / "empty")
    assert no_pki.returncode == 1
    assert "certs init" in no_pki.stderr
    for result in (bad_code, no_directory, no_pki):
        assert "Traceback" not in result.stderr


def test_show_certificate_and_crl(pki_dir):
    run("revoke", "--organ-id", "000.00.00.G12", "--dir", pki_dir)
    cert = run("show", pki_dir / "agencies" / "000.00.00.G12" / "cert.pem")
    assert cert.returncode == 0, cert.stderr
    assert "000.00.00.G12" in cert.stdout
    assert "SHA-256" in cert.stdout
    assert "digital_signature" in cert.stdout
    chain = run("show", pki_dir / "agencies" / "000.00.00.G12" / "chain.pem")
    assert "[2/2]" in chain.stdout
    crl = run("show", pki_dir / "trust" / "intermediate.crl")
    assert crl.returncode == 0, crl.stderr
    serial = load_issued(pki_dir / "agencies" / "000.00.00.G12").cert.serial_number
    assert f"{serial:x}" in crl.stdout


def test_show_missing_file_is_a_usage_error(pki_dir):
    missing = run("show", pki_dir / "nothing.pem")
    assert missing.returncode == 2
    assert "Traceback" not in missing.stderr


def test_refresh_crl_keeps_revocations(pki_dir):
    serial = load_issued(pki_dir / "agencies" / "000.00.01.H53").cert.serial_number
    run("revoke", "--serial", f"{serial:x}", "--dir", pki_dir)
    result = run("refresh-crl", "--crl-days", "60", "--dir", pki_dir)
    assert result.returncode == 0, result.stderr
    crl = read_crl(pki_dir / "trust" / "intermediate.crl")
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    assert crl.next_update_utc - now() > dt.timedelta(days=59)
    store = TrustStore.load(pki_dir / "trust")
    assert store.stale_crls(now() + dt.timedelta(days=45)) == []


def test_certs_help_lists_the_commands():
    result = run("--help")
    assert result.returncode == 0
    for command in ("init", "issue", "revoke", "show"):
        assert command in result.stdout
