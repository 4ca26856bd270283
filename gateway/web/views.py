"""The pages: sign-in, clerks' dispatches/timelines/overdue list, the auditors' rate dashboard, users.

Who sees what (docs/web.md):

* **clerk** — the dispatches its agency sent or received, their timelines (a recipient sees only its
  own line; the sender sees every recipient), the overdue lists, the package bytes, the hub's verdict and
  receipt. Anything else is **404**, the same answer as an id that does not exist, so ids cannot be probed.
* **auditor** — the rate dashboard, its CSV export and drill-down, and the metadata of every dispatch
  (lists, timelines, verdict, receipt), but **not the package bytes** (403): figures need no document
  content, and the content is the parties' business.
* **admin** — everything (any agency via ``?organ=``), and the user list.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from gateway.calendar import VN_TZ, vn_date
from gateway.errors import NotFound, RequestError
from gateway.rate import BUCKETS, Bucket, RateRow, Series, level_label, parse_level_pair, total_row
from gateway.store.accounts import WebUser, list_users
from gateway.store.dispatches import packages_by_ids, search_dispatches
from gateway.store.packages import PackageDetail, get_package
from gateway.store.packages import package_bytes as stored_bytes
from gateway.store.statuses import overdue_exchanges, timeline
from gateway.web import auth, charts, i18n
from gateway.web.app import WEB, WebContext

routes = web.RouteTableDef()
PAGE_SIZE = 50
DRILL_PAGE_SIZE = 100

# --- formatting ---------------------------------------------------------------------------------------


def _vn_time(value: dt.datetime | None) -> str:
    return value.astimezone(VN_TZ).strftime("%d/%m/%Y %H:%M") if value else ""


def _vn_day(value: dt.date | None) -> str:
    return value.strftime("%d/%m/%Y") if value else ""


def _size(value: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024  # type: ignore[assignment]
    return str(value)


FILTERS: dict[str, Callable[..., str]] = {"vn_time": _vn_time, "vn_day": _vn_day, "size": _size}


def _percent(rate: float | None, lang: i18n.Lang) -> str:
    if rate is None:
        return "–"
    text = f"{rate * 100:.1f} %"
    return text.replace(".", ",") if lang == "vi" else text


# --- rendering ----------------------------------------------------------------------------------------


def _ctx(request: web.Request) -> WebContext:
    return request.app[WEB]


def url(request: web.Request, name: str, query: Mapping[str, Any] | None = None, **parts: str) -> str:
    """A path inside this app (with its mount prefix) and a query without empty values."""
    path = str(request.app.router[name].url_for(**parts))
    clean = {k: v for k, v in (query or {}).items() if v not in (None, "")}
    return f"{path}?{urlencode(clean)}" if clean else path


def render(
    request: web.Request, template: str, context: Mapping[str, Any], *, status: int = 200
) -> web.Response:
    lang = i18n.parse_lang(request.get(auth.LANG)) or "vi"
    user = auth.current_user(request)
    names: Mapping[str, tuple[str, str | None]] = request.get(auth.NAMES, {})

    def lang_link(target: str) -> str:
        query = dict(request.query)
        query["lang"] = target
        return f"{request.path}?{urlencode(query)}"

    body = (
        _ctx(request)
        .templates.get_template(template)
        .render(
            {
                "lang": lang,
                "t": lambda key: i18n.translate(key, lang),
                "status_label": lambda code: i18n.status_label(code, lang),
                "percent": lambda rate: _percent(rate, lang),
                "agency_name": lambda organ_id: names.get(organ_id, (organ_id, None))[0],
                "level_label": lambda level: level_label(level, lang),
                "url": lambda name, query=None, **parts: url(request, name, query, **parts),
                "lang_link": lang_link,
                "user": user,
                "csrf": auth.csrf_token(request) if template != "error.html" or user else "",
                **context,
            }
        )
    )
    response = web.Response(text=body, content_type="text/html", status=status)
    token = request.get(auth.NEW_TOKEN)
    if token:
        auth.set_cookie(response, request, auth.SESSION_COOKIE, token)
    return response


def redirect(location: str) -> web.Response:
    """A 303 returned (not raised), so the middlewares can still add cookies and headers to it."""
    return web.Response(status=303, headers={"Location": location})


async def _load_names(request: web.Request) -> None:
    if auth.NAMES not in request:
        request[auth.NAMES] = await _ctx(request).agencies()


# --- parameters ---------------------------------------------------------------------------------------


def _date(request: web.Request, name: str) -> dt.date | None:
    raw = request.query.get(name, "").strip()
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise web.HTTPBadRequest() from None


def _int(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name, "")
    if not raw:
        return default
    if not raw.isdigit():
        raise web.HTTPBadRequest()
    return int(raw)


_ORGAN_ID = re.compile(r"^[0-9A-Z.]{1,64}$")


def _organ(request: web.Request, name: str) -> str | None:
    raw = request.query.get(name, "").strip()
    if not raw:
        return None
    if not _ORGAN_ID.match(raw):
        raise web.HTTPBadRequest()
    return raw


def _scope(request: web.Request, user: WebUser) -> str | None:
    """The agency whose documents a page shows: a clerk's own; for others ``?organ=`` or all."""
    if user.role == "clerk":
        return user.organ_id
    return _organ(request, "organ")


# --- sign-in ------------------------------------------------------------------------------------------


def _safe_next(request: web.Request, target: str | None) -> str:
    home = url(request, "home")
    if not target or not target.startswith(home) or target.startswith("//") or "\\" in target:
        return home
    return target


@routes.get("/", name="home")
async def home(request: web.Request) -> web.StreamResponse:
    user = auth.current_user(request)
    if user is None:
        return redirect(url(request, "login"))
    return redirect(url(request, "dispatches" if user.role == "clerk" else "rate"))


@routes.get("/login", name="login")
async def login_page(request: web.Request) -> web.StreamResponse:
    return render(
        request, "login.html", {"error": None, "next": request.query.get("next", ""), "username": ""}
    )


@routes.post("/login")
async def login_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    username = str(form.get("username", ""))[:64]
    password = str(form.get("password", ""))[:1024]
    target = _safe_next(request, str(form.get("next", "")) or None)
    result = await auth.sign_in(request, username, password)
    if isinstance(result, str):
        context = {"error": result, "next": target, "username": username}
        return render(request, "login.html", context, status=401)
    response = redirect(target)
    auth.set_cookie(response, request, auth.SESSION_COOKIE, request[auth.NEW_TOKEN])
    response.del_cookie(auth.CSRF_COOKIE, path=auth.cookie_path(request))
    return response


@routes.post("/logout", name="logout")
async def logout(request: web.Request) -> web.StreamResponse:
    await auth.sign_out(request)
    response = redirect(url(request, "login"))
    response.del_cookie(auth.SESSION_COOKIE, path=auth.cookie_path(request))
    return response


# --- dispatches (clerks; metadata for auditors and admins) -------------------------------------------


@routes.get("/dispatches", name="dispatches")
@auth.require()
async def dispatches(request: web.Request) -> web.StreamResponse:
    user = auth.current_user(request)
    assert user is not None
    organ = _scope(request, user)
    direction = request.query.get("dir", "all")
    if direction not in ("all", "sent", "received"):
        raise web.HTTPBadRequest()
    page = max(_int(request, "page", 1), 1)
    filters = {
        "number": request.query.get("number", "").strip()[:100],
        "subject": request.query.get("subject", "").strip()[:200],
        "from": request.query.get("from", ""),
        "to": request.query.get("to", ""),
        "dir": direction,
        "organ": organ if user.role != "clerk" else None,
    }
    result = await search_dispatches(
        _ctx(request).db,
        organ_id=organ,
        direction=direction,  # type: ignore[arg-type]
        number=filters["number"] or None,
        subject=filters["subject"] or None,
        date_from=_date(request, "from"),
        date_to=_date(request, "to"),
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
    )
    await _load_names(request)
    pages = max((result.total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
    return render(
        request,
        "dispatches.html",
        {
            "rows": result.rows,
            "total": result.total,
            "page": page,
            "pages": pages,
            "filters": filters,
            "organ": organ,
            "page_link": lambda n: url(request, "dispatches", {**filters, "page": n}),
        },
    )


async def _visible(request: web.Request) -> PackageDetail:
    """The package if the user may see it; 404 for a clerk whose agency is not a party (as if absent)."""
    user = auth.current_user(request)
    assert user is not None
    try:
        detail = await get_package(_ctx(request).db, int(request.match_info["id"]))
    except NotFound:
        raise web.HTTPNotFound() from None
    if user.role == "clerk" and (user.organ_id is None or not detail.is_party(user.organ_id)):
        raise web.HTTPNotFound()
    return detail


@routes.get(r"/dispatches/{id:\d{1,18}}", name="dispatch")
@auth.require()
async def dispatch(request: web.Request) -> web.StreamResponse:
    user = auth.current_user(request)
    assert user is not None
    detail = await _visible(request)
    ctx = _ctx(request)
    line = await timeline(ctx.db, detail.package.id or 0, now=ctx.now(), holidays=ctx.holidays)
    lines = line.exchanges
    if user.role == "clerk" and user.organ_id != line.document.sender_organ_id:
        lines = tuple(x for x in lines if x.exchange.recipient_organ_id == user.organ_id)
    await _load_names(request)
    return render(
        request,
        "dispatch.html",
        {
            "detail": detail,
            "package": detail.package,
            "document": line.document,
            "lines": lines,
            "can_download": user.role != "auditor",
        },
    )


def _verdict(detail: PackageDetail) -> dict[str, Any]:
    p = detail.package
    return {
        "package_id": p.id,
        "sha256": p.sha256,
        "size": p.size,
        "form": p.form,
        "document_id": p.document_id,
        "sender": p.sender_organ_id,
        "recipients": list(detail.recipients),
        "bussiness_doc_type": p.bussiness_doc_type,
        "target_document_id": p.target_document_id,
        "paper": p.paper,
        "signature": {
            "verdict": p.signature_verdict,
            "valid": p.signature_ok,
            "signer_fingerprint": p.signer_fingerprint,
        },
        "electronic": p.signature_ok and not p.paper,
        "received_at": p.received_at.isoformat(),
        "attachments": [
            {
                "content_id": a.content_id,
                "name": a.name,
                "content_type": a.content_type,
                "size": a.size,
                "sha256": a.sha256,
            }
            for a in detail.attachments
        ],
    }


def _file_stem(detail: PackageDetail) -> str:
    p = detail.package
    number = f"{p.code_number or ''}-{p.code_notation or ''}".strip("-") or f"package-{p.id}"
    return re.sub(r"[^0-9A-Za-z._-]+", "_", number)[:80]


@routes.get(r"/dispatches/{id:\d{1,18}}/verdict.json", name="verdict")
@auth.require()
async def verdict(request: web.Request) -> web.StreamResponse:
    detail = await _visible(request)
    return web.Response(
        text=json.dumps(_verdict(detail), ensure_ascii=False, indent=2),
        content_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{_file_stem(detail)}.verdict.json"'},
    )


@routes.get(r"/dispatches/{id:\d{1,18}}/receipt.xml", name="receipt")
@auth.require()
async def receipt(request: web.Request) -> web.StreamResponse:
    detail = await _visible(request)
    return web.Response(
        body=detail.package.receipt,
        content_type="application/xml",
        headers={"Content-Disposition": f'attachment; filename="{_file_stem(detail)}.receipt.xml"'},
    )


@routes.get(r"/dispatches/{id:\d{1,18}}/package", name="package")
@auth.require("clerk", "admin")
async def package_bytes(request: web.Request) -> web.StreamResponse:
    """The exact bytes the sender sent (parties and administrators only; auditors get 403)."""
    detail = await _visible(request)
    ctx = _ctx(request)
    package = detail.package
    data = await stored_bytes(ctx.db, ctx.blobs, package.sha256, blob_sha256=package.blob_sha256)
    if data is None:
        raise web.HTTPNotFound()
    single = package.form == "single"
    # The Content-Type the bytes arrived with, when the store keeps it (a multipart body needs its boundary).
    stored_type = getattr(package, "content_type", None)
    fallback = "application/edxml+xml" if single else "application/octet-stream"
    name = f"{_file_stem(detail)}.{'edxml' if single else 'mime'}"
    headers = {
        "Content-Type": stored_type or fallback,
        "Content-Disposition": f'attachment; filename="{name}"',
    }
    if isinstance(data, bytes):
        return web.Response(body=data, headers=headers)
    return web.FileResponse(data, headers=headers)


@routes.get("/overdue", name="overdue")
@auth.require("clerk", "admin")
async def overdue(request: web.Request) -> web.StreamResponse:
    user = auth.current_user(request)
    assert user is not None
    organ = _scope(request, user)
    ctx = _ctx(request)
    now = ctx.now()
    sent: list[Any] = []
    received: list[Any] = []
    if organ is not None:
        sent = await overdue_exchanges(ctx.db, organ_id=organ, role="sender", now=now, holidays=ctx.holidays)
        received = await overdue_exchanges(
            ctx.db, organ_id=organ, role="recipient", now=now, holidays=ctx.holidays
        )
    packages = await packages_by_ids(ctx.db, [x.exchange.package_id for x in (*sent, *received)])
    await _load_names(request)
    return render(
        request,
        "overdue.html",
        {"organ": organ, "sent": sent, "received": received, "packages": packages, "now": now},
    )


# --- the rate (auditors and admins) ------------------------------------------------------------------


def _rate_filters(request: web.Request) -> dict[str, Any]:
    today = vn_date(_ctx(request).now())
    date_from = _date(request, "from") or today.replace(month=1, day=1)
    date_to = _date(request, "to") or today
    if date_from > date_to:
        raise web.HTTPBadRequest()
    level_pair = request.query.get("level_pair", "").strip() or None
    if level_pair is not None:
        try:
            parse_level_pair(level_pair)
        except ValueError:
            raise web.HTTPBadRequest() from None
    return {
        "date_from": date_from,
        "date_to": date_to,
        "level_pair": level_pair,
        "sender": _organ(request, "sender"),
        "recipient": _organ(request, "recipient"),
    }


def _query_of(filters: Mapping[str, Any]) -> dict[str, str]:
    """Page query parameters from engine filters (``date_from`` → ``from`` …)."""
    out: dict[str, str] = {}
    for key, value in filters.items():
        if value is None:
            continue
        name = {"date_from": "from", "date_to": "to"}.get(key, key)
        out[name] = value.isoformat() if isinstance(value, dt.date) else str(value)
    return out


LEVEL_PAIRS = tuple(
    f"{s}→{r}"
    for s, r in (
        ("central", "province"),
        ("province", "department"),
        ("province", "district"),
        ("province", "commune"),
        ("department", "district"),
        ("department", "commune"),
        ("district", "commune"),
        ("district", "district"),
        ("department", "department"),
    )
)


@routes.get("/rate", name="rate")
@auth.require("auditor", "admin")
async def rate(request: web.Request) -> web.StreamResponse:
    from gateway.store.rate import monthly_series, rate_report

    lang = i18n.parse_lang(request.get(auth.LANG)) or "vi"
    filters = _rate_filters(request)
    agency_by = request.query.get("agency_by", "sender")
    if agency_by not in ("sender", "recipient"):
        raise web.HTTPBadRequest()
    db = _ctx(request).db
    try:
        by_pair = await rate_report(db, by=("level_pair",), **filters)
        by_agency = await rate_report(db, by=(agency_by,), **filters)
        by_month = await rate_report(db, by=("month",), **filters)
        series = await monthly_series(db, by="level_pair", **filters)
    except RequestError:
        raise web.HTTPBadRequest() from None
    query = _query_of(filters)

    def drill(row_filters: Mapping[str, str], bucket: Bucket | None = None) -> str:
        return url(
            request, "rate_exchanges", {**query, **row_filters, "bucket": bucket.value if bucket else None}
        )

    def title_point(s: Series, row: RateRow) -> str:
        share = f"{row.fully_electronic}/{row.denominator}"
        return f"{s.labels[lang]} · {row.key[-1]}: {_percent(row.rate, lang)} ({share})"

    line = charts.line_chart(
        series,
        label=lambda s: s.labels[lang],
        point_title=title_point,
        href=lambda s, month: drill({"level_pair": s.key, "month": month}),
    )
    bars = charts.stacked_bars(
        by_month,
        bucket_label=lambda b: b.label(lang),
        segment_title=lambda row, b: f"{row.key[-1]} · {b.label(lang)}: {row.counts.get(b, 0)}",
        href=lambda row, b: drill(row.filters(), b),
    )
    await _load_names(request)
    names = request[auth.NAMES]
    return render(
        request,
        "rate.html",
        {
            "filters": filters,
            "query": query,
            "by_pair": by_pair,
            "by_agency": by_agency,
            "agency_by": agency_by,
            "total": total_row(by_pair),
            "line": line,
            "bars": bars,
            "buckets": BUCKETS,
            "drill": drill,
            "level_pairs": LEVEL_PAIRS,
            "agencies": sorted(names.items(), key=lambda item: item[0]),
            "row_label": lambda row: row.label(lang),
        },
    )


CSV_BY = {
    "level_pair": ("level_pair",),
    "sender": ("sender",),
    "recipient": ("recipient",),
    "month": ("month",),
}


@routes.get("/rate.csv", name="rate_csv")
@auth.require("auditor", "admin")
async def rate_csv(request: web.Request) -> web.StreamResponse:
    """The figures of a table as CSV (UTF-8 with a BOM, so spreadsheet programs read the diacritics)."""
    from gateway.store.rate import rate_report

    lang = i18n.parse_lang(request.get(auth.LANG)) or "vi"
    filters = _rate_filters(request)
    by = CSV_BY.get(request.query.get("by", "level_pair"))
    if by is None:
        raise web.HTTPBadRequest()
    try:
        rows = await rate_report(_ctx(request).db, by=by, **filters)
    except RequestError:
        raise web.HTTPBadRequest() from None
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([*by, "label", *(b.value for b in BUCKETS), "total", "denominator", "rate"])
    for row in rows:
        writer.writerow(
            [
                *row.key,
                row.label(lang),
                *(row.counts.get(b, 0) for b in BUCKETS),
                row.total,
                row.denominator,
                "" if row.rate is None else f"{row.rate:.6f}",
            ]
        )
    name = f"rate_{by[0]}_{filters['date_from']}_{filters['date_to']}.csv"
    return web.Response(
        body=("\ufeff" + out.getvalue()).encode("utf-8"),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@routes.get("/rate/exchanges", name="rate_exchanges")
@auth.require("auditor", "admin")
async def rate_exchanges(request: web.Request) -> web.StreamResponse:
    """The drill-down: the exchanges behind a figure, each with its bucket and reason."""
    from gateway.store.rate import exchanges_count, exchanges_report

    filters = _rate_filters(request)
    bucket_raw = request.query.get("bucket", "").strip() or None
    if bucket_raw is not None and bucket_raw not in {b.value for b in Bucket}:
        raise web.HTTPBadRequest()
    month = request.query.get("month", "").strip() or None
    page = max(_int(request, "page", 1), 1)
    db = _ctx(request).db
    try:
        total = await exchanges_count(db, bucket=bucket_raw, month=month, **filters)
        rows = await exchanges_report(
            db,
            bucket=bucket_raw,
            month=month,
            limit=DRILL_PAGE_SIZE,
            offset=(page - 1) * DRILL_PAGE_SIZE,
            **filters,
        )
    except RequestError:
        raise web.HTTPBadRequest() from None
    query = {**_query_of(filters), "bucket": bucket_raw, "month": month}
    await _load_names(request)
    pages = max((total + DRILL_PAGE_SIZE - 1) // DRILL_PAGE_SIZE, 1)
    return render(
        request,
        "exchanges.html",
        {
            "rows": rows,
            "total": total,
            "page": page,
            "pages": pages,
            "filters": filters,
            "bucket": Bucket(bucket_raw) if bucket_raw else None,
            "month": month,
            "query": query,
            "page_link": lambda n: url(request, "rate_exchanges", {**query, "page": n}),
        },
    )


# --- administration ------------------------------------------------------------------------------------


@routes.get("/users", name="users")
@auth.require("admin")
async def users(request: web.Request) -> web.StreamResponse:
    await _load_names(request)
    return render(request, "users.html", {"users": await list_users(_ctx(request).db)})
