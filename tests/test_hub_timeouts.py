"""Connection timeouts of the real hub (a subprocess): the TLS handshake, the request head, idle keep-alive.

Short settings (``idle_timeout_s`` and ``tls_handshake_timeout_s`` of 1.5 s) so that each bound is seen
to hold within a few seconds, on both listeners; a long-poll that lasts longer than the idle timeout is
still answered (the timer is off while a request runs). The body timeouts (``request_timeout_s``) are in
``tests/test_hostile_corpus.py``.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hub_helpers import (
    DEPARTMENT,
    Client,
    HubFiles,
    HubProcess,
    client_context,
    free_port,
    hub_config,
    web_context,
    write_config_toml,
    write_hub_files,
)
from pki_fixtures import build_pki

from gateway.hub.config import HubConfig

IDLE = 1.5
HANDSHAKE = 1.5


@dataclass
class Running:
    files: HubFiles
    config: HubConfig


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("timeouts")
    files = write_hub_files(build_pki(), root)
    config = hub_config(
        files,
        f"sqlite+aiosqlite:///{root / 'hub.db'}",
        web_port=free_port(),
        verify_processes=1,
        idle_timeout=IDLE,
        tls_handshake_timeout=HANDSHAKE,
        long_poll_max=10.0,
    )
    process = HubProcess(write_config_toml(config, root / "hub.toml"))
    try:
        yield Running(files, config)
    finally:
        process.stop()


def _closed_after(sock: socket.socket, limit: float) -> float:
    """Seconds until the peer closes ``sock`` (EOF or reset); fails if it is still open after ``limit``."""
    sock.settimeout(limit)
    started = time.monotonic()
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        pytest.fail(f"the connection was still open after {limit} s")
    except (ssl.SSLError, OSError):
        pass
    return time.monotonic() - started


def _ports(hub: Running) -> list[int]:
    assert hub.config.web_port
    return [hub.config.port, hub.config.web_port]


@pytest.mark.parametrize("listener", [0, 1], ids=["api", "web"])
def test_a_tcp_connection_that_never_starts_tls_is_closed(hub: Running, listener: int) -> None:
    with socket.create_connection(("127.0.0.1", _ports(hub)[listener])) as raw:
        took = _closed_after(raw, HANDSHAKE + 5)
    assert took >= HANDSHAKE * 0.8


def test_a_tls_handshake_that_stops_halfway_is_closed(hub: Running) -> None:
    """A ClientHello sent, then nothing: the server's flight is never answered."""
    ctx = client_context(hub.files, DEPARTMENT)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    with socket.create_connection(("127.0.0.1", hub.config.port)) as raw:
        raw.sendall(outgoing.read())
        took = _closed_after(raw, HANDSHAKE + 5)
    assert took >= HANDSHAKE * 0.8


def _tls(hub: Running, port: int, who: str | None) -> ssl.SSLSocket:
    ctx = client_context(hub.files, who) if who else web_context(hub.files)
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")


@pytest.mark.parametrize("listener", [0, 1], ids=["api", "web"])
def test_a_connection_that_sends_no_request_is_closed(hub: Running, listener: int) -> None:
    who = DEPARTMENT if listener == 0 else None
    with _tls(hub, _ports(hub)[listener], who) as sock:
        took = _closed_after(sock, IDLE + 5)
    assert took >= IDLE * 0.8


@pytest.mark.parametrize("listener", [0, 1], ids=["api", "web"])
def test_headers_that_trickle_in_are_cut_off(hub: Running, listener: int) -> None:
    who = DEPARTMENT if listener == 0 else None
    with _tls(hub, _ports(hub)[listener], who) as sock:
        started = time.monotonic()
        for piece in (b"GET /healthz HTTP/1.1\r\n", b"Host: hub\r\n", b"X-Slow: 1\r\n"):
            sock.sendall(piece)
            time.sleep(IDLE / 3)
        _closed_after(sock, IDLE + 5)
        assert time.monotonic() - started < IDLE + 5


def test_an_idle_keep_alive_connection_is_closed_after_its_last_response(hub: Running) -> None:
    with _tls(hub, hub.config.port, DEPARTMENT) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
        sock.settimeout(10)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        took = _closed_after(sock, IDLE + 5)
    assert took >= IDLE * 0.8


def test_a_long_poll_longer_than_the_idle_timeout_is_answered(hub: Running) -> None:
    client = Client(hub.config.port, client_context(hub.files, DEPARTMENT))
    started = time.monotonic()
    reply = client.get("/v1/inbox?wait=3")
    assert reply.status == 200
    assert time.monotonic() - started >= IDLE * 1.5
    assert client.get("/healthz").status == 200  # and the connection is still usable
    client.close()


def test_the_defaults_are_bounded() -> None:
    from gateway.settings import Settings

    settings = Settings()
    assert 0 < settings.tls_handshake_timeout_s <= 30
    assert 0 < settings.idle_timeout_s <= 120
    assert settings.request_timeout_s > 0
