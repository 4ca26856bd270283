"""Agency node: send dispatches, run the inbox loop, answer with statuses, recall/update/replace."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console()
T = TypeVar("T")

EXIT_QUEUED = 3
"""``send``: stored in the outbox but not yet accepted by the hub (it is retried by ``gateway node run``)."""

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Node TOML (default: $GATEWAY_NODE_CONFIG or config/node.toml)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def settings_of(config: Path | None) -> Any:
    from gateway.node.config import load_node_settings

    return load_node_settings(config)


def with_node(config: Path | None, action: Callable[[Any], Awaitable[T]]) -> T:
    """Open the node (store, client, identity), run ``action(node)``, close everything."""
    from gateway.errors import GatewayError
    from gateway.node.node import Node

    async def main() -> T:
        async with Node.open(settings_of(config)) as node:
            return await action(node)

    try:
        return asyncio.run(main())
    except GatewayError as exc:
        # The same one line as gateway.cli.main prints, so the sub-app also works on its own.
        typer.echo(f"error {exc.code}: {exc.detail}", err=True)
        raise typer.Exit(2 if exc.code == "usage" else 1) from exc


def _row_json(row: Any) -> dict[str, Any]:
    return {
        "kind": row.kind,
        "document_id": row.document_id,
        "status_code": row.status_code,
        "state": row.state,
        "sha256": row.sha256,
        "size": row.size,
        "attempts": row.attempts,
        "hub_time": row.hub_time.isoformat() if row.hub_time else None,
        "error_code": row.error_code,
        "error": row.last_error,
    }


def _report(rows: list[Any], as_json: bool) -> None:
    """Print outbox rows and exit 0 (all sent), 3 (queued, retried later) or 1 (refused or bad receipt)."""
    if as_json:
        typer.echo(json.dumps([_row_json(r) for r in rows], ensure_ascii=False, indent=2))
    else:
        for r in rows:
            what = f"{r.kind} {r.status_code or ''}".strip()
            if r.state == "sent":
                console.print(
                    f"[green]sent[/] {what} {r.document_id}: hub receipt verified "
                    f"(SHA-256 {r.sha256[:16]}…, {r.size} bytes, hub time {r.hub_time:%Y-%m-%d %H:%M:%S %Z})",
                    highlight=False,
                )
            elif r.state == "pending":
                console.print(
                    f"[yellow]queued[/] {what} {r.document_id}: {r.error_code}: {r.last_error} "
                    "(kept in the outbox; `gateway node run` retries it with the same bytes)",
                    highlight=False,
                )
            else:
                console.print(
                    f"[red]{r.state}[/] {what} {r.document_id}: {r.error_code}: {r.last_error}",
                    highlight=False,
                )
    if any(r.state in ("refused", "mismatch") for r in rows):
        raise typer.Exit(1)
    if any(r.state == "pending" for r in rows):
        raise typer.Exit(EXIT_QUEUED)


def _files(paths: list[Path] | None) -> tuple[Any, ...]:
    from gateway.node.compose import FileSpec

    out = []
    for p in paths or []:
        try:
            out.append(FileSpec.of(p.name, p.read_bytes()))
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {p}: {exc}") from exc
    return tuple(out)


def _date(text: str | None) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a date (yyyy-mm-dd)") from None


@app.command()
def send(
    to: Annotated[
        list[str] | None, typer.Option("--to", help="Recipient OrganId (repeat for several).")
    ] = None,
    number: Annotated[str | None, typer.Option(help="Số (CodeNumber).")] = None,
    notation: Annotated[str | None, typer.Option(help="Ký hiệu (CodeNotation), e.g. UBND-VP.")] = None,
    subject: Annotated[str | None, typer.Option(help="Trích yếu.")] = None,
    doc_type: Annotated[
        int | None, typer.Option("--type", help="DocumentType/Type (1 = văn bản hành chính…).")
    ] = None,
    type_name: Annotated[str | None, typer.Option(help="DocumentType/TypeName, e.g. Công văn.")] = None,
    signer: Annotated[str | None, typer.Option(help="Người ký (SignerInfo/FullName).")] = None,
    position: Annotated[str | None, typer.Option(help="Chức vụ người ký.")] = None,
    priority: Annotated[
        int, typer.Option(min=0, max=4, help="0 thường, 1 khẩn, 2 thượng khẩn, 3 hỏa tốc, 4 hẹn giờ.")
    ] = 0,
    paper: Annotated[bool, typer.Option("--paper/--no-paper", help="A paper copy is also sent.")] = False,
    date: Annotated[
        str | None, typer.Option(help="Promulgation date yyyy-mm-dd (default today, Vietnam).")
    ] = None,
    content: Annotated[str | None, typer.Option(help="Content (≤ 500 characters).")] = None,
    due_date: Annotated[str | None, typer.Option(help="Hạn xử lý yyyy-mm-dd.")] = None,
    file: Annotated[list[Path] | None, typer.Option("--file", "-f", help="Attachment (repeat).")] = None,
    edxml: Annotated[
        Path | None, typer.Option("--edxml", help="Send this ready edXML file instead (signed by this node).")
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Build, sign and send a dispatch; verify and store the hub receipt."""
    from gateway.errors import UsageError
    from gateway.node.compose import Dispatch

    async def action(node: Any) -> list[Any]:
        if edxml is not None:
            signed = node.sign_edxml(edxml.read_bytes())
            meta = {"source": str(edxml)}
        else:
            missing = [
                n
                for n, v in (
                    ("--to", to),
                    ("--number", number),
                    ("--notation", notation),
                    ("--subject", subject),
                )
                if not v
            ]
            if missing:
                raise UsageError("usage", f"missing {', '.join(missing)} (or give --edxml FILE)")
            d = Dispatch(
                sender=node.organ_id,
                sender_name=node.settings.organ_name,
                recipients=tuple(dict.fromkeys(to or ())),
                number=number or "",
                notation=notation or "",
                subject=subject or "",
                date=_date(date),
                place=node.settings.place,
                doc_type=doc_type,
                type_name=type_name,
                content=content,
                signer=signer,
                position=position,
                priority=priority,
                paper=1 if paper else 0,
                due_date=_date(due_date),
                files=_files(file),
            )
            signed = node.sign_dispatch(d)
            meta = {"subject": d.subject, "files": [f.name for f in d.files]}
        return [await node.send(signed, meta=meta)]

    _report(with_node(config, action), as_json)


@app.command()
def run(
    once: Annotated[bool, typer.Option("--once", help="Drain the inbox and the outbox, then exit.")] = False,
    config: ConfigOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Keep the node working: pull and verify the inbox, auto-answer 01/02, hand off to the DMS, retry
    the outbox. Stops cleanly on SIGINT/SIGTERM."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    async def action(node: Any) -> Any:
        if once:
            return await node.drain()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print("ready", flush=True)
        await node.run_forever(stop)
        return None

    result = with_node(config, action)
    if once:
        typer.echo(f"outbox: {result.sent} sent, {result.pending} pending, {result.failed} failed")
        if result.pending:
            raise typer.Exit(EXIT_QUEUED)


CodeOption = Annotated[str, typer.Option("--code", help="02, 03, 04, 05, 06 (or 15/16 to answer a request).")]
ReasonOption = Annotated[str | None, typer.Option("--reason", help="Why (required for 02).")]


@app.command()
def status(
    document_id: str,
    code: CodeOption,
    reason: ReasonOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Answer a received document with a signed status message."""
    _report([with_node(config, lambda node: node.send_status(document_id, code, reason))], as_json)


@app.command()
def recall(
    document_id: str,
    reason: Annotated[str, typer.Option("--reason", help="Why the document is recalled.")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ask every recipient to give a sent document back (13); they answer 15 (agreed) or 16 (refused)."""
    _report(with_node(config, lambda node: node.recall(document_id, reason)), as_json)


@app.command()
def update(
    document_id: str,
    reason: Annotated[str, typer.Option("--reason", help="What changed and why.")],
    subject: Annotated[str | None, typer.Option(help="New trích yếu.")] = None,
    content: Annotated[str | None, typer.Option(help="New content.")] = None,
    file: Annotated[
        list[Path] | None, typer.Option("--file", "-f", help="New attachments (replace the old).")
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send an update of a sent document (BussinessDocType 2, same DocumentId)."""
    files = _files(file) or None
    _report(
        with_node(
            config,
            lambda node: node.update(document_id, reason, subject=subject, content=content, files=files),
        ),
        as_json,
    )


@app.command("replace")
def replace_cmd(
    document_id: str,
    number: Annotated[str, typer.Option(help="Số of the replacement.")],
    reason: Annotated[str, typer.Option("--reason", help="Why it is replaced.")],
    notation: Annotated[str | None, typer.Option(help="Ký hiệu (default: the old one's).")] = None,
    subject: Annotated[str | None, typer.Option(help="Trích yếu (default: the old one's).")] = None,
    file: Annotated[
        list[Path] | None, typer.Option("--file", "-f", help="Attachments (default: the old ones).")
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send a replacement (BussinessDocType 3, a new DocumentId naming the old in ReplacementInfoList)."""
    from dataclasses import replace

    from gateway.node.compose import dispatch_from_package

    async def action(node: Any) -> list[Any]:
        _, old = await node._sent(document_id)
        changes: dict[str, Any] = {"number": number, "date": None}
        if notation:
            changes["notation"] = notation
        if subject:
            changes["subject"] = subject
        if file:
            changes["files"] = _files(file)
        new = replace(dispatch_from_package(old), **changes)
        return await node.replace(document_id, new, reason)

    _report(with_node(config, action), as_json)


@app.command()
def outbox(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List the outbox: what was sent, what waits for the hub, what was refused."""
    rows = with_node(config, lambda node: node.store.outbox_rows())
    if as_json:
        typer.echo(json.dumps([_row_json(r) for r in rows], ensure_ascii=False, indent=2))
        return
    from rich.table import Table

    table = Table("kind", "document", "code", "state", "attempts", "hub time / error")
    for r in rows:
        table.add_row(
            r.kind,
            r.document_id,
            r.status_code or "",
            r.state,
            str(r.attempts),
            r.hub_time.isoformat(timespec="seconds") if r.hub_time else f"{r.error_code or ''}",
        )
    console.print(table)


@app.command()
def inbox(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List the received documents with the node's own verdict, and open recall/update requests."""

    async def action(node: Any) -> dict[str, Any]:
        rows = await node.store.received()
        return {
            "documents": [
                {
                    "document_id": r.document_id,
                    "sender": r.sender,
                    "subject": r.subject,
                    "business_doc_type": r.business_doc_type,
                    "verdict": "verified" if r.ok else r.verdict_code,
                    "received_at": r.received_at.isoformat(),
                    "dms": "delivered" if r.dms_delivered_at else (r.dms_error or "pending"),
                }
                for r in rows
            ],
            "requests": await node.requests(),
        }

    data = with_node(config, action)
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    from rich.table import Table

    table = Table("document", "from", "subject", "verdict", "DMS")
    for d in data["documents"]:
        table.add_row(d["document_id"], d["sender"], d["subject"] or "", d["verdict"], d["dms"])
    console.print(table)
    for r in data["requests"]:
        console.print(
            f"[yellow]request[/] {r['document_id']} from {r['from']}: {r['description']} "
            "(answer with --code 15 or 16)",
            highlight=False,
        )
