"""Typed settings: defaults derived from data_dir, precedence, and clean errors."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for name in list(__import__("os").environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no config/hub.toml here


def test_defaults_derive_from_data_dir():
    s = load_settings(data_dir="/srv/hub")
    assert s.database_url == "sqlite+aiosqlite:////srv/hub/gateway.db"
    assert s.blob_dir == Path("/srv/hub/blobs")
    assert s.trust_dir == Path("/srv/hub/trust")
    assert s.max_body_bytes == 100 * 1024 * 1024
    assert s.lenient_legacy is False
    assert s.is_sqlite


def test_precedence_overrides_env_file(monkeypatch, tmp_path):
    config = tmp_path / "hub.toml"
    config.write_text('port = 9000\nworkers = 3\nhost = "0.0.0.0"\ncrl_max_age = "P2D"\n')
    monkeypatch.setenv("GATEWAY_PORT", "9100")
    monkeypatch.setenv("GATEWAY_LENIENT_LEGACY", "true")
    s = load_settings(config, workers=5, host=None)
    assert s.port == 9100  # env beats the file
    assert s.workers == 5  # an override beats both
    assert s.host == "0.0.0.0"  # None overrides are ignored
    assert s.lenient_legacy is True
    assert s.crl_max_age == dt.timedelta(days=2)


def test_gateway_config_env_names_the_file(monkeypatch, tmp_path):
    config = tmp_path / "other.toml"
    config.write_text('database_url = "postgresql+asyncpg://u:p@h/db"\n')
    monkeypatch.setenv("GATEWAY_CONFIG", str(config))
    s = load_settings()
    assert s.database_url == "postgresql+asyncpg://u:p@h/db"
    assert not s.is_sqlite


def test_the_shipped_example_is_valid():
    s = load_settings(ROOT / "config" / "hub.toml")
    assert isinstance(s, Settings)


@pytest.mark.parametrize(
    ("content", "word"),
    [("port = 70000", "port"), ("unknown_key = 1", "unknown_key"), ("port = [", "hub.toml")],
)
def test_bad_values_are_config_errors(tmp_path, content, word):
    config = tmp_path / "hub.toml"
    config.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert info.value.code == "config.invalid"
    assert word in info.value.detail


def test_an_explicit_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError):
        load_settings(tmp_path / "missing.toml")


def test_settings_are_frozen():
    s = load_settings()
    with pytest.raises(Exception, match="frozen"):
        s.port = 1  # type: ignore[misc]
