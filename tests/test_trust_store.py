"""The trust store accepts the agencies' real signers and refuses each bad one with its own code."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pki_fixtures import BAD_ORGAN_ID, EXPECTED_CODES, REVOKED_AT, SIGNING_TIME

from gateway.errors import ConfigError, GatewayError, SignatureError, TrustError
from gateway.trust.pki import issue_agency_cert, make_crl, make_intermediate_ca, make_root_ca
from gateway.trust.store import TrustStore, format_fingerprint, parse_fingerprint

pytest_plugins = ["pki_fixtures"]

UTC = dt.UTC


def _code(call) -> str:
    with pytest.raises(GatewayError) as info:
        call()
    return info.value.code


# --- the happy path -------------------------------------------------------------------------------------


@pytest.mark.parametrize("organ_id", ["000.00.00.H53", "000.00.02.H53", "000.00.31.H53", "000.00.00.G12"])
def test_good_signer_validates_with_its_chain(pki, trust_store, organ_id):
    signer = pki.agencies[organ_id]
    result = trust_store.validate(signer.cert, at=SIGNING_TIME, organ_id=organ_id)
    assert result.organ_id == organ_id
    assert result.chain == (signer.cert, pki.intermediate.cert, pki.root.cert)
    assert result.leaf is signer.cert
    assert result.fingerprint == hashlib.sha256(signer.cert.public_bytes(Encoding.DER)).digest()


def test_rsa_and_ecdsa_signers_both_validate(pki, trust_store):
    rsa_result = trust_store.validate(pki.province_rsa.cert, at=SIGNING_TIME, organ_id="000.00.00.H53")
    ec_result = trust_store.validate(pki.commune_ec.cert, at=SIGNING_TIME, organ_id="000.21.31.H53")
    assert rsa_result.organ_id == "000.00.00.H53"
    assert ec_result.organ_id == "000.21.31.H53"


def test_without_organ_id_the_binding_is_skipped(pki, trust_store):
    assert trust_store.validate(pki.hub.cert, at=SIGNING_TIME).organ_id is None
    assert trust_store.validate(pki.district_ec.cert, at=SIGNING_TIME).organ_id == "000.00.31.H53"


def test_intermediate_sent_by_the_signer_completes_the_chain(pki):
    roots_only = TrustStore.from_objects(roots=[pki.root.cert])
    signer = pki.province_rsa
    assert _code(lambda: roots_only.validate(signer.cert, at=SIGNING_TIME)) == "certificate.untrusted"
    result = roots_only.validate(signer.cert, at=SIGNING_TIME, extra_intermediates=signer.chain)
    assert result.chain[-1] == pki.root.cert


def test_organ_id_comparison_ignores_case_and_spaces(pki, trust_store):
    result = trust_store.validate(pki.commune_ec.cert, at=SIGNING_TIME, organ_id=" 000.21.31.h53")
    assert result.organ_id == "000.21.31.H53"


def test_real_now_is_within_the_fixture_validity(pki, trust_store):
    trust_store.validate(pki.province_rsa.cert, at=dt.datetime.now(UTC), organ_id="000.00.00.H53")


# --- every rejection, with its code -------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED_CODES))
def test_bad_signers_are_refused_with_their_code(pki, trust_store, name):
    bad = pki.bad(name)
    with pytest.raises(GatewayError) as info:
        trust_store.validate(bad.cert, at=SIGNING_TIME, organ_id=BAD_ORGAN_ID, extra_intermediates=bad.chain)
    assert info.value.code == EXPECTED_CODES[name]
    expected_class = SignatureError if EXPECTED_CODES[name].startswith("signature.") else TrustError
    assert isinstance(info.value, expected_class)
    assert info.value.status == 422


def test_other_agency_certificate_is_a_mismatch(pki, trust_store):
    with pytest.raises(TrustError) as info:
        trust_store.validate(pki.other_agency.cert, at=SIGNING_TIME, organ_id="000.00.00.H53")
    assert info.value.code == "certificate.agency_mismatch"
    assert info.value.extra["certificate_organ_id"] == "000.00.03.H53"


def test_foreign_ca_is_untrusted_even_with_its_root_sent_along(pki, trust_store):
    chain = (*pki.foreign.chain, pki.foreign_root.cert)
    code = _code(lambda: trust_store.validate(pki.foreign.cert, at=SIGNING_TIME, extra_intermediates=chain))
    assert code == "certificate.untrusted"


def test_ca_certificate_cannot_sign(pki, trust_store):
    assert _code(lambda: trust_store.validate(pki.root.cert, at=SIGNING_TIME)) == "certificate.untrusted"
    assert (
        _code(lambda: trust_store.validate(pki.intermediate.cert, at=SIGNING_TIME)) == "certificate.untrusted"
    )


def test_empty_store_trusts_nothing(pki):
    store = TrustStore.from_objects(roots=[])
    assert _code(lambda: store.validate(pki.province_rsa.cert, at=SIGNING_TIME)) == "certificate.untrusted"


def test_validity_bounds_are_checked_at_the_given_time(pki, trust_store):
    cert = pki.expired.cert  # valid 2019-01-01 .. 2021-01-01
    inside = dt.datetime(2020, 6, 1, tzinfo=UTC)
    assert trust_store.validate(cert, at=inside, organ_id=BAD_ORGAN_ID).organ_id == BAD_ORGAN_ID
    assert trust_store.validate(cert, at=cert.not_valid_after_utc).organ_id == BAD_ORGAN_ID
    after = cert.not_valid_after_utc + dt.timedelta(seconds=1)
    assert _code(lambda: trust_store.validate(cert, at=after)) == "certificate.expired"
    before = dt.datetime(2018, 12, 31, tzinfo=UTC)
    assert _code(lambda: trust_store.validate(cert, at=before)) == "certificate.not_yet_valid"


def test_ca_on_the_chain_expired(pki, trust_store):
    leaf = pki.under_expired_intermediate  # its CA: 2018-01-01 .. 2022-01-01; the leaf: 2020 .. 2030
    inside = dt.datetime(2021, 1, 1, tzinfo=UTC)
    trust_store.validate(leaf.cert, at=inside, extra_intermediates=leaf.chain)
    late = dt.datetime(2023, 1, 1, tzinfo=UTC)
    code = _code(lambda: trust_store.validate(leaf.cert, at=late, extra_intermediates=leaf.chain))
    assert code == "certificate.expired"


def test_ca_on_the_chain_not_yet_valid(pki, trust_store):
    future_ca = make_intermediate_ca(
        pki.root,
        "Future Issuing CA",
        not_before=dt.datetime(2030, 1, 1, tzinfo=UTC),
        not_after=dt.datetime(2040, 1, 1, tzinfo=UTC),
    )
    leaf = issue_agency_cert(
        future_ca,
        organ_id="000.00.04.H53",
        name="Sở Thông tin và Truyền thông",
        not_before=dt.datetime(2020, 1, 1, tzinfo=UTC),
        not_after=dt.datetime(2039, 1, 1, tzinfo=UTC),
    )
    code = _code(lambda: trust_store.validate(leaf.cert, at=SIGNING_TIME, extra_intermediates=leaf.chain))
    assert code == "certificate.not_yet_valid"


def test_missing_key_usage_is_refused(pki, trust_store):
    from cryptography.hazmat.primitives import hashes

    key = pki.district_ec.key
    cert = (
        x509.CertificateBuilder()
        .subject_name(pki.district_ec.cert.subject)
        .issuer_name(pki.intermediate.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(SIGNING_TIME - dt.timedelta(days=1))
        .not_valid_after(SIGNING_TIME + dt.timedelta(days=1))
        .sign(pki.intermediate.key, hashes.SHA256())
    )
    assert _code(lambda: trust_store.validate(cert, at=SIGNING_TIME)) == "certificate.key_usage"


def test_naive_time_is_a_programming_error(pki, trust_store):
    with pytest.raises(ValueError, match="timezone-aware"):
        trust_store.validate(pki.province_rsa.cert, at=SIGNING_TIME.replace(tzinfo=None))


def test_time_in_another_zone_is_the_same_instant(pki, trust_store):
    vietnam = dt.timezone(dt.timedelta(hours=7))
    cert = pki.expired.cert
    edge = cert.not_valid_after_utc.astimezone(vietnam)
    trust_store.validate(cert, at=edge)
    assert (
        _code(lambda: trust_store.validate(cert, at=edge + dt.timedelta(seconds=1))) == "certificate.expired"
    )


# --- revocation -------------------------------------------------------------------------------------


def test_signature_made_before_revocation_still_validates(pki, trust_store):
    before = REVOKED_AT - dt.timedelta(days=1)
    assert trust_store.validate(pki.revoked.cert, at=before).organ_id == BAD_ORGAN_ID
    assert _code(lambda: trust_store.validate(pki.revoked.cert, at=REVOKED_AT)) == "certificate.revoked"


def test_revoked_error_names_serial_and_date(pki, trust_store):
    with pytest.raises(TrustError) as info:
        trust_store.validate(pki.revoked.cert, at=SIGNING_TIME)
    assert info.value.extra["serial"] == f"{pki.revoked.cert.serial_number:x}"
    assert info.value.extra["revoked_at"] == REVOKED_AT.isoformat()


def test_with_crl_revokes_at_runtime_and_leaves_the_old_store_alone(pki, trust_store):
    signer = pki.district_ec
    crl = make_crl(
        pki.intermediate,
        [(pki.revoked.cert.serial_number, REVOKED_AT), (signer.cert.serial_number, SIGNING_TIME)],
        this_update=SIGNING_TIME,
        next_update=SIGNING_TIME + dt.timedelta(days=7),
        crl_number=2,
    )
    newer = trust_store.with_crl(crl)
    assert _code(lambda: newer.validate(signer.cert, at=SIGNING_TIME)) == "certificate.revoked"
    assert trust_store.validate(signer.cert, at=SIGNING_TIME).organ_id == "000.00.31.H53"
    assert len(newer.crls) == len(trust_store.crls)  # replaced, not added


def test_older_crl_does_not_replace_a_newer_one(pki, trust_store):
    empty_old = make_crl(
        pki.intermediate,
        [],
        this_update=REVOKED_AT,
        next_update=REVOKED_AT + dt.timedelta(days=1),
        crl_number=0,
    )
    store = trust_store.with_crl(empty_old)
    assert _code(lambda: store.validate(pki.revoked.cert, at=SIGNING_TIME)) == "certificate.revoked"


def test_crl_not_signed_by_a_store_ca_is_refused(pki, trust_store):
    impostor = make_intermediate_ca(make_root_ca("Test Root CA"), "Test Issuing CA")  # same names, other keys
    forged = make_crl(
        impostor,
        [(pki.province_rsa.cert.serial_number, REVOKED_AT)],
        this_update=SIGNING_TIME,
        next_update=SIGNING_TIME + dt.timedelta(days=7),
        crl_number=99,
    )
    with pytest.raises(ConfigError) as info:
        trust_store.with_crl(forged)
    assert info.value.code == "config.invalid"


def test_stale_crls(pki, trust_store):
    now = dt.datetime.now(UTC)
    assert trust_store.stale_crls(now) == []
    later = now + dt.timedelta(days=31)
    stale = trust_store.stale_crls(later)
    assert {info.issuer for info in stale} == {
        pki.intermediate.cert.subject.rfc4514_string(),
        pki.root.cert.subject.rfc4514_string(),
    }
    assert all(info.crl_number == 1 for info in stale)
    # A stale CRL still revokes.
    assert _code(lambda: trust_store.validate(pki.revoked.cert, at=later)) == "certificate.revoked"


# --- pinning --------------------------------------------------------------------------------------------


def test_pinned_certificate_passes_and_others_do_not(pki, trust_store):
    signer = pki.province_rsa
    pin = hashlib.sha256(signer.cert.public_bytes(Encoding.DER)).digest()
    assert trust_store.validate(signer.cert, at=SIGNING_TIME, organ_id="000.00.00.H53", pinned={pin})
    other_pin = hashlib.sha256(pki.district_ec.cert.public_bytes(Encoding.DER)).digest()
    with pytest.raises(TrustError) as info:
        trust_store.validate(signer.cert, at=SIGNING_TIME, organ_id="000.00.00.H53", pinned={other_pin})
    assert info.value.code == "certificate.not_pinned"


def test_pins_as_hex_text_and_empty_pins(pki, trust_store):
    signer = pki.province_rsa
    digest = hashlib.sha256(signer.cert.public_bytes(Encoding.DER)).digest()
    text = format_fingerprint(digest)
    assert parse_fingerprint(text) == digest
    assert parse_fingerprint("sha256:" + digest.hex()) == digest
    trust_store.validate(signer.cert, at=SIGNING_TIME, pinned=[text])
    trust_store.validate(signer.cert, at=SIGNING_TIME, pinned=())
    with pytest.raises(ConfigError):
        parse_fingerprint("abcd")


def test_pinning_does_not_bypass_the_chain(pki, trust_store):
    foreign = pki.foreign
    pin = hashlib.sha256(foreign.cert.public_bytes(Encoding.DER)).digest()
    code = _code(lambda: trust_store.validate(foreign.cert, at=SIGNING_TIME, pinned={pin}))
    assert code == "certificate.untrusted"


# --- loading and reloading ------------------------------------------------------------------------------


def _write_trust_folder(folder, pki, *, crl_der: bool) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "root.pem").write_bytes(pki.root.cert.public_bytes(Encoding.PEM))
    (folder / "intermediate.cer").write_bytes(pki.intermediate.cert.public_bytes(Encoding.DER))
    (folder / "intermediate.crl").write_bytes(pki.crl.public_bytes(Encoding.DER if crl_der else Encoding.PEM))
    (folder / "root.crl").write_bytes(pki.root_crl.public_bytes(Encoding.PEM))
    (folder / "README.txt").write_text("ignored")


@pytest.mark.parametrize("crl_der", [True, False])
def test_load_folder_with_pem_and_der(tmp_path, pki, crl_der):
    _write_trust_folder(tmp_path / "trust", pki, crl_der=crl_der)
    store = TrustStore.load(tmp_path / "trust")
    assert store.roots == (pki.root.cert,)
    assert store.intermediates == (pki.intermediate.cert,)
    assert store.source == tmp_path / "trust"
    store.validate(pki.province_rsa.cert, at=SIGNING_TIME, organ_id="000.00.00.H53")
    assert _code(lambda: store.validate(pki.revoked.cert, at=SIGNING_TIME)) == "certificate.revoked"


def test_reload_picks_up_a_new_crl(tmp_path, pki):
    folder = tmp_path / "trust"
    _write_trust_folder(folder, pki, crl_der=False)
    store = TrustStore.load(folder)
    signer = pki.ministry_rsa
    store.validate(signer.cert, at=SIGNING_TIME)
    crl = make_crl(
        pki.intermediate,
        [(signer.cert.serial_number, REVOKED_AT)],
        this_update=SIGNING_TIME,
        next_update=SIGNING_TIME + dt.timedelta(days=7),
        crl_number=3,
    )
    (folder / "intermediate.crl").write_bytes(crl.public_bytes(Encoding.PEM))
    reloaded = store.reload()
    assert reloaded is not store
    assert _code(lambda: reloaded.validate(signer.cert, at=SIGNING_TIME)) == "certificate.revoked"
    store.validate(signer.cert, at=SIGNING_TIME)  # the old instance is unchanged


def test_bundle_file_holds_both_cas(tmp_path, pki):
    folder = tmp_path / "trust"
    folder.mkdir()
    bundle = pki.intermediate.cert.public_bytes(Encoding.PEM) + pki.root.cert.public_bytes(Encoding.PEM)
    (folder / "ca-bundle.crt").write_bytes(bundle)
    store = TrustStore.load(folder)
    assert store.roots == (pki.root.cert,)
    assert store.intermediates == (pki.intermediate.cert,)


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        ({}, "no root"),
        ({"root.pem": b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"}, "cannot read"),
        ({"broken.crl": b"\x30\x03\x02\x01\x00"}, "cannot read a CRL"),
    ],
)
def test_bad_trust_folder_is_a_config_error(tmp_path, files, fragment):
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(ConfigError) as info:
        TrustStore.load(tmp_path)
    assert info.value.code == "config.invalid"
    assert fragment in info.value.detail


def test_missing_folder_and_leaf_in_trust_folder(tmp_path, pki):
    with pytest.raises(ConfigError):
        TrustStore.load(tmp_path / "absent")
    (tmp_path / "root.pem").write_bytes(pki.root.cert.public_bytes(Encoding.PEM))
    (tmp_path / "agency.pem").write_bytes(pki.province_rsa.cert.public_bytes(Encoding.PEM))
    with pytest.raises(ConfigError, match="not a CA"):
        TrustStore.load(tmp_path)


def test_store_is_reloadable_only_from_a_folder(trust_store):
    with pytest.raises(ConfigError):
        trust_store.reload()


def test_pathlen_zero_intermediate_cannot_issue_a_sub_ca(pki):
    sub = make_intermediate_ca(pki.intermediate, "Sub CA")
    leaf = issue_agency_cert(sub, organ_id="000.00.05.H53", name="Sở Giáo dục và Đào tạo")
    store = TrustStore.from_objects(roots=[pki.root.cert], intermediates=[pki.intermediate.cert])
    code = _code(lambda: store.validate(leaf.cert, at=dt.datetime.now(UTC), extra_intermediates=leaf.chain))
    assert code == "certificate.untrusted"


def test_unknown_critical_extension_is_refused(pki, trust_store):
    from cryptography.hazmat.primitives import hashes

    key = pki.district_ec.key
    cert = (
        x509.CertificateBuilder()
        .subject_name(pki.district_ec.cert.subject)
        .issuer_name(pki.intermediate.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(SIGNING_TIME - dt.timedelta(days=1))
        .not_valid_after(SIGNING_TIME + dt.timedelta(days=1))
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"), True
        )
        .sign(pki.intermediate.key, hashes.SHA256())
    )
    assert _code(lambda: trust_store.validate(cert, at=SIGNING_TIME)) == "certificate.untrusted"


# --- the path cache: a path is built once per store, every time-dependent check runs on every call ------


def _fresh_store(pki) -> TrustStore:
    return TrustStore.from_objects(
        roots=[pki.root.cert], intermediates=[pki.intermediate.cert], crls=[pki.crl]
    )


def test_cached_path_is_still_judged_at_each_time(pki):
    store = _fresh_store(pki)
    leaf = pki.under_expired_intermediate  # its CA: 2018-01-01 .. 2022-01-01; the leaf: 2020 .. 2030
    inside = dt.datetime(2021, 1, 1, tzinfo=UTC)
    first = store.validate(leaf.cert, at=inside, extra_intermediates=leaf.chain)
    late = dt.datetime(2023, 1, 1, tzinfo=UTC)
    assert _code(lambda: store.validate(leaf.cert, at=late, extra_intermediates=leaf.chain)) == (
        "certificate.expired"
    )
    early = dt.datetime(2019, 6, 1, tzinfo=UTC)  # the CA is valid, the leaf not yet
    assert _code(lambda: store.validate(leaf.cert, at=early, extra_intermediates=leaf.chain)) == (
        "certificate.not_yet_valid"
    )
    assert store.validate(leaf.cert, at=inside, extra_intermediates=leaf.chain).chain == first.chain


def test_cached_path_still_checks_revocation_dates_and_leaf_expiry(pki):
    store = _fresh_store(pki)
    before = REVOKED_AT - dt.timedelta(days=1)
    assert store.validate(pki.revoked.cert, at=before).organ_id == BAD_ORGAN_ID
    assert _code(lambda: store.validate(pki.revoked.cert, at=REVOKED_AT)) == "certificate.revoked"
    assert store.validate(pki.revoked.cert, at=before).organ_id == BAD_ORGAN_ID
    cert = pki.expired.cert
    store.validate(cert, at=dt.datetime(2020, 6, 1, tzinfo=UTC))
    after = cert.not_valid_after_utc + dt.timedelta(seconds=1)
    assert _code(lambda: store.validate(cert, at=after)) == "certificate.expired"


def test_cached_path_still_checks_agency_and_pins(pki):
    store = _fresh_store(pki)
    signer = pki.province_rsa
    store.validate(signer.cert, at=SIGNING_TIME, organ_id="000.00.00.H53")
    assert _code(lambda: store.validate(signer.cert, at=SIGNING_TIME, organ_id="000.00.02.H53")) == (
        "certificate.agency_mismatch"
    )
    other_pin = hashlib.sha256(pki.district_ec.cert.public_bytes(Encoding.DER)).digest()
    assert _code(lambda: store.validate(signer.cert, at=SIGNING_TIME, pinned={other_pin})) == (
        "certificate.not_pinned"
    )


def test_revocation_after_reload_with_a_new_crl(tmp_path, pki):
    folder = tmp_path / "trust"
    _write_trust_folder(folder, pki, crl_der=False)
    store = TrustStore.load(folder)
    signer = pki.ministry_rsa
    for _ in range(2):  # the second call is served from the path cache
        store.validate(signer.cert, at=SIGNING_TIME)
    newer = store.with_crl(
        make_crl(
            pki.intermediate,
            [(signer.cert.serial_number, REVOKED_AT)],
            this_update=SIGNING_TIME,
            next_update=SIGNING_TIME + dt.timedelta(days=7),
            crl_number=4,
        )
    )
    assert _code(lambda: newer.validate(signer.cert, at=SIGNING_TIME)) == "certificate.revoked"
    (folder / "intermediate.crl").write_bytes(newer.crls[0].public_bytes(Encoding.PEM))
    assert _code(lambda: store.reload().validate(signer.cert, at=SIGNING_TIME)) == "certificate.revoked"
    store.validate(signer.cert, at=SIGNING_TIME)  # the old instance and its cache are unchanged


def test_cached_path_is_per_set_of_extra_intermediates(pki):
    roots_only = TrustStore.from_objects(roots=[pki.root.cert])
    signer = pki.province_rsa
    result = roots_only.validate(signer.cert, at=SIGNING_TIME, extra_intermediates=signer.chain)
    assert result.chain[-1] == pki.root.cert
    assert _code(lambda: roots_only.validate(signer.cert, at=SIGNING_TIME)) == "certificate.untrusted"
    foreign = (*pki.foreign.chain, pki.foreign_root.cert)
    assert _code(lambda: roots_only.validate(signer.cert, at=SIGNING_TIME, extra_intermediates=foreign)) == (
        "certificate.untrusted"
    )
    assert roots_only.validate(signer.cert, at=SIGNING_TIME, extra_intermediates=signer.chain).chain == (
        result.chain
    )


def test_path_cache_is_bounded(pki, monkeypatch):
    from gateway.trust import store as store_module

    monkeypatch.setattr(store_module, "PATH_CACHE_SIZE", 2)
    store = _fresh_store(pki)
    for organ_id in ["000.00.00.H53", "000.00.02.H53", "000.00.31.H53", "000.00.00.G12"]:
        store.validate(pki.agencies[organ_id].cert, at=SIGNING_TIME, organ_id=organ_id)
    assert len(store._paths) == 2


def test_path_cache_key_compares_certificates_not_their_hash(pki):
    from gateway.trust.store import _PathKey

    signer = pki.province_rsa
    key = _PathKey((signer.cert, *signer.chain))
    reloaded = x509.load_der_x509_certificate(signer.cert.public_bytes(Encoding.DER))
    same = _PathKey((reloaded, *signer.chain))
    assert same == key
    assert hash(same) == hash(key)
    other = _PathKey((pki.ministry_rsa.cert, *signer.chain))
    other.hash = key.hash  # a collision of the cheap hash must not make another signer hit the cache
    assert other != key
    assert {key: "path"}.get(other) is None
    assert _PathKey((signer.cert,)) != key
