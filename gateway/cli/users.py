"""Web accounts: add clerks (bound to one agency), auditors and administrators; list; disable."""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

if TYPE_CHECKING:
    from gateway.store.db import Database

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

T = TypeVar("T")

UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Database URL (default: the settings' database_url, GATEWAY_DATABASE_URL)."),
]
ConfigOption = Annotated[
    str | None,
    typer.Option("--config", help="Settings TOML file (default: $GATEWAY_CONFIG or config/hub.toml)."),
]


def _with_db(url: str | None, config: str | None, action: Callable[[Database], Awaitable[T]]) -> T:
    from gateway.store.db import open_database

    if not url:
        from gateway.settings import load_settings

        url = load_settings(config).database_url

    async def run() -> T:
        db = open_database(url)
        try:
            return await action(db)
        finally:
            await db.close()

    return asyncio.run(run())


def _read_password(from_stdin: bool) -> str:
    from gateway.errors import UsageError
    from gateway.web.passwords import MIN_LENGTH

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_LENGTH:
        raise UsageError("usage", f"the password needs at least {MIN_LENGTH} characters")
    return password


@app.command("add")
def add(
    username: Annotated[str, typer.Argument(help="Sign-in name (unique).")],
    role: Annotated[str, typer.Option("--role", help="clerk, auditor or admin.")],
    organ_id: Annotated[
        str | None, typer.Option("--organ-id", help="The clerk's agency code, e.g. 000.00.31.H53.")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")
    ] = False,
    url: UrlOption = None,
    config: ConfigOption = None,
) -> None:
    """Create a web account. The password is asked for (twice), or read from stdin."""
    from gateway.errors import UsageError
    from gateway.store.accounts import ROLES, add_user
    from gateway.web.passwords import hash_password

    username = username.strip()
    if not username or len(username) > 64:
        raise UsageError("usage", "the username must have 1 to 64 characters")
    if role not in ROLES:
        raise UsageError("usage", f"--role must be one of {', '.join(ROLES)}")
    if role == "clerk" and not organ_id:
        raise UsageError("usage", "a clerk needs --organ-id (the agency whose documents they see)")
    if role != "clerk" and organ_id:
        raise UsageError("usage", "--organ-id is only for clerks (auditors and admins see every agency)")
    if organ_id:
        from gateway.edxml.codes import OrganId

        try:
            OrganId.parse(organ_id)
        except Exception as exc:
            raise UsageError("usage", f"not an agency code: {organ_id}") from exc
    password_hash = hash_password(_read_password(password_stdin))

    async def action(db: Database) -> bool:
        _, created = await add_user(
            db,
            username=username,
            password_hash=password_hash,
            role=role,
            organ_id=organ_id,
            now=dt.datetime.now(dt.UTC),
        )
        return created

    if not _with_db(url, config, action):
        raise UsageError("usage", f"user {username} already exists")
    typer.echo(f"added {username} ({role}{f', {organ_id}' if organ_id else ''})")


@app.command("list")
def list_cmd(url: UrlOption = None, config: ConfigOption = None) -> None:
    """List the web accounts: name, role, agency, state, last sign-in."""
    from gateway.store.accounts import list_users

    for user in _with_db(url, config, list_users):
        last = user.last_login_at.isoformat(timespec="seconds") if user.last_login_at else "-"
        state = "disabled" if user.disabled else "active"
        typer.echo(f"{user.username}\t{user.role}\t{user.organ_id or '-'}\t{state}\t{last}")


@app.command("disable")
def disable(
    username: Annotated[str, typer.Argument(help="The account to disable.")],
    enable: Annotated[bool, typer.Option("--enable", help="Re-enable the account instead.")] = False,
    url: UrlOption = None,
    config: ConfigOption = None,
) -> None:
    """Disable an account (its sessions end at once), or re-enable it with --enable."""
    from gateway.errors import UsageError
    from gateway.store.accounts import set_disabled

    async def action(db: Database) -> bool:
        return await set_disabled(db, username, disabled=not enable)

    if not _with_db(url, config, action):
        raise UsageError("usage", f"no user {username}")
    typer.echo(f"{'enabled' if enable else 'disabled'} {username}")
