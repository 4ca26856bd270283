"""``lenient_legacy``: legacy packages are admitted, stored as not fully electronic, with their reason."""

from __future__ import annotations

import asyncio
import datetime as dt

import sqlalchemy as sa
from hub_helpers import (
    DEPARTMENT,
    PROVINCE,
    Client,
    HubProcess,
    client_context,
    document,
    hub_config,
    verify_hub_signed,
    write_config_toml,
    write_hub_files,
)
from pki_fixtures import build_pki
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.edxml.build import build
from gateway.hub import receipts
from gateway.trust.store import TrustStore


def test_lenient_hub_admits_an_unsigned_package_as_not_electronic(tmp_path) -> None:
    files = write_hub_files(build_pki(), tmp_path)
    url = f"sqlite+aiosqlite:///{tmp_path}/hub.db"
    config = hub_config(files, url, lenient_legacy=True)
    hub = HubProcess(write_config_toml(config, tmp_path / "hub.toml"))
    try:
        client = Client(config.port, client_context(files, PROVINCE))
        doc = document(recipients=(DEPARTMENT,))
        reply = client.post_package(build(doc))
        assert reply.status == 202, reply.body
        checked = verify_hub_signed(
            reply.body, trust=TrustStore.load(files.trust_dir), at=dt.datetime.now(dt.UTC)
        )
        receipt = receipts.parse_receipt(checked.signed_root)
        assert receipt.electronic is False
        assert receipt.verdict == "signature.missing"
        # Lenient is about the signature only: the sender must still be the mTLS identity.
        other = Client(config.port, client_context(files, DEPARTMENT)).post_package(build(document()))
        assert other.code == "auth.forbidden"
    finally:
        hub.stop()

    async def row() -> tuple[object, ...]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                q = sa.text(
                    "SELECT p.signature_verdict, e.signature_ok, e.paper, e.sender_level, e.recipient_level"
                    " FROM package p JOIN exchange e ON e.package_id = p.id WHERE p.document_id = :d"
                )
                return tuple((await conn.execute(q, {"d": doc.header.document_id})).one())
        finally:
            await engine.dispose()

    # Stored as not electronic with the reason; the exchange carries what the rate needs.
    assert asyncio.run(row()) == ("signature.missing", False, False, "province", "department")
