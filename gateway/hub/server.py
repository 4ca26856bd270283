"""Running the hub: ``gateway hub serve [--config FILE] [--workers N]``.

One process (``--workers 1``, the SQLite default) or N processes each binding the same port with
``SO_REUSEPORT``, so the kernel spreads connections over them; they share nothing but the database and the
blob folder (PostgreSQL is required for N > 1: SQLite has one writer). A supervisor process starts the
workers, restarts one that dies, and passes SIGHUP (reload trust anchors, CRLs and the directory now) and
SIGTERM/SIGINT (graceful stop) on to them. Each worker also polls the files every ``reload_interval``.

Configuration: a TOML file whose ``[hub]`` table holds the fields of :class:`~gateway.hub.config.HubConfig`
(relative paths are relative to the file), then ``GATEWAY_HUB_<FIELD>`` environment variables on top.
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
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.errors import ConfigError
from gateway.hub.config import HubConfig

log = logging.getLogger("gateway.hub")

_PATH_FIELDS = {"data_dir", "tls_cert", "tls_key", "trust_dir", "directory_file", "metrics_dir"}
_TUPLE_FIELDS = {"admin_fingerprints", "holidays"}


def load_config(path: Path | None = None, *, env: dict[str, str] | None = None) -> HubConfig:
    """Read the ``[hub]`` table of ``path`` (if given) and ``GATEWAY_HUB_*`` variables into a HubConfig."""
    env = dict(os.environ if env is None else env)
    values: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError("config.invalid", f"cannot read {path}: {exc}") from exc
        values.update(data.get("hub", data))
        base = Path(path).resolve().parent
    known = {f.name: f for f in fields(HubConfig)}
    for name in known:
        raw = env.get(f"GATEWAY_HUB_{name.upper()}")
        if raw is not None:
            values[name] = [v for v in raw.split(",") if v] if name in _TUPLE_FIELDS else raw
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError("config.invalid", f"unknown hub settings: {', '.join(unknown)}")
    out: dict[str, Any] = {}
    for name, value in values.items():
        kind = known[name].type
        if name in _PATH_FIELDS:
            p = Path(str(value))
            out[name] = p if p.is_absolute() else base / p
        elif name in _TUPLE_FIELDS:
            out[name] = tuple(
                str(v).lower().replace(":", "") if name == "admin_fingerprints" else str(v) for v in value
            )
        elif "bool" in str(kind):
            out[name] = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
        elif "int" in str(kind):
            out[name] = int(value)
        elif "float" in str(kind):
            out[name] = float(value)
        else:
            out[name] = str(value)
    for required in ("database_url", "data_dir", "tls_cert", "tls_key", "trust_dir"):
        if required not in out:
            raise ConfigError("config.invalid", f"the hub setting {required!r} is missing")
    return HubConfig(**out)


def _listen_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def _serve(config: HubConfig, *, reuse_port: bool, on_ready: Any = None) -> None:
    from gateway.hub.app import create_app, utc_now
    from gateway.hub.runtime import Runtime

    runtime = Runtime(config, clock=utc_now)
    holder = runtime.build_tls()
    app = create_app(config, runtime=runtime)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=10)
    await runner.setup()
    sock = _listen_socket(config.host, config.port, reuse_port=reuse_port)
    site = web.SockSite(runner, sock, ssl_context=holder.listening)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: runtime.reload(force=True))
    log.info("hub worker %d serving https://%s:%d", os.getpid(), config.host, config.port)
    if on_ready is not None:
        on_ready()
    await stop.wait()
    await runner.cleanup()


def _worker_main(config: HubConfig, reuse_port: bool, ready: Any) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(message)s")
    asyncio.run(_serve(config, reuse_port=reuse_port, on_ready=ready.set))


def serve(config: HubConfig, *, workers: int = 1) -> int:
    """Run the hub until SIGTERM/SIGINT; prints ``ready`` on stdout once every worker listens."""
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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(message)s")
    asyncio.run(_serve(config, reuse_port=False, on_ready=lambda: print("ready", flush=True)))


def main(argv: list[str] | None = None) -> int:
    """``python -m gateway.hub.server --config FILE [--workers N]`` (what ``gateway hub serve`` runs)."""
    import argparse

    parser = argparse.ArgumentParser(prog="gateway hub serve")
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        return serve(load_config(args.config), workers=args.workers)
    except ConfigError as exc:
        print(f"error {exc.code}: {exc.detail}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
