"""Typed settings of the hub, read once and passed down (never a module-level global).

Sources, highest precedence first:

1. keyword arguments to :func:`load_settings` (what the CLI's options set);
2. environment variables prefixed ``GATEWAY_`` (``GATEWAY_DATABASE_URL``, ``GATEWAY_PORT`` …);
3. a TOML file: the path in ``GATEWAY_CONFIG``, else ``config/hub.toml`` if it exists (see the commented
   example in the repository);
4. the defaults below.

Paths that are not given derive from ``data_dir`` (``./var``): the SQLite database, the blob folder and
the trust folder, so that one folder holds a hub's whole state. A bad value is a
:class:`~gateway.errors.ConfigError` (``config.invalid``) naming the field, never a traceback.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.errors import ConfigError

DEFAULT_CONFIG_FILE = Path("config/hub.toml")
MiB = 1024 * 1024

_toml_data: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "gateway_settings_toml", default=None
)


class ParsedTomlSource(PydanticBaseSettingsSource):
    """A TOML file the loader already parsed (so its errors carry the file's path), as a settings source.

    ``settings_customise_sources`` is a class method and cannot take the file per call, so the loader
    hands the parsed table over in a context variable for the duration of one construction. The hub's
    and the node's settings both read their file this way.
    """

    def __init__(
        self, settings_cls: type[BaseSettings], data: contextvars.ContextVar[dict[str, Any] | None]
    ) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return (self._data.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data.get() or {})


class Settings(BaseSettings):
    """Everything a hub process needs to start. Frozen: a running hub never changes its settings."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="forbid", frozen=True)

    # --- storage -----------------------------------------------------------------------------------
    data_dir: Path = Field(Path("var"), description="Folder for the hub's state (database, blobs, trust).")
    database_url: str = Field(
        "", description="SQLAlchemy async URL; default sqlite+aiosqlite:///<data_dir>/gateway.db."
    )
    blob_dir: Path = Field(
        Path(), description="Content-addressed attachment store; default <data_dir>/blobs."
    )
    inline_body_max_bytes: int = Field(
        1 * MiB,
        ge=0,
        description="Package bodies up to this size are kept in the database, committed with their rows "
        "(no file or fsync of their own); larger ones are blobs. Capped by the 1 MiB held in memory; 0 "
        "keeps every body as a blob.",
    )
    db_pool_size: int = Field(
        10, ge=1, description="Connections per process (PostgreSQL; readers on SQLite)."
    )
    sqlite_busy_timeout_ms: int = Field(30_000, ge=0, description="How long SQLite waits for the write lock.")

    # --- service -----------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8443, ge=0, le=65535)
    web_port: int | None = Field(
        8444,
        ge=0,
        le=65535,
        description="Web pages for clerks and auditors: HTTPS without client certificates, /ui/ only "
        "(0 disables).",
    )
    workers: int = Field(1, ge=1, description="Hub processes sharing the port (SO_REUSEPORT).")
    public_url: str | None = Field(None, description="The hub's URL as nodes reach it (behind a proxy).")
    tls_cert: Path | None = Field(
        None, description="The hub's TLS server certificate (PEM), optionally followed by its intermediates."
    )
    tls_key: Path | None = Field(None, description="Its private key (PEM).")
    signing_cert: Path | None = Field(
        None, description="Certificate the hub signs receipts with; default tls_cert."
    )
    signing_key: Path | None = Field(None, description="Its private key; default tls_key.")
    allow_readable_key_files: bool = Field(
        False,
        description="Start even if a private key file is readable by group or others (mode & 0o077); "
        "by default the hub refuses to start.",
    )
    max_body_bytes: int = Field(100 * MiB, ge=1024, description="Largest request body accepted.")
    xml_max_depth: int = Field(
        64, ge=16, le=10_000, description="Deepest XML element nesting accepted (xml.too_deep)."
    )
    xml_max_text_bytes: int = Field(
        100 * MiB,
        ge=1024,
        description="Largest XML text node in bytes (xml.text_too_large); bounds an inline attachment.",
    )
    request_timeout_s: float = Field(
        300.0, gt=0, description="Longest time a request body may take to arrive."
    )
    idle_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Close a connection whose request line and headers have not all arrived this long "
        "after it opened or after its last response (slowloris, idle keep-alive).",
    )
    tls_handshake_timeout_s: float = Field(
        10.0, gt=0, description="Close a connection that has not completed its TLS handshake by then."
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop",
        description="The hub's event loop: uvloop (libuv; about a third less CPU per request, TLS "
        "included) or the standard library's asyncio. uvloop falls back to asyncio where it is not "
        "installed.",
    )
    tune_malloc: bool = Field(
        True,
        description="Fix glibc's malloc thresholds so the buffers a large upload passes through are "
        "reused, not mapped and faulted in afresh (gateway.allocator). Left alone where the C library is "
        "not glibc or MALLOC_*/GLIBC_TUNABLES are set.",
    )
    inbox_page_limit: int = Field(100, ge=1, le=10_000, description="Most inbox items returned per request.")
    long_poll_max: float = Field(30.0, ge=0, description="Cap, in seconds, of GET /v1/inbox?wait=.")
    verify_processes: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        description="Verification pool per hub process (lxml holds the GIL: processes, not threads).",
    )
    reload_interval: float = Field(
        5.0, ge=0, description="Seconds between checks of the trust folder, directory and certificates."
    )
    admin_fingerprints: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="SHA-256 of operator client certificates (env: comma-separated)."
    )
    metrics_dir: Path | None = Field(
        None, description="Per-process metric snapshots; default <data_dir>/metrics."
    )
    auto_migrate: bool = Field(
        True, description="Upgrade the database schema to the latest migration when the hub starts."
    )

    # --- trust and directory -----------------------------------------------------------------------
    trust_dir: Path = Field(Path(), description="Trust anchors and CRLs; default <data_dir>/trust.")
    crl_max_age: dt.timedelta = Field(
        dt.timedelta(days=7), description="A CRL older than this (past nextUpdate or not) makes /readyz fail."
    )
    directory_file: Path | None = Field(
        None, description="Agency directory to import at start-up (TOML/CSV)."
    )
    holidays_file: Path = Field(
        Path("config/holidays.toml"), description="Working-day calendar (overdue rule)."
    )
    lenient_legacy: bool = Field(
        False, description="Admit unsigned/legacy-signed packages; they count as not fully electronic."
    )

    log_level: str = "INFO"

    @field_validator("admin_fingerprints", mode="before")
    @classmethod
    def _fingerprints(cls, value: Any) -> Any:
        """Comma-separated in the environment, a list in TOML; normalised to lower-case hex."""
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if isinstance(value, list | tuple):
            return tuple(str(v).strip().lower().replace(":", "") for v in value)
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, ParsedTomlSource(settings_cls, _toml_data))

    @model_validator(mode="before")
    @classmethod
    def _derive_paths(cls, data: Any) -> Any:
        """Fill the paths left empty from ``data_dir`` (before freezing, so the values are visible)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        data_dir = Path(data.get("data_dir") or "var")
        if not data.get("database_url"):
            data["database_url"] = f"sqlite+aiosqlite:///{data_dir / 'gateway.db'}"
        if not data.get("blob_dir"):
            data["blob_dir"] = data_dir / "blobs"
        if not data.get("trust_dir"):
            data["trust_dir"] = data_dir / "trust"
        return data

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings(config_file: str | Path | None = None, /, **overrides: Any) -> Settings:
    """Read the settings once: overrides > environment > TOML file > defaults.

    ``config_file`` defaults to ``$GATEWAY_CONFIG``, then ``config/hub.toml`` when it exists. Overrides
    that are ``None`` are ignored, so CLI options can be passed through unconditionally.
    """
    explicit = config_file is not None or "GATEWAY_CONFIG" in os.environ
    path = Path(
        config_file if config_file is not None else os.environ.get("GATEWAY_CONFIG", DEFAULT_CONFIG_FILE)
    )
    data: dict[str, Any] = {}
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError("config.invalid", f"{path}: {exc}") from exc
    elif explicit:
        raise ConfigError("config.invalid", f"the configuration file {path} does not exist")
    token = _toml_data.set(data)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError("config.invalid", problems) from exc
    finally:
        _toml_data.reset(token)
