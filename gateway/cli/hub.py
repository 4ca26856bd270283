"""Run the hub: serve over mutual TLS, show its effective configuration, print its OpenAPI document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Settings TOML file (default $GATEWAY_CONFIG, config/hub.toml); GATEWAY_* override it.",
    ),
]


@app.command()
def serve(
    config: ConfigOption = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Processes sharing the port (default: the setting workers)."),
    ] = None,
) -> None:
    """Serve the hub until SIGTERM/SIGINT; SIGHUP reloads trust anchors, CRLs and the directory."""
    from gateway.hub.config import hub_config
    from gateway.hub.server import serve as run
    from gateway.settings import load_settings

    settings = load_settings(config)
    raise typer.Exit(run(hub_config(settings), workers=workers or settings.workers))


@app.command("config")
def show_config(config: ConfigOption = None) -> None:
    """Print the effective hub configuration (after the file and the environment) as JSON."""
    from dataclasses import asdict

    from gateway.hub.server import load_config

    typer.echo(json.dumps(asdict(load_config(config)), indent=2, default=str))


@app.command()
def openapi() -> None:
    """Print the hub's OpenAPI 3.1 document (the same one it serves at /openapi.json)."""
    from gateway.hub.openapi import document

    typer.echo(json.dumps(document(), indent=2, ensure_ascii=False))
