"""Sign-in, sessions, CSRF and roles of the web pages.

Decisions (see docs/web.md):

* **Server-side sessions.** The cookie ``gw_session`` holds 32 random bytes (URL-safe base64); the
  database holds only their SHA-256 with the user, the session's CSRF token and language
  (:mod:`gateway.store.accounts`). No signing key to distribute between hub processes, and logging out or
  disabling a user ends sessions at once. Cookies are ``HttpOnly``, ``SameSite=Lax``, ``Path`` = the
  mount point, and ``Secure`` when the request came over TLS. A new token is issued at every sign-in
  (no session fixation). Sessions last :attr:`WebContext.session_ttl` (8 hours: one working day).
* **CSRF.** Every POST must carry a ``csrf`` form field: the session's token when signed in; before
  sign-in (the login form) a double-submit token, the same random value in the ``gw_csrf`` cookie and the
  form. Compared in constant time. A cross-origin ``Origin`` header is refused as well.
* **Throttling.** Per account in the database (5 free attempts, then a lock of 1 minute that doubles with
  each further failure, up to about an hour), so N hub processes share it; and per client address in
  memory (20 failures in 10 minutes). The answer never says which of the two, nor whether the username
  exists (an unknown name still costs one argon2 check).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import TYPE_CHECKING, Any

from aiohttp import web
from yarl import URL

from gateway.store import accounts
from gateway.store.accounts import WebSession, WebUser
from gateway.web import i18n, passwords

if TYPE_CHECKING:
    from gateway.web.app import WebContext

SESSION_COOKIE = "gw_session"
CSRF_COOKIE = "gw_csrf"
LANG_COOKIE = "gw_lang"
FREE_ATTEMPTS = 5
LOCK_FOR = dt.timedelta(minutes=1)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

USER = web.RequestKey("web_user", WebUser)
SESSION = web.RequestKey("web_session", WebSession)
LANG = web.RequestKey("lang", str)
NAMES = web.RequestKey("agency_names", dict)
"""``organ_id -> (name, level)`` for the page being rendered."""
CSRF_PRE = web.RequestKey("csrf_pre", str)
CSRF_PRE_SET = web.RequestKey("csrf_pre_set", bool)
NEW_TOKEN = web.RequestKey("new_session_token", str)
"""The cookie token of a session started by this request (sign-in)."""


class CsrfRejected(web.HTTPForbidden):
    """A POST without the right CSRF token (or from another origin)."""


def _ctx(request: web.Request) -> WebContext:
    from gateway.web.app import WEB

    return request.app[WEB]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def cookie_path(request: web.Request) -> str:
    """The mount point (``/ui/`` in the hub, ``/`` standalone), so cookies go to these pages only."""
    return str(request.app.router["home"].url_for())


def _secure(request: web.Request) -> bool:
    forced = _ctx(request).cookie_secure
    return request.secure if forced is None else forced


def set_cookie(response: web.StreamResponse, request: web.Request, name: str, value: str, **kw: Any) -> None:
    response.set_cookie(
        name,
        value,
        path=cookie_path(request),
        httponly=True,
        samesite="Lax",
        secure=_secure(request),
        **kw,
    )


@dataclass
class IpThrottle:
    """Failed sign-ins per client address in this process: at most ``limit`` in ``window`` seconds."""

    limit: int = 20
    window: float = 600.0
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def blocked(self, address: str) -> bool:
        recent = self._recent(address)
        return len(recent) >= self.limit

    def fail(self, address: str) -> None:
        if len(self._failures) > 10_000:
            self._failures.clear()
        self._recent(address).append(time.monotonic())

    def _recent(self, address: str) -> deque[float]:
        queue = self._failures.setdefault(address, deque())
        cutoff = time.monotonic() - self.window
        while queue and queue[0] < cutoff:
            queue.popleft()
        return queue


def current_user(request: web.Request) -> WebUser | None:
    return request.get(USER)


def current_session(request: web.Request) -> WebSession | None:
    return request.get(SESSION)


def csrf_token(request: web.Request) -> str:
    """The token the page's forms must carry (the session's, or the double-submit one before sign-in)."""
    session = current_session(request)
    if session is not None:
        return session.csrf_token
    token = request.get(CSRF_PRE)
    if token is None:
        token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        request[CSRF_PRE] = token
        request[CSRF_PRE_SET] = CSRF_COOKIE not in request.cookies
    return token


async def _check_csrf(request: web.Request) -> None:
    origin = request.headers.get("Origin")
    if origin and origin != "null" and URL(origin).host != request.url.host:
        raise CsrfRejected(text="error_csrf")
    form = await request.post()
    sent = form.get("csrf")
    session = current_session(request)
    expected = session.csrf_token if session is not None else request.cookies.get(CSRF_COOKIE)
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(sent, expected):
        raise CsrfRejected(text="error_csrf")


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Attach the signed-in user and the language; check CSRF on every POST."""
    ctx = _ctx(request)
    token = request.cookies.get(SESSION_COOKIE)
    info = await accounts.get_session(ctx.db, token_hash(token), now=ctx.now()) if token else None
    if info is not None:
        request[USER] = info.user
        request[SESSION] = info.session
        request[NAMES] = await ctx.agencies()  # cached; the header names the clerk's agency
    asked = i18n.parse_lang(request.query.get("lang"))
    lang = asked or (info.session.lang if info else None) or i18n.parse_lang(request.cookies.get(LANG_COOKIE))
    request[LANG] = lang or "vi"
    if asked and info is not None and info.session.lang != asked:
        await accounts.set_session_lang(ctx.db, info.session.token_hash, asked)
    if request.method == "POST":
        await _check_csrf(request)
    response = await handler(request)
    if asked:
        set_cookie(response, request, LANG_COOKIE, asked, max_age=365 * 86400)
    if request.get(CSRF_PRE_SET):
        set_cookie(response, request, CSRF_COOKIE, request[CSRF_PRE])
    if token and info is None and NEW_TOKEN not in request:
        response.del_cookie(SESSION_COOKIE, path=cookie_path(request))  # expired or revoked
    return response


def require(*roles: str) -> Callable[[Handler], Handler]:
    """Only signed-in users with one of ``roles`` (any role if none given); others are sent to sign in
    (not signed in) or get 403 (signed in, wrong role)."""

    def decorate(handler: Handler) -> Handler:
        @wraps(handler)
        async def wrapped(request: web.Request) -> web.StreamResponse:
            user = current_user(request)
            if user is None:
                login = request.app.router["login"].url_for().with_query(next=request.path_qs)
                raise web.HTTPSeeOther(login)
            if roles and user.role not in roles:
                raise web.HTTPForbidden()
            return await handler(request)

        return wrapped

    return decorate


def client_address(request: web.Request) -> str:
    return request.remote or "?"


async def sign_in(request: web.Request, username: str, password: str) -> WebUser | str:
    """Check a password (throttled); on success start a session. Returns the user or an i18n error key."""
    ctx = _ctx(request)
    address = client_address(request)
    if ctx.throttle.blocked(address):
        return "login_throttled"
    now = ctx.now()
    user = await accounts.get_user(ctx.db, username.strip()) if username.strip() else None
    usable = user is not None and not user.disabled
    ok = await asyncio.to_thread(passwords.verify_password, user.password_hash if usable else None, password)
    locked = user is not None and user.locked_until is not None and user.locked_until > now
    if not ok or locked or user is None or not usable:
        ctx.throttle.fail(address)
        if user is not None and user.id is not None and not locked:
            await accounts.record_login_failure(
                ctx.db, user.id, now=now, free_attempts=FREE_ATTEMPTS, lock_for=LOCK_FOR
            )
        return "login_failed"
    assert user.id is not None
    await accounts.record_login_success(ctx.db, user.id, now=now)
    if passwords.needs_rehash(user.password_hash):
        new_hash = await asyncio.to_thread(passwords.hash_password, password)
        await accounts.set_password(ctx.db, user.username, new_hash)
    token = secrets.token_urlsafe(32)
    await accounts.create_session(
        ctx.db,
        user_id=user.id,
        token_hash=token_hash(token),
        csrf_token=secrets.token_urlsafe(32),
        lang=request.get(LANG, "vi"),
        now=now,
        ttl=ctx.session_ttl,
    )
    request[NEW_TOKEN] = token
    return user


async def sign_out(request: web.Request) -> None:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await accounts.delete_session(_ctx(request).db, token_hash(token))
