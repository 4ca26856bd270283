"""Development PKI: root and issuing CA, the hub's and every agency's certificate; issue, revoke, show.

Layout under --dir (default certs/dev, never committed; see certs/README.md):
trust/ (the trust store folder: CA certificates and CRLs), ca/ (CA private keys), hub/ and
agencies/<organ_id>/ (cert.pem, key.pem, chain.pem).
"""

from __future__ import annotations

import datetime as dt
import enum
import shutil
from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gateway.errors import ConfigError, FieldError, UsageError
from gateway.trust import files
from gateway.trust.directory import Directory, HubInfo
from gateway.trust.pki import (
    Issued,
    is_organ_id,
    issue_agency_cert,
    issue_hub_cert,
    make_crl,
    make_intermediate_ca,
    make_root_ca,
    organ_id_of,
)
from gateway.trust.store import fingerprint, format_fingerprint, load_certificates, load_crl

app = typer.Typer(no_args_is_help=True)
console = Console()

DEFAULT_DIR = Path("certs/dev")
DEFAULT_DIRECTORY = Path("config/directory.toml")
MANAGED = ("trust", "ca", "hub", "agencies")


class KeyTypeChoice(enum.StrEnum):
    rsa2048 = "rsa2048"
    rsa3072 = "rsa3072"
    ec_p256 = "ec-p256"


class ReasonChoice(enum.StrEnum):
    unspecified = "unspecified"
    key_compromise = "key-compromise"
    ca_compromise = "ca-compromise"
    affiliation_changed = "affiliation-changed"
    superseded = "superseded"
    cessation_of_operation = "cessation-of-operation"

    @property
    def flag(self) -> x509.ReasonFlags:
        return x509.ReasonFlags[self.name]


DirOption = Annotated[Path, typer.Option("--dir", help="PKI folder.", file_okay=False)]
DaysOption = Annotated[
    int, typer.Option("--days", min=1, max=3650, help="Validity of end-entity certificates.")
]
CrlDaysOption = Annotated[
    int, typer.Option("--crl-days", min=1, max=365, help="Days until a CRL's next update.")
]


class Layout:
    """Paths of the PKI folder, in one place."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.trust = root / "trust"
        self.ca = root / "ca"
        self.hub = root / "hub"
        self.agencies = root / "agencies"
        self.root_cert = self.trust / "root.pem"
        self.intermediate_cert = self.trust / "intermediate.pem"
        self.root_crl = self.trust / "root.crl"
        self.intermediate_crl = self.trust / "intermediate.crl"
        self.root_key = self.ca / "root.key.pem"
        self.intermediate_key = self.ca / "intermediate.key.pem"

    def agency(self, organ_id: str) -> Path:
        return self.agencies / organ_id

    def existing(self) -> list[Path]:
        return [self.root / name for name in MANAGED if (self.root / name).exists()]

    def load_root(self) -> Issued:
        self._require_ca()
        return Issued(key=files.load_key(self.root_key), cert=files.load_cert(self.root_cert), chain=())

    def load_intermediate(self) -> Issued:
        self._require_ca()
        root_cert = files.load_cert(self.root_cert)
        return Issued(
            key=files.load_key(self.intermediate_key),
            cert=files.load_cert(self.intermediate_cert),
            chain=(root_cert,),
        )

    def _require_ca(self) -> None:
        for path in (self.root_cert, self.intermediate_cert, self.root_key, self.intermediate_key):
            if not path.exists():
                raise ConfigError(
                    "config.invalid", f"{path} is missing; run `gateway certs init --dir {self.root}` first"
                )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _check_organ_id(organ_id: str) -> str:
    value = organ_id.strip().upper()
    if not is_organ_id(value):
        raise FieldError("field.organ_id", f"{organ_id!r} is not of the form V1V2V3.Z1Z2.Y1Y2.X1X2X3")
    return value


@app.command()
def init(
    pki_dir: DirOption = DEFAULT_DIR,
    directory: Annotated[
        Path, typer.Option("--directory", help="Agency directory (TOML).", dir_okay=False)
    ] = DEFAULT_DIRECTORY,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing PKI in --dir.")] = False,
    key_type: Annotated[
        KeyTypeChoice, typer.Option("--key-type", help="Key type of agency certificates.")
    ] = KeyTypeChoice.rsa2048,
    days: DaysOption = 730,
    crl_days: CrlDaysOption = 30,
) -> None:
    """Create a root CA, an issuing CA, empty CRLs, the hub's and one certificate per agency."""
    registry = Directory.load(directory)
    layout = Layout(pki_dir)
    existing = layout.existing()
    if existing and not force:
        raise UsageError(
            "usage", f"{pki_dir} already holds a PKI ({', '.join(p.name for p in existing)}); use --force"
        )
    for path in existing:
        shutil.rmtree(path)

    hub_info = registry.hub or HubInfo(name="LGSP Gateway")
    now = _now()
    leaf_until = now + dt.timedelta(days=days)
    total = 4 + len(registry)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("root CA", total=total)
        root = make_root_ca(f"{hub_info.name} Root CA")
        files.make_private_dir(layout.ca)
        files.write_key(layout.root_key, root.key)
        files.write_atomic(layout.root_cert, files.pem_of([root.cert]))
        progress.update(task, advance=1, description="issuing CA")

        intermediate = make_intermediate_ca(root, f"{hub_info.name} Issuing CA")
        files.write_key(layout.intermediate_key, intermediate.key)
        files.write_atomic(layout.intermediate_cert, files.pem_of([intermediate.cert]))
        progress.update(task, advance=1, description="CRLs")

        next_update = now + dt.timedelta(days=crl_days)
        files.write_crl(layout.root_crl, make_crl(root, [], this_update=now, next_update=next_update))
        files.write_crl(
            layout.intermediate_crl, make_crl(intermediate, [], this_update=now, next_update=next_update)
        )
        progress.update(task, advance=1, description="hub")

        hub = issue_hub_cert(
            intermediate,
            name=hub_info.name,
            hostnames=hub_info.hostnames,
            ips=hub_info.ips,
            not_after=leaf_until,
        )
        files.write_issued(layout.hub, hub)
        progress.update(task, advance=1)

        for agency in registry:
            progress.update(task, description=agency.organ_id)
            issued = issue_agency_cert(
                intermediate,
                organ_id=agency.organ_id,
                name=agency.name,
                key_type=key_type.value,
                not_after=leaf_until,
            )
            files.write_issued(layout.agency(agency.organ_id), issued)
            progress.update(task, advance=1)
        progress.update(task, description="done")
    layout.root.chmod(files.PRIVATE_DIR_MODE)
    layout.agencies.mkdir(exist_ok=True)
    layout.agencies.chmod(files.PRIVATE_DIR_MODE)

    console.print(
        f"[green]PKI created[/] in {pki_dir}: trust store {layout.trust}, hub {layout.hub}, "
        f"{len(registry)} agencies under {layout.agencies}",
        highlight=False,
    )


@app.command()
def issue(
    organ_id: Annotated[str, typer.Option("--organ-id", help="Agency code, e.g. 000.00.02.H53.")],
    name: Annotated[str, typer.Option("--name", help="Agency name (subject CN and O).")],
    key_type: Annotated[KeyTypeChoice, typer.Option("--key-type")] = KeyTypeChoice.rsa2048,
    days: DaysOption = 730,
    pki_dir: DirOption = DEFAULT_DIR,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing certificate.")] = False,
) -> None:
    """Issue (or with --force re-issue) an agency certificate from the issuing CA."""
    code = _check_organ_id(organ_id)
    if not name.strip():
        raise UsageError("usage", "--name must not be empty")
    layout = Layout(pki_dir)
    intermediate = layout.load_intermediate()
    target = layout.agency(code)
    if target.exists() and not force:
        raise UsageError(
            "usage", f"{target} already exists; use --force to re-issue (and revoke the old one)"
        )
    issued = issue_agency_cert(
        intermediate,
        organ_id=code,
        name=name.strip(),
        key_type=key_type.value,
        not_after=_now() + dt.timedelta(days=days),
    )
    files.write_issued(target, issued)
    console.print(
        f"[green]issued[/] {code} serial {issued.cert.serial_number:x} into {target}\n"
        f"  SHA-256 {format_fingerprint(fingerprint(issued.cert))}",
        highlight=False,
    )


def _parse_serial(text: str) -> int:
    cleaned = text.strip().lower().removeprefix("0x").replace(":", "")
    try:
        return int(cleaned, 16)
    except ValueError:
        raise UsageError("usage", f"--serial {text!r} is not a hexadecimal serial number") from None


def _entries(crl: x509.CertificateRevocationList) -> list[tuple[int, dt.datetime, x509.ReasonFlags | None]]:
    out: list[tuple[int, dt.datetime, x509.ReasonFlags | None]] = []
    for entry in crl:
        try:
            reason: x509.ReasonFlags | None = entry.extensions.get_extension_for_class(
                x509.CRLReason
            ).value.reason
        except x509.ExtensionNotFound:
            reason = None
        out.append((entry.serial_number, entry.revocation_date_utc, reason))
    return out


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return 0


@app.command()
def revoke(
    organ_id: Annotated[
        str | None, typer.Option("--organ-id", help="Revoke this agency's current certificate.")
    ] = None,
    serial: Annotated[str | None, typer.Option("--serial", help="Revoke by serial number (hex).")] = None,
    reason: Annotated[ReasonChoice, typer.Option("--reason")] = ReasonChoice.unspecified,
    pki_dir: DirOption = DEFAULT_DIR,
    crl_days: CrlDaysOption = 30,
) -> None:
    """Add a certificate to the issuing CA's CRL and re-sign it in the trust folder."""
    if (organ_id is None) == (serial is None):
        raise UsageError("usage", "give exactly one of --organ-id and --serial")
    layout = Layout(pki_dir)
    intermediate = layout.load_intermediate()
    if organ_id is not None:
        code = _check_organ_id(organ_id)
        cert_path = layout.agency(code) / "cert.pem"
        if not cert_path.exists():
            raise UsageError("usage", f"no certificate for {code} in {layout.agencies}")
        cert = files.load_cert(cert_path)
        if cert.issuer != intermediate.cert.subject:
            raise UsageError("usage", f"{cert_path} was not issued by this PKI's issuing CA")
        number = cert.serial_number
    else:
        number = _parse_serial(serial or "")
    current = files.read_crl(layout.intermediate_crl) if layout.intermediate_crl.exists() else None
    entries = _entries(current) if current is not None else []
    if any(s == number for s, _, _ in entries):
        console.print(f"serial {number:x} is already revoked", highlight=False)
        return
    now = _now()
    entries.append((number, now, reason.flag))
    crl = make_crl(
        intermediate,
        entries,
        this_update=now,
        next_update=now + dt.timedelta(days=crl_days),
        crl_number=(_crl_number(current) if current is not None else 0) + 1,
    )
    files.write_crl(layout.intermediate_crl, crl)
    console.print(
        f"[yellow]revoked[/] serial {number:x} ({reason.value}); {layout.intermediate_crl} now lists "
        f"{len(crl)} certificate(s), CRL number {_crl_number(crl)}",
        highlight=False,
    )


@app.command("refresh-crl")
def refresh_crl(pki_dir: DirOption = DEFAULT_DIR, crl_days: CrlDaysOption = 30) -> None:
    """Re-sign both CRLs with a new next-update time (keeps every revocation)."""
    layout = Layout(pki_dir)
    now = _now()
    for ca, path in (
        (layout.load_root(), layout.root_crl),
        (layout.load_intermediate(), layout.intermediate_crl),
    ):
        current = files.read_crl(path) if path.exists() else None
        crl = make_crl(
            ca,
            _entries(current) if current is not None else [],
            this_update=now,
            next_update=now + dt.timedelta(days=crl_days),
            crl_number=(_crl_number(current) if current is not None else 0) + 1,
        )
        files.write_crl(path, crl)
        console.print(
            f"{path}: CRL number {_crl_number(crl)}, next update {crl.next_update_utc}", highlight=False
        )


def _key_text(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    return type(key).__name__


def _ext_text(cert: x509.Certificate) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for ext in cert.extensions:
        value = ext.value
        if isinstance(value, x509.BasicConstraints):
            text = f"CA={value.ca}" + (
                f", pathLen={value.path_length}" if value.path_length is not None else ""
            )
        elif isinstance(value, x509.KeyUsage):
            names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                     "key_agreement", "key_cert_sign", "crl_sign")  # fmt: skip
            text = ", ".join(n for n in names if getattr(value, n))
        elif isinstance(value, x509.ExtendedKeyUsage):
            text = ", ".join(getattr(o, "_name", None) or o.dotted_string for o in value)
        elif isinstance(value, x509.SubjectAlternativeName):
            text = ", ".join(str(n.value) for n in value)
        elif isinstance(value, x509.SubjectKeyIdentifier):
            text = value.digest.hex(":")
        elif isinstance(value, x509.AuthorityKeyIdentifier):
            text = value.key_identifier.hex(":") if value.key_identifier else "-"
        else:
            continue
        rows.append((type(value).__name__ + (" (critical)" if ext.critical else ""), text))
    return rows


def _show_cert(cert: x509.Certificate, title: str) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("subject", cert.subject.rfc4514_string())
    table.add_row("issuer", cert.issuer.rfc4514_string())
    table.add_row("agency (UID)", organ_id_of(cert) or "-")
    table.add_row("serial", f"{cert.serial_number:x}")
    table.add_row(
        "valid", f"{cert.not_valid_before_utc.isoformat()} → {cert.not_valid_after_utc.isoformat()}"
    )
    table.add_row("key", _key_text(cert))
    table.add_row("SHA-256", format_fingerprint(fingerprint(cert)))
    for name, text in _ext_text(cert):
        table.add_row(name, text)
    console.print(table)


def _show_crl(crl: x509.CertificateRevocationList, title: str) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("serial")
    table.add_column("revoked")
    table.add_column("reason")
    for serial, when, reason in _entries(crl):
        table.add_row(f"{serial:x}", when.isoformat(), reason.value if reason else "-")
    console.print(
        f"CRL of {crl.issuer.rfc4514_string()}, number {_crl_number(crl)}, "
        f"this update {crl.last_update_utc.isoformat()}, next update "
        f"{crl.next_update_utc.isoformat() if crl.next_update_utc else '-'}",
        highlight=False,
    )
    console.print(table)


@app.command()
def show(
    path: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, readable=True, help="PEM/DER certificate(s) or CRL."),
    ],
) -> None:
    """Print what a certificate file (or bundle) or CRL holds: subject, agency code, validity, key, usages."""
    data = path.read_bytes()
    if b"X509 CRL" in data or path.suffix.lower() == ".crl":
        _show_crl(load_crl(data, source=str(path)), str(path))
        return
    certs = load_certificates(data, source=str(path))
    for i, cert in enumerate(certs):
        _show_cert(cert, f"{path}" + (f" [{i + 1}/{len(certs)}]" if len(certs) > 1 else ""))
