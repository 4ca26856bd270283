"""What the hub needs from the settings, as one frozen object.

The project's settings (:mod:`gateway.settings`, pydantic-settings, read once from the environment and a
TOML file) are the source; :func:`hub_config` picks the hub's part out of them so that the rest of
:mod:`gateway.hub` depends on this small, typed surface only. Tests build a :class:`HubConfig` directly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

DEFAULT_MAX_BODY = 100 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class HubConfig:
    database_url: str
    """SQLAlchemy async URL: ``sqlite+aiosqlite:///…`` (default, WAL) or ``postgresql+asyncpg://…``."""
    data_dir: Path
    """Blobs (content-addressed package bytes and attachments) and temporary uploads live here."""
    tls_cert: Path
    """The hub certificate chain (PEM): TLS server identity and receipt signer."""
    tls_key: Path
    trust_dir: Path
    """Root and intermediate CAs (``*.pem``) and CRLs (``*.crl``): client and signer trust."""
    directory_file: Path | None = None
    """The agency directory TOML; agencies added through the admin API live in the database."""
    host: str = "127.0.0.1"
    port: int = 8443
    max_body: int = DEFAULT_MAX_BODY
    lenient_legacy: bool = False
    """Admit unsigned or legacy-signed packages, stored as not fully electronic with their reason."""
    admin_fingerprints: tuple[str, ...] = ()
    """SHA-256 (hex) of client certificates allowed to use the admin API, besides the hub's own."""
    verify_processes: int = field(default_factory=lambda: os.cpu_count() or 1)
    """Verification pool size per hub process (lxml holds the GIL: processes, not threads)."""
    reload_interval: float = 5.0
    """Seconds between checks of the trust folder and directory file for changes (0: SIGHUP only)."""
    long_poll_max: float = 30.0
    spool_threshold: int = 1 << 20
    read_timeout: float = 60.0
    metrics_dir: Path | None = None
    holidays: tuple[str, ...] = ()
    """Public holidays (ISO dates) for the overdue rule, on top of weekends."""

    def with_(self, **changes: Any) -> HubConfig:
        return replace(self, **changes)

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"


def hub_config(settings: Any) -> HubConfig:
    """Pick the hub's configuration from the project settings (or pass a :class:`HubConfig` through)."""
    if isinstance(settings, HubConfig):
        return settings
    hub = getattr(settings, "hub", settings)

    def get(name: str, default: Any = None) -> Any:
        for source in (hub, settings):
            value = getattr(source, name, None)
            if value is not None:
                return value
        return default

    data_dir = Path(get("data_dir", "data"))
    return HubConfig(
        database_url=str(get("database_url", f"sqlite+aiosqlite:///{data_dir / 'gateway.db'}")),
        data_dir=data_dir,
        tls_cert=Path(get("tls_cert", "certs/dev/hub.crt")),
        tls_key=Path(get("tls_key", "certs/dev/hub.key")),
        trust_dir=Path(get("trust_dir", "certs/dev/trust")),
        directory_file=Path(d) if (d := get("directory_file")) else None,
        host=str(get("host", "127.0.0.1")),
        port=int(get("port", 8443)),
        max_body=int(get("max_body", get("max_body_bytes", DEFAULT_MAX_BODY))),
        lenient_legacy=bool(get("lenient_legacy", False)),
        admin_fingerprints=tuple(
            str(f).lower().replace(":", "") for f in get("admin_fingerprints", ()) or ()
        ),
        verify_processes=int(get("verify_processes", os.cpu_count() or 1)),
        reload_interval=float(get("reload_interval", 5.0)),
        long_poll_max=float(get("long_poll_max", 30.0)),
        metrics_dir=Path(m) if (m := get("metrics_dir")) else None,
        holidays=tuple(str(h) for h in get("holidays", ()) or ()),
    )
