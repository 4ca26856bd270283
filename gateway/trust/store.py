"""The trust store: which certificates may sign for an agency, at a given time (DESIGN §3).

A :class:`TrustStore` is immutable. It holds root CAs (trust anchors), intermediate CAs (helpers for path
building; they grant no trust of their own: a chain must still end at a root) and CRLs. Loading a folder
or adding a CRL returns a *new* store, so a hub can swap its store atomically (one attribute assignment)
while requests in flight finish with the old one.

Path building and signature checking are done by ``cryptography.x509.verification`` (RFC 5280 path
building in PyCA's Rust core, see ``docs/trust.md`` for why), with extension policies relaxed for
document-signing certificates: no SAN and no serverAuth/clientAuth EKU are required of the leaf. What that
verifier does not do, or does not report precisely enough for a user, is done here, each failure with its
own code:

=============================  =====================================================================
``signature.weak_key``         RSA key < 2048 bits, or an EC key on a curve other than P-256
``signature.algorithm``        a key type outside the profile (Ed25519, DSA, …)
``certificate.untrusted``      no chain to a root of the store; a CA or self-signed cert as signer
``certificate.expired``        the leaf, or a CA on its chain, had expired at ``at``
``certificate.not_yet_valid``  the leaf, or a CA on its chain, was not yet valid at ``at``
``certificate.revoked``        the leaf or an intermediate is in a CRL of its issuer, revoked ≤ ``at``
``certificate.key_usage``      the leaf's KeyUsage is absent or lacks digitalSignature
``certificate.no_agency``      an agency was expected but the certificate names none (subject UID)
``certificate.agency_mismatch`` the certificate names another agency
``certificate.not_pinned``     pins were given and the certificate's SHA-256 is not among them
=============================  =====================================================================
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from gateway.errors import ConfigError, SignatureError, TrustError
from gateway.trust.pki import organ_id_of

_DER = Encoding.DER
CERT_SUFFIXES = (".pem", ".crt", ".cer")
CRL_SUFFIXES = (".crl",)
MAX_CHAIN_DEPTH = 6
PATH_CACHE_SIZE = 1024


def fingerprint(cert: x509.Certificate) -> bytes:
    """SHA-256 of the certificate's DER encoding: the value pins are made of."""
    return hashlib.sha256(cert.public_bytes(_DER)).digest()


def parse_fingerprint(text: str) -> bytes:
    """A SHA-256 fingerprint from hex, with or without ``:`` separators, any case (``sha256:`` prefix ok)."""
    cleaned = text.strip().lower().removeprefix("sha256:").replace(":", "").replace(" ", "")
    try:
        raw = bytes.fromhex(cleaned)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ConfigError("config.invalid", f"not a SHA-256 fingerprint: {text!r}")
    return raw


def format_fingerprint(raw: bytes) -> str:
    """Upper-case hex with ``:`` separators, the way ``openssl x509 -fingerprint -sha256`` prints it."""
    return ":".join(f"{b:02X}" for b in raw)


@dataclass(frozen=True, kw_only=True, slots=True)
class ValidatedChain:
    """A signer certificate that passed every check: its chain (leaf first, root last), agency and pin."""

    chain: tuple[x509.Certificate, ...]
    organ_id: str | None
    fingerprint: bytes

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]


@dataclass(frozen=True, kw_only=True, slots=True)
class CrlInfo:
    """What a readiness check reports about one CRL held by the store."""

    issuer: str
    crl_number: int | None
    this_update: dt.datetime
    next_update: dt.datetime | None
    revoked_count: int
    crl: x509.CertificateRevocationList = field(repr=False, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class _Revocations:
    """The revoked serials of one issuer, from its newest CRL whose signature verified."""

    crl: x509.CertificateRevocationList
    dates: dict[int, dt.datetime]


@dataclass(frozen=True, kw_only=True, slots=True)
class _Path:
    """A path built once for (signer, extra intermediates), and the signer's facts that never change.

    Only what does not depend on time is kept: the chain's names, signatures and constraints, the CRL
    lookups that apply to it (the store's CRLs never change), the leaf's key usage, agency and fingerprint.
    Everything that depends on ``at`` (validity windows, revocation dates) is checked again on every call.
    """

    chain: tuple[x509.Certificate, ...]
    # (not before, not after) of each certificate on the chain, read once: cryptography builds new
    # datetimes on every access.
    windows: tuple[tuple[dt.datetime, dt.datetime], ...]
    # (subject, its serial number, the issuer's revoked serials and dates)
    revocations: tuple[tuple[x509.Certificate, int, dict[int, dt.datetime]], ...]
    key_usage_problem: str | None
    organ_id: str | None
    fingerprint: bytes


class _PathKey:
    """The path cache's key: the signer and the extra intermediates it sent, compared as certificates.

    Hashing a tuple of certificates makes cryptography hash each parsed certificate, a few µs apiece and
    twice per lookup (``get``, then ``move_to_end``); this key hashes their signature values once, and
    equality still compares the certificates themselves (by identity first, then by value).
    """

    __slots__ = ("certs", "hash")

    def __init__(self, certs: tuple[x509.Certificate, ...]) -> None:
        self.certs = certs
        self.hash = hash(tuple([c.signature for c in certs]))

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _PathKey) and self.certs == other.certs


class TrustStore:
    """Roots, intermediates and CRLs; validates signer certificates at a given time. Immutable."""

    __slots__ = (
        "_by_issuer",
        "_crls",
        "_intermediates",
        "_paths",
        "_paths_lock",
        "_roots",
        "_source",
        "_verifier_store",
    )

    def __init__(
        self,
        *,
        roots: Sequence[x509.Certificate],
        intermediates: Sequence[x509.Certificate] = (),
        crls: Sequence[x509.CertificateRevocationList] = (),
        source: Path | None = None,
    ) -> None:
        for cert in (*roots, *intermediates):
            if not _is_ca(cert):
                raise ConfigError(
                    "config.invalid", f"not a CA certificate, cannot be a trust anchor: {_subject(cert)}"
                )
        self._roots: tuple[x509.Certificate, ...] = _dedupe(roots)
        self._intermediates: tuple[x509.Certificate, ...] = _dedupe(intermediates)
        self._source = source
        self._verifier_store = Store(list(self._roots)) if self._roots else None
        # Each CRL is indexed by the DER fingerprint of the store CA whose key verifies it; per CA only the
        # newest (highest CRLNumber, then latest thisUpdate) is kept, so an older CRL never un-revokes.
        by_issuer: dict[bytes, _Revocations] = {}
        for crl in crls:
            issuers = [ca for ca in (*self._roots, *self._intermediates) if _crl_signed_by(crl, ca)]
            if not issuers:
                raise ConfigError(
                    "config.invalid",
                    f"CRL of {crl.issuer.rfc4514_string()} is not signed by any CA of the trust store",
                )
            for ca in issuers:
                key = fingerprint(ca)
                held = by_issuer.get(key)
                if held is None or _crl_rank(crl) >= _crl_rank(held.crl):
                    by_issuer[key] = _Revocations(
                        crl=crl, dates={r.serial_number: r.revocation_date_utc for r in crl}
                    )
        self._by_issuer = by_issuer
        self._crls: tuple[x509.CertificateRevocationList, ...] = tuple(
            {id(r.crl): r.crl for r in by_issuer.values()}.values()
        )
        # Paths already built, by (signer, *extra intermediates); see validate(). Per instance: a reload or
        # a new CRL makes a new store and so starts from an empty cache.
        self._paths: OrderedDict[_PathKey, _Path] = OrderedDict()
        self._paths_lock = threading.Lock()

    # --- construction ---------------------------------------------------------------------------------

    @classmethod
    def from_objects(
        cls,
        *,
        roots: Iterable[x509.Certificate],
        intermediates: Iterable[x509.Certificate] = (),
        crls: Iterable[x509.CertificateRevocationList] = (),
    ) -> TrustStore:
        """A store from certificates and CRLs in memory (tests, or a store assembled by the caller)."""
        return cls(roots=list(roots), intermediates=list(intermediates), crls=list(crls))

    @classmethod
    def load(cls, path: str | Path) -> TrustStore:
        """Read a trust folder: ``*.pem``/``*.crt``/``*.cer`` CA certificates, ``*.crl`` CRLs (PEM or DER).

        Self-signed CA certificates become roots, other CA certificates intermediates. A file that cannot
        be read, a non-CA certificate, or a folder without any root is a ``config.invalid`` error: a
        half-loaded trust store must never start serving.
        """
        folder = Path(path)
        if not folder.is_dir():
            raise ConfigError("config.invalid", f"trust store folder not found: {folder}")
        roots: list[x509.Certificate] = []
        intermediates: list[x509.Certificate] = []
        crls: list[x509.CertificateRevocationList] = []
        for file in sorted(folder.iterdir()):
            suffix = file.suffix.lower()
            if not file.is_file() or suffix not in (*CERT_SUFFIXES, *CRL_SUFFIXES):
                continue
            data = file.read_bytes()
            if suffix in CRL_SUFFIXES:
                crls.append(load_crl(data, source=str(file)))
                continue
            for cert in load_certificates(data, source=str(file)):
                (roots if _is_self_signed(cert) else intermediates).append(cert)
        if not roots:
            raise ConfigError("config.invalid", f"no root CA certificate in trust store folder {folder}")
        return cls(roots=roots, intermediates=intermediates, crls=crls, source=folder)

    def reload(self) -> TrustStore:
        """A fresh store read from the same folder (for a hub that swaps stores on SIGHUP or a timer)."""
        if self._source is None:
            raise ConfigError("config.invalid", "this trust store was not loaded from a folder")
        return TrustStore.load(self._source)

    def with_crl(self, crl: x509.CertificateRevocationList) -> TrustStore:
        """A new store with ``crl`` added, replacing its issuer's CRL unless the one held is newer.

        The CRL must be signed by a CA of the store (``config.invalid`` otherwise): a forged or foreign CRL
        is refused at the door rather than silently ignored.
        """
        return TrustStore(
            roots=self._roots, intermediates=self._intermediates, crls=[*self._crls, crl], source=self._source
        )

    # --- inspection -----------------------------------------------------------------------------------

    @property
    def roots(self) -> tuple[x509.Certificate, ...]:
        return self._roots

    @property
    def intermediates(self) -> tuple[x509.Certificate, ...]:
        return self._intermediates

    @property
    def crls(self) -> tuple[x509.CertificateRevocationList, ...]:
        return self._crls

    @property
    def source(self) -> Path | None:
        return self._source

    def crl_info(self) -> list[CrlInfo]:
        """One line per CRL held, for ``/ready`` and operators."""
        return [_crl_info(crl) for crl in self._crls]

    def stale_crls(self, now: dt.datetime) -> list[CrlInfo]:
        """CRLs whose ``next_update`` has passed at ``now`` (or that give none): a readiness failure.

        A stale CRL still revokes what it lists; it is reported, not dropped, because a certificate
        revoked yesterday must not come back to life when its CRL ages.
        """
        now = _aware(now, "now")
        return [
            _crl_info(crl) for crl in self._crls if crl.next_update_utc is None or crl.next_update_utc < now
        ]

    def __repr__(self) -> str:
        return (
            f"TrustStore(roots={len(self._roots)}, intermediates={len(self._intermediates)}, "
            f"crls={len(self._crls)}, source={self._source!s})"
        )

    # --- validation -----------------------------------------------------------------------------------

    def validate(
        self,
        cert: x509.Certificate,
        *,
        at: dt.datetime,
        extra_intermediates: Sequence[x509.Certificate] = (),
        organ_id: str | None = None,
        pinned: Collection[bytes | str] | None = None,
    ) -> ValidatedChain:
        """Check that ``cert`` may sign for ``organ_id`` at time ``at``; raise a :class:`TrustError` if not.

        ``at`` is the signing time (or the receipt time) and must be timezone-aware.
        ``extra_intermediates`` are CA certificates the signer sent along (``X509Data``); they help build a
        path but are trusted only if it ends at one of the store's roots. ``organ_id``: the agency the
        certificate must name (``From/OrganId``); ``None`` skips the binding (e.g. the hub's own
        certificate). ``pinned``: SHA-256 fingerprints of DER certificates the directory pins for that
        agency, as raw bytes or hex text (see :func:`parse_fingerprint`); ``None`` or empty: no pinning.
        """
        at = _aware(at, "at")
        presented = (cert, *extra_intermediates)
        for one in presented:
            _check_readable(one)
        key = _PathKey(presented)
        with self._paths_lock:
            path = self._paths.get(key)
            if path is not None:
                self._paths.move_to_end(key)
        # A path found earlier is reused only if every certificate on it is valid at ``at``; otherwise the
        # full checks run again (they may find another path, or name the precise time failure).
        if path is None or not all(before <= at <= after for before, after in path.windows):
            path = self._find_path(cert, at, extra_intermediates, key)
        for subject, serial, revoked in path.revocations:
            when = revoked.get(serial)
            if when is not None and when <= at:
                raise TrustError(
                    "certificate.revoked",
                    f"{_subject(subject)} (serial {serial:x}) was revoked on {when.isoformat()}",
                    serial=f"{serial:x}",
                    revoked_at=when.isoformat(),
                )
        if path.key_usage_problem is not None:
            raise TrustError("certificate.key_usage", path.key_usage_problem)
        named = path.organ_id
        if organ_id is not None:
            expected = organ_id.strip().upper()
            if named is None:
                raise TrustError(
                    "certificate.no_agency",
                    f"the certificate names no agency code (subject UID); expected {expected}",
                )
            if named != expected:
                raise TrustError(
                    "certificate.agency_mismatch",
                    f"the certificate belongs to {named}, not to {expected}",
                    certificate_organ_id=named,
                    expected_organ_id=expected,
                )
        digest = path.fingerprint
        if pinned and digest not in {p if isinstance(p, bytes) else parse_fingerprint(p) for p in pinned}:
            raise TrustError(
                "certificate.not_pinned",
                f"certificate {format_fingerprint(digest)} is not pinned for "
                f"{organ_id or named or 'this agency'}",
            )
        return ValidatedChain(chain=(cert, *path.chain[1:]), organ_id=named, fingerprint=digest)

    def _find_path(
        self,
        cert: x509.Certificate,
        at: dt.datetime,
        extra: Sequence[x509.Certificate],
        key: _PathKey,
    ) -> _Path:
        """The uncached checks 1–4 (key, CA signer, validity, path building at ``at``); caches the path."""
        _check_key(cert)
        if _is_ca(cert) or _is_self_signed(cert):
            raise TrustError(
                "certificate.untrusted",
                f"a CA or self-signed certificate cannot sign documents: {_subject(cert)}",
            )
        _check_time(cert, at, what="the signer certificate")
        chain = self._build_chain(cert, at, extra)
        revocations = []
        for subject, issuer in pairwise(chain):
            held = self._by_issuer.get(fingerprint(issuer))
            if held is not None:
                revocations.append((subject, subject.serial_number, held.dates))
        path = _Path(
            chain=chain,
            windows=tuple((c.not_valid_before_utc, c.not_valid_after_utc) for c in chain),
            revocations=tuple(revocations),
            key_usage_problem=_key_usage_problem(cert),
            organ_id=organ_id_of(cert),
            fingerprint=fingerprint(cert),
        )
        with self._paths_lock:
            self._paths[key] = path
            self._paths.move_to_end(key)
            while len(self._paths) > PATH_CACHE_SIZE:
                self._paths.popitem(last=False)
        return path

    def _build_chain(
        self, cert: x509.Certificate, at: dt.datetime, extra: Sequence[x509.Certificate]
    ) -> tuple[x509.Certificate, ...]:
        if self._verifier_store is None:
            raise TrustError("certificate.untrusted", "the trust store holds no root certificate")
        pool = [*self._intermediates, *(c for c in extra if c not in self._intermediates)]
        verifier = (
            PolicyBuilder()
            .store(self._verifier_store)
            .time(at)
            .max_chain_depth(MAX_CHAIN_DEPTH)
            .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
            .build_client_verifier()
        )
        try:
            verified = verifier.verify(cert, pool)
        except VerificationError as exc:
            self._diagnose(cert, at, pool)
            raise TrustError(
                "certificate.untrusted",
                f"no valid chain from {_subject(cert)} to a trusted root ({_short(exc)})",
            ) from exc
        return tuple(verified.chain)

    def _diagnose(self, cert: x509.Certificate, at: dt.datetime, pool: Sequence[x509.Certificate]) -> None:
        """After a failed verification: if the path by name and signature exists but one CA on it is out of
        its validity period at ``at``, say so precisely (expired / not yet valid) instead of "untrusted"."""
        candidates = [*pool, *self._roots]
        current = cert
        for _ in range(MAX_CHAIN_DEPTH):
            issuer = next((c for c in candidates if _issued_by(current, c)), None)
            if issuer is None:
                return
            _check_time(issuer, at, what="the CA certificate")
            if issuer in self._roots:
                return
            current = issuer


# --- loading helpers -------------------------------------------------------------------------------------


def load_certificates(data: bytes, *, source: str = "input") -> list[x509.Certificate]:
    """All certificates of a PEM bundle, or the one certificate of a DER file."""
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise ConfigError("config.invalid", f"cannot read a certificate from {source}: {exc}") from exc
    return certs


def load_crl(data: bytes, *, source: str = "input") -> x509.CertificateRevocationList:
    """One CRL, PEM or DER."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise ConfigError("config.invalid", f"cannot read a CRL from {source}: {exc}") from exc


# --- checks ---------------------------------------------------------------------------------------------


def _ca_key_usage(_policy: Policy, _cert: x509.Certificate, usage: x509.KeyUsage | None) -> None:
    if usage is not None and not usage.key_cert_sign:
        raise ValueError("a CA's keyUsage must allow keyCertSign")


# CA certificates: basicConstraints must be present (cryptography then requires cA=TRUE and honours
# pathLenConstraint); keyUsage, when present, must allow keyCertSign. Nothing WebPKI-specific.
_CA_POLICY = (
    ExtensionPolicy.permit_all()
    .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, None)
    .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _ca_key_usage)
)
# Leaf: no SAN and no particular EKU required (a document signer is not a TLS peer). Key usage, agency and
# key strength are checked in Python so that each failure gets its own code. Unknown critical extensions
# are still refused by cryptography.
_EE_POLICY = ExtensionPolicy.permit_all()


_UNREADABLE: tuple[type[Exception], ...] = (
    ValueError,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)
"""What cryptography raises for a certificate it cannot read (as gateway.signature.profile's
UNREADABLE_CERTIFICATE; trust and signature do not import each other)."""


def _check_readable(cert: x509.Certificate) -> None:
    """cryptography parses extensions lazily: a certificate that loaded may still fail when they are read.

    Checked before anything else so that such a certificate is a ``signature.bad_certificate``, never a
    ValueError from deep inside path building (found by fuzzing).
    """
    try:
        cert.extensions  # noqa: B018
    except _UNREADABLE as exc:
        raise SignatureError(
            "signature.bad_certificate", f"a certificate's extensions cannot be read: {exc}"
        ) from exc


def _check_key(cert: x509.Certificate) -> None:
    try:
        key = cert.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # a key of an unknown or malformed type
        raise SignatureError(
            "signature.bad_certificate", f"the certificate's key cannot be read: {exc}"
        ) from exc
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise SignatureError(
                "signature.weak_key", f"RSA key of {key.key_size} bits; at least 2048 needed"
            )
        return
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise SignatureError("signature.weak_key", f"EC curve {key.curve.name}; only P-256 is accepted")
        return
    raise SignatureError(
        "signature.algorithm", f"{type(key).__name__} keys are not accepted; use RSA ≥ 2048 or EC P-256"
    )


def _key_usage_problem(cert: x509.Certificate) -> str | None:
    """Why the certificate's KeyUsage does not allow signing, or ``None`` if it does."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return "the certificate has no KeyUsage extension"
    if not usage.digital_signature:
        return "the certificate's KeyUsage lacks digitalSignature"
    return None


def _check_time(cert: x509.Certificate, at: dt.datetime, *, what: str) -> None:
    if at < cert.not_valid_before_utc:
        raise TrustError(
            "certificate.not_yet_valid",
            f"{what} {_subject(cert)} is valid from {cert.not_valid_before_utc.isoformat()}, "
            f"not at {at.isoformat()}",
        )
    if at > cert.not_valid_after_utc:
        raise TrustError(
            "certificate.expired",
            f"{what} {_subject(cert)} expired on {cert.not_valid_after_utc.isoformat()}, "
            f"before {at.isoformat()}",
        )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject and _issued_by(cert, cert)


def _crl_signed_by(crl: x509.CertificateRevocationList, ca: x509.Certificate) -> bool:
    """Whether ``ca`` issued ``crl``: same name *and* a signature its key verifies."""
    if crl.issuer != ca.subject:
        return False
    try:
        return crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _crl_number(crl: x509.CertificateRevocationList) -> int | None:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return None


def _crl_rank(crl: x509.CertificateRevocationList) -> tuple[int, dt.datetime]:
    return (_crl_number(crl) or -1, crl.last_update_utc)


def _crl_info(crl: x509.CertificateRevocationList) -> CrlInfo:
    return CrlInfo(
        issuer=crl.issuer.rfc4514_string(),
        crl_number=_crl_number(crl),
        this_update=crl.last_update_utc,
        next_update=crl.next_update_utc,
        revoked_count=len(crl),
        crl=crl,
    )


def _dedupe(certs: Iterable[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    seen: dict[bytes, x509.Certificate] = {}
    for cert in certs:
        seen.setdefault(fingerprint(cert), cert)
    return tuple(seen.values())


def _aware(value: dt.datetime, name: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return value.astimezone(dt.UTC)


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def _short(exc: Exception) -> str:
    text = str(exc).removeprefix("validation failed: ")
    return text.split(" (encountered processing")[0]
