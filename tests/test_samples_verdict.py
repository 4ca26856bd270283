"""Every real vendor sample gets its precise verdict; none crashes, none passes silently."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import GatewayError
from gateway.verification import inspect_package, verify_package

pytest_plugins = ["pki_fixtures"]

SAMPLES = Path("/work/shared/interop/edxml-samples")
if not SAMPLES.is_dir():  # the same folder seen from the repository (…/main/../shared)
    SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "interop" / "edxml-samples"

EXPECTED = {
    # RSA-SHA1 with a SHA-1 digest and inclusive C14N: the algorithm check comes first (docs/signature.md).
    "edoc.edxml": "signature.sha1",
    # Four bytes ("1212") before the XML declaration: not XML as received; nothing can be verified.
    "edoc_new.edxml": "xml.malformed",
    # <Signature> in the default (edXML) namespace.
    "edoc_replacement.edxml": "signature.wrong_namespace",
    "edoc_revocation.edxml": "signature.wrong_namespace",
    "edoc_update.edxml": "signature.wrong_namespace",
    # Status messages in the samples carry no signature at all.
    **{
        name: "signature.missing"
        for name in (
            "status.edxml",
            "status_acceptance_03.edxml",
            "status_assignment_04.edxml",
            "status_cancellation_13.edxml",
            "status_change-acceptance_15.edxml",
            "status_change-rejection_16.edxml",
            "status_finish_06.edxml",
            "status_inbox_01.edxml",
            "status_processing_05.edxml",
            "status_rejection_02.edxml",
        )
    },
}


def test_every_sample_has_an_expected_verdict():
    assert sorted(p.name for p in SAMPLES.iterdir()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_verdict(name, pki, signing_time):
    data = (SAMPLES / name).read_bytes()
    with pytest.raises(GatewayError) as err:
        verify_package(data, trust=pki.store, at=signing_time)
    assert err.value.code == EXPECTED[name]

    inspection = inspect_package(data, trust=pki.store, at=signing_time)
    assert not inspection.ok
    assert (inspection.code, inspection.verified) == (EXPECTED[name], None)
    assert inspection.detail


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_still_shows_what_it_claims(name, signing_time):
    """The unverified reading is best effort: even the malformed sample shows its sender."""
    inspection = inspect_package((SAMPLES / name).read_bytes(), at=signing_time)
    assert inspection.unverified_message is not None
    assert inspection.unverified_message.header.from_.organ_id


def test_sha1_sample_detail_names_the_algorithm(signing_time):
    inspection = inspect_package((SAMPLES / "edoc.edxml").read_bytes(), at=signing_time)
    assert "rsa-sha1" in (inspection.detail or "")
