"""The hub's signing identity, and the check of a hub-signed document against a trust store.

Receipts and status notices are signed with :func:`gateway.signature.enveloped.sign_enveloped` (the
project's profile, whole document, signature last child of the root). What this module adds is the hub's
side: loading its certificate chain and key once (and refusing a key that does not match), and, for
nodes and tests, :func:`verify_enveloped`, which is the core's verification plus the signer's chain
checked against the hub's CA at a given time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from gateway.errors import ConfigError
from gateway.signature import enveloped
from gateway.trust.store import TrustStore, ValidatedChain


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedDocument:
    signed_root: etree._Element
    chain: ValidatedChain


def verify_enveloped(data: bytes, *, trust: TrustStore, at: dt.datetime) -> VerifiedDocument:
    """Verify a hub-signed document and its signer's chain at ``at``; return the *signed* root."""
    verified = enveloped.verify_enveloped(data)
    chain = trust.validate(verified.signer, at=at, extra_intermediates=list(verified.extra_certs))
    return VerifiedDocument(signed_root=verified.signed_root, chain=chain)


@dataclass(frozen=True, slots=True, kw_only=True)
class HubSigner:
    """The hub certificate chain and key; ``sign`` returns signed bytes."""

    name: str
    chain: tuple[x509.Certificate, ...]
    key: Any

    @classmethod
    def load(cls, cert_file: Path, key_file: Path) -> HubSigner:
        try:
            chain = tuple(x509.load_pem_x509_certificates(cert_file.read_bytes()))
            key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise ConfigError("config.invalid", f"cannot load the hub signing identity: {exc}") from exc
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        der = serialization.Encoding.DER
        if chain[0].public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki):
            raise ConfigError("config.invalid", "the hub key does not match the hub certificate")
        cns = chain[0].subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        name = str(cns[0].value) if cns else chain[0].subject.rfc4514_string()
        return cls(name=name, chain=chain, key=key)

    def sign(self, root: etree._Element) -> bytes:
        return enveloped.sign_enveloped(root, key=self.key, cert=self.chain[0], chain=self.chain[1:])
