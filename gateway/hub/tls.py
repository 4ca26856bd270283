"""The hub's TLS: a server context that demands client certificates, and a way to swap it without restart.

Choices (issue 7 §5):

* TLS 1.2 minimum; TLS 1.2 suites limited to ECDHE with AES-GCM or ChaCha20-Poly1305 (forward secrecy,
  AEAD only); TLS 1.3 suites are OpenSSL's defaults, which are all modern. Compression and renegotiation
  are off.
* ``CERT_REQUIRED``: a client without a certificate chaining to one of the trust store's CAs fails the
  handshake; it never reaches a handler.
* Revocation is checked twice. In the handshake (``VERIFY_CRL_CHECK_LEAF``) when every CA that can issue
  client certificates has a CRL loaded: OpenSSL refuses *every* leaf whose issuer has no CRL, so the flag
  is set only when that holds. And always in the application, per certificate, with the trust store's
  full validation (:func:`gateway.hub.identity`), which gives a precise ``certificate.revoked`` problem.
* Reload: the listening socket keeps one :class:`ssl.SSLContext`, whose SNI callback (called for every
  handshake, with or without SNI) switches the connection to the *current* context held by
  :class:`TlsContextHolder`. Reloading builds a fresh context and swaps one reference; connections
  already open keep the context they were made with.
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.errors import ConfigError

TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!SHA1:!RC4:!3DES"


def _pem_bundle(certs: Sequence[x509.Certificate], crls: Sequence[x509.CertificateRevocationList]) -> bytes:
    parts = [c.public_bytes(Encoding.PEM) for c in certs]
    parts += [crl.public_bytes(Encoding.PEM) for crl in crls]
    return b"".join(parts)


def crls_cover(ca_certs: Sequence[x509.Certificate], crls: Sequence[x509.CertificateRevocationList]) -> bool:
    """Whether every CA in ``ca_certs`` has a CRL under its name (the precondition of CRL_CHECK_LEAF)."""
    issuers = {crl.issuer for crl in crls}
    return bool(ca_certs) and all(ca.subject in issuers for ca in ca_certs)


def server_context(
    *,
    cert_file: Path,
    key_file: Path,
    ca_certs: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList] = (),
    crl_check: bool | None = None,
) -> ssl.SSLContext:
    """A server context for the hub: our chain and key, client certificates required against ``ca_certs``.

    ``crl_check=None`` enables handshake CRL checking exactly when :func:`crls_cover` holds.
    Raises :class:`ConfigError` when the certificate or key cannot be loaded or do not match.
    """
    if not ca_certs:
        raise ConfigError("config.invalid", "the trust store holds no CA for client authentication")
    ctx = _modern_server_context(cert_file, key_file)
    ctx.verify_mode = ssl.CERT_REQUIRED
    # CRLs can only be loaded from a file (cadata ignores them): write one, load it, remove it.
    fd, name = tempfile.mkstemp(prefix="hub-ca-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(_pem_bundle(ca_certs, crls))
        ctx.load_verify_locations(cafile=name)
    except ssl.SSLError as exc:
        raise ConfigError("config.invalid", f"cannot load the trust anchors into TLS: {exc}") from exc
    finally:
        os.unlink(name)
    if crl_check is None:
        crl_check = crls_cover(ca_certs, crls)
    if crl_check:
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    return ctx


def _modern_server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """TLS >= 1.2, AEAD suites with forward secrecy only, no compression or renegotiation; our chain."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        ctx.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            "config.invalid", f"cannot load the hub certificate/key ({cert_file}, {key_file}): {exc}"
        ) from exc
    return ctx


def web_server_context(*, cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """The web listener's context: the hub's certificate, the same protocol floor and suites, and **no**
    client certificate requested (browsers of clerks have none; they sign in with a password)."""
    ctx = _modern_server_context(cert_file, key_file)
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def check_identity(
    cert_file: Path, key_file: Path, *, now: dt.datetime, allow_readable_key: bool = False, what: str = "hub"
) -> None:
    """What the hub checks before it listens, each failure one line (:class:`ConfigError`): the key file
    is private (unless ``allow_readable_key``), the key matches the certificate, and the certificate is
    valid at ``now``."""
    from cryptography.hazmat.primitives import serialization

    from gateway.trust.files import check_key_file_private

    if not allow_readable_key:
        check_key_file_private(key_file, what=f"the {what} private key", setting="allow_readable_key_files")
    try:
        cert = x509.load_pem_x509_certificates(cert_file.read_bytes())[0]
    except (OSError, ValueError, IndexError) as exc:
        raise ConfigError("config.invalid", f"cannot read the {what} certificate {cert_file}: {exc}") from exc
    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError("config.invalid", f"cannot read the {what} private key {key_file}: {exc}") from exc
    spki = (Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise ConfigError(
            "config.invalid", f"the {what} private key {key_file} does not match its certificate {cert_file}"
        )
    if now < cert.not_valid_before_utc:
        raise ConfigError(
            "config.invalid",
            f"the {what} certificate {cert_file} is not valid yet "
            f"(from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC)",
        )
    if now > cert.not_valid_after_utc:
        raise ConfigError(
            "config.invalid",
            f"the {what} certificate {cert_file} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
        )


def client_context(
    *,
    ca_certs: Sequence[x509.Certificate],
    cert_file: Path | None = None,
    key_file: Path | None = None,
) -> ssl.SSLContext:
    """A client context that trusts ``ca_certs`` and presents a certificate (nodes, tests, benchmarks)."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=_pem_bundle(ca_certs, ()).decode())
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file is not None:
        ctx.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file) if key_file else None)
    return ctx


class TlsContextHolder:
    """Holds the current server context; :attr:`listening` is what the socket is bound with.

    ``listening`` never changes; its SNI callback (OpenSSL calls it for every ClientHello, with or without
    SNI) moves each new connection onto :attr:`current`, so a :meth:`swap` applies from the next
    handshake on. Measured with OpenSSL 3.0: the swapped-in context supplies the CA certificates *and*
    CRLs (a new CA, or a CRL revoking a client, takes effect), but the verify *flags* stay those of the
    listening context. So handshake CRL checking is decided once, at start: if it was on, a CA added later
    must come with its CRL or its clients fail the handshake (the application-level check applies always).
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        self.listening = context
        self.current = context
        context.sni_callback = self._on_hello

    def _on_hello(self, sslobj: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        current = self.current
        if sslobj.context is not current:
            sslobj.context = current
        return None

    def swap(self, context: ssl.SSLContext) -> None:
        self.current = context
