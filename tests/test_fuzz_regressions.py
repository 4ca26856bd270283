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


BASIC_CONSTRAINTS = bytes.fromhex("0603551d130101ff04023000")
"""basicConstraints, critical, value ``SEQUENCE {}`` (cA false): the extension as pki.py writes it."""


def _malformed_extension(cert: x509.Certificate) -> str:
    """The certificate with the basicConstraints value's SEQUENCE tag turned into an application tag.

    The certificate still loads (cryptography parses extension values lazily); reading its extensions
    fails. Neither the package signature (KeyInfo is outside SignedInfo) nor anything before the trust
    store looks at extensions, so such a certificate reaches ``TrustStore.validate``.
    """
    der = cert.public_bytes(Encoding.DER)
    assert der.count(BASIC_CONSTRAINTS) == 1
    broken = BASIC_CONSTRAINTS[:-2] + b"\x70\x00"
    return base64.b64encode(der.replace(BASIC_CONSTRAINTS, broken)).decode()


@pytest.mark.parametrize("engine", ["c14n", "signxml"])
def test_a_certificate_with_a_malformed_extension_is_unreadable_not_a_crash(pki, engine) -> None:
    """Found by the fuzzer (one bit flipped in an extension): cryptography raised ValueError from
    ``cert.extensions`` inside the trust store's path building."""
    s = pki.province_rsa
    signed = sign_message(package(), key=s.key, cert=s.cert, chain=s.chain)
    data = dump(set_certificates(tree(signed), [_malformed_extension(s.cert), *s.chain]))
    with pytest.raises(GatewayError) as info:
        verify_signature(data, engine=engine)
    assert info.value.code == "signature.bad_certificate"
    assert inspect_package(data, trust=pki.store).code == "signature.bad_certificate"


def test_the_trust_store_refuses_a_certificate_with_a_malformed_extension(pki) -> None:
    cert = x509.load_der_x509_certificate(base64.b64decode(_malformed_extension(pki.province_rsa.cert)))
    with pytest.raises(GatewayError) as info:
        pki.store.validate(cert, at=pki.province_rsa.cert.not_valid_before_utc, organ_id="000.00.00.H53")
    assert info.value.code == "signature.bad_certificate"
    intermediate = x509.load_der_x509_certificate(
        base64.b64decode(_malformed_extension_ca(pki.intermediate.cert))
    )
    with pytest.raises(GatewayError) as info:
        pki.store.validate(
            pki.province_rsa.cert,
            at=pki.province_rsa.cert.not_valid_before_utc,
            extra_intermediates=[intermediate],
        )
    assert info.value.code == "signature.bad_certificate"


def _malformed_extension_ca(cert: x509.Certificate) -> str:
    """A CA certificate whose basicConstraints value cannot be parsed."""
    der = cert.public_bytes(Encoding.DER)
    at = der.index(bytes.fromhex("0603551d130101ff04"))
    value = at + len(bytes.fromhex("0603551d130101ff04")) + 1  # past the OCTET STRING length
    assert der[value] == 0x30
    return base64.b64encode(der[:value] + b"\x70" + der[value + 1 :]).decode()


def _duplicate_extension(cert: x509.Certificate) -> str:
    """The authorityKeyIdentifier's OID turned into subjectKeyIdentifier's: two SKI extensions."""
    der = cert.public_bytes(Encoding.DER)
    aki, ski = bytes.fromhex("0603551d23"), bytes.fromhex("0603551d0e")
    assert der.count(aki) == 1
    return base64.b64encode(der.replace(aki, ski)).decode()


def _unknown_version(cert: x509.Certificate) -> str:
    """The TBSCertificate version v3 (2) changed to 5, which X.509 does not define."""
    der = cert.public_bytes(Encoding.DER)
    v3 = bytes.fromhex("a003020102")
    assert der.count(v3) == 1
    return base64.b64encode(der.replace(v3, bytes.fromhex("a003020105"))).decode()


@pytest.mark.parametrize("engine", ["c14n", "signxml"])
@pytest.mark.parametrize("damage", [_duplicate_extension, _unknown_version], ids=["duplicate-ext", "version"])
def test_certificates_cryptography_refuses_with_its_own_exceptions_are_unreadable(
    pki, engine, damage
) -> None:
    """Found by the fuzzer: ``DuplicateExtension`` (and, by reading the library, ``InvalidVersion``) are
    not ValueErrors, so they escaped the profile's ``except ValueError``."""
    s = pki.province_rsa
    signed = sign_message(package(), key=s.key, cert=s.cert, chain=s.chain)
    data = dump(set_certificates(tree(signed), [damage(s.cert), *s.chain]))
    with pytest.raises(GatewayError) as info:
        verify_signature(data, engine=engine)
    assert info.value.code == "signature.bad_certificate"
    assert inspect_package(data, trust=pki.store).code == "signature.bad_certificate"


def test_the_trust_store_refuses_a_certificate_with_a_duplicate_extension(pki) -> None:
    cert = x509.load_der_x509_certificate(base64.b64decode(_duplicate_extension(pki.province_rsa.cert)))
    with pytest.raises(GatewayError) as info:
        pki.store.validate(cert, at=pki.province_rsa.cert.not_valid_before_utc)
    assert info.value.code == "signature.bad_certificate"
