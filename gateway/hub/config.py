"""What the hub needs from the settings, as one frozen object.

The project's settings (:class:`gateway.settings.Settings`: pydantic-settings, read once from a TOML file
and ``GATEWAY_*`` environment variables) are the only source; :func:`hub_config` picks the hub's part out
of them so that the rest of :mod:`gateway.hub` depends on this small, typed surface only. Tests build a
:class:`HubConfig` directly. It is picklable: the supervisor hands it to its worker processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError

DEFAULT_MAX_BODY = 100 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class HubConfig:
    database_url: str
    """SQLAlchemy async URL: ``sqlite+aiosqlite:///…`` (default, WAL) or ``postgresql+asyncpg://…``."""
    data_dir: Path
    """Blobs (content-addressed package bytes), temporary uploads and metric snapshots live here."""
    tls_cert: Path | None = None
    """The hub certificate chain (PEM): TLS server identity (and receipt signer unless ``signing_cert``)."""
    tls_key: Path | None = None
    trust_dir: Path = Path("var/trust")
    """Root and intermediate CAs (``*.pem``) and CRLs (``*.crl``): client and signer trust."""
    directory_file: Path | None = None
    """The agency directory TOML, kept in step in the database; the operator's agencies win over it."""
    holidays_file: Path | None = None
    """The working-day calendar of the overdue rule (:meth:`gateway.calendar.Holidays.load`)."""
    signing_cert: Path | None = None
    signing_key: Path | None = None
    blobs: Path | None = None
    """The blob store's root; default ``data_dir/blobs``."""
    host: str = "127.0.0.1"
    port: int = 8443
    web_port: int | None = None
    """The web pages' listener (HTTPS, no client certificate asked for, ``/ui/`` only); None/0: none.
    The project settings default it to 8444; a HubConfig built directly (tests) has none."""
    max_body: int = DEFAULT_MAX_BODY
    xml_max_depth: int = 64
    """Deepest element nesting a package or status may have (``xml.too_deep``); edXML needs about 12."""
    xml_max_text_bytes: int = DEFAULT_MAX_BODY
    """Largest text node, in UTF-8 bytes (``xml.text_too_large``); an inline attachment is one base64 text
    node, so this bounds a single-file attachment (multipart parts are not XML)."""
    allow_readable_key_files: bool = False
    """Start even if a private key file is readable by group or others (refused by default)."""
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
    inline_body_max: int = 1 << 20
    """Bodies held in memory (at most ``spool_threshold``) up to this size are kept in the database."""
    read_timeout: float = 60.0
    """The longest wait for the next piece of a request body (a body that stops arriving: 408)."""
    idle_timeout: float = 30.0
    """A connection that has not sent a complete request line and headers this long after it was made,
    or after its last response, is closed (slowloris, idle keep-alive). Not applied while a request runs."""
    tls_handshake_timeout: float = 10.0
    """A TCP connection that has not completed its TLS handshake by then is closed."""
    event_loop: str = "uvloop"
    """``uvloop`` (if installed, else asyncio) or ``asyncio``: see :func:`gateway.hub.server.run_loop`."""
    tune_malloc: bool = True
    """Fix glibc's malloc thresholds at start: see :mod:`gateway.allocator`."""
    metrics_dir: Path | None = None
    db_pool_size: int = 10
    sqlite_busy_timeout_ms: int = 30_000
    auto_migrate: bool = True
    """Upgrade the schema to the latest migration at start; if False, refuse to start when it is behind."""

    def with_(self, **changes: Any) -> HubConfig:
        return replace(self, **changes)

    @property
    def blob_dir(self) -> Path:
        return self.blobs or self.data_dir / "blobs"

    @property
    def tmp_dir(self) -> Path:
        """Uploads are spooled here; on the blob store's filesystem, so a body is renamed, not copied."""
        return self.data_dir / "tmp"

    def tls_identity(self) -> tuple[Path, Path]:
        """The TLS certificate and key; serving without them is a configuration error."""
        if self.tls_cert is None or self.tls_key is None:
            raise ConfigError("config.invalid", "the hub needs tls_cert and tls_key to serve")
        return self.tls_cert, self.tls_key

    def signing_identity(self) -> tuple[Path, Path]:
        """What receipts are signed with: ``signing_cert``/``signing_key``, else the TLS identity."""
        if self.signing_cert is not None and self.signing_key is not None:
            return self.signing_cert, self.signing_key
        return self.tls_identity()


def hub_config(settings: Any) -> HubConfig:
    """The hub's part of :class:`gateway.settings.Settings` (a :class:`HubConfig` passes through)."""
    if isinstance(settings, HubConfig):
        return settings
    return HubConfig(
        database_url=settings.database_url,
        data_dir=settings.data_dir,
        tls_cert=settings.tls_cert,
        tls_key=settings.tls_key,
        trust_dir=settings.trust_dir,
        directory_file=settings.directory_file,
        holidays_file=settings.holidays_file,
        signing_cert=settings.signing_cert,
        signing_key=settings.signing_key,
        blobs=settings.blob_dir,
        host=settings.host,
        port=settings.port,
        web_port=settings.web_port or None,
        max_body=settings.max_body_bytes,
        inline_body_max=settings.inline_body_max_bytes,
        lenient_legacy=settings.lenient_legacy,
        allow_readable_key_files=settings.allow_readable_key_files,
        xml_max_depth=settings.xml_max_depth,
        xml_max_text_bytes=settings.xml_max_text_bytes,
        admin_fingerprints=settings.admin_fingerprints,
        verify_processes=settings.verify_processes,
        reload_interval=settings.reload_interval,
        long_poll_max=settings.long_poll_max,
        read_timeout=settings.request_timeout_s,
        idle_timeout=settings.idle_timeout_s,
        tls_handshake_timeout=settings.tls_handshake_timeout_s,
        event_loop=settings.event_loop,
        tune_malloc=settings.tune_malloc,
        metrics_dir=settings.metrics_dir,
        db_pool_size=settings.db_pool_size,
        sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        auto_migrate=settings.auto_migrate,
    )


def load_config(path: Path | None = None, /, **overrides: Any) -> HubConfig:
    """Read the settings once (overrides > ``GATEWAY_*`` environment > TOML file > defaults) for the hub."""
    from gateway.settings import load_settings

    return hub_config(load_settings(path, **overrides))
