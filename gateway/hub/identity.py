"""Who is calling: the mTLS client certificate, checked by the trust store, turned into a :class:`Caller`.

The TLS handshake already proved possession of the key and a chain to one of our CAs. Here the full
trust-store validation runs once more, at *now*, with CRLs: it gives a precise problem
(``certificate.revoked``, ``certificate.expired``…) instead of a bare handshake failure, and it applies a
reloaded CRL to connections opened before the reload. The verdict is cached per certificate and trust-store
generation for :data:`CACHE_SECONDS`, so keep-alive clients pay for it once.

What a caller may act for is decided by :func:`may_act_for`: its own agency (the certificate's subject UID
names it) or agencies for which it is a registered **node identity** (a SHA-256 fingerprint the operator
registered in the database, for a node certificate that does not name the agency itself).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ssl
import time
from collections.abc import Collection
from dataclasses import dataclass, field

from aiohttp import web
from cryptography import x509

from gateway.errors import GatewayError, Unauthenticated
from gateway.trust.pki import organ_id_of
from gateway.trust.store import TrustStore

CACHE_SECONDS = 60.0
CACHE_MAX = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Caller:
    """The authenticated client of one request."""

    fingerprint: str
    """SHA-256 of the certificate's DER, lower-case hex: what pins and node identities are made of."""
    subject: str
    organ_id: str | None
    """The agency the certificate names (subject UID), if any."""
    is_admin: bool = False
    """The hub operator: the hub's own certificate or a configured admin fingerprint."""
    node_for: frozenset[str] = field(default_factory=frozenset)
    """Agencies this certificate is registered to act for as a node identity."""

    def agencies(self) -> frozenset[str]:
        """Every agency this caller may act for."""
        own = {self.organ_id} if self.organ_id else set()
        return frozenset(own) | self.node_for


def may_act_for(caller: Caller, organ_id: str) -> bool:
    return organ_id.upper() in caller.agencies()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Cached:
    at: float
    generation: int
    caller: Caller | None
    error: GatewayError | None


class IdentityCache:
    """Validated callers by certificate DER; a trust-store swap (new ``generation``) invalidates entries."""

    def __init__(self) -> None:
        self._entries: dict[bytes, _Cached] = {}

    def lookup(
        self,
        der: bytes,
        *,
        store: TrustStore,
        generation: int,
        now: dt.datetime,
        admin_fingerprints: Collection[str],
    ) -> Caller:
        entry = self._entries.get(der)
        mono = time.monotonic()
        if entry is None or entry.generation != generation or mono - entry.at > CACHE_SECONDS:
            entry = self._validate(
                der, store=store, generation=generation, now=now, admins=admin_fingerprints
            )
            if len(self._entries) >= CACHE_MAX:
                self._entries.clear()
            self._entries[der] = entry
        if entry.error is not None:
            raise entry.error
        assert entry.caller is not None
        return entry.caller

    @staticmethod
    def _validate(
        der: bytes, *, store: TrustStore, generation: int, now: dt.datetime, admins: Collection[str]
    ) -> _Cached:
        mono = time.monotonic()
        try:
            cert = x509.load_der_x509_certificate(der)
            store.validate(cert, at=now)
        except GatewayError as exc:
            return _Cached(at=mono, generation=generation, caller=None, error=exc)
        except ValueError:
            err = Unauthenticated("auth.unauthenticated", "the client certificate cannot be read")
            return _Cached(at=mono, generation=generation, caller=None, error=err)
        fp = hashlib.sha256(der).hexdigest()
        caller = Caller(
            fingerprint=fp,
            subject=cert.subject.rfc4514_string(),
            organ_id=organ_id_of(cert),
            is_admin=fp in admins,
        )
        return _Cached(at=mono, generation=generation, caller=caller, error=None)


def peer_certificate(request: web.Request) -> bytes:
    """The DER of the client's certificate; ``auth.unauthenticated`` without TLS or certificate."""
    transport = request.transport
    sslobj: ssl.SSLObject | None = transport.get_extra_info("ssl_object") if transport else None
    der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
    if not der:
        raise Unauthenticated("auth.unauthenticated", "a TLS client certificate is required")
    return der
