"""Database schema: upgrade to the latest migration, show the current revision."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Database URL (default: the settings' database_url, GATEWAY_DATABASE_URL)."),
]
ConfigOption = Annotated[
    str | None,
    typer.Option("--config", help="Settings TOML file (default: $GATEWAY_CONFIG or config/hub.toml)."),
]


def _url(url: str | None, config: str | None) -> str:
    if url:
        return url
    from gateway.settings import load_settings

    return load_settings(config).database_url


def _run(action: str, url: str | None, config: str | None) -> None:
    from gateway.errors import GatewayError
    from gateway.store import migrate

    try:
        target = _url(url, config)
        if action == "upgrade":
            migrate.upgrade(target)
            typer.echo(f"upgraded to {migrate.current(target)}")
        else:
            revision = migrate.current(target)
            head = migrate.head_revision()
            if revision is None:
                typer.echo(f"not migrated (head is {head})")
            else:
                typer.echo(f"{revision}{' (head)' if revision == head else f' (head is {head})'}")
    except GatewayError as exc:
        # The same one line as gateway.cli.main prints, so the sub-app also works on its own.
        typer.echo(f"error {exc.code}: {exc.detail}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def upgrade(url: UrlOption = None, config: ConfigOption = None) -> None:
    """Apply every migration up to the latest (creates the SQLite file and its folder if needed)."""
    _run("upgrade", url, config)


@app.command("current")
def current_cmd(url: UrlOption = None, config: ConfigOption = None) -> None:
    """Print the database's migration revision."""
    _run("current", url, config)
