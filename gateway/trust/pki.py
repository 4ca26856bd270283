"""A real, small PKI made with ``cryptography``: root and intermediate CAs, agency and hub certificates, CRLs.

Pure functions: no file I/O (the CLI writes files), no global state. The only impurity is that a missing
``not_before`` defaults to *now* (minus five minutes of clock skew); pass explicit times for reproducible
certificates.

How a certificate names its agency (DESIGN §3 "its subject carries the code"):

* the subject attribute **UID** (``0.9.2342.19200300.100.1.1``, :data:`NameOID.USER_ID`) holds the agency
  code (mã định danh, ``OrganId``) exactly, e.g. ``000.00.00.H53``. Certificates issued elsewhere sometimes
  write it as ``MDDT:000.00.00.H53``; :func:`organ_id_of` tolerates that prefix on read, we never write it;
* ``CN`` and ``O`` hold the agency's name, ``C=VN``.

Agency certificates carry KeyUsage ``digitalSignature`` + ``nonRepudiation`` (critical) and the EKUs
``clientAuth`` (the agency node's mTLS identity) and ``documentSigning`` (RFC 9336, what the key is for).
The hub's certificate carries ``serverAuth`` + ``clientAuth`` and ``digitalSignature`` because the hub also
signs its receipts. Every certificate has Subject/Authority Key Identifiers so chains build by key id.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

KeyType = Literal["rsa2048", "rsa3072", "ec-p256"]
"""Key types the profile accepts (DESIGN §3: RSA ≥ 2048 or ECDSA P-256)."""

WeakKeyType = Literal["rsa1024", "ec-p384"]
"""Key types the profile *rejects*; available only so tests can make deliberately bad certificates."""

KEY_TYPES: tuple[str, ...] = get_args(KeyType)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
"""The private keys this module makes (both can sign certificates and XML)."""

UID_PREFIX = "MDDT:"
"""Prefix some issuers put before the agency code in UID; tolerated on read, never written."""

DOCUMENT_SIGNING = ObjectIdentifier("1.3.6.1.5.5.7.3.36")
"""id-kp-documentSigning (RFC 9336)."""

_ORGAN_ID = re.compile(r"^\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}$")
_SKEW = dt.timedelta(minutes=5)

ROOT_DAYS = 20 * 365
INTERMEDIATE_DAYS = 10 * 365
LEAF_DAYS = 2 * 365


@dataclass(frozen=True, kw_only=True, slots=True)
class Issued:
    """A key, its certificate, and the chain above it (issuer first, root last; empty for a root)."""

    key: PrivateKey
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]

    @property
    def full_chain(self) -> tuple[x509.Certificate, ...]:
        """The certificate followed by its chain: what a signer sends in ``X509Data`` or a TLS handshake."""
        return (self.cert, *self.chain)


def generate_key(key_type: KeyType | WeakKeyType) -> PrivateKey:
    """A fresh private key of the named type."""
    match key_type:
        case "rsa2048":
            return rsa.generate_private_key(public_exponent=65537, key_size=2048)
        case "rsa3072":
            return rsa.generate_private_key(public_exponent=65537, key_size=3072)
        case "rsa1024":
            return rsa.generate_private_key(public_exponent=65537, key_size=1024)
        case "ec-p256":
            return ec.generate_private_key(ec.SECP256R1())
        case "ec-p384":
            return ec.generate_private_key(ec.SECP384R1())
    raise ValueError(f"unknown key type {key_type!r}")


def _times(
    not_before: dt.datetime | None, not_after: dt.datetime | None, days: int
) -> tuple[dt.datetime, dt.datetime]:
    start = not_before if not_before is not None else dt.datetime.now(dt.UTC) - _SKEW
    end = not_after if not_after is not None else start + dt.timedelta(days=days)
    if end <= start:
        raise ValueError("not_after must be later than not_before")
    return start, end


def _name(common_name: str, *, organization: str | None = None, organ_id: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "VN")]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    if organ_id is not None:
        attrs.append(x509.NameAttribute(NameOID.USER_ID, organ_id))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _sign(builder: x509.CertificateBuilder, key: CertificateIssuerPrivateKeyTypes) -> x509.Certificate:
    return builder.sign(private_key=key, algorithm=hashes.SHA256())


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def make_root_ca(
    common_name: str,
    *,
    key_type: KeyType | WeakKeyType = "ec-p256",
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Issued:
    """A self-signed root CA (basicConstraints CA, keyCertSign + cRLSign)."""
    key = generate_key(key_type)
    start, end = _times(not_before, not_after, ROOT_DAYS)
    name = _name(common_name, organization=common_name)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
    )
    return Issued(key=key, cert=_sign(builder, key), chain=())


def make_intermediate_ca(
    parent: Issued,
    common_name: str,
    *,
    key_type: KeyType | WeakKeyType = "ec-p256",
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    path_length: int | None = 0,
) -> Issued:
    """A CA signed by ``parent``; ``path_length=0`` lets it issue only end-entity certificates."""
    key = generate_key(key_type)
    start, end = _times(not_before, not_after, INTERMEDIATE_DAYS)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organization=common_name))
        .issuer_name(parent.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_aki(parent.cert), critical=False)
    )
    return Issued(key=key, cert=_sign(builder, parent.key), chain=parent.full_chain)


def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def issue_agency_cert(
    ca: Issued,
    *,
    organ_id: str,
    name: str,
    key_type: KeyType | WeakKeyType = "rsa2048",
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    digital_signature: bool = True,
    client_auth: bool = True,
    serial: int | None = None,
    crl_url: str | None = None,
) -> Issued:
    """An agency's signing (and mTLS client) certificate; its subject UID carries ``organ_id`` verbatim.

    ``digital_signature=False`` makes a key-encipherment-only certificate (for tests of the key-usage
    rule); ``client_auth=False`` leaves clientAuth out of the EKU (documentSigning stays).
    """
    key = generate_key(key_type)
    start, end = _times(not_before, not_after, LEAF_DAYS)
    usage = x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=digital_signature,
        key_encipherment=not digital_signature,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    ekus = [ExtendedKeyUsageOID.CLIENT_AUTH] if client_auth else []
    ekus.append(DOCUMENT_SIGNING)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name, organization=name, organ_id=organ_id))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_aki(ca.cert), critical=False)
    )
    if crl_url:
        point = x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(crl_url)],
            relative_name=None,
            reasons=None,
            crl_issuer=None,
        )
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    return Issued(key=key, cert=_sign(builder, ca.key), chain=ca.full_chain)


def issue_hub_cert(
    ca: Issued,
    *,
    name: str,
    hostnames: Sequence[str] = ("localhost",),
    ips: Sequence[str] = ("127.0.0.1",),
    key_type: KeyType | WeakKeyType = "ec-p256",
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Issued:
    """The hub's certificate: TLS server and client (serverAuth + clientAuth) and receipt signer."""
    if not hostnames and not ips:
        raise ValueError("a hub certificate needs at least one hostname or IP address")
    key = generate_key(key_type)
    start, end = _times(not_before, not_after, LEAF_DAYS)
    is_rsa = isinstance(key, rsa.RSAPrivateKey)
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=is_rsa,  # RSA key exchange in TLS 1.2; meaningless for EC
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    san: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
    san += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name, organization=name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_aki(ca.cert), critical=False)
    )
    return Issued(key=key, cert=_sign(builder, ca.key), chain=ca.full_chain)


RevokedEntry = tuple[int, dt.datetime] | tuple[int, dt.datetime, x509.ReasonFlags | None]
"""``(serial, revocation_date)`` or ``(serial, revocation_date, reason)``."""


def make_crl(
    ca: Issued,
    revoked: Iterable[RevokedEntry],
    *,
    this_update: dt.datetime,
    next_update: dt.datetime,
    crl_number: int = 1,
) -> x509.CertificateRevocationList:
    """A CRL signed by ``ca`` listing ``revoked`` serials; ``crl_number`` should grow with each issue."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
        .add_extension(_aki(ca.cert), critical=False)
    )
    for entry in revoked:
        serial, when = entry[0], entry[1]
        reason = entry[2] if len(entry) > 2 else None  # type: ignore[misc]
        rb = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
        if reason is not None and reason is not x509.ReasonFlags.unspecified:
            rb = rb.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(rb.build())
    return builder.sign(private_key=ca.key, algorithm=hashes.SHA256())


def is_organ_id(value: str) -> bool:
    """Whether ``value`` has the shape of an agency code ``V1V2V3.Z1Z2.Y1Y2.X1X2X3``."""
    return bool(_ORGAN_ID.match(value))


def organ_id_of(cert: x509.Certificate) -> str | None:
    """The agency code the certificate's subject carries in UID, or ``None``.

    Accepts ``000.00.00.H53`` and ``MDDT:000.00.00.H53`` (surrounding spaces ignored, letter upper-cased).
    ``None`` when there is no UID, the UID is not an agency code, or several UIDs disagree: a certificate
    that does not name exactly one agency names none.
    """
    found: set[str] = set()
    for attr in cert.subject.get_attributes_for_oid(NameOID.USER_ID):
        value = attr.value if isinstance(attr.value, str) else attr.value.decode("utf-8", "replace")
        value = value.strip()
        if value.upper().startswith(UID_PREFIX):
            value = value[len(UID_PREFIX) :].strip()
        value = value.upper()
        if not is_organ_id(value):
            return None
        found.add(value)
    return found.pop() if len(found) == 1 else None
