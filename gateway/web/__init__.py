"""Web pages of the hub for clerks, auditors and administrators (aiohttp + jinja2, no JavaScript).

Mounted by the hub at ``/ui/``; see :func:`create_web_app` and docs/web.md.
"""

from gateway.web.app import WEB, WebContext, create_web_app

__all__ = ["WEB", "WebContext", "create_web_app"]
