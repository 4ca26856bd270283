"""Running the hub: ``gateway hub serve [--config FILE] [--workers N]``.

One process (``--workers 1``, the SQLite default) or N processes each binding the same port with
``SO_REUSEPORT``, so the kernel spreads connections over them; they share nothing but the database and the
blob folder (PostgreSQL is required for N > 1: SQLite has one writer). A supervisor process starts the
workers, restarts one that dies, and passes SIGHUP (reload trust anchors, CRLs and the directory now) and
SIGTERM/SIGINT (graceful stop) on to them. Each worker also polls the files every ``reload_interval``.

Configuration: :class:`gateway.settings.Settings`, read once: a TOML file (``--config``, else
``$GATEWAY_CONFIG``, else ``config/hub.toml``), then ``GATEWAY_<FIELD>`` environment variables on top
(:func:`gateway.hub.config.load_config`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.errors import ConfigError
from gateway.hub.config import HubConfig, hub_config, load_config

__all__ = ["load_config", "main", "serve"]

log = logging.getLogger("gateway.hub")


def _listen_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError("config.invalid", f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class _TlsSite(web.SockSite):
    """``web.SockSite`` with a bound on the TLS handshake (asyncio's default is 60 s; aiohttp's sites do
    not pass ``ssl_handshake_timeout``): a TCP connection that never starts or never finishes TLS is
    closed after ``handshake_timeout`` seconds, before any HTTP timeout can apply."""

    __slots__ = ("_handshake_timeout",)

    def __init__(
        self, runner: web.BaseRunner, sock: socket.socket, *, ssl_context: Any, handshake_timeout: float
    ) -> None:
        super().__init__(runner, sock, ssl_context=ssl_context)
        self._handshake_timeout = handshake_timeout

    async def start(self) -> None:
        self._runner._reg_site(self)
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            server,
            sock=self._sock,
            ssl=self._ssl_context,
            backlog=self._backlog,
            ssl_handshake_timeout=self._handshake_timeout,
        )


def _runner(app: web.Application, config: HubConfig) -> web.AppRunner:
    """``keepalive_timeout`` is aiohttp's timer armed when a connection is made and after each response,
    and disarmed only when a complete request head has arrived: it bounds both an idle keep-alive
    connection and a request line and headers that trickle in (slowloris)."""
    return web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=10,
        keepalive_timeout=config.idle_timeout,
    )


async def _serve(config: HubConfig, *, reuse_port: bool, on_ready: Any = None) -> None:
    from gateway.hub.app import create_app, create_web_root, utc_now
    from gateway.hub.runtime import Runtime

    runtime = Runtime(config, clock=utc_now)
    holder = runtime.build_tls()
    app = create_app(config, runtime=runtime)
    runner = _runner(app, config)
    await runner.setup()
    sock = _listen_socket(config.host, config.port, reuse_port=reuse_port)
    site = _TlsSite(
        runner, sock, ssl_context=holder.listening, handshake_timeout=config.tls_handshake_timeout
    )
    await site.start()
    web_runner: web.AppRunner | None = None
    if config.web_port:
        # The web pages: a second listener on the same host, the hub's certificate, no client
        # certificate asked for (browsers have none), serving /ui/ only, on the hub app's state.
        web_holder = runtime.build_web_tls()
        web_runner = _runner(create_web_root(app), config)
        await web_runner.setup()
        web_sock = _listen_socket(config.host, config.web_port, reuse_port=reuse_port)
        await _TlsSite(
            web_runner,
            web_sock,
            ssl_context=web_holder.listening,
            handshake_timeout=config.tls_handshake_timeout,
        ).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: runtime.reload(force=True))
    log.info("hub worker %d serving https://%s:%d", os.getpid(), config.host, config.port)
    if config.web_port:
        log.info(
            "hub worker %d serving the web pages on https://%s:%d/ui/",
            os.getpid(),
            config.host,
            config.web_port,
        )
    if on_ready is not None:
        on_ready()
    await stop.wait()
    if web_runner is not None:
        await web_runner.cleanup()
    await runner.cleanup()


def run_loop(main: Coroutine[Any, Any, None], *, event_loop: str) -> None:
    """Run ``main`` on the configured event loop.

    uvloop is the default because the hub's event-loop thread is its bottleneck under load (TLS records,
    HTTP parsing, hand-offs to the pool and the database): uvloop does the same work with about a third
    less CPU. ``event_loop = "asyncio"`` keeps the standard library's loop; so does a platform without
    uvloop, with a log line saying so.
    """
    if event_loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("uvloop is not installed; running on asyncio's event loop")
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


def _prepare_process(config: HubConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(message)s")
    if config.tune_malloc:
        from gateway.allocator import tune_malloc

        if not tune_malloc():
            log.info("malloc thresholds left as they are (not glibc, or MALLOC_*/GLIBC_TUNABLES set)")


def _worker_main(config: HubConfig, reuse_port: bool, ready: Any) -> None:
    _prepare_process(config)
    run_loop(_serve(config, reuse_port=reuse_port, on_ready=ready.set), event_loop=config.event_loop)


def check_startup(config: HubConfig) -> None:
    """Refuse to start (:class:`ConfigError`, one line) with a key file others may read, a key that does not
    match its certificate, or a certificate outside its validity: for the TLS identity and, if it is
    another, the receipt-signing one."""
    import datetime as dt

    from gateway.hub.tls import check_identity

    identities = [config.tls_identity()]
    if config.signing_identity() != identities[0]:
        identities.append(config.signing_identity())
    now = dt.datetime.now(dt.UTC)
    for (cert_file, key_file), what in zip(identities, ("hub", "hub signing"), strict=False):
        check_identity(
            cert_file, key_file, now=now, allow_readable_key=config.allow_readable_key_files, what=what
        )


def serve(config: HubConfig, *, workers: int = 1) -> int:
    """Run the hub until SIGTERM/SIGINT; prints ``ready`` on stdout once every worker listens."""
    check_startup(config)  # refuse at once, with one line, not in a worker
    if workers > 1 and config.database_url.startswith("sqlite"):
        raise ConfigError("config.invalid", "several workers need PostgreSQL (SQLite has one writer)")
    if config.metrics_dir is None:
        config = config.with_(metrics_dir=config.data_dir / "metrics")
    assert config.metrics_dir is not None
    if config.metrics_dir.exists():
        for stale in config.metrics_dir.glob("*.json"):
            stale.unlink()
    if workers <= 1:
        _worker_main_ready(config)
        return 0
    ctx = multiprocessing.get_context("spawn")
    procs: dict[int, Any] = {}

    def start() -> Any:
        ready = ctx.Event()
        p = ctx.Process(target=_worker_main, args=(config, True, ready), daemon=False)
        p.start()
        while not ready.wait(0.5):
            if not p.is_alive():
                raise ConfigError("config.invalid", f"a hub worker failed to start (exit {p.exitcode})")
        procs[p.pid] = p
        return p

    stopping = False

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for p in procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signum)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    for _ in range(workers):
        start()
    print("ready", flush=True)
    while procs:
        time.sleep(0.2)
        for pid, p in list(procs.items()):
            if not p.is_alive():
                p.join()
                del procs[pid]
                if not stopping:
                    log.error("worker %d died (exit %s); starting another", pid, p.exitcode)
                    start()
    return 0


def _worker_main_ready(config: HubConfig) -> None:
    _prepare_process(config)
    run_loop(
        _serve(config, reuse_port=False, on_ready=lambda: print("ready", flush=True)),
        event_loop=config.event_loop,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m gateway.hub.server --config FILE [--workers N]`` (what ``gateway hub serve`` runs)."""
    import argparse

    parser = argparse.ArgumentParser(prog="gateway hub serve")
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        from gateway.settings import load_settings

        settings = load_settings(args.config)
        workers = args.workers if args.workers is not None else settings.workers
        return serve(hub_config(settings), workers=workers)
    except ConfigError as exc:
        print(f"error {exc.code}: {exc.detail}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
