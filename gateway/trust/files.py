"""Reading and writing PKI material on disk (the edge next to the pure :mod:`.pki`).

Layout of one identity folder (``certs/dev/hub/``, ``certs/dev/agencies/<organ_id>/``)::

    cert.pem    the certificate
    key.pem     its private key, PKCS#8 PEM, unencrypted, mode 0600
    chain.pem   the CA certificates above it, issuer first, root last

Writes are atomic (temporary file + rename) and a private key is created with mode 0600 from the start, so
it is never readable by others, not even for a moment.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.errors import ConfigError
from gateway.trust.pki import Issued, PrivateKey
from gateway.trust.store import load_certificates, load_crl

KEY_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
PUBLIC_FILE_MODE = 0o644


def write_atomic(path: Path, data: bytes, *, mode: int = PUBLIC_FILE_MODE) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder, created with ``mode``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) and make it ``0700``: it will hold private keys."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(PRIVATE_DIR_MODE)


def pem_of(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_key(path: Path, key: PrivateKey) -> None:
    """A private key, PKCS#8 PEM, mode 0600."""
    write_atomic(path, key_pem(key), mode=KEY_MODE)


def load_key(path: Path) -> PrivateKey:
    """A private key written by :func:`write_key` (RSA or EC, unencrypted PEM)."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError("config.invalid", f"cannot read the private key {path}: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ConfigError("config.invalid", f"{path}: only RSA and EC keys are supported")
    return key


def load_cert(path: Path) -> x509.Certificate:
    """The first certificate of a PEM or DER file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError("config.invalid", f"cannot read {path}: {exc}") from exc
    return load_certificates(data, source=str(path))[0]


def write_issued(folder: Path, issued: Issued) -> None:
    """``cert.pem``, ``key.pem`` (0600) and ``chain.pem`` into ``folder`` (made 0700)."""
    make_private_dir(folder)
    write_key(folder / "key.pem", issued.key)
    write_atomic(folder / "cert.pem", pem_of([issued.cert]))
    write_atomic(folder / "chain.pem", pem_of(issued.chain))


def load_issued(folder: Path) -> Issued:
    """Read back what :func:`write_issued` wrote: the identity an agency node or the hub signs with."""
    chain_file = folder / "chain.pem"
    try:
        chain_data = chain_file.read_bytes() if chain_file.exists() else b""
    except OSError as exc:
        raise ConfigError("config.invalid", f"cannot read {chain_file}: {exc}") from exc
    chain = load_certificates(chain_data, source=str(chain_file)) if chain_data.strip() else []
    return Issued(key=load_key(folder / "key.pem"), cert=load_cert(folder / "cert.pem"), chain=tuple(chain))


def write_crl(path: Path, crl: x509.CertificateRevocationList) -> None:
    """A CRL in PEM (``TrustStore.load`` reads PEM and DER)."""
    write_atomic(path, crl.public_bytes(serialization.Encoding.PEM))


def read_crl(path: Path) -> x509.CertificateRevocationList:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError("config.invalid", f"cannot read {path}: {exc}") from exc
    return load_crl(data, source=str(path))


def check_key_file_private(path: Path, *, what: str = "the private key", setting: str) -> None:
    """Refuse a private key file that group or others may read (``mode & 0o077``): whoever can read it
    can be this identity. ``setting`` names the operator switch that allows it, for the message."""
    try:
        mode = path.stat().st_mode & 0o777
    except OSError as exc:
        raise ConfigError("config.invalid", f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    if mode & 0o077:
        raise ConfigError(
            "config.invalid",
            f"{what} {path} is readable by group or others (mode {mode:04o}): chmod 600 it "
            f"(or set {setting} = true to accept it)",
        )
