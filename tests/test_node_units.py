"""The node's parts that need no hub: store migrations, settings, backoff, receipt checks, DMS hand-off."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import random
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hub_helpers import DISTRICT, PROVINCE
from pki_fixtures import build_pki

from gateway.errors import ConfigError
from gateway.hub.receipts import Receipt, RecipientResult, build_receipt
from gateway.hub.signing import HubSigner
from gateway.node import dms
from gateway.node.compose import FileSpec
from gateway.node.config import load_node_settings
from gateway.node.node import Node, ReceiptMismatch
from gateway.node.store import HEAD, OutboxRow, open_store
from gateway.trust.files import key_pem, pem_of
from gateway.trust.store import TrustStore


def settings(tmp_path: Path, **extra: Any) -> Any:
    config = tmp_path / "node.toml"
    values = {
        "organ_id": PROVINCE,
        "cert_dir": str(tmp_path / "certs"),
        "hub_url": "https://127.0.0.1:8443",
        "trust_dir": str(tmp_path / "trust"),
        "data_dir": str(tmp_path / "data"),
        **extra,
    }
    config.write_text("[node]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    return load_node_settings(config)


def test_the_store_migrates_to_exactly_the_schema_and_head_is_known(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from gateway.node.schema import metadata
    from gateway.node.store import _alembic_config

    assert ScriptDirectory.from_config(_alembic_config()).get_current_head() == HEAD

    async def diff() -> list[Any]:
        async with open_store(tmp_path) as store, store.engine.connect() as conn:

            def compare(sync_conn: Any) -> list[Any]:
                ctx = MigrationContext.configure(sync_conn, opts={"version_table": "node_alembic_version"})
                return list(compare_metadata(ctx, metadata))

            return await conn.run_sync(compare)

    assert asyncio.run(diff()) == []
    assert asyncio.run(diff()) == []  # a second open is a no-op at head


def test_settings_come_from_the_toml_with_environment_overrides(tmp_path: Path, monkeypatch: Any) -> None:
    s = settings(tmp_path, poll_wait=5)
    assert (s.organ_id, s.poll_wait, s.multipart_threshold) == (PROVINCE, 5, 2 * 1024 * 1024)
    monkeypatch.setenv("GATEWAY_NODE_POLL_WAIT", "7")
    assert settings(tmp_path, poll_wait=5).poll_wait == 7
    with pytest.raises(ConfigError, match="organ_id"):
        settings(tmp_path, organ_id="not-a-code")
    with pytest.raises(ConfigError, match="HTTPS"):
        settings(tmp_path, hub_url="http://127.0.0.1:8443")


def test_backoff_grows_exponentially_with_jitter_and_is_capped(tmp_path: Path) -> None:
    node = Node(
        settings(tmp_path, retry_base=1.0, retry_max=30.0),
        store=None,  # type: ignore[arg-type]
        client=None,  # type: ignore[arg-type]
        identity=None,  # type: ignore[arg-type]
        trust=None,  # type: ignore[arg-type]
        rng=random.Random(1),
    )
    delays = {n: [node.backoff(n) for _ in range(200)] for n in (1, 3, 10)}
    assert all(0.5 <= d <= 1.0 for d in delays[1])
    assert all(0.5 <= d <= 4.0 for d in delays[3])
    assert max(delays[3]) > 3.0
    assert len(set(delays[3])) > 100  # jitter: nodes that failed together do not retry together
    assert all(d <= 30.0 for d in delays[10])


def _row(data: bytes, **kw: Any) -> OutboxRow:
    now = dt.datetime.now(dt.UTC)
    values: dict[str, Any] = {
        "id": 1,
        "kind": "package",
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "content_type": "application/edxml+xml",
        "document_id": f"{PROVINCE},2026/03/02,1/UBND-VP",
        "document_sender": PROVINCE,
        "business_doc_type": 0,
        "status_code": None,
        "recipients": (DISTRICT,),
        "meta": {},
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "last_error": None,
        "error_code": None,
        "created_at": now,
        "sent_at": None,
        "hub_time": None,
        "receipt_xml": None,
    }
    values.update(kw)
    return OutboxRow(**values)


def _receipt(for_bytes: bytes, signer: Any) -> bytes:
    sha = hashlib.sha256(for_bytes).hexdigest()
    receipt = Receipt(
        kind="package",
        hub="LGSP Tây Ninh",
        hub_time=dt.datetime.now(dt.UTC),
        sha256=sha,
        size=len(for_bytes),
        package_id=sha,
        document_id=f"{PROVINCE},2026/03/02,1/UBND-VP",
        sender=PROVINCE,
        carriage="single",
        electronic=True,
        verdict="verified",
        recipients=(RecipientResult(organ_id=DISTRICT),),
    )
    folder = Path(tempfile.mkdtemp())
    (folder / "hub.crt").write_bytes(pem_of([signer.cert, *signer.chain[:-1]]))
    (folder / "hub.key").write_bytes(key_pem(signer.key))
    return HubSigner.load(folder / "hub.crt", folder / "hub.key").sign(build_receipt(receipt))


def test_a_receipt_is_accepted_only_if_signed_by_a_trusted_hub_and_for_the_bytes_sent(tmp_path: Path) -> None:
    pki = build_pki()
    trust = TrustStore.from_objects(roots=[pki.root.cert], intermediates=[pki.intermediate.cert])
    node = Node(
        settings(tmp_path),
        store=None,  # type: ignore[arg-type]
        client=None,  # type: ignore[arg-type]
        identity=None,  # type: ignore[arg-type]
        trust=trust,
    )
    sent = b"<edXML>the package</edXML>"
    assert (
        node.check_receipt(_receipt(sent, pki.hub), row=_row(sent)).sha256 == hashlib.sha256(sent).hexdigest()
    )
    with pytest.raises(ReceiptMismatch, match="SHA-256"):
        node.check_receipt(_receipt(b"other bytes", pki.hub), row=_row(sent))
    forged = _receipt(sent, pki.hub).replace(b"LGSP T", b"LGSP X")
    with pytest.raises(ReceiptMismatch, match="does not verify"):
        node.check_receipt(forged, row=_row(sent))
    foreign = pki.bad("foreign")
    with pytest.raises(ReceiptMismatch, match="does not verify"):
        node.check_receipt(_receipt(sent, foreign), row=_row(sent))


def test_the_drop_folder_appears_whole_once_with_safe_names(tmp_path: Path) -> None:
    meta = {
        "document_id": "x",
        "sender": PROVINCE,
        "package_sha256": "ab" * 32,
        "received_at": "2026-03-02T01:00",
    }
    files = [FileSpec(name="../../etc/passwd", data=b"a"), FileSpec(name="document.json", data=b"b")]
    first = asyncio.run(dms.deliver(meta=meta, files=files, drop_dir=tmp_path, callback_url=None))
    assert first is not None
    assert first.parent == tmp_path
    names = sorted(p.name for p in first.iterdir())
    assert names == ["2-document.json", "document.json", "passwd"]
    sidecar = json.loads((first / "document.json").read_text())
    assert [f["sha256"] for f in sidecar["files"]] == [
        hashlib.sha256(b"a").hexdigest(),
        hashlib.sha256(b"b").hexdigest(),
    ]
    again = asyncio.run(dms.deliver(meta=meta, files=files, drop_dir=tmp_path, callback_url=None))
    assert again == first
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == [first.name]
