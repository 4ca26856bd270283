"""Crashes found by the fuzzer (``fuzz/fuzz_package.py``), each kept as a test once fixed.

A crash is any exception other than :class:`GatewayError` escaping the pure core for bad input: at the hub
it becomes a bare 500 instead of the problem that names what is wrong.
"""

from __future__ import annotations

import base64

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from signature_helpers import dump, package, set_certificates, tree

from gateway.errors import GatewayError
from gateway.signature.sign import sign_message
from gateway.signature.verify import verify_signature
from gateway.verification import inspect_package

pytest_plugins = ["pki_fixtures"]

RSA_ENCRYPTION = bytes.fromhex("06092a864886f70d010101")
"""The DER of the rsaEncryption OID in a SubjectPublicKeyInfo."""


def _unknown_key_algorithm(cert: x509.Certificate) -> str:
    """The certificate with its key algorithm OID changed to an unknown one (1.2.840.113549.1.1.127)."""
    der = cert.public_bytes(Encoding.DER)
    assert der.count(RSA_ENCRYPTION) == 1
    return base64.b64encode(der.replace(RSA_ENCRYPTION, RSA_ENCRYPTION[:-1] + b"\x7f")).decode()


@pytest.mark.parametrize("engine", ["c14n", "signxml"])
def test_a_certificate_with_an_unknown_key_algorithm_is_unreadable_not_a_crash(pki, engine) -> None:
    """Found by the fuzzer (one bit flipped in the key's OID): cryptography raised UnsupportedAlgorithm."""
    s = pki.province_rsa
    signed = sign_message(package(), key=s.key, cert=s.cert, chain=s.chain)
    root = set_certificates(tree(signed), [_unknown_key_algorithm(s.cert), *s.chain])
    with pytest.raises(GatewayError) as info:
        verify_signature(dump(root), engine=engine)
    assert info.value.code == "signature.bad_certificate"
    inspection = inspect_package(dump(root), trust=pki.store)
    assert inspection.code == "signature.bad_certificate"


def test_the_trust_store_refuses_such_a_certificate_with_a_code(pki) -> None:
    cert = x509.load_der_x509_certificate(base64.b64decode(_unknown_key_algorithm(pki.province_rsa.cert)))
    with pytest.raises(GatewayError) as info:
        pki.store.validate(cert, at=pki.province_rsa.cert.not_valid_before_utc)
    assert info.value.code == "signature.bad_certificate"
