"""Operator tasks on the hub's database: agencies, certificate pins and node identities.

The same changes as the hub's /v1/admin API, made directly against the database named in the hub
configuration (for a hub that is not running yet, or from its host). Running hubs pick them up at their
next reload tick (``reload_interval``).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

T = TypeVar("T")
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="Settings TOML file (default $GATEWAY_CONFIG, config/hub.toml)."),
]


def _with_repo(config: Path | None, action: Callable[[Any], Awaitable[T]]) -> T:
    from gateway.hub.adapters import open_repository
    from gateway.hub.config import load_config

    async def run() -> T:
        async with open_repository(load_config(config)) as repo:
            return await action(repo)

    return asyncio.run(run())


def _fingerprint(value: str) -> str:
    """A SHA-256 fingerprint given as hex, or the path of a PEM/DER certificate to take it from."""
    from gateway.errors import UsageError
    from gateway.trust.store import parse_fingerprint

    path = Path(value)
    if path.is_file():
        from cryptography.hazmat.primitives.serialization import Encoding

        from gateway.trust.store import load_certificates

        cert = load_certificates(path.read_bytes(), source=str(path))[0]
        return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
    try:
        return parse_fingerprint(value).hex()
    except Exception as exc:
        raise UsageError("usage", f"not a SHA-256 fingerprint nor a certificate file: {value}") from exc


@app.command("agencies")
def agencies(config: ConfigOption = None) -> None:
    """List the agencies of the database: the directory file's (once a hub started) and the operator's."""
    for a in _with_repo(config, lambda repo: repo.admin("db_agencies")):
        typer.echo(f"{a.organ_id}\t{a.level}\t{a.parent or '-'}\t{a.name}\t{','.join(a.pinned_fingerprints)}")


@app.command("agency-put")
def agency_put(
    organ_id: str,
    name: Annotated[str, typer.Option("--name")],
    level: Annotated[str, typer.Option("--level", help="central|province|department|district|commune")],
    parent: Annotated[str | None, typer.Option("--parent")] = None,
    config: ConfigOption = None,
) -> None:
    """Add or change an agency."""
    from gateway.trust.directory import Agency

    agency = Agency(
        organ_id=organ_id.upper(), name=name, level=level, parent=parent.upper() if parent else None
    )
    _with_repo(config, lambda repo: repo.admin("put_agency", agency=agency))
    typer.echo(f"agency {agency.organ_id} saved")


@app.command("agency-remove")
def agency_remove(organ_id: str, config: ConfigOption = None) -> None:
    """Remove an agency added in the database."""
    n = _with_repo(config, lambda repo: repo.admin("delete_agency", organ_id=organ_id.upper()))
    typer.echo(f"removed {n}")


@app.command("pin")
def pin(organ_id: str, fingerprint: str, config: ConfigOption = None) -> None:
    """Pin a signing certificate (fingerprint or certificate file) for an agency stored in the database."""
    fp = _fingerprint(fingerprint)

    async def act(repo: Any) -> None:
        found = {a.organ_id: a for a in await repo.admin("db_agencies")}.get(organ_id.upper())
        if found is None:
            from gateway.errors import UsageError

            raise UsageError("usage", f"{organ_id} is not an agency of the database; add it with agency-put")
        await repo.admin("add_pin", agency=found, fingerprint=fp)

    _with_repo(config, act)
    typer.echo(f"pinned {fp} for {organ_id.upper()}")


@app.command("node-add")
def node_add(fingerprint: str, organ_id: str, config: ConfigOption = None) -> None:
    """Let a client certificate (fingerprint or certificate file) act for an agency as its node."""
    fp = _fingerprint(fingerprint)
    _with_repo(
        config, lambda repo: repo.admin("add_node_identity", fingerprint=fp, organ_id=organ_id.upper())
    )
    typer.echo(f"node {fp} acts for {organ_id.upper()}")


@app.command("node-remove")
def node_remove(fingerprint: str, organ_id: str, config: ConfigOption = None) -> None:
    """Withdraw a node identity."""
    fp = _fingerprint(fingerprint)
    n = _with_repo(
        config, lambda repo: repo.admin("remove_node_identity", fingerprint=fp, organ_id=organ_id.upper())
    )
    typer.echo(f"removed {n}")


@app.command("nodes")
def nodes(config: ConfigOption = None) -> None:
    """List node identities."""
    for fp, organ_id in _with_repo(config, lambda repo: repo.admin("list_node_identities")):
        typer.echo(f"{fp}\t{organ_id}")
