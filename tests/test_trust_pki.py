"""The in-memory PKI makes certificates that carry what the profile needs."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pki_fixtures import SIGNING_TIME

from gateway.trust.pki import (
    DOCUMENT_SIGNING,
    generate_key,
    issue_agency_cert,
    make_crl,
    make_intermediate_ca,
    make_root_ca,
    organ_id_of,
)

pytest_plugins = ["pki_fixtures"]


def _with_uid(*values: str) -> x509.Certificate:
    key = generate_key("ec-p256")
    attrs = [x509.NameAttribute(NameOID.USER_ID, v) for v in values]
    name = x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(SIGNING_TIME)
        .not_valid_after(SIGNING_TIME + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


@pytest.mark.parametrize(
    ("uids", "expected"),
    [
        (("000.00.00.H53",), "000.00.00.H53"),
        (("MDDT:000.00.02.H53",), "000.00.02.H53"),
        (("mddt: 000.21.31.h53 ",), "000.21.31.H53"),
        (("000.00.00.G12", "MDDT:000.00.00.G12"), "000.00.00.G12"),
        ((), None),
        (("nguyen.van.a",), None),
        (("000.00.00.H53", "000.00.02.H53"), None),
    ],
)
def test_organ_id_of_reads_uid_with_or_without_prefix(uids, expected):
    assert organ_id_of(_with_uid(*uids)) == expected


def test_agency_certificate_profile(pki):
    cert = pki.province_rsa.cert
    assert organ_id_of(cert) == "000.00.00.H53"
    assert cert.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "VN"
    common_name = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert common_name == "Ủy ban nhân dân tỉnh Tây Ninh"
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert usage.value.content_commitment
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    assert DOCUMENT_SIGNING in eku
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = pki.intermediate.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert pki.province_rsa.chain == (pki.intermediate.cert, pki.root.cert)
    assert pki.province_rsa.full_chain[0] is cert


def test_key_types(pki):
    assert isinstance(pki.province_rsa.key, rsa.RSAPrivateKey)
    assert pki.province_rsa.key.key_size == 2048
    assert pki.department_rsa3072.key.key_size == 3072
    assert isinstance(pki.district_ec.key, ec.EllipticCurvePrivateKey)
    assert isinstance(pki.district_ec.key.curve, ec.SECP256R1)
    assert pki.weak_rsa1024.key.key_size == 1024


def test_hub_certificate_is_tls_server_client_and_signer(pki):
    cert = pki.hub.cert
    assert organ_id_of(cert) is None
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(eku)
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_intermediate_is_a_constrained_ca(pki):
    bc = pki.intermediate.cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical
    assert bc.value.ca
    assert bc.value.path_length == 0
    assert pki.intermediate.cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    pki.intermediate.cert.verify_directly_issued_by(pki.root.cert)


def test_crl_lists_serials_and_is_signed_by_its_ca(pki):
    crl = pki.crl
    assert crl.issuer == pki.intermediate.cert.subject
    assert crl.is_signature_valid(pki.intermediate.cert.public_key())
    entry = crl.get_revoked_certificate_by_serial_number(pki.revoked.cert.serial_number)
    assert entry is not None
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1


def test_crl_carries_reason_and_number():
    root = make_root_ca("R")
    crl = make_crl(
        root,
        [(7, SIGNING_TIME, x509.ReasonFlags.key_compromise), (8, SIGNING_TIME)],
        this_update=SIGNING_TIME,
        next_update=SIGNING_TIME + dt.timedelta(days=7),
        crl_number=5,
    )
    seven = crl.get_revoked_certificate_by_serial_number(7)
    reason = seven.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.key_compromise
    assert crl.get_revoked_certificate_by_serial_number(8) is not None
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 5


def test_explicit_serial_and_times():
    root = make_root_ca("R", key_type="rsa2048")
    inter = make_intermediate_ca(root, "I", path_length=None)
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    end = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    issued = issue_agency_cert(
        inter, organ_id="000.00.04.H53", name="Sở TT&TT", serial=4242, not_before=start, not_after=end
    )
    assert issued.cert.serial_number == 4242
    assert issued.cert.not_valid_before_utc == start
    assert issued.cert.not_valid_after_utc == end
    with pytest.raises(ValueError, match="not_after"):
        issue_agency_cert(inter, organ_id="000.00.04.H53", name="x", not_before=end, not_after=start)
