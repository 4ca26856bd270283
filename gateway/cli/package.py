"""Inspect, sign and verify edXML packages (single-file or multipart files)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from gateway.edxml.model import Attachment, DocumentPackage, Message, StatusMessage
from gateway.edxml.multipart import to_multipart
from gateway.edxml.parse import parse
from gateway.errors import GatewayError, UsageError
from gateway.packagefile import PackageFile, read_package_file, write_multipart_file
from gateway.signature.sign import sign_message
from gateway.trust.files import load_cert, load_issued, load_key
from gateway.trust.pki import Issued
from gateway.trust.store import TrustStore
from gateway.verification import Inspection, inspect_package

app = typer.Typer(no_args_is_help=True)
AT_HELP = "Judge the certificate at this ISO time (default: now)."
out = Console(soft_wrap=True)


class Form(enum.StrEnum):
    single = "single"
    multipart = "multipart"


def to_jsonable(value: Any) -> Any:
    """Model dataclasses as plain JSON: dates ISO, attachments by size and SHA-256 (never their bytes)."""
    if isinstance(value, Attachment):
        return {
            "content_id": value.content_id,
            "attachment_name": value.attachment_name,
            "description": value.description,
            "content_type": value.content_type,
            "size": len(value.data),
            "sha256": hashlib.sha256(value.data).hexdigest(),
        }
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name.rstrip("_"): to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


def _at(value: str | None) -> dt.datetime:
    if value is None:
        return dt.datetime.now(dt.UTC)
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise UsageError("usage", f"--at {value!r} is not an ISO 8601 time") from exc
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone(dt.timedelta(hours=7)))


def _trust(path: Path | None) -> TrustStore | None:
    return TrustStore.load(path) if path is not None else None


def _inspect(path: Path, trust_dir: Path | None, at: str | None) -> tuple[PackageFile, Inspection]:
    package = read_package_file(path)
    inspection = inspect_package(
        package.edxml, trust=_trust(trust_dir), at=_at(at), attachments=package.digests()
    )
    return package, inspection


def _verdict(inspection: Inspection) -> dict[str, Any]:
    return {
        "ok": inspection.ok,
        "code": inspection.code,
        "detail": inspection.detail,
        "trust_checked": inspection.trust_checked,
        "reference": inspection.reference,
        "signer": inspection.signer_subject,
        "organ_id": inspection.verified.organ_id if inspection.verified else None,
        "sha256": inspection.sha256,
        "size": inspection.size,
    }


def _summary_rows(message: Message) -> list[tuple[str, str]]:
    h = message.header
    if isinstance(message, StatusMessage):
        rf = message.header.response_for
        return [
            ("kind", "status message"),
            ("from", h.from_.organ_id + (f" ({h.from_.organ_name})" if h.from_.organ_name else "")),
            ("status", message.header.status_code),
            ("description", message.header.description or ""),
            ("response for", rf.document_id or ""),
            ("timestamp", str(message.header.timestamp or "")),
        ]
    assert isinstance(message, DocumentPackage)
    hd = message.header
    b = message.bussiness
    rows = [
        ("kind", "document"),
        ("from", hd.from_.organ_id + (f" ({hd.from_.organ_name})" if hd.from_.organ_name else "")),
        ("to", ", ".join(t.organ_id for t in hd.to)),
        ("document id", hd.document_id or ""),
        ("number", f"{hd.code.code_number}/{hd.code.code_notation}" if hd.code else ""),
        ("date", str(hd.promulgation_info.promulgation_date or "") if hd.promulgation_info else ""),
        ("subject", hd.subject or ""),
        ("business type", str(b.bussiness_doc_type)),
        ("paper copy", "yes" if b.paper else "no"),
    ]
    rows += [
        (f"attachment {i + 1}", f"{a.attachment_name or a.content_id} ({len(a.data)} bytes)")
        for i, a in enumerate(message.attachments)
    ]
    return rows


@app.command("inspect")
def inspect_cmd(
    file: Annotated[Path, typer.Argument(help="An edXML file, or a multipart package file.")],
    trust: Annotated[Path | None, typer.Option(help="Trust store folder: also judge the signer.")] = None,
    at: Annotated[str | None, typer.Option(help=AT_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show what a package says and the verdict on it; exit 0 when it is valid, 1 when not."""
    package, inspection = _inspect(file, trust, at)
    message = inspection.unverified_message
    if as_json:
        doc = {
            "verdict": _verdict(inspection),
            "form": "multipart" if package.is_multipart else "single",
            "message": to_jsonable(message),
            "problems": [{"code": p.code, "detail": p.detail} for p in inspection.problems],
        }
        sys.stdout.write(json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
    else:
        table = Table(
            title=f"{file.name} (as the package claims: read before verification)", show_header=False
        )
        for key, value in _summary_rows(message) if message else [("kind", "unreadable")]:
            table.add_row(key, value)
        out.print(table)
        for p in inspection.problems:
            out.print(f"[yellow]problem[/] {p.code}: {p.detail}", highlight=False)
        _print_verdict(inspection)
    raise typer.Exit(0 if inspection.ok else 1)


def _print_verdict(inspection: Inspection) -> None:
    if inspection.ok:
        who = inspection.verified.organ_id if inspection.verified else inspection.signer_subject
        scope = (
            "signature, trust and fields"
            if inspection.trust_checked
            else "signature and fields (no trust store)"
        )
        out.print(f"[bold green]valid[/] {scope}; signed by {who}", highlight=False)
    else:
        out.print(f"[bold red]rejected[/] {inspection.code}: {inspection.detail}", highlight=False)


@app.command("verify")
def verify_cmd(
    file: Annotated[Path, typer.Argument(help="An edXML file, or a multipart package file.")],
    trust: Annotated[Path, typer.Option(help="Trust store folder (roots, intermediates, CRLs).")],
    at: Annotated[str | None, typer.Option(help=AT_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
) -> None:
    """Verify signature, signer trust and fields: exit 0 valid, 1 rejected (with the reason code), 2 usage."""
    if not trust.is_dir():
        raise UsageError("usage", f"--trust {trust}: not a folder")
    _, inspection = _inspect(file, trust, at)
    if as_json:
        sys.stdout.write(json.dumps(_verdict(inspection), ensure_ascii=False, indent=2) + "\n")
    else:
        _print_verdict(inspection)
    raise typer.Exit(0 if inspection.ok else 1)


def _signer(signer: Path | None, key: Path | None, cert: Path | None, chain: Path | None) -> Issued:
    if signer is not None:
        if key or cert:
            raise UsageError("usage", "give either --signer or --key/--cert, not both")
        return load_issued(signer)
    if key is None or cert is None:
        raise UsageError("usage", "give --signer DIR (cert.pem, key.pem, chain.pem) or both --key and --cert")
    from gateway.trust.store import load_certificates

    extra = tuple(load_certificates(chain.read_bytes())) if chain else ()
    return Issued(key=load_key(key), cert=load_cert(cert), chain=extra)


@app.command("sign")
def sign_cmd(
    file: Annotated[Path, typer.Argument(help="An edXML file (any existing signature is replaced).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the signed package.")],
    signer: Annotated[
        Path | None,
        typer.Option(help="Agency folder with cert.pem, key.pem, chain.pem (gateway certs init)."),
    ] = None,
    key: Annotated[Path | None, typer.Option(help="Private key (PEM).")] = None,
    cert: Annotated[Path | None, typer.Option(help="Signing certificate (PEM).")] = None,
    chain: Annotated[Path | None, typer.Option(help="Intermediate certificates (PEM).")] = None,
    form: Annotated[
        Form, typer.Option(help="single: standard, whole-document signature; multipart: raw parts.")
    ] = Form.single,
    envelope: Annotated[
        bool, typer.Option(help="Single file signed by envelope reference (convertible to multipart).")
    ] = False,
) -> None:
    """Sign a package with an agency's key; the profile is fixed (exc-C14N, SHA-256, RSA or ECDSA P-256)."""
    issued = _signer(signer, key, cert, chain)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise UsageError("usage", f"cannot read {file}: {exc.strerror}") from exc
    message = parse(data)
    reference: Literal["document", "envelope"] = (
        "envelope" if envelope or form is Form.multipart else "document"
    )
    signed = sign_message(message, key=issued.key, cert=issued.cert, chain=issued.chain, reference=reference)
    if form is Form.multipart:
        content_type, body = to_multipart(signed)
        write_multipart_file(output, content_type, body)
    else:
        output.write_bytes(signed)
    out.print(f"signed ({form.value}, {reference} reference) → {output}", highlight=False)


__all__ = ["GatewayError", "app"]
