"""The hub application factory: ``create_app(settings, *, clock=None) -> web.Application``.

Everything the handlers use hangs off typed :class:`web.AppKey` entries, created in ``cleanup_ctx`` (so the
order of start and stop is explicit and a failed start unwinds) and never at import time:

1. :data:`RUNTIME` — trust store, directory, TLS holder (:mod:`.runtime`), with a reload poller;
2. :data:`REPO` — the repository over :mod:`gateway.store` (:mod:`.adapters`), schema migrated or checked;
3. :data:`POOL` — the verification process pool, sized to the cores and warmed before serving.

:class:`Hub` bundles them for the handlers (``request.app[HUB]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from gateway.errors import AuthError, GatewayError
from gateway.hub import body, worker
from gateway.hub.config import HubConfig, hub_config
from gateway.hub.identity import Caller, IdentityCache, peer_certificate
from gateway.hub.metrics import Metrics
from gateway.hub.pool import VerifyPool
from gateway.hub.ports import Repository
from gateway.hub.problems import make_problem_middleware
from gateway.hub.runtime import Runtime

log = logging.getLogger("gateway.hub")

T = TypeVar("T")
NODE_CACHE_SECONDS = 5.0
Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(kw_only=True)
class Hub:
    """What a handler needs, in one place. Mutable only through :class:`Runtime` swaps."""

    config: HubConfig
    clock: Clock
    runtime: Runtime
    repo: Repository
    pool: VerifyPool
    metrics: Metrics
    identities: IdentityCache = field(default_factory=IdentityCache)
    hub_fingerprint: str = ""
    inbox_events: dict[str, asyncio.Event] = field(default_factory=dict)
    _node_cache: dict[str, tuple[float, frozenset[str]]] = field(default_factory=dict)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in the verification pool; a GatewayError raised there is raised here.

        A worker that died (killed by the OOM killer, a crash in a C library) fails the jobs it held
        with a 500 that leaks nothing, and the pool starts a new one (:mod:`gateway.hub.pool`).
        """
        return await self.pool.run(fn, *args)

    async def caller(self, request: web.Request) -> Caller:
        """The authenticated caller, with node identities from the database merged in."""
        cached = request.get("caller")
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        der = peer_certificate(request)
        admins = (*self.config.admin_fingerprints, self.hub_fingerprint)
        caller = self.identities.lookup(
            der,
            store=self.runtime.trust,
            generation=self.runtime.generation,
            now=self.clock(),
            admin_fingerprints=admins,
        )
        node_for = await self._node_identities(caller.fingerprint)
        if node_for:
            from dataclasses import replace

            caller = replace(caller, node_for=node_for)
        request["caller"] = caller
        return caller

    async def _node_identities(self, fingerprint: str) -> frozenset[str]:
        """Registered node identities, cached for a few seconds (another process may register one)."""
        now = time.monotonic()
        hit = self._node_cache.get(fingerprint)
        if hit is not None and now - hit[0] < NODE_CACHE_SECONDS:
            return hit[1]
        found = await self.repo.node_identities(fingerprint)
        if len(self._node_cache) > 10_000:
            self._node_cache.clear()
        self._node_cache[fingerprint] = (now, found)
        return found

    async def admin(self, request: web.Request) -> Caller:
        caller = await self.caller(request)
        if not caller.is_admin:
            raise AuthError("auth.forbidden", "this operation is for the hub operator")
        return caller

    def job(self, **kwargs: Any) -> worker.Job:
        return worker.Job(
            trust_dir=str(self.config.trust_dir),
            generation=self.runtime.generation,
            lenient=self.config.lenient_legacy,
            xml_max_bytes=self.config.max_body,
            xml_max_depth=self.config.xml_max_depth,
            xml_max_text_bytes=self.config.xml_max_text_bytes,
            **kwargs,
        )

    def notify_inbox(self, organ_ids: Any) -> None:
        """Wake long-polls of this process (other processes notice on their next poll tick)."""
        for organ_id in organ_ids:
            event = self.inbox_events.pop(organ_id, None)
            if event is not None:
                event.set()


HUB = web.AppKey("hub", Hub)
CONFIG = web.AppKey("config", HubConfig)
CLOCK = web.AppKey("clock", Callable[[], dt.datetime])  # type: ignore[arg-type]
RUNTIME = web.AppKey("runtime", Runtime)
REPO = web.AppKey("repo", Repository)  # type: ignore[type-abstract]
POOL = web.AppKey("pool", VerifyPool)
METRICS = web.AppKey("metrics", Metrics)


def _on_problem(request: web.Request, exc: GatewayError) -> None:
    metrics = request.app.get(METRICS)
    if metrics is not None:
        metrics.count_rejected(exc.code)


async def _runtime_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    runtime = app.get(RUNTIME) or Runtime(config, clock=app[CLOCK])
    app[RUNTIME] = runtime
    poller: asyncio.Task[None] | None = None
    if config.reload_interval > 0:

        async def poll() -> None:
            while True:
                await asyncio.sleep(config.reload_interval)
                try:
                    reloaded = runtime.reload()
                    if REPO in app:
                        await sync_directory(app[REPO], runtime, file_changed=reloaded)
                    app[METRICS].flush()
                except Exception:  # the poller must survive a bad file or a database blip
                    log.exception("reload poll failed")

        poller = asyncio.create_task(poll())
    yield
    if poller is not None:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller


async def sync_directory(repo: Any, runtime: Runtime, *, file_changed: bool) -> None:
    """The directory file into the database (when it changed), then the database's agencies (the file's
    and the operator's, which win) into the runtime's directory."""
    if file_changed:
        await repo.sync_directory(runtime.file_directory)
    runtime.set_db_agencies(await repo.admin("db_agencies"))


async def _repo_ctx(app: web.Application) -> AsyncIterator[None]:
    from gateway.hub.adapters import open_repository

    runtime = app[RUNTIME]
    async with open_repository(
        app[CONFIG],
        clock=app[CLOCK],
        holidays=lambda: runtime.holidays,
        directory=lambda: runtime.directory,
    ) as repo:
        app[REPO] = repo
        await sync_directory(repo, runtime, file_changed=True)
        yield


def make_pool(config: HubConfig) -> VerifyPool:
    """The verification pool: spawned processes (no fork of a running event loop), hub key loaded once."""
    return VerifyPool(
        config.verify_processes,
        initializer=worker.init_process,
        initargs=tuple(str(p) for p in config.signing_identity()),
    )


async def _pool_ctx(app: web.Application) -> AsyncIterator[None]:
    pool = make_pool(app[CONFIG])
    app[POOL] = pool
    try:
        await pool.start(warm=worker.warm)
        yield
    finally:
        await pool.close()


async def _hub_ctx(app: web.Application) -> AsyncIterator[None]:
    import hashlib

    from cryptography.hazmat.primitives.serialization import Encoding

    from gateway.hub.signing import HubSigner

    signer = HubSigner.load(*app[CONFIG].tls_identity())  # the hub's own certificate is an operator

    app[HUB] = Hub(
        config=app[CONFIG],
        clock=app[CLOCK],
        runtime=app[RUNTIME],
        repo=app[REPO],
        pool=app[POOL],
        metrics=app[METRICS],
        hub_fingerprint=hashlib.sha256(signer.chain[0].public_bytes(Encoding.DER)).hexdigest(),
    )
    yield
    app[METRICS].flush(force=True)


def create_app(
    settings: Any, *, clock: Clock | None = None, runtime: Runtime | None = None
) -> web.Application:
    """Build the hub application. Nothing is opened until the app starts (``cleanup_ctx``).

    ``settings``: the project :class:`gateway.settings.Settings` or a :class:`HubConfig`. ``clock``: the
    hub's notion of *now* (timezone-aware), for tests of deadlines and certificate validity. ``runtime``:
    an already-loaded runtime (the server passes the one whose TLS context it listens with).
    """
    config = hub_config(settings)
    app = web.Application(
        # Outermost first: a connection whose body was read past aiohttp closes after any response.
        middlewares=[body.close_after_direct_read, make_problem_middleware(_on_problem)],
        client_max_size=config.max_body,
    )
    app[CONFIG] = config
    app[CLOCK] = clock or utc_now
    app[METRICS] = Metrics(config.metrics_dir)
    if runtime is not None:
        app[RUNTIME] = runtime
    app.cleanup_ctx.extend([_runtime_ctx, _repo_ctx, _pool_ctx, _hub_ctx])

    from gateway.hub import routes_admin, routes_directory, routes_inbox, routes_ops, routes_packages

    for module in (routes_ops, routes_packages, routes_inbox, routes_directory, routes_admin):
        app.router.add_routes(module.routes)
    return app


def create_web_root(hub_app: web.Application) -> web.Application:
    """The web listener's application: the pages of :mod:`gateway.web` at ``/ui/`` and a redirect from
    ``/``, nothing else (the API stays on the mTLS port, and the pages never appear there).

    It shares the hub application's state, opened by the hub app's ``cleanup_ctx``: start ``hub_app``
    first (its runner's ``setup``), then this one; stop this one first.
    """
    from gateway.web import create_web_app

    config = hub_app[CONFIG]

    def repo() -> Any:
        return hub_app[REPO]

    def runtime() -> Runtime:
        return hub_app[RUNTIME]

    root = web.Application()

    async def to_ui(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/ui/")

    root.router.add_get("/", to_ui)
    root.add_subapp(
        "/ui/",
        create_web_app(
            config,
            clock=hub_app[CLOCK],
            db=lambda: repo().db,
            blobs=lambda: repo().blobs,
            holidays=lambda: runtime().holidays,
            directory=lambda: runtime().directory,
        ),
    )
    return root
