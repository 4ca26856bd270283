"""One command shows it all: a hub and agency nodes over mutual TLS play a province's month of dispatches.

Creates a fresh demo folder (dev PKI, directory, SQLite database), starts the hub and five agency nodes as
real processes, plays the month (accepted, processed, refused, recalled, tampered, revoked certificate,
overdue, paper only), prints one dispatch's receipts and the rate by level pair, creates two web
accounts, and stops every process it started (``--serve``: after Ctrl-C).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.callback(invoke_without_command=True)
def demo(
    folder: Annotated[
        Path,
        typer.Option(
            "--dir", help="Demo folder, wiped at start (only if an earlier demo made it).", file_okay=False
        ),
    ] = Path("var/demo"),
    serve: Annotated[
        bool, typer.Option("--serve", help="Keep the hub, the nodes and the web pages up until Ctrl-C.")
    ] = False,
    port: Annotated[
        int | None, typer.Option("--port", min=1, max=65535, help="Hub API port (default: a free one).")
    ] = None,
    web_port: Annotated[
        int | None, typer.Option("--web-port", min=1, max=65535, help="Web pages port (default: a free one).")
    ] = None,
) -> None:
    """Play a month of Tây Ninh's dispatches through a real hub and real nodes, then show the results."""
    from gateway.demo import DemoOptions, run_demo
    from gateway.demo.procs import DemoError

    # A pipe (CI, tests, `| less`) gets wide lines: the rate table has eleven columns.
    console = Console() if sys.stdout.isatty() or "COLUMNS" in os.environ else Console(width=150)
    try:
        code = run_demo(DemoOptions(folder=folder, port=port, web_port=web_port, serve=serve), console)
    except DemoError as exc:
        console.print(f"[bold red]demo failed[/]: {exc}", highlight=False)
        raise typer.Exit(1) from exc
    raise typer.Exit(code)
