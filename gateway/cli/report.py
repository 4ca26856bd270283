"""Reports: the electronic-exchange rate (DESIGN §5) and the exchanges behind any figure, with reasons."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from gateway.rate import BUCKETS, GROUPINGS, ExchangeReason, Grouping, Lang, RateRow, total_row

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

T = TypeVar("T")


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


class Language(StrEnum):
    vi = "vi"
    en = "en"


DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        "--url",
        help="Database URL (default: the settings' database_url, GATEWAY_DATABASE_URL).",
    ),
]
ConfigOption = Annotated[
    str | None,
    typer.Option("--config", help="Settings TOML file (default: $GATEWAY_CONFIG or config/hub.toml)."),
]
FromOption = Annotated[
    dt.datetime,
    typer.Option("--from", formats=["%Y-%m-%d"], help="First day (YYYY-MM-DD, Vietnam time), inclusive."),
]
ToOption = Annotated[
    dt.datetime,
    typer.Option("--to", formats=["%Y-%m-%d"], help="Last day (YYYY-MM-DD, Vietnam time), inclusive."),
]
FormatOption = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
LangOption = Annotated[Language, typer.Option("--lang", help="Language of labels and reasons.")]
SenderOption = Annotated[str | None, typer.Option("--sender", help="Only this sending agency (OrganId).")]
RecipientOption = Annotated[str | None, typer.Option("--recipient", help="Only this recipient (OrganId).")]
PairOption = Annotated[
    str | None,
    typer.Option("--level-pair", help="Only this level pair, e.g. province→district or province->district."),
]
MonthOption = Annotated[str | None, typer.Option("--month", help="Only this month (YYYY-MM).")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error {message}", err=True)
    return typer.Exit(code)


def _url(url: str | None, config: str | None) -> str:
    if url:
        return url
    from gateway.settings import load_settings

    return load_settings(config).database_url


def with_database(url: str | None, config: str | None, work: Callable[[Any], Awaitable[T]]) -> T:
    """Open the database, run ``work(db)``, close it; errors become one line and exit code 1 (2 for usage)."""
    from sqlalchemy.exc import SQLAlchemyError

    from gateway.errors import GatewayError, RequestError, UsageError
    from gateway.store.db import open_database

    async def main() -> T:
        db = open_database(_url(url, config))
        try:
            return await work(db)
        finally:
            await db.close()

    try:
        return asyncio.run(main())
    except (RequestError, UsageError) as exc:
        # Same one line as gateway.cli.main prints, so the sub-app also works on its own.
        raise _fail(f"{exc.code}: {exc.detail}", 2) from exc
    except GatewayError as exc:
        raise _fail(f"{exc.code}: {exc.detail}") from exc
    except (SQLAlchemyError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _fail(f"database: {first} (is it migrated? gateway db upgrade)") from exc


def parse_by(values: Sequence[str]) -> tuple[Grouping, ...]:
    """``--by level-pair --by month`` or ``--by level-pair,month`` → ``("level_pair", "month")``."""
    out: list[Grouping] = []
    for value in values:
        for item in value.split(","):
            name = item.strip().replace("-", "_")
            if not name:
                continue
            if name not in GROUPINGS:
                choices = ", ".join(g.replace("_", "-") for g in GROUPINGS)
                raise _fail(f"usage: cannot group by {item.strip()!r}; choose from {choices}", 2)
            if name in out:
                raise _fail(f"usage: --by {item.strip()} is given twice", 2)
            out.append(name)  # type: ignore[arg-type]
    return tuple(out)


def _range(date_from: dt.datetime, date_to: dt.datetime) -> tuple[dt.date, dt.date]:
    if date_from.date() > date_to.date():
        raise _fail(f"usage: --from {date_from:%Y-%m-%d} is after --to {date_to:%Y-%m-%d}", 2)
    return date_from.date(), date_to.date()


def _console() -> Console:
    """The terminal's width on a terminal; wide enough for the bucket columns when piped."""
    return Console() if sys.stdout.isatty() else Console(width=200)


def _pct(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f} %"


# --------------------------------------------------------------------------------------------------
# gateway report rate
# --------------------------------------------------------------------------------------------------

RATE_CSV_BASE = ("total", "denominator", "rate")


def rate_csv(rows: Sequence[RateRow], by: Sequence[Grouping], lang: Lang) -> str:
    """CSV: the grouping keys, a label, one column per bucket, total, denominator, rate (0-1, 6 digits)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*by, "label", *(b.value for b in BUCKETS), *RATE_CSV_BASE])
    for row in rows:
        writer.writerow(
            [
                *row.key,
                row.label(lang),
                *(row.counts[b] for b in BUCKETS),
                row.total,
                row.denominator,
                "" if row.rate is None else f"{row.rate:.6f}",
            ]
        )
    return out.getvalue()


def rate_json(
    rows: Sequence[RateRow], by: Sequence[Grouping], lang: Lang, date_from: dt.date, date_to: dt.date
) -> str:
    """JSON: the query, one object per row (keys, label, bucket counts, totals, rate) and the total."""
    total = total_row(rows)
    doc = {
        "from": date_from.isoformat(),
        "to": date_to.isoformat(),
        "by": list(by),
        "buckets": {b.value: b.label(lang) for b in BUCKETS},
        "rows": [{**row.as_dict(), "label": row.label(lang)} for row in rows],
        "total": total.as_dict(),
    }
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


_HEADS: dict[str, tuple[str, str]] = {
    "level_pair": ("Cặp cấp", "Level pair"),
    "sender": ("Nơi gửi", "Sender"),
    "recipient": ("Nơi nhận", "Recipient"),
    "month": ("Tháng", "Month"),
}


def rate_table(rows: Sequence[RateRow], by: Sequence[Grouping], lang: Lang, title: str) -> Table:
    table = Table(title=title, show_footer=bool(rows))
    total = total_row(rows)
    for i, g in enumerate(by):
        footer = ("Tổng cộng" if lang == "vi" else "Total") if i == 0 else ""
        table.add_column(_HEADS[g][0 if lang == "vi" else 1], footer=footer)
    for b in BUCKETS:
        table.add_column(b.label(lang), justify="right", footer=f"{total.counts[b]:,}")
    table.add_column("Tổng" if lang == "vi" else "All", justify="right", footer=f"{total.total:,}")
    table.add_column(
        "Mẫu số" if lang == "vi" else "Denominator", justify="right", footer=f"{total.denominator:,}"
    )
    table.add_column("Tỷ lệ" if lang == "vi" else "Rate", justify="right", footer=_pct(total.rate))
    for row in rows:
        labels = row.labels.get(lang) or row.key
        keys = [
            f"{label} ({key})" if g in ("sender", "recipient") and label != key else label
            for g, key, label in zip(by, row.key, labels, strict=True)
        ]
        table.add_row(
            *keys,
            *(f"{row.counts[b]:,}" for b in BUCKETS),
            f"{row.total:,}",
            f"{row.denominator:,}",
            _pct(row.rate),
        )
    return table


@app.command("rate")
def rate_cmd(
    date_from: FromOption,
    date_to: ToOption,
    by: Annotated[
        list[str] | None,
        typer.Option(
            "--by",
            help="Group by level-pair, sender, recipient, month (repeat or comma-separate; none = total).",
        ),
    ] = None,
    fmt: FormatOption = Format.table,
    lang: LangOption = Language.vi,
    sender: SenderOption = None,
    recipient: RecipientOption = None,
    level_pair: PairOption = None,
    month: MonthOption = None,
    url: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """The electronic-exchange rate: fully electronic ÷ (all − recalled), per group, with every bucket."""
    from gateway.store.rate import rate_report

    groups = parse_by(by if by is not None else ["level-pair"])
    start, end = _range(date_from, date_to)
    rows = with_database(
        url,
        config,
        lambda db: rate_report(
            db,
            date_from=start,
            date_to=end,
            by=groups,
            sender=sender,
            recipient=recipient,
            level_pair=level_pair,
            month=month,
        ),
    )
    language: Lang = lang.value  # type: ignore[assignment]
    if fmt is Format.csv:
        typer.echo(rate_csv(rows, groups, language), nl=False)
    elif fmt is Format.json:
        typer.echo(rate_json(rows, groups, language, start, end), nl=False)
    else:
        title = (
            f"Tỷ lệ văn bản điện tử {start:%d/%m/%Y} – {end:%d/%m/%Y}"
            if language == "vi"
            else f"Electronic-exchange rate {start} – {end}"
        )
        _console().print(rate_table(rows, groups, language, title))


# --------------------------------------------------------------------------------------------------
# gateway report exchanges
# --------------------------------------------------------------------------------------------------

EXCHANGE_COLUMNS = (
    "kind",
    "exchange_id",
    "paper_dispatch_id",
    "package_id",
    "document_id",
    "number",
    "notation",
    "sender",
    "recipient",
    "level_pair",
    "month",
    "received_at",
    "document_date",
    "bucket",
    "state",
    "previous_state",
    "paper",
    "signature_ok",
    "subject",
    "source",
    "verdict",
    "reason",
)


def exchanges_csv(items: Sequence[ExchangeReason], lang: Lang) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXCHANGE_COLUMNS)
    for item in items:
        d = item.as_dict()
        d["reason"] = item.reason_in(lang)
        writer.writerow(["" if d[c] is None else d[c] for c in EXCHANGE_COLUMNS])
    return out.getvalue()


@app.command("exchanges")
def exchanges_cmd(
    date_from: FromOption,
    date_to: ToOption,
    bucket: Annotated[
        str | None,
        typer.Option("--bucket", help="Only this bucket: " + ", ".join(b.value for b in BUCKETS) + "."),
    ] = None,
    sender: SenderOption = None,
    recipient: RecipientOption = None,
    level_pair: PairOption = None,
    month: MonthOption = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="At most this many rows (0 = all).")] = 100,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many rows first.")] = 0,
    fmt: FormatOption = Format.table,
    lang: LangOption = Language.vi,
    url: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """The exchanges (and paper-only dispatches) behind a figure, each with why it did or did not count."""
    from gateway.store.rate import exchanges_count, exchanges_report

    start, end = _range(date_from, date_to)
    filters: dict[str, Any] = {
        "date_from": start,
        "date_to": end,
        "bucket": bucket.replace("-", "_") if bucket else None,
        "sender": sender,
        "recipient": recipient,
        "level_pair": level_pair,
        "month": month,
    }

    async def work(db: Any) -> tuple[list[ExchangeReason], int]:
        items = await exchanges_report(db, **filters, limit=limit or None, offset=offset)
        return items, await exchanges_count(db, **filters)

    items, count = with_database(url, config, work)
    language: Lang = lang.value  # type: ignore[assignment]
    if fmt is Format.csv:
        typer.echo(exchanges_csv(items, language), nl=False)
        return
    if fmt is Format.json:
        doc = {
            "count": count,
            "offset": offset,
            "rows": [{**i.as_dict(), "reason": i.reason_in(language)} for i in items],
        }
        typer.echo(json.dumps(doc, ensure_ascii=False, indent=2))
        return
    vi = language == "vi"
    table = Table(
        title=(f"{len(items):,} / {count:,} " + ("văn bản" if vi else "exchanges"))
        + (f" (+{offset})" if offset else "")
    )
    for head in (
        ("#", "#"),
        ("Số/ký hiệu", "Number"),
        ("Nơi gửi", "Sender"),
        ("Nơi nhận", "Recipient"),
        ("Cặp cấp", "Levels"),
        ("Ngày", "Date"),
        ("Nhóm", "Bucket"),
        ("Lý do", "Reason"),
    ):
        table.add_column(head[0 if vi else 1], overflow="fold")
    for item in items:
        when = item.received_at.astimezone(dt.timezone(dt.timedelta(hours=7))) if item.received_at else None
        table.add_row(
            f"E{item.exchange_id}" if item.exchange_id is not None else f"P{item.paper_dispatch_id}",
            "/".join(x for x in (item.number, item.notation) if x) or (item.document_id or ""),
            item.sender,
            item.recipient,
            item.level_pair,
            f"{when:%Y-%m-%d %H:%M}"
            if when
            else (item.document_date.isoformat() if item.document_date else ""),
            item.bucket.label(language),
            item.reason_in(language),
        )
    _console().print(table)
