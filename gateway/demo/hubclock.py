"""``python -m gateway.demo.hubclock SECONDS [--config FILE] [--workers N]``: the real hub
(:mod:`gateway.hub.server`, the same code ``gateway hub serve`` runs) with its clock moved ``SECONDS``
ahead.

The demo plays a month in a minute; a recipient becomes *overdue* only once the end of the next working
day after the hub received the document has passed. So, for the clerks' review at the end of the month,
the demo restarts the hub with its clock a couple of working days ahead. Only the hub's clock moves:
its receipts and status times are already stored, nodes and certificates keep real time.

The hub's application factory takes a ``clock`` (``create_app(settings, *, clock=None)``); the server
entry point does not pass one, so this module swaps the factory's default (``gateway.hub.app.utc_now``)
before starting it, and refuses to start if that default is gone rather than silently run at real time.
"""

from __future__ import annotations

import datetime as dt
import sys


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m gateway.demo.hubclock SECONDS [--config FILE]", file=sys.stderr)
        return 2
    offset = dt.timedelta(seconds=float(args.pop(0)))

    import gateway.hub.app as hub_app

    real = getattr(hub_app, "utc_now", None)
    if real is None:
        print("error: gateway.hub.app.utc_now is gone; the demo cannot move the hub's clock", file=sys.stderr)
        return 1

    def shifted() -> dt.datetime:
        return real() + offset  # type: ignore[no-any-return]

    hub_app.utc_now = shifted  # type: ignore[attr-defined]

    from gateway.hub.server import main as serve

    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
