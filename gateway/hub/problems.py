"""The one place where errors become HTTP answers: ``application/problem+json`` (RFC 9457).

Every :class:`~gateway.errors.GatewayError` keeps its stable ``code`` and ``type`` URI; aiohttp's own HTTP
exceptions (404 for an unknown route, 405, 413 from the framework) are mapped to the registered codes so
that a client only ever sees one shape of error. Anything else is a bug: it is logged with its traceback
and the client gets a bare 500 problem that leaks nothing (no exception text, no path, no SQL).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.errors import PROBLEM_BASE, REASONS, GatewayError

PROBLEM_JSON = "application/problem+json"

log = logging.getLogger("gateway.hub")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# aiohttp status → registered reason, for errors the framework raises before our handlers run.
_HTTP_CODES: dict[int, str] = {
    400: "request.bad",
    401: "auth.unauthenticated",
    403: "auth.forbidden",
    404: "resource.not_found",
    408: "request.timeout",
    413: "input.too_large",
    415: "request.unsupported_media_type",
}

ProblemHook = Callable[[web.Request, GatewayError], None]
"""Called for every GatewayError answered (the metrics count rejections by reason through it)."""


def problem_response(
    body: dict[str, Any], status: int, headers: dict[str, str] | None = None
) -> web.Response:
    """A problem+json response; ``Connection: close`` is left to the caller (e.g. after an unread body)."""
    return web.Response(
        status=status,
        body=json.dumps(body, ensure_ascii=False).encode(),
        content_type=PROBLEM_JSON,
        headers=headers,
    )


def error_response(exc: GatewayError, request: web.Request) -> web.Response:
    return problem_response(exc.to_problem(instance=request.path), exc.status)


def _http_problem(exc: web.HTTPException, request: web.Request) -> dict[str, Any]:
    code = _HTTP_CODES.get(exc.status)
    if code is not None:
        return {
            "type": PROBLEM_BASE + code,
            "title": REASONS[code].title,
            "status": exc.status,
            "detail": exc.reason or REASONS[code].title,
            "code": code,
            "instance": request.path,
        }
    # 405 and friends: not a user-data failure with a registered reason, but still a problem document.
    return {"type": "about:blank", "title": exc.reason, "status": exc.status, "instance": request.path}


def make_problem_middleware(on_problem: ProblemHook | None = None) -> Any:
    """The middleware; ``on_problem`` observes each GatewayError (for metrics) and must not raise."""

    @web.middleware
    async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except GatewayError as exc:
            if on_problem is not None:
                on_problem(request, exc)
            response = error_response(exc, request)
            if request.can_read_body and not request.content.at_eof():
                # The body was refused unread (e.g. 413 before reading): do not try to drain it.
                response.force_close()
            return response
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = problem_response(_http_problem(exc, request), exc.status)
            for name in ("Allow", "Retry-After"):
                if name in exc.headers:
                    response.headers[name] = exc.headers[name]
            return response
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            return problem_response(
                {
                    "type": "about:blank",
                    "title": "Internal Server Error",
                    "status": 500,
                    "instance": request.path,
                },
                500,
            )

    return problem_middleware
