"""The hub's signing identity: its certificate chain and key, loaded once.

Receipts and status notices are signed with :class:`gateway.signature.enveloped.EnvelopedSigner` (the
project's profile, whole document, signature last child of the root); this module only loads the hub's
side (and refuses a key that does not match). Whoever checks a hub-signed document (nodes, tests) uses
:func:`gateway.signature.enveloped.verify_enveloped` and validates the signer with its own trust store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from gateway.errors import ConfigError
from gateway.signature import enveloped


@dataclass(frozen=True, slots=True, kw_only=True)
class HubSigner:
    """The hub certificate chain and key; ``sign`` returns signed bytes."""

    name: str
    chain: tuple[x509.Certificate, ...]
    key: Any
    signer: enveloped.EnvelopedSigner

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
        signer = enveloped.EnvelopedSigner(key=key, cert=chain[0], chain=chain[1:])
        return cls(name=name, chain=chain, key=key, signer=signer)

    def sign(self, root: etree._Element) -> bytes:
        return self.signer.sign(root)
