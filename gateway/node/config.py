"""Typed settings of an agency node, read once (pydantic-settings) and passed down.

Sources, highest precedence first: keyword arguments (what CLI options set), environment variables
``GATEWAY_NODE_<FIELD>``, the ``[node]`` table of a TOML file (``--config``, else ``GATEWAY_NODE_CONFIG``,
else ``config/node.toml`` if it exists), the defaults. Relative paths in the TOML file are relative to the
working directory, as for the hub. A bad value is ``config.invalid`` naming the field, never a traceback.
"""

from __future__ import annotations

import contextvars
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.edxml.codes import OrganId
from gateway.errors import ConfigError, FieldError
from gateway.settings import ParsedTomlSource

DEFAULT_CONFIG_FILE = Path("config/node.toml")
MiB = 1024 * 1024

_toml: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "gateway_node_toml", default=None
)


class NodeSettings(BaseSettings):
    """Everything a node process needs. Frozen: a running node never changes its settings."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_NODE_", extra="forbid", frozen=True)

    # --- who the node is ----------------------------------------------------------------------------
    organ_id: str = Field(description="The agency code (mã định danh) this node acts for.")
    organ_name: str | None = Field(None, description="The agency's name, written into From/OrganName.")
    cert_dir: Path = Field(
        description="Folder with key.pem, cert.pem, chain.pem (certs/dev/agencies/<organ_id>): it signs "
        "packages and statuses and is the mTLS client identity."
    )
    allow_readable_key_files: bool = Field(
        False,
        description="Start even if cert_dir/key.pem is readable by group or others (refused by default).",
    )
    place: str | None = Field(None, description="Default PromulgationInfo/Place of documents sent.")
    staff: str | None = Field(None, description="StaffInfo/Staff written into status messages.")

    # --- the hub ------------------------------------------------------------------------------------
    hub_url: str = Field(description="Base URL of the hub, https://host:port.")
    trust_dir: Path = Field(
        description="Trust anchors (CAs, CRLs): verify packages, statuses and the hub's receipts."
    )
    hub_ca: Path | None = Field(
        None, description="CA file (PEM) the hub's TLS certificate must chain to; default the trust_dir CAs."
    )
    request_timeout: float = Field(120.0, gt=0, description="Seconds for one request to the hub.")

    # --- local state and the DMS --------------------------------------------------------------------
    data_dir: Path = Field(Path("var/node"), description="The node's SQLite store and package files.")
    drop_dir: Path | None = Field(None, description="DMS drop folder: one folder per received document.")
    callback_url: str | None = Field(None, description="DMS HTTP callback (JSON POST per document).")
    callback_timeout: float = Field(10.0, gt=0)
    holidays_file: Path | None = Field(None, description="Working-day calendar for overdue flags.")

    # --- behaviour ----------------------------------------------------------------------------------
    multipart_threshold: int = Field(
        2 * MiB, ge=0, description="Attachments above this total are signed by envelope and sent multipart."
    )
    poll_wait: int = Field(20, ge=0, le=3600, description="Long-poll seconds of GET /v1/inbox.")
    poll_limit: int = Field(100, ge=1, le=1000, description="Items per inbox page.")
    retry_base: float = Field(1.0, gt=0, description="First retry delay of the outbox (seconds).")
    retry_max: float = Field(300.0, gt=0, description="Longest retry delay (the backoff's cap).")
    requests_via_status: bool = Field(
        False,
        description="Recall by status 13 instead of a BussinessDocType 1 package, and follow an update or "
        "replacement with status 13 on the target (for hubs that do not apply 1/2/3 packages as requests; "
        "this hub does, so a 13 after them would be redundant).",
    )

    @field_validator("organ_id")
    @classmethod
    def _organ_id(cls, value: str) -> str:
        try:
            OrganId.parse(value)
        except FieldError as exc:
            raise ValueError(exc.detail) from None
        return value.strip()

    @field_validator("hub_url")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError("the hub is reached over HTTPS only (mutual TLS)")
        return value.rstrip("/")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, ParsedTomlSource(settings_cls, _toml))

    @property
    def db_path(self) -> Path:
        return self.data_dir / "node.db"


def load_node_settings(config_file: Path | None = None, **overrides: Any) -> NodeSettings:
    """Read the settings once. ``config_file`` must exist if given; the default file is optional."""
    path = config_file
    if path is None and os.environ.get("GATEWAY_NODE_CONFIG"):
        path = Path(os.environ["GATEWAY_NODE_CONFIG"])
    data: dict[str, Any] = {}
    if path is None and DEFAULT_CONFIG_FILE.is_file():
        path = DEFAULT_CONFIG_FILE
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError("config.invalid", f"{path}: {exc}") from exc
        table = raw.get("node", raw)
        if not isinstance(table, dict):
            raise ConfigError("config.invalid", f"{path}: [node] must be a table")
        data = table
    token = _toml.set(data)
    try:
        return NodeSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigError("config.invalid", f"{path or 'node settings'}: {where}: {first['msg']}") from exc
    finally:
        _toml.reset(token)
