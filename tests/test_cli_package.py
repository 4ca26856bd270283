"""`gateway package inspect|sign|verify` as a clerk or operator runs them: real processes, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from signature_helpers import package

from gateway.edxml.build import build

GATEWAY = Path(sys.executable).parent / "gateway"
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "interop" / "edxml-samples"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GATEWAY), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": str(Path(sys.executable).parent), "COLUMNS": "200", "LANG": "C.UTF-8"},
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pki") / "certs"
    result = run("certs", "init", "--dir", folder)
    assert result.returncode == 0, result.stderr
    return folder


@pytest.fixture(scope="module")
def unsigned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pkg") / "unsigned.edxml"
    path.write_bytes(build(package(sender="000.00.00.H53", attachments=2)))
    return path


@pytest.mark.parametrize("form", ["single", "multipart"])
def test_sign_then_verify_both_forms(pki: Path, unsigned: Path, tmp_path: Path, form: str) -> None:
    signed = tmp_path / f"signed.{form}"
    result = run(
        "package",
        "sign",
        unsigned,
        "-o",
        signed,
        "--signer",
        pki / "agencies" / "000.00.00.H53",
        "--form",
        form,
    )
    assert result.returncode == 0, result.stderr
    if form == "multipart":
        assert signed.read_bytes().startswith(b"Content-Type: multipart/related;")
    verdict = run("package", "verify", signed, "--trust", pki / "trust", "--json")
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    doc = json.loads(verdict.stdout)
    assert doc["ok"] is True
    assert doc["organ_id"] == "000.00.00.H53"
    assert doc["reference"] == ("envelope" if form == "multipart" else "document")


def test_one_changed_byte_is_rejected_with_its_code(pki: Path, unsigned: Path, tmp_path: Path) -> None:
    signed = tmp_path / "signed.edxml"
    assert (
        run(
            "package", "sign", unsigned, "-o", signed, "--signer", pki / "agencies" / "000.00.00.H53"
        ).returncode
        == 0
    )
    data = signed.read_bytes()
    tampered = tmp_path / "tampered.edxml"
    tampered.write_bytes(data.replace("triển khai".encode(), "triển khaj".encode(), 1))
    result = run("package", "verify", tampered, "--trust", pki / "trust")
    assert result.returncode == 1
    assert "signature.digest_mismatch" in result.stdout


def test_another_agency_key_is_rejected(pki: Path, unsigned: Path, tmp_path: Path) -> None:
    """Signed with a sở's key while From says UBND tỉnh: the certificate is not the sender's."""
    signed = tmp_path / "signed.edxml"
    assert (
        run(
            "package", "sign", unsigned, "-o", signed, "--signer", pki / "agencies" / "000.00.02.H53"
        ).returncode
        == 0
    )
    result = run("package", "verify", signed, "--trust", pki / "trust", "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["code"] == "certificate.agency_mismatch"


def test_usage_errors_exit_2(pki: Path, tmp_path: Path) -> None:
    missing = run("package", "verify", tmp_path / "nope.edxml", "--trust", pki / "trust")
    assert missing.returncode == 2
    assert "Traceback" not in missing.stderr
    no_trust = run("package", "verify", tmp_path / "nope.edxml", "--trust", tmp_path / "no-such-dir")
    assert no_trust.returncode == 2
    no_key = run("package", "sign", tmp_path / "x.edxml", "-o", tmp_path / "y")
    assert no_key.returncode == 2
    assert "Traceback" not in no_key.stderr


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("edoc.edxml", "signature.sha1"),
        ("edoc_new.edxml", "xml.malformed"),
        ("edoc_update.edxml", "signature.wrong_namespace"),
        ("status_rejection_02.edxml", "signature.missing"),
    ],
)
def test_inspect_vendor_samples_gives_fields_and_precise_verdict(name: str, code: str, pki: Path) -> None:
    result = run("package", "inspect", SAMPLES / name, "--json", "--trust", pki / "trust")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    doc = json.loads(result.stdout)
    assert doc["verdict"]["code"] == code
    if code != "xml.malformed":
        assert doc["message"]["header"]["from"]["organ_id"]
