"""A real in-memory PKI for tests, built once per session: good signers and deliberately bad ones.

Use it from any test module by naming it as a plugin (``tests/`` is on ``sys.path`` under pytest's
default import mode), and import its constants as usual::

    from pki_fixtures import SIGNING_TIME

    pytest_plugins = ["pki_fixtures"]

    def test_something(pki, trust_store):
        signer = pki.agencies["000.00.00.H53"]          # an Issued: .key, .cert, .chain
        trust_store.validate(signer.cert, at=SIGNING_TIME, organ_id="000.00.00.H53")

Outside pytest (benchmarks, scripts) call :func:`build_pki` (cached).

PYTEST_DONT_REWRITE: the module holds no asserts, and test modules import its constants before pytest
loads it as a plugin; this marker keeps pytest from warning that it cannot rewrite it.

Layout (every good certificate is valid from 2020-01-01 to 2039-12-31, so both :data:`SIGNING_TIME` and the
real *now* work; CAs cover 2015-2045):

* ``pki.root`` "Test Root CA" (EC P-256) → ``pki.intermediate`` "Test Issuing CA" (EC P-256, pathLen 0)
* ``pki.agencies``: one good certificate per agency code, all issued by ``pki.intermediate``:

  ================  ===========  ========================================
  organ_id          key          attribute alias
  ================  ===========  ========================================
  000.00.00.H53     rsa2048      ``pki.province_rsa``   (UBND tỉnh Tây Ninh)
  000.00.02.H53     rsa3072      ``pki.department_rsa3072`` (Sở Nội vụ)
  000.00.03.H53     ec-p256      ``pki.other_agency``   (Sở Tài chính)
  000.00.31.H53     ec-p256      ``pki.district_ec``    (UBND huyện Tân Biên)
  000.21.31.H53     ec-p256      ``pki.commune_ec``     (UBND xã … )
  000.00.00.G12     rsa2048      ``pki.ministry_rsa``   (Bộ Nội vụ)
  ================  ===========  ========================================

* ``pki.hub``: the hub's certificate (no agency code; serverAuth + clientAuth + digitalSignature).
* Bad signers, all claiming ``000.00.00.H53`` (:data:`BAD_ORGAN_ID`) unless said otherwise, with the error
  code :meth:`TrustStore.validate` gives at :data:`SIGNING_TIME` (see :data:`EXPECTED_CODES`):

  ``expired`` (2019-2021), ``not_yet_valid`` (from 2035), ``revoked`` (in the intermediate's CRL since
  :data:`REVOKED_AT`), ``no_digital_signature`` (keyEncipherment only), ``foreign`` (issued by a foreign
  root + intermediate), ``self_signed``, ``no_agency`` (no UID), ``weak_rsa1024``, ``weak_ec_p384``,
  ``under_revoked_intermediate`` (its intermediate is revoked in the root's CRL),
  ``under_expired_intermediate`` (its intermediate expired in 2022).

* ``pki.crl`` (intermediate's CRL) and ``pki.root_crl`` (root's CRL); ``pki.store`` / the ``trust_store``
  fixture: root + ``pki.intermediate`` + both CRLs. Bad chains' intermediates are *not* in the store; pass
  ``extra_intermediates=issued.chain`` as a signer's ``X509Data`` would.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from gateway.trust.pki import (
    Issued,
    KeyType,
    generate_key,
    issue_agency_cert,
    issue_hub_cert,
    make_crl,
    make_intermediate_ca,
    make_root_ca,
)
from gateway.trust.store import TrustStore

UTC = dt.UTC
SIGNING_TIME = dt.datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
"""A time at which every good certificate is valid and ``revoked`` is already revoked."""
REVOKED_AT = dt.datetime(2025, 6, 1, tzinfo=UTC)
"""When ``revoked`` and the revoked intermediate were revoked (before :data:`SIGNING_TIME`)."""
BAD_ORGAN_ID = "000.00.00.H53"

GOOD_FROM = dt.datetime(2020, 1, 1, tzinfo=UTC)
GOOD_UNTIL = dt.datetime(2039, 12, 31, tzinfo=UTC)
CA_FROM = dt.datetime(2015, 1, 1, tzinfo=UTC)
CA_UNTIL = dt.datetime(2045, 1, 1, tzinfo=UTC)

AGENCIES: dict[str, tuple[str, KeyType]] = {
    "000.00.00.H53": ("Ủy ban nhân dân tỉnh Tây Ninh", "rsa2048"),
    "000.00.02.H53": ("Sở Nội vụ tỉnh Tây Ninh", "rsa3072"),
    "000.00.03.H53": ("Sở Tài chính tỉnh Tây Ninh", "ec-p256"),
    "000.00.31.H53": ("Ủy ban nhân dân huyện Tân Biên", "ec-p256"),
    "000.21.31.H53": ("Ủy ban nhân dân xã Tân Lập", "ec-p256"),
    "000.00.00.G12": ("Bộ Nội vụ", "rsa2048"),
}

EXPECTED_CODES: dict[str, str] = {
    "expired": "certificate.expired",
    "not_yet_valid": "certificate.not_yet_valid",
    "revoked": "certificate.revoked",
    "no_digital_signature": "certificate.key_usage",
    "foreign": "certificate.untrusted",
    "self_signed": "certificate.untrusted",
    "no_agency": "certificate.no_agency",
    "weak_rsa1024": "signature.weak_key",
    "weak_ec_p384": "signature.weak_key",
    "under_revoked_intermediate": "certificate.revoked",
    "under_expired_intermediate": "certificate.expired",
}
"""Bad signer attribute → the code ``validate(..., organ_id=BAD_ORGAN_ID)`` raises at SIGNING_TIME."""


@dataclass(frozen=True, kw_only=True)
class PkiSet:
    """Everything :func:`build_pki` makes; see the module docstring."""

    root: Issued
    intermediate: Issued
    agencies: Mapping[str, Issued]
    hub: Issued
    crl: x509.CertificateRevocationList
    root_crl: x509.CertificateRevocationList
    store: TrustStore
    foreign_root: Issued
    revoked_intermediate: Issued
    expired_intermediate: Issued
    expired: Issued
    not_yet_valid: Issued
    revoked: Issued
    no_digital_signature: Issued
    foreign: Issued
    self_signed: Issued
    no_agency: Issued
    weak_rsa1024: Issued
    weak_ec_p384: Issued
    under_revoked_intermediate: Issued
    under_expired_intermediate: Issued

    @property
    def province_rsa(self) -> Issued:
        return self.agencies["000.00.00.H53"]

    @property
    def department_rsa3072(self) -> Issued:
        return self.agencies["000.00.02.H53"]

    @property
    def other_agency(self) -> Issued:
        return self.agencies["000.00.03.H53"]

    @property
    def district_ec(self) -> Issued:
        return self.agencies["000.00.31.H53"]

    @property
    def commune_ec(self) -> Issued:
        return self.agencies["000.21.31.H53"]

    @property
    def ministry_rsa(self) -> Issued:
        return self.agencies["000.00.00.G12"]

    def bad(self, name: str) -> Issued:
        """A bad signer by its attribute name (a key of :data:`EXPECTED_CODES`)."""
        return getattr(self, name)


def _self_signed_leaf(organ_id: str, name: str) -> Issued:
    key = generate_key("ec-p256")
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.USER_ID, organ_id),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(GOOD_FROM)
        .not_valid_after(GOOD_UNTIL)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return Issued(key=key, cert=cert, chain=())


def _no_agency_leaf(ca: Issued) -> Issued:
    key = generate_key("ec-p256")
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Nguyễn Văn A")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(GOOD_FROM)
        .not_valid_after(GOOD_UNTIL)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True
        )
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(key=key, cert=cert, chain=ca.full_chain)


@cache
def build_pki() -> PkiSet:
    """Build the session PKI (a second call returns the same object)."""
    ca_times = {"not_before": CA_FROM, "not_after": CA_UNTIL}
    good = {"not_before": GOOD_FROM, "not_after": GOOD_UNTIL}
    root = make_root_ca("Test Root CA", **ca_times)
    inter = make_intermediate_ca(root, "Test Issuing CA", **ca_times)
    agencies = {
        oid: issue_agency_cert(inter, organ_id=oid, name=name, key_type=kt, **good)
        for oid, (name, kt) in AGENCIES.items()
    }
    hub = issue_hub_cert(inter, name="LGSP Tây Ninh", **good)
    name = AGENCIES[BAD_ORGAN_ID][0]

    def agency(ca: Issued = inter, **kw: object) -> Issued:
        args: dict[str, object] = {"organ_id": BAD_ORGAN_ID, "name": name, "key_type": "ec-p256", **good}
        args.update(kw)
        return issue_agency_cert(ca, **args)  # type: ignore[arg-type]

    foreign_root = make_root_ca("Foreign Root CA", **ca_times)
    foreign_inter = make_intermediate_ca(foreign_root, "Test Issuing CA", **ca_times)  # same name as ours
    revoked_inter = make_intermediate_ca(root, "Revoked Issuing CA", **ca_times)
    expired_inter = make_intermediate_ca(
        root,
        "Expired Issuing CA",
        not_before=dt.datetime(2018, 1, 1, tzinfo=UTC),
        not_after=dt.datetime(2022, 1, 1, tzinfo=UTC),
    )
    revoked = agency()
    this_update = dt.datetime.now(UTC) - dt.timedelta(days=1)
    next_update = this_update + dt.timedelta(days=30)
    crl = make_crl(
        inter, [(revoked.cert.serial_number, REVOKED_AT)], this_update=this_update, next_update=next_update
    )
    root_crl = make_crl(
        root,
        [(revoked_inter.cert.serial_number, REVOKED_AT)],
        this_update=this_update,
        next_update=next_update,
    )
    return PkiSet(
        root=root,
        intermediate=inter,
        agencies=agencies,
        hub=hub,
        crl=crl,
        root_crl=root_crl,
        store=TrustStore.from_objects(roots=[root.cert], intermediates=[inter.cert], crls=[crl, root_crl]),
        foreign_root=foreign_root,
        revoked_intermediate=revoked_inter,
        expired_intermediate=expired_inter,
        expired=agency(
            not_before=dt.datetime(2019, 1, 1, tzinfo=UTC), not_after=dt.datetime(2021, 1, 1, tzinfo=UTC)
        ),
        not_yet_valid=agency(
            not_before=dt.datetime(2035, 1, 1, tzinfo=UTC), not_after=dt.datetime(2037, 1, 1, tzinfo=UTC)
        ),
        revoked=revoked,
        no_digital_signature=agency(digital_signature=False),
        foreign=agency(foreign_inter),
        self_signed=_self_signed_leaf(BAD_ORGAN_ID, name),
        no_agency=_no_agency_leaf(inter),
        weak_rsa1024=agency(key_type="rsa1024"),
        weak_ec_p384=agency(key_type="ec-p384"),
        under_revoked_intermediate=agency(revoked_inter),
        under_expired_intermediate=agency(
            expired_inter,
            not_before=dt.datetime(2020, 1, 1, tzinfo=UTC),
            not_after=dt.datetime(2030, 1, 1, tzinfo=UTC),
        ),
    )


@pytest.fixture(scope="session")
def pki() -> PkiSet:
    """The session PKI (see the module docstring)."""
    return build_pki()


@pytest.fixture(scope="session")
def trust_store(pki: PkiSet) -> TrustStore:
    """Root + issuing CA + CRLs: what a hub configured for the test PKI trusts."""
    return pki.store


@pytest.fixture(scope="session")
def signing_time() -> dt.datetime:
    """:data:`SIGNING_TIME` as a fixture."""
    return SIGNING_TIME
