"""``gateway users``: accounts are created with a hashed password, listed, and disabled (sessions end)."""

from __future__ import annotations

import asyncio

import pytest
from typer.testing import CliRunner

from gateway.cli.users import app
from gateway.errors import UsageError
from gateway.store.accounts import get_user
from gateway.store.db import open_database
from gateway.store.migrate import upgrade
from gateway.web.passwords import verify_password


@pytest.fixture
def url(tmp_path) -> str:
    database = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    upgrade(database)
    return database


def _user(url: str, name: str):
    async def run():
        db = open_database(url)
        try:
            return await get_user(db, name)
        finally:
            await db.close()

    return asyncio.run(run())


def test_add_list_disable(url: str) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "add",
            "vanthu.tanbien",
            "--role",
            "clerk",
            "--organ-id",
            "000.00.31.H53",
            "--password-stdin",
            "--url",
            url,
        ],
        input="mật khẩu đủ dài\n",
    )
    assert result.exit_code == 0, result.output
    user = _user(url, "vanthu.tanbien")
    assert user.role == "clerk"
    assert user.organ_id == "000.00.31.H53"
    assert user.password_hash.startswith("$argon2id$")
    assert verify_password(user.password_hash, "mật khẩu đủ dài")
    result = runner.invoke(
        app, ["add", "kiemtra", "--role", "auditor", "--url", url], input="x" * 12 + "\n" + "x" * 12 + "\n"
    )
    assert result.exit_code == 0, result.output
    listing = runner.invoke(app, ["list", "--url", url]).output.splitlines()
    assert listing == [
        "kiemtra\tauditor\t-\tactive\t-",
        "vanthu.tanbien\tclerk\t000.00.31.H53\tactive\t-",
    ]
    assert runner.invoke(app, ["disable", "kiemtra", "--url", url]).exit_code == 0
    assert _user(url, "kiemtra").disabled
    assert runner.invoke(app, ["disable", "kiemtra", "--enable", "--url", url]).exit_code == 0
    assert not _user(url, "kiemtra").disabled


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        (["add", "a", "--role", "clerk"], "long enough password\n"),  # a clerk needs an agency
        (["add", "a", "--role", "auditor", "--organ-id", "000.00.31.H53"], "long enough password\n"),
        (["add", "a", "--role", "king"], "long enough password\n"),
        (["add", "a", "--role", "clerk", "--organ-id", "31"], "long enough password\n"),
        (["add", "a", "--role", "auditor"], "short\n"),
        (["disable", "nobody"], ""),
    ],
)
def test_misuse_is_a_usage_error(url: str, args: list[str], stdin: str) -> None:
    if args[0] == "add":
        args = [*args, "--password-stdin"]
    result = CliRunner().invoke(app, [*args, "--url", url], input=stdin)
    assert isinstance(result.exception, UsageError), result.output


def test_a_taken_username_is_refused(url: str) -> None:
    runner = CliRunner()
    args = ["add", "kiemtra", "--role", "auditor", "--password-stdin", "--url", url]
    assert runner.invoke(app, args, input="long enough password\n").exit_code == 0
    result = runner.invoke(app, args, input="another long password\n")
    assert isinstance(result.exception, UsageError)
    assert verify_password(_user(url, "kiemtra").password_hash, "long enough password")
