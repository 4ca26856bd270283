"""The web pages' application factory: ``create_web_app(settings, …) -> web.Application``.

A sub-application the hub mounts at ``/ui/`` (``app.add_subapp("/ui/", create_web_app(...))``); it can
also run on its own (tests, or a separate listener without client certificates). Everything handlers use
hangs off one typed :data:`WEB` key, built when the app starts (``cleanup_ctx``), never at import time.

What it needs: the store's :class:`~gateway.store.Database` (opened from ``settings.database_url`` if not
given), a :class:`~gateway.store.BlobStore` for package bytes, the working-day calendar for the overdue
rule, and the agency directory for names (a callable, so a hub that reloads its directory is followed).

Middlewares, outermost first: security headers (CSP without scripts, no framing, ``no-store`` on every
page since they show documents or figures), error pages (HTML, never a traceback; the hub's problem+json
middleware above sees only finished responses), the session (cookie → user, language) and CSRF checks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import jinja2
from aiohttp import web

from gateway.calendar import Holidays, HolidaysLike
from gateway.errors import GatewayError
from gateway.store.blobs import BlobStore
from gateway.store.db import Database, open_database
from gateway.web import auth, i18n

log = logging.getLogger("gateway.web")

Clock = Callable[[], dt.datetime]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
NAMES_TTL = 30.0

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


class AgencyInfo(Protocol):
    organ_id: str
    name: str
    level: str | None


class DirectoryLike(Protocol):
    def get(self, organ_id: str) -> Any: ...


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(kw_only=True)
class WebContext:
    """What the handlers use, in one place."""

    db: Database
    blobs: BlobStore
    holidays_source: Callable[[], Holidays]
    """The calendar now (a hub reloads ``holidays.toml`` while running)."""
    clock: Clock
    directory: Callable[[], DirectoryLike | None]
    templates: jinja2.Environment
    session_ttl: dt.timedelta
    cookie_secure: bool | None
    """``None``: Secure when the request came over TLS; ``True``/``False`` to force (a TLS proxy)."""
    throttle: auth.IpThrottle = field(default_factory=auth.IpThrottle)
    _names: tuple[float, dict[str, tuple[str, str | None]]] = (0.0, {})

    def now(self) -> dt.datetime:
        return self.clock()

    @property
    def holidays(self) -> Holidays:
        return self.holidays_source()

    async def agencies(self) -> Mapping[str, tuple[str, str | None]]:
        """``organ_id -> (name, level)``: the store's directory table, overlaid by the live directory."""
        stamp, cached = self._names
        if time.monotonic() - stamp > NAMES_TTL:
            from gateway.store.directory import list_agencies

            cached = {
                a.organ_id: (a.name, a.level) for a in await list_agencies(self.db, include_inactive=True)
            }
            self._names = (time.monotonic(), cached)
        directory = self.directory()
        if directory is None:
            return cached
        merged = dict(cached)
        for agency in directory:  # type: ignore[attr-defined]
            merged[agency.organ_id] = (agency.name, agency.level)
        return merged


WEB = web.AppKey("web", WebContext)


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("gateway.web", "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    from gateway.web import views

    env.filters.update(views.FILTERS)
    return env


def _setting(settings: Any, *names: str) -> Any:
    for name in names:
        value = getattr(settings, name, None)
        if value not in (None, "", ()):
            return value
    return None


def _holidays_from(settings: Any) -> Holidays:
    path = _setting(settings, "holidays_file")
    if path is not None and Path(path).is_file():
        return Holidays.load(path)
    days = _setting(settings, "holidays") or ()
    return Holidays(days_off=frozenset(dt.date.fromisoformat(str(d)) for d in days))


def create_web_app(
    settings: Any = None,
    *,
    db: Database | Callable[[], Database] | None = None,
    blobs: BlobStore | Callable[[], BlobStore] | None = None,
    holidays: HolidaysLike | Callable[[], HolidaysLike] = None,
    directory: Callable[[], DirectoryLike | None] | None = None,
    clock: Clock | None = None,
    session_ttl: dt.timedelta = dt.timedelta(hours=8),
    cookie_secure: bool | None = None,
) -> web.Application:
    """Build the web pages. Nothing is opened until the app (or the app it is mounted in) starts.

    ``settings``: :class:`gateway.settings.Settings` or the hub's ``HubConfig`` (``database_url``,
    ``blob_dir``/``data_dir``, ``holidays_file``/``holidays``); unused for what is passed explicitly.
    ``db``: an open database to share (the caller closes it), or a callable returning it when the app
    starts (the hub's repository is opened in the hub's own ``cleanup_ctx``, which runs first); else one
    is opened from the settings and closed with the app. ``blobs`` likewise. ``holidays``: a calendar,
    or a callable asked at each use (follows a hub's reloads). ``clock``: *now* (aware), for tests.
    """
    app = web.Application(middlewares=[_security_headers, _error_pages, auth.session_middleware])

    async def _context(app: web.Application) -> AsyncIterator[None]:
        owned = db is None
        if db is None:
            url = _setting(settings, "database_url")
            if url is None:
                raise ValueError("create_web_app needs db= or settings with a database_url")
            database = open_database(url)
        else:
            database = db() if callable(db) else db
        if blobs is None:
            root = _setting(settings, "blob_dir") or Path(_setting(settings, "data_dir") or "var") / "blobs"
            blob_root = BlobStore(root)
        else:
            blob_root = blobs() if callable(blobs) else blobs
        if callable(holidays):
            source = holidays

            def calendar() -> Holidays:
                return Holidays.of(source())
        else:
            fixed = Holidays.of(holidays) if holidays is not None else _holidays_from(settings)

            def calendar() -> Holidays:
                return fixed

        app[WEB] = WebContext(
            db=database,
            blobs=blob_root,
            holidays_source=calendar,
            clock=clock or utc_now,
            directory=directory or (lambda: None),
            templates=_templates(),
            session_ttl=session_ttl,
            cookie_secure=cookie_secure,
        )
        try:
            yield
        finally:
            if owned:
                await database.close()

    app.cleanup_ctx.append(_context)
    from gateway.web import views

    app.router.add_routes(views.routes)
    app.router.add_static("/static/", Path(__file__).parent / "static", name="static")
    return app


@web.middleware
async def _security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if not request.path.startswith(_static_prefix(request)):
        # Every page shows documents, their metadata or figures: never keep them in a shared cache.
        headers["Cache-Control"] = "no-store"
    if request.secure:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


def _static_prefix(request: web.Request) -> str:
    return str(request.app.router["static"].url_for(filename=""))


@web.middleware
async def _error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes an HTML page in the user's language; 3xx pass through."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:  # a redirect: answered here so the security headers are added to it
            return web.Response(status=exc.status, headers=exc.headers)
        return await render_error(
            request, exc.status, "error_csrf" if isinstance(exc, auth.CsrfRejected) else None
        )
    except GatewayError as exc:
        return await render_error(request, exc.status, None)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("web page failed: %s %s", request.method, request.path)
        return await render_error(request, 500, None)


async def render_error(request: web.Request, status: int, message_key: str | None) -> web.Response:
    lang = i18n.parse_lang(request.get(auth.LANG)) or "vi"
    key = message_key or f"error_{status if status in (403, 404) else 400}"
    if status >= 500:
        key = "error_500"
    from gateway.web import views

    return views.render(
        request,
        "error.html",
        {"status": status, "message": i18n.translate(key, lang)},
        status=status,
    )
