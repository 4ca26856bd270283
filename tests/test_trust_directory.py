"""The agency directory: the sample province loads, and every mistake in a directory file is reported."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from pki_fixtures import SIGNING_TIME

from gateway.errors import ConfigError, DirectoryError
from gateway.trust.directory import LEVELS, Agency, Directory, HubInfo

pytest_plugins = ["pki_fixtures"]

SAMPLE = Path(__file__).resolve().parent.parent / "config" / "directory.toml"


@pytest.fixture(scope="module")
def tay_ninh() -> Directory:
    return Directory.load(SAMPLE)


def test_sample_directory_loads(tay_ninh):
    assert len(tay_ninh) == 12
    assert tay_ninh.hub == HubInfo(
        name="LGSP Tây Ninh", hostnames=("localhost", "lgsp", "hub1", "hub2"), ips=("127.0.0.1",)
    )
    assert tay_ninh.source == SAMPLE
    province = tay_ninh.require("000.00.00.H53")
    assert province.name == "Ủy ban nhân dân tỉnh Tây Ninh"
    assert province.level == "province"
    assert province.parent is None


def test_levels_come_from_the_directory(tay_ninh):
    assert tay_ninh.level_of("000.00.00.G12") == "central"
    assert tay_ninh.level_of("000.00.01.H53") == "department"
    assert tay_ninh.level_of("000.00.05.H53") == "department"
    assert tay_ninh.level_of("000.00.32.H53") == "district"
    assert tay_ninh.level_of("000.22.31.H53") == "commune"
    assert {a.level for a in tay_ninh} == set(LEVELS)
    assert [a.organ_id for a in tay_ninh.at_level("district")] == ["000.00.31.H53", "000.00.32.H53"]


def test_children_parents_and_ancestors(tay_ninh):
    assert [a.organ_id for a in tay_ninh.children("000.00.31.H53")] == ["000.21.31.H53", "000.22.31.H53"]
    assert [a.organ_id for a in tay_ninh.children("000.00.32.H53")] == ["000.21.32.H53"]
    assert tay_ninh.children("000.21.31.H53") == ()
    province_children = {a.organ_id for a in tay_ninh.children("000.00.00.H53")}
    assert province_children == {f"000.00.0{i}.H53" for i in range(1, 6)} | {"000.00.31.H53", "000.00.32.H53"}
    assert len(tay_ninh.descendants("000.00.00.H53")) == 10
    assert tay_ninh.parent_of("000.21.32.H53").organ_id == "000.00.32.H53"
    assert [a.organ_id for a in tay_ninh.ancestors("000.21.32.H53")] == ["000.00.32.H53", "000.00.00.H53"]
    assert tay_ninh.parent_of("000.00.00.G12") is None


def test_names_keep_their_diacritics(tay_ninh):
    assert tay_ninh.require("000.21.32.H53").name == "Ủy ban nhân dân xã Hảo Đước"
    assert tay_ninh.require("000.00.04.H53").name == "Sở Thông tin và Truyền thông tỉnh Tây Ninh"


def test_unknown_agency(tay_ninh):
    assert tay_ninh.get("000.00.99.H53") is None
    assert "000.00.99.H53" not in tay_ninh
    assert "000.00.02.H53" in tay_ninh
    with pytest.raises(DirectoryError) as info:
        tay_ninh.level_of("000.00.99.H53")
    assert info.value.code == "directory.unknown_agency"
    with pytest.raises(DirectoryError):
        tay_ninh.children("000.00.99.H53")


def test_pins_feed_the_trust_store(pki, trust_store):
    signer = pki.department_rsa3072
    digest = hashlib.sha256(signer.cert.public_bytes(Encoding.DER)).digest()
    text = f"""
[[agencies]]
organ_id = "000.00.02.H53"
name = "Sở Nội vụ tỉnh Tây Ninh"
level = "department"
pinned_fingerprints = ["{digest.hex(":").upper()}"]
"""
    directory = Directory.from_toml(text)
    assert directory.pins_for("000.00.02.H53") == {digest}
    trust_store.validate(
        signer.cert, at=SIGNING_TIME, organ_id="000.00.02.H53", pinned=directory.pins_for("000.00.02.H53")
    )


def test_level_defaults_to_what_the_code_rules_propose():
    directory = Directory.from_toml(
        """
[[agencies]]
organ_id = "000.00.00.H53"
name = "Ủy ban nhân dân tỉnh Tây Ninh"

[[agencies]]
organ_id = "000.21.31.H53"
name = "Ủy ban nhân dân xã Tân Lập"
level = "commune"
"""
    )
    assert directory.level_of("000.00.00.H53") == "province"
    assert directory.level_of("000.21.31.H53") == "commune"


def _agency_toml(**fields: str) -> str:
    base = {"organ_id": "000.00.02.H53", "name": "Sở Nội vụ", "level": "department"}
    base.update(fields)
    body = "\n".join(f'{k} = "{v}"' for k, v in base.items() if v != "<absent>")
    return "[[agencies]]\n" + body + "\n"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[[agencies]\n", "not valid TOML"),
        (_agency_toml(organ_id="H53"), "not an agency code"),
        (_agency_toml(level="ward"), "level"),
        (_agency_toml(name="  "), "no name"),
        (_agency_toml(parent="000.00.00.H53"), "not in the directory"),
        (_agency_toml(parent="000.00.02.H53"), "its own parent"),
        (_agency_toml() + _agency_toml(), "listed twice"),
        (_agency_toml(colour="blue"), "unknown keys"),
        (_agency_toml(name="<absent>"), "'name' is required"),
        ('agencies = "none"\n', "array of tables"),
        ('[hub]\nips = ["127.0.0.1"]\n', "[hub] needs a 'name'"),
        ('[hub]\nname = "LGSP"\nips = ["not-an-ip"]\n', "not-an-ip"),
        (
            _agency_toml(organ_id="000.00.02.H53", parent="000.00.03.H53")
            + _agency_toml(organ_id="000.00.03.H53", parent="000.00.02.H53"),
            "loops",
        ),
        (_agency_toml().replace('level = "department"', 'pinned_fingerprints = ["zz"]'), "fingerprint"),
    ],
)
def test_mistakes_are_config_errors(text, fragment):
    with pytest.raises(ConfigError) as info:
        Directory.from_toml(text, source=Path("directory.toml"))
    assert info.value.code == "config.invalid"
    assert fragment in info.value.detail
    assert "directory.toml" in info.value.detail


def test_missing_file_and_reload(tmp_path):
    with pytest.raises(ConfigError):
        Directory.load(tmp_path / "absent.toml")
    path = tmp_path / "d.toml"
    path.write_text(_agency_toml(), encoding="utf-8")
    first = Directory.load(path)
    path.write_text(
        _agency_toml() + _agency_toml(organ_id="000.00.03.H53", name="Sở Tài chính"), encoding="utf-8"
    )
    second = first.reload()
    assert len(first) == 1
    assert len(second) == 2


def test_directory_is_immutable(tay_ninh):
    with pytest.raises(AttributeError):
        tay_ninh.agencies = ()  # type: ignore[misc]
    agency = Agency(organ_id="000.00.02.H53", name="Sở Nội vụ", level="department")
    with pytest.raises(AttributeError):
        agency.level = "district"  # type: ignore[misc]
