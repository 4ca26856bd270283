"""What is late for the clerk's agency: dispatches unconfirmed past the deadline, documents not accepted."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from gateway.calendar import vn_display
from gateway.cli.node import ConfigOption, JsonOption, with_node

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    invoke_without_command=True,
    context_settings={"allow_interspersed_args": True},  # `gateway receipts ID --json`: options after the id
)
console = Console()


def render(data: dict[str, Any]) -> None:
    sent = Table(
        "document",
        "recipient",
        "state",
        "deadline (ICT)",
        "subject",
        title="Sent, unconfirmed past the deadline",
    )
    for r in data["sent"]:
        sent.add_row(
            r["document_id"], r["recipient"] or "", r["state"], vn_display(r["deadline"]), r["subject"] or ""
        )
    console.print(sent)
    received = Table(
        "document",
        "from",
        "received",
        "last status",
        "overdue",
        "subject",
        title="Received, not yet accepted (03) or refused",
    )
    for r in data["received"]:
        received.add_row(
            r["document_id"],
            r["sender"],
            vn_display(r["received_at"]),
            r["last_status"] or "",
            "[red]yes[/]" if r["overdue"] else "no",
            r["subject"] or "",
        )
    console.print(received)


@app.callback(invoke_without_command=True)
def overdue(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List what the clerk must chase or confirm."""
    data = with_node(config, lambda node: node.overdue())
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        render(data)
