"""The agency directory: who exists, at which level, under whom, with which pinned certificates.

The level of an agency cannot be read from its code alone (``000.00.02.H53`` is a sở, ``000.00.31.H53`` a
huyện; DESIGN §2), so the directory states it. The file is TOML, read once by :meth:`Directory.load`::

    [hub]
    name = "LGSP Tây Ninh"
    hostnames = ["localhost"]
    ips = ["127.0.0.1"]

    [[agencies]]
    organ_id = "000.00.31.H53"
    name = "Ủy ban nhân dân huyện Tân Biên"
    level = "district"                 # central | province | department | district | commune;
                                       # optional: defaults to what the code rules propose
    parent = "000.00.00.H53"           # optional; must be in the directory
    pinned_fingerprints = []           # optional SHA-256 of DER certificates, hex (":" allowed)

A :class:`Directory` is immutable: reloading makes a new one, which the hub swaps in atomically.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gateway.errors import ConfigError, DirectoryError, GatewayError
from gateway.trust.pki import is_organ_id
from gateway.trust.store import parse_fingerprint

LEVELS: tuple[str, ...] = ("central", "province", "department", "district", "commune")
"""Administrative levels, highest first (the rate is reported by pairs of these)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Agency:
    """One agency of the directory. ``pinned_fingerprints`` are hex SHA-256 of DER certificates."""

    organ_id: str
    name: str
    level: str
    parent: str | None = None
    pinned_fingerprints: tuple[str, ...] = ()

    @property
    def pins(self) -> frozenset[bytes]:
        """The pinned fingerprints as raw bytes, ready for ``TrustStore.validate(pinned=...)``."""
        return frozenset(parse_fingerprint(f) for f in self.pinned_fingerprints)


@dataclass(frozen=True, kw_only=True, slots=True)
class HubInfo:
    """The hub's own identity: the name and addresses its TLS certificate is issued for."""

    name: str
    hostnames: tuple[str, ...] = ("localhost",)
    ips: tuple[str, ...] = ("127.0.0.1",)


@dataclass(frozen=True, slots=True)
class Directory:
    """All agencies, indexed by code; lookups, children, levels. Build with :meth:`load` or :meth:`of`."""

    agencies: tuple[Agency, ...]
    hub: HubInfo | None = None
    source: Path | None = None
    _index: Mapping[str, Agency] = field(init=False, repr=False, compare=False)
    _children: Mapping[str, tuple[Agency, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, Agency] = {}
        for agency in self.agencies:
            _check_agency(agency)
            if agency.organ_id in index:
                raise ConfigError(
                    "config.invalid", f"agency {agency.organ_id} is listed twice in the directory"
                )
            index[agency.organ_id] = agency
        children: dict[str, list[Agency]] = {}
        for agency in self.agencies:
            if agency.parent is None:
                continue
            if agency.parent not in index:
                raise ConfigError(
                    "config.invalid",
                    f"agency {agency.organ_id}: parent {agency.parent} is not in the directory",
                )
            children.setdefault(agency.parent, []).append(agency)
        for agency in self.agencies:  # a parent chain must end: no cycles
            seen = {agency.organ_id}
            current = agency
            while current.parent is not None:
                if current.parent in seen:
                    raise ConfigError("config.invalid", f"agency {agency.organ_id}: the parent chain loops")
                seen.add(current.parent)
                current = index[current.parent]
        object.__setattr__(self, "_index", MappingProxyType(index))
        object.__setattr__(self, "_children", MappingProxyType({k: tuple(v) for k, v in children.items()}))

    # --- construction ---------------------------------------------------------------------------------

    @classmethod
    def of(cls, agencies: Iterable[Agency], *, hub: HubInfo | None = None) -> Directory:
        """A directory from agencies in memory."""
        return cls(tuple(agencies), hub)

    @classmethod
    def load(cls, path: str | Path) -> Directory:
        """Read a directory TOML file; any mistake in it is a ``config.invalid`` error naming the file."""
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError("config.invalid", f"cannot read the agency directory {file}: {exc}") from exc
        return cls.from_toml(text, source=file)

    @classmethod
    def from_toml(cls, text: str, *, source: Path | None = None) -> Directory:
        """Parse the TOML form (see the module docstring)."""
        where = str(source) if source else "the agency directory"
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("config.invalid", f"{where} is not valid TOML: {exc}") from exc
        try:
            hub = _hub(data["hub"]) if "hub" in data else None
            rows = data.get("agencies", [])
            if not isinstance(rows, list):
                raise TypeError("'agencies' must be an array of tables ([[agencies]])")
            agencies = tuple(_agency(row, i) for i, row in enumerate(rows))
        except (TypeError, KeyError, ValueError) as exc:
            raise ConfigError("config.invalid", f"{where}: {exc}") from exc
        try:
            return cls(agencies, hub, source)
        except ConfigError as exc:
            raise ConfigError("config.invalid", f"{where}: {exc.detail}") from exc

    def reload(self) -> Directory:
        """A fresh directory read from the same file."""
        if self.source is None:
            raise ConfigError("config.invalid", "this directory was not loaded from a file")
        return Directory.load(self.source)

    # --- lookups --------------------------------------------------------------------------------------

    def __contains__(self, organ_id: object) -> bool:
        return organ_id in self._index

    def __iter__(self) -> Iterator[Agency]:
        return iter(self.agencies)

    def __len__(self) -> int:
        return len(self.agencies)

    def get(self, organ_id: str) -> Agency | None:
        """The agency with this code, or ``None``."""
        return self._index.get(organ_id)

    def require(self, organ_id: str) -> Agency:
        """The agency with this code; ``directory.unknown_agency`` if there is none."""
        agency = self._index.get(organ_id)
        if agency is None:
            raise DirectoryError("directory.unknown_agency", f"agency {organ_id} is not in the directory")
        return agency

    def level_of(self, organ_id: str) -> str:
        """The administrative level the directory gives the agency."""
        return self.require(organ_id).level

    def parent_of(self, organ_id: str) -> Agency | None:
        """The agency's parent, or ``None`` for a top-level agency."""
        parent = self.require(organ_id).parent
        return None if parent is None else self._index[parent]

    def children(self, organ_id: str) -> tuple[Agency, ...]:
        """The agencies whose parent is this one, in directory order."""
        self.require(organ_id)
        return self._children.get(organ_id, ())

    def descendants(self, organ_id: str) -> tuple[Agency, ...]:
        """Children, their children, and so on (depth first, directory order)."""
        out: list[Agency] = []
        for child in self.children(organ_id):
            out.append(child)
            out.extend(self.descendants(child.organ_id))
        return tuple(out)

    def ancestors(self, organ_id: str) -> tuple[Agency, ...]:
        """Parent, grandparent, … up to the top."""
        out: list[Agency] = []
        current = self.parent_of(organ_id)
        while current is not None:
            out.append(current)
            current = self.parent_of(current.organ_id)
        return tuple(out)

    def at_level(self, level: str) -> tuple[Agency, ...]:
        """Every agency of one level."""
        if level not in LEVELS:
            raise ValueError(f"unknown level {level!r}")
        return tuple(a for a in self.agencies if a.level == level)

    def pins_for(self, organ_id: str) -> frozenset[bytes]:
        """Pinned certificate fingerprints of the agency (empty: not pinned)."""
        return self.require(organ_id).pins


def _check_agency(agency: Agency) -> None:
    if not is_organ_id(agency.organ_id):
        raise ConfigError(
            "config.invalid", f"{agency.organ_id!r} is not an agency code (V1V2V3.Z1Z2.Y1Y2.X1X2X3)"
        )
    if not agency.name.strip():
        raise ConfigError("config.invalid", f"agency {agency.organ_id} has no name")
    if agency.level not in LEVELS:
        raise ConfigError(
            "config.invalid",
            f"agency {agency.organ_id}: level {agency.level!r} is not one of {', '.join(LEVELS)}",
        )
    if agency.parent is not None and agency.parent == agency.organ_id:
        raise ConfigError("config.invalid", f"agency {agency.organ_id} is its own parent")
    for pin in agency.pinned_fingerprints:
        parse_fingerprint(pin)


_AGENCY_KEYS = {"organ_id", "name", "level", "parent", "pinned_fingerprints"}


def _agency(row: Any, i: int) -> Agency:
    if not isinstance(row, dict):
        raise TypeError(f"agencies[{i}] is not a table")
    unknown = set(row) - _AGENCY_KEYS
    if unknown:
        raise ValueError(f"agencies[{i}]: unknown keys {', '.join(sorted(unknown))}")
    for key in ("organ_id", "name"):
        if not isinstance(row.get(key), str):
            raise ValueError(f"agencies[{i}]: {key!r} is required and must be a string")
    level = row.get("level")
    if level is None:
        level = _proposed_level(row["organ_id"].strip())
    if not isinstance(level, str):
        raise ValueError(f"agencies[{i}]: 'level' must be a string")
    parent = row.get("parent")
    if parent is not None and not isinstance(parent, str):
        raise ValueError(f"agencies[{i}]: 'parent' must be a string")
    pins = row.get("pinned_fingerprints", [])
    if not isinstance(pins, list) or not all(isinstance(p, str) for p in pins):
        raise ValueError(f"agencies[{i}]: 'pinned_fingerprints' must be a list of strings")
    return Agency(
        organ_id=row["organ_id"].strip(),
        name=row["name"].strip(),
        level=level.strip(),
        parent=parent.strip() if parent else None,
        pinned_fingerprints=tuple(pins),
    )


def _proposed_level(organ_id: str) -> str:
    """The level the code rules propose (the directory may state another)."""
    from gateway.edxml.codes import OrganId  # pure core, no cycle; imported where it is needed

    try:
        level = OrganId.parse(organ_id).proposed_level
    except GatewayError as exc:  # the code rules refuse it: report it as a config mistake
        raise ValueError(f"{organ_id!r}: no level given and none can be proposed ({exc})") from exc
    if level is None:
        raise ValueError(f"{organ_id!r}: no level given and the code rules propose none")
    return str(level.value)


def _hub(row: Any) -> HubInfo:
    if not isinstance(row, dict) or not isinstance(row.get("name"), str):
        raise ValueError("[hub] needs a 'name'")
    hostnames = row.get("hostnames", ["localhost"])
    ips = row.get("ips", ["127.0.0.1"])
    for key, value in (("hostnames", hostnames), ("ips", ips)):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"[hub] {key!r} must be a list of strings")
    for ip in ips:
        ipaddress.ip_address(ip)  # ValueError names the bad address
    return HubInfo(name=row["name"], hostnames=tuple(hostnames), ips=tuple(ips))
