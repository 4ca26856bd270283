"""The ``gateway`` command. Each sub-command group lives in its own module and is mounted here."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from gateway.errors import GatewayError, UsageError

app = typer.Typer(
    name="gateway",
    help="LGSP e-document exchange gateway: hub, agency node, PKI and edXML tools.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

err_console = Console(stderr=True)


def _mount() -> None:
    """Import the command modules lazily so `gateway --help` stays fast and imports stay one-way."""
    import importlib

    for name in (
        "certs",
        "package",
        "db",
        "hub",
        "admin",
        "node",
        "receipts",
        "overdue",
        "report",
        "paper",
        "users",
        "demo",
    ):
        module = importlib.import_module(f"gateway.cli.{name}")
        app.add_typer(module.app, name=name, help=module.__doc__)


def main() -> None:
    """Console-script entry point: every GatewayError becomes one readable line and an exit code."""
    _mount()
    try:
        # Outside standalone mode click returns a command's exit code instead of raising SystemExit.
        code = app(standalone_mode=False)
    except GatewayError as exc:
        err_console.print(f"[bold red]error[/] {exc.code}: {exc.detail}", highlight=False)
        sys.exit(2 if isinstance(exc, UsageError) else 1)
    except typer.Abort:
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:
        # typer bundles its own click: usage errors (bad option, missing file) arrive here
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
