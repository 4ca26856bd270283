"""The paper-only register: import dispatches sent on paper only, so the rate covers everything sent."""

from __future__ import annotations

import csv
import datetime as dt
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gateway.calendar import VN_TZ
from gateway.errors import FieldError
from gateway.store.paper import PaperRecord

if TYPE_CHECKING:
    from gateway.store.db import Database

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

BATCH = 1000
"""Rows per transaction: a crash loses at most the batch in flight, and a re-run completes the rest."""
MAX_ERRORS_SHOWN = 50
NUMBER_MAX, NOTATION_MAX = 32, 64  # the columns' sizes (gateway/store/models.py PaperDispatch)

COLUMNS: dict[str, tuple[str, ...]] = {
    "sender": ("sender", "noi_gui", "co_quan_gui"),
    "recipient": ("recipient", "recipients", "noi_nhan", "co_quan_nhan"),
    "number": ("number", "code_number", "so"),
    "notation": ("notation", "code_notation", "ky_hieu"),
    "number_notation": ("number_notation", "number/notation", "so_ky_hieu", "so/ky_hieu"),
    "date": ("date", "document_date", "ngay", "ngay_van_ban"),
    "subject": ("subject", "trich_yeu"),
}
"""Accepted header names (case-insensitive; spaces count as ``_``) for each field."""


@app.callback()
def _group() -> None:
    """The paper-only register (DESIGN §5)."""


@dataclass(frozen=True, slots=True)
class LineError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def _header_map(header: Sequence[str]) -> tuple[dict[str, int], list[str]]:
    """Field → column index, and the columns that are not recognised (ignored)."""
    found: dict[str, int] = {}
    unknown: list[str] = []
    for i, raw in enumerate(header):
        name = raw.strip().lower().replace(" ", "_")
        for fieldname, aliases in COLUMNS.items():
            if name in aliases:
                if fieldname in found:
                    raise typer.BadParameter(f"the header names {fieldname!r} twice")
                found[fieldname] = i
                break
        else:
            if name:
                unknown.append(raw.strip())
    missing = [f for f in ("sender", "recipient", "date") if f not in found]
    if "number_notation" not in found and not {"number", "notation"} <= found.keys():
        missing.append("number and notation (or number_notation)")
    if missing:
        raise typer.BadParameter(
            f"the header lacks {', '.join(missing)}; expected columns sender, recipient, number, notation, "
            "date[, subject] (see docs/rate.md)"
        )
    return found, unknown


def parse_date(text: str) -> dt.date:
    """``YYYY-MM-DD`` or ``DD/MM/YYYY`` (as written in Vietnamese registers)."""
    text = text.strip()
    for fmt in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValueError(f"date {text!r} is not YYYY-MM-DD or DD/MM/YYYY")


def _organ(text: str, what: str, *, legacy: bool) -> str:
    from gateway.edxml.codes import OrganId

    try:
        return OrganId.parse(text.strip(), strict=not legacy).value
    except FieldError as exc:
        raise ValueError(f"{what}: {exc.detail}") from exc


def read_records(
    rows: Iterable[tuple[int, list[str]]],
    header: Sequence[str],
    *,
    source: str,
    today: dt.date,
    legacy: bool = False,
) -> tuple[list[PaperRecord], list[LineError], list[str]]:
    """Validate every line; returns (records, errors, ignored columns). A cell may list several
    recipients separated by ``;`` (one dispatch per recipient, as the rate counts exchanges)."""
    cols, unknown = _header_map(header)
    records: list[PaperRecord] = []
    errors: list[LineError] = []

    def cell(row: list[str], name: str) -> str:
        i = cols.get(name)
        return row[i].strip() if i is not None and i < len(row) else ""

    for line, row in rows:
        if not any(c.strip() for c in row):
            continue  # blank line
        problems: list[str] = []
        try:
            sender = _organ(cell(row, "sender"), "sender", legacy=legacy)
        except ValueError as exc:
            problems.append(str(exc))
            sender = ""
        recipients: list[str] = []
        raw_recipients = [r for r in cell(row, "recipient").split(";") if r.strip()]
        if not raw_recipients:
            problems.append("recipient is empty")
        for raw in raw_recipients:
            try:
                recipients.append(_organ(raw, "recipient", legacy=legacy))
            except ValueError as exc:
                problems.append(str(exc))
        if sender and sender in recipients:
            problems.append("the sender is also a recipient")
        if len(set(recipients)) != len(recipients):
            problems.append("a recipient is listed twice")
        number, notation = cell(row, "number"), cell(row, "notation")
        if "number_notation" in cols and not (number or notation):
            number, _, notation = cell(row, "number_notation").partition("/")
            number, notation = number.strip(), notation.strip()
        if not number:
            problems.append("number is empty")
        elif len(number) > NUMBER_MAX:
            problems.append(f"number is longer than {NUMBER_MAX} characters")
        if not notation:
            problems.append("notation is empty")
        elif len(notation) > NOTATION_MAX:
            problems.append(f"notation is longer than {NOTATION_MAX} characters")
        date: dt.date | None = None
        try:
            date = parse_date(cell(row, "date"))
            if date > today:
                problems.append(f"date {date} is in the future")
        except ValueError as exc:
            problems.append(str(exc))
        if problems:
            errors.extend(LineError(line, p) for p in problems)
            continue
        assert date is not None
        subject = cell(row, "subject") or None
        records += [
            PaperRecord(
                sender=sender,
                recipient=r,
                code_number=number,
                code_notation=notation,
                document_date=date,
                subject=subject,
                source=source,
            )
            for r in recipients
        ]
    return records, errors, unknown


def _identity(r: PaperRecord) -> tuple[str, str, str, str, dt.date]:
    return (r.sender, r.recipient, r.code_number, r.code_notation, r.document_date)


@app.command("import")
def import_cmd(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV file (UTF-8).")
    ],
    delimiter: Annotated[str, typer.Option("--delimiter", help="Field separator.")] = ",",
    legacy_ids: Annotated[
        bool, typer.Option("--legacy-ids", help="Also accept legacy agency codes (not 000.00.00.H00).")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate only; store nothing.")] = False,
    url: Annotated[
        str | None,
        typer.Option("--db", "--url", help="Database URL (default: the settings' database_url)."),
    ] = None,
    config: Annotated[str | None, typer.Option("--config", help="Settings TOML file.")] = None,
) -> None:
    """Import paper-only dispatches from CSV (columns: sender, recipient, number, notation, date, subject).

    Every line is checked first: if any is wrong, the errors are printed by line and nothing is stored.

    Re-importing is safe: a dispatch already registered (same sender, recipient, number/notation, date)
    is skipped. Format: docs/rate.md.
    """
    from gateway.cli.report import with_database
    from gateway.store.paper import add_paper_dispatches

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        with file.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            header = next(reader, None)
            if header is None:
                err.print(f"error usage: {file} is empty")
                raise typer.Exit(1)
            today = dt.datetime.now(VN_TZ).date()
            records, errors, unknown = read_records(
                ((reader.line_num, row) for row in reader),
                header,
                source=f"csv:{file.name}",
                today=today,
                legacy=legacy_ids,
            )
    except UnicodeDecodeError as exc:
        err.print(f"error usage: {file} is not UTF-8 text ({exc.reason} at byte {exc.start})")
        raise typer.Exit(1) from exc
    except csv.Error as exc:
        err.print(f"error usage: {file} is not valid CSV: {exc}")
        raise typer.Exit(1) from exc
    except typer.BadParameter as exc:
        err.print(f"error usage: {file}: {exc}")
        raise typer.Exit(1) from exc
    if unknown:
        err.print(f"note: ignored columns: {', '.join(unknown)}")
    if errors:
        for e in errors[:MAX_ERRORS_SHOWN]:
            err.print(f"{file.name}: {e}")
        more = len(errors) - MAX_ERRORS_SHOWN
        if more > 0:
            err.print(f"… and {more} more")
        lines = len({e.line for e in errors})
        err.print(f"error: {lines} line(s) of {file.name} are wrong; nothing was imported")
        raise typer.Exit(1)
    unique = list({_identity(r): r for r in records}.values())
    repeated = len(records) - len(unique)
    if dry_run:
        typer.echo(
            f"{file.name}: {len(unique)} dispatch(es) valid ({repeated} repeated in the file); dry run"
        )
        return

    async def work(db: Database) -> tuple[int, set[str]]:
        from sqlalchemy import select

        from gateway.store.models import Agency

        organs = {r.sender for r in unique} | {r.recipient for r in unique}
        async with db.read() as session:
            known = set(
                (await session.execute(select(Agency.organ_id).where(Agency.organ_id.in_(organs)))).scalars()  # type: ignore[attr-defined]
            )
        now = dt.datetime.now(dt.UTC)
        created = 0
        show = len(unique) >= BATCH and sys.stderr.isatty()
        columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=err, disable=not show) as progress:
            task = progress.add_task("import", total=len(unique))
            for i in range(0, len(unique), BATCH):
                batch = unique[i : i + BATCH]
                created += await add_paper_dispatches(db, batch, now=now)
                progress.advance(task, len(batch))
        return created, organs - known

    created, unknown_organs = with_database(url, config, work)
    if unknown_organs:
        listed = ", ".join(sorted(unknown_organs)[:10]) + (" …" if len(unknown_organs) > 10 else "")
        err.print(
            f"note: {len(unknown_organs)} agency code(s) are not in the directory; their level is "
            f"'unknown' in the rate: {listed}"
        )
    typer.echo(
        f"{file.name}: {created} new, {len(unique) - created} already registered"
        + (f", {repeated} repeated in the file" if repeated else "")
    )
