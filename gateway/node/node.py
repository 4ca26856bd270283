"""The agency node: the outbox, the inbox loop, clerk actions and the reports behind ``gateway receipts``
and ``gateway overdue``. It speaks to the hub only through the public API (:mod:`gateway.node.client`).

Guarantees (docs/node.md):

* **Outbox.** Bytes are signed once and stored (fsynced) before the first attempt; every retry sends the
  same bytes, so the hub's idempotency (same bytes → same receipt) makes a retry harmless. Backoff is
  exponential with full jitter, capped. A receipt is accepted only if the hub's signature verifies against
  the trust store *and* it quotes the SHA-256 and size of what was sent.
* **Inbox.** For each hub inbox item: fetch, verify ourselves, store the package, its verdict and the
  automatic status (01, or 02 with the reason) in one transaction, then hand off to the DMS, send the
  status from the outbox, and only then acknowledge. A crash anywhere replays from the store: items are
  deduplicated by id, packages by SHA-256, statuses by their stored bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gateway.calendar import Holidays, deadline_for
from gateway.edxml.codes import DocumentId, StatusCode
from gateway.edxml.model import DocumentPackage
from gateway.edxml.parse import parse
from gateway.errors import GatewayError, UsageError
from gateway.hub.receipts import Receipt, parse_receipt
from gateway.node import compose, dms
from gateway.node.client import HubClient, HubRefused, HubUnavailable, tls_context
from gateway.node.config import NodeSettings
from gateway.node.store import InboxRow, NodeStore, OutboxRow, open_store, utcnow
from gateway.signature.enveloped import verify_enveloped
from gateway.trust.files import check_key_file_private, load_issued
from gateway.trust.pki import Issued
from gateway.trust.store import TrustStore

log = logging.getLogger("gateway.node")

RECIPIENT_CODES = frozenset({"01", "02", "03", "04", "05", "06", "15", "16"})
CONFIRMED_BY_CLERK = frozenset({"02", "03", "04", "05", "06", "15", "16"})


class ReceiptMismatch(GatewayError):
    status = 502

    def __init__(self, detail: str) -> None:
        super().__init__("node.receipt_mismatch", detail)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxResult:
    sent: int = 0
    pending: int = 0
    failed: int = 0


class Node:
    """One agency node. Build it with :meth:`open` (an async context manager)."""

    def __init__(
        self,
        settings: NodeSettings,
        *,
        store: NodeStore,
        client: HubClient,
        identity: Issued,
        trust: TrustStore,
        holidays: Holidays | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.identity = identity
        self.trust = trust
        self.holidays = holidays or Holidays()
        self.clock = clock
        self.rng = rng or random.Random()
        self.organ_id = settings.organ_id

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: NodeSettings) -> AsyncIterator[Node]:
        if not settings.allow_readable_key_files:
            check_key_file_private(
                settings.cert_dir / "key.pem",
                what="the agency private key",
                setting="allow_readable_key_files",
            )
        identity = load_issued(settings.cert_dir)
        trust = TrustStore.load(settings.trust_dir)
        ca_files = [settings.hub_ca] if settings.hub_ca else sorted(settings.trust_dir.glob("*.pem"))
        ctx = tls_context(cert_dir=settings.cert_dir, ca_files=ca_files, work_dir=settings.data_dir / "tls")
        holidays = Holidays.load(settings.holidays_file) if settings.holidays_file else None
        async with (
            open_store(settings.data_dir) as store,
            HubClient(settings.hub_url, ctx, timeout=settings.request_timeout) as client,
        ):
            yield cls(settings, store=store, client=client, identity=identity, trust=trust, holidays=holidays)

    # ================================================================================================
    # Sending
    # ================================================================================================
    async def queue_package(
        self, signed: compose.Signed, *, meta: dict[str, Any], business_doc_type: int = 0
    ) -> OutboxRow:
        """Store the signed bytes in the outbox (durable before any attempt)."""
        return await self.store.enqueue(
            kind="package",
            data=signed.data,
            content_type=signed.content_type,
            document_id=signed.document_id,
            document_sender=self.organ_id,
            business_doc_type=business_doc_type,
            recipients=signed.recipients,
            meta={**meta, "carriage": signed.carriage},
        )

    def sign_dispatch(self, d: compose.Dispatch) -> compose.Signed:
        if d.sender != self.organ_id:
            raise UsageError("usage", f"this node sends for {self.organ_id}, not {d.sender}")
        pkg = compose.build_document(d)
        return compose.sign_document(
            pkg, self.identity, multipart_threshold=self.settings.multipart_threshold
        )

    def sign_edxml(self, data: bytes) -> compose.Signed:
        """Sign a ready edXML document (unsigned, or signed by someone else: signed again, by us)."""
        msg = parse(data)
        if not isinstance(msg, DocumentPackage):
            raise UsageError("usage", "this is a status message, not a document package")
        if msg.header.from_.organ_id != self.organ_id:
            raise UsageError(
                "usage", f"the package is from {msg.header.from_.organ_id}; this node is {self.organ_id}"
            )
        return compose.sign_document(
            msg, self.identity, multipart_threshold=self.settings.multipart_threshold
        )

    async def send(
        self, signed: compose.Signed, *, meta: dict[str, Any], business_doc_type: int = 0
    ) -> OutboxRow:
        """Queue then try once now. Returns the row (``state`` pending if the hub could not be reached)."""
        row = await self.queue_package(signed, meta=meta, business_doc_type=business_doc_type)
        if row.state == "pending":
            row = await self.attempt(row)
        return row

    async def attempt(self, row: OutboxRow) -> OutboxRow:
        """One attempt to deliver an outbox row; the row's new state is stored before returning."""
        data = await asyncio.to_thread(self.store.blobs.get, row.sha256)
        try:
            if row.kind == "package":
                reply = await self.client.post_package(data, row.content_type)
            else:
                reply = await self.client.post_status(data)
        except HubUnavailable as exc:
            delay = self.backoff(row.attempts + 1)
            await self.store.mark_failed(
                row.id,
                state="pending",
                error_code=exc.code,
                error=exc.detail,
                retry_at=self.clock() + dt.timedelta(seconds=delay),
            )
        except HubRefused as exc:
            await self.store.mark_failed(
                row.id, state="refused", error_code=exc.problem_code, error=exc.detail
            )
        else:
            try:
                receipt = self.check_receipt(reply.body, row=row, repeat=reply.status == 200)
            except GatewayError as exc:
                await self.store.mark_failed(row.id, state="mismatch", error_code=exc.code, error=exc.detail)
            else:
                await self.store.mark_sent(row.id, receipt_xml=reply.body, hub_time=receipt.hub_time)
        fresh = await self.store.outbox_by_sha(row.sha256)
        assert fresh is not None
        return fresh

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter: uniform in [base/2, min(cap, base·2^(attempt-1))]."""
        ceiling = min(self.settings.retry_max, self.settings.retry_base * 2 ** max(0, attempt - 1))
        return self.rng.uniform(min(self.settings.retry_base / 2, ceiling), ceiling)

    def verify_hub_signed(self, data: bytes) -> Any:
        """A hub-signed document (receipt, status notice): the signature by the core's enveloped profile,
        then the signer's chain against our trust store, now. Returns the verified signature; read the
        document from its ``signed_root`` only."""
        verified = verify_enveloped(data)
        self.trust.validate(verified.signer, at=self.clock(), extra_intermediates=list(verified.extra_certs))
        return verified

    def check_receipt(self, body: bytes, *, row: OutboxRow, repeat: bool = False) -> Receipt:
        """The hub receipt, verified (hub signature, chain to our trust store) and matched to ``row``."""
        try:
            checked = self.verify_hub_signed(body)
            receipt = parse_receipt(checked.signed_root)
        except GatewayError as exc:
            raise ReceiptMismatch(f"the hub receipt does not verify: {exc.code}: {exc.detail}") from exc
        problems: list[str] = []
        if row.kind == "package":
            if receipt.kind != "package":
                problems.append(f"kind {receipt.kind}")
            if receipt.sha256 != row.sha256 or receipt.package_id != row.sha256:
                problems.append(f"SHA-256 {receipt.sha256[:16]}… ≠ sent {row.sha256[:16]}…")
            if receipt.size != row.size:
                problems.append(f"size {receipt.size} ≠ sent {row.size}")
            if receipt.document_id != row.document_id:
                problems.append(f"DocumentId {receipt.document_id} ≠ {row.document_id}")
            if receipt.sender != self.organ_id:
                problems.append(f"sender {receipt.sender}")
            routed = {r.organ_id for r in receipt.recipients}
            if row.recipients and not set(row.recipients) <= routed:
                problems.append(f"recipients {sorted(routed)} ≠ {sorted(row.recipients)}")
        else:
            if receipt.kind != "status" or receipt.status is None:
                problems.append(f"kind {receipt.kind}")
            elif receipt.status.code != row.status_code or receipt.status.sender != self.organ_id:
                problems.append(f"status {receipt.status.code} from {receipt.status.sender}")
            if receipt.document_id != row.document_id:
                problems.append(f"DocumentId {receipt.document_id} ≠ {row.document_id}")
            same_bytes = receipt.sha256 == row.sha256 and receipt.size == row.size
            # A different message repeating a state is answered 200 with a receipt for it (docs/api.md);
            # an older hub answered with the *earlier* message's receipt: accepted only on HTTP 200.
            if not same_bytes and not repeat:
                problems.append(f"SHA-256 {receipt.sha256[:16]}… ≠ sent {row.sha256[:16]}…")
        if problems:
            raise ReceiptMismatch("the hub receipt is not for what was sent: " + "; ".join(problems))
        return receipt

    async def deliver_outbox(self, *, everything: bool = False) -> OutboxResult:
        """Attempt every due row (``everything``: every pending row, due or not)."""
        sent = failed = 0
        for row in await self.store.due(self.clock(), all_pending=everything):
            new = await self.attempt(row)
            if new.state == "sent":
                sent += 1
            elif new.state != "pending":
                failed += 1
        pending = len(await self.store.due(self.clock(), all_pending=True))
        return OutboxResult(sent=sent, pending=pending, failed=failed)

    # ================================================================================================
    # Statuses and requests
    # ================================================================================================
    async def queue_status(self, document_id: str, code: str, description: str | None) -> OutboxRow:
        msg = compose.build_status(
            sender=self.organ_id,
            sender_name=self.settings.organ_name,
            document_id=document_id,
            code=code,
            description=description,
            staff=self.settings.staff,
        )
        data = compose.sign_status(msg, self.identity)
        return await self.store.enqueue(
            kind="status",
            data=data,
            content_type=compose.SINGLE,
            document_id=document_id,
            document_sender=DocumentId.parse(document_id).organ_id,
            status_code=code,
            meta={"description": description},
        )

    async def send_status(self, document_id: str, code: str, reason: str | None = None) -> OutboxRow:
        """A clerk's status on a received document: 02 (with a reason), 03–06, or 15/16 to a request."""
        code = StatusCode.parse(code).value
        if code not in RECIPIENT_CODES:
            raise UsageError(
                "usage", f"a recipient sends 01–06, 02, 15 or 16; {code} is the sender's (use recall)"
            )
        if code == "02" and not reason:
            raise UsageError("usage", "status 02 (refused) needs --reason")
        if not await self.store.received(document_id) and not await self._notice_for(document_id):
            raise GatewayError("node.unknown_document", f"{document_id} was not received by this node")
        row = await self.queue_status(document_id, code, reason)
        return await self.attempt(row) if row.state == "pending" else row

    async def _notice_for(self, document_id: str) -> bool:
        return bool(await self.store.notices(document_id))

    async def _sent(self, document_id: str) -> tuple[OutboxRow, DocumentPackage]:
        rows = [r for r in await self.store.sent_documents(document_id) if r.business_doc_type == 0]
        if not rows:
            raise GatewayError("node.unknown_document", f"{document_id} was not sent by this node")
        row = rows[0]
        data = await asyncio.to_thread(self.store.blobs.get, row.sha256)
        if row.content_type.startswith("multipart/"):
            from gateway.edxml.multipart import MemorySink, read_multipart_bytes, to_single_file

            result = read_multipart_bytes(data, row.content_type, sink_factory=MemorySink)
            data = to_single_file(result.edxml, {p.content_id: p.handle.data for p in result.parts})  # type: ignore[arg-type]
        msg = parse(data)
        assert isinstance(msg, DocumentPackage)
        return row, msg

    async def recall(self, document_id: str, reason: str) -> list[OutboxRow]:
        """Ask every recipient to give the document back: status 13 (and/or a BussinessDocType 1 package)."""
        _, original = await self._sent(document_id)
        rows: list[OutboxRow] = []
        if not self.settings.requests_via_status:
            d = compose.dispatch_from_package(original, business_doc_type=1, reason=reason, files=())
            rows.append(
                await self.send(
                    self.sign_dispatch(d), meta={"request": "recall", "reason": reason}, business_doc_type=1
                )
            )
        else:
            row = await self.queue_status(document_id, "13", reason)
            rows.append(await self.attempt(row) if row.state == "pending" else row)
        return rows

    async def update(self, document_id: str, reason: str, **changes: Any) -> list[OutboxRow]:
        """Send an update (BussinessDocType 2, same DocumentId) with the changed fields/files; recipients
        answer 15 (agreed) or 16 (refused)."""
        _, original = await self._sent(document_id)
        d = compose.dispatch_from_package(
            original,
            business_doc_type=2,
            reason=reason,
            **{k: v for k, v in changes.items() if v is not None},
        )
        rows = [
            await self.send(
                self.sign_dispatch(d),
                meta={"request": "update", "target": document_id, "reason": reason},
                business_doc_type=2,
            )
        ]
        if self.settings.requests_via_status and rows[0].state == "sent":
            row = await self.queue_status(document_id, "13", f"update: {reason}")
            rows.append(await self.attempt(row) if row.state == "pending" else row)
        return rows

    async def replace(self, document_id: str, new: compose.Dispatch, reason: str) -> list[OutboxRow]:
        """Send a replacement (BussinessDocType 3, a new DocumentId, ReplacementInfoList naming the old)."""
        old_row, _ = await self._sent(document_id)
        d = replace(
            new,
            business_doc_type=3,
            reason=reason,
            replaces=(document_id,),
            recipients=new.recipients or old_row.recipients,
        )
        rows = [
            await self.send(
                self.sign_dispatch(d),
                meta={"request": "replace", "target": document_id, "reason": reason},
                business_doc_type=3,
            )
        ]
        if self.settings.requests_via_status and rows[0].state == "sent":
            row = await self.queue_status(document_id, "13", f"replaced by {d.document_id}: {reason}")
            rows.append(await self.attempt(row) if row.state == "pending" else row)
        return rows

    # ================================================================================================
    # Receiving
    # ================================================================================================
    async def pull(self, *, wait: int = 0) -> int:
        """One page of the hub inbox: process every item, then acknowledge. Returns the number of items."""
        items = await self.client.inbox(wait=wait, limit=self.settings.poll_limit)
        if not items:
            return 0
        done = await self.store.processed_items([int(i["item_id"]) for i in items])
        for item in items:
            item_id = int(item["item_id"])
            if item_id in done:
                continue
            if item.get("kind") == "package":
                await self._receive_package(item)
            elif item.get("kind") == "status":
                await self._receive_notice(item)
            else:  # an item kind this node does not know: keep it, never lose it silently
                log.warning(
                    "unknown inbox item kind %r (item %s): left unacknowledged", item.get("kind"), item_id
                )
                continue
        await self.deliver_dms()
        await self.deliver_outbox()
        await self.ack_processed()
        return len(items)

    async def ack_processed(self) -> None:
        ids = await self.store.unacked_items()
        if ids:
            await self.client.ack(ids)
            await self.store.mark_acked(ids)

    async def _receive_package(self, item: dict[str, Any]) -> None:
        package_id = str(item["package_id"])
        reply = await self.client.package(package_id)
        data = reply.body
        now = self.clock()
        verdict = await asyncio.to_thread(
            compose.judge_package,
            data,
            reply.content_type,
            expected_sha256=package_id,
            trust=self.trust,
            at=now,
        )
        sha = await asyncio.to_thread(self.store.blobs.put, data)
        existing = await self.store.inbox_by_sha(sha)
        document_id = str(item.get("document_id") or "")
        sender = str(item.get("sender") or "")
        meta: dict[str, Any]
        if verdict.ok and verdict.verified is not None:
            pkg = verdict.verified.message
            assert isinstance(pkg, DocumentPackage)
            meta = compose.metadata_of(pkg)
            document_id = pkg.header.document_id or document_id
            sender = pkg.header.from_.organ_id
            signer = verdict.verified.chain.chain[0].subject.rfc4514_string()
        else:
            meta = {"document_id": document_id, "from": {"organ_id": sender}}
            signer = None
        folder = self.store.received_dir / sha
        if verdict.ok and existing is None:
            for i, f in enumerate(verdict.files, 1):
                await asyncio.to_thread(dms_write, folder / dms.safe_name(f.name, i), f.data)
        meta.update(
            {
                "package_sha256": sha,
                "hub_item_id": int(item["item_id"]),
                "received_at": now.isoformat(),
                "sender": sender,
                "verdict": {
                    "ok": verdict.ok,
                    "code": verdict.code,
                    "detail": verdict.detail,
                    "signer": signer,
                    "verified_by": self.organ_id,
                },
            }
        )
        status = None
        bussiness = int(meta.get("business_doc_type") or 0)
        # A recall or an update (BussinessDocType 1/2) carries its target's DocumentId: the hub applies it
        # to the target's exchanges as a request (13), which the clerk answers with 15/16. An automatic
        # 01 there would be one more event on the target's timeline, not a delivery receipt.
        if existing is None and bussiness not in (1, 2):
            code, description = ("01", None) if verdict.ok else ("02", f"{verdict.code}: {verdict.detail}")
            msg = compose.build_status(
                sender=self.organ_id,
                sender_name=self.settings.organ_name,
                document_id=document_id,
                code=code,
                description=description or "Đã đến (tự động)",
                staff=self.settings.staff,
            )
            status_bytes = compose.sign_status(msg, self.identity)
            status_sha = await asyncio.to_thread(self.store.blobs.put, status_bytes)
            status = {
                "kind": "status",
                "sha256": status_sha,
                "size": len(status_bytes),
                "content_type": compose.SINGLE,
                "document_id": document_id,
                "document_sender": DocumentId.parse(document_id).organ_id,
                "business_doc_type": 0,
                "status_code": code,
                "recipients": "[]",
                "meta": json.dumps({"description": description, "automatic": True}, ensure_ascii=False),
                "state": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
        values = {
            "sha256": sha,
            "item_id": int(item["item_id"]),
            "document_id": document_id,
            "sender": sender,
            "business_doc_type": bussiness,
            "targets": json.dumps(meta.get("replaces") or ([document_id] if bussiness in (1, 2) else [])),
            "subject": meta.get("subject"),
            "content_type": reply.content_type,
            "size": len(data),
            "ok": verdict.ok,
            "verdict_code": verdict.code,
            "verdict_detail": verdict.detail,
            "meta": json.dumps(meta, ensure_ascii=False, default=str),
            "folder": str(folder),
            "received_at": now,
        }
        await self.store.record_received(item_id=int(item["item_id"]), values=values, status=status)
        log.info("received %s from %s: %s", document_id, sender, "verified" if verdict.ok else verdict.code)

    async def _receive_notice(self, item: dict[str, Any]) -> None:
        import base64
        import hashlib

        notice = base64.b64decode(item.get("notice") or "")
        verified, code = True, None
        receipt: Receipt | None = None
        status_time = None
        try:
            checked = self.verify_hub_signed(notice)
            receipt = parse_receipt(checked.signed_root)
            if receipt.kind != "status-notice" or receipt.status is None or receipt.original is None:
                raise ReceiptMismatch("not a status notice")
            original = compose.verify_package(receipt.original, trust=self.trust, at=self.clock())
            header = original.message.header
            if (
                original.organ_id != receipt.status.sender
                or getattr(header, "status_code", None) != receipt.status.code
            ):
                raise ReceiptMismatch("the original status does not match the notice")
            ts = getattr(header, "timestamp", None)
            status_time = ts.replace(tzinfo=compose.VN).astimezone(dt.UTC) if ts else None
            description = getattr(header, "description", None)
        except GatewayError as exc:
            verified, code = False, exc.code
            description = None
        values = {
            "notice_sha256": hashlib.sha256(notice).hexdigest(),
            "package_id": str(item.get("package_id") or ""),
            "document_id": receipt.document_id
            if verified and receipt
            else str(item.get("document_id") or ""),
            "document_sender": str(item.get("sender") or ""),
            "code": receipt.status.code
            if verified and receipt and receipt.status
            else str(item.get("status_code") or ""),
            "status_from": receipt.status.sender
            if verified and receipt and receipt.status
            else str(item.get("status_from") or ""),
            "description": description,
            "status_time": status_time,
            "hub_time": receipt.hub_time.astimezone(dt.UTC) if receipt else self.clock(),
            "verified": verified,
            "verdict_code": code,
            "notice_xml": notice,
        }
        await self.store.record_notice(item_id=int(item["item_id"]), values=values)

    async def deliver_dms(self) -> int:
        """Hand every stored, not yet handed-off document to the DMS (drop folder and/or callback)."""
        if self.settings.drop_dir is None and not self.settings.callback_url:
            return 0
        n = 0
        for row in await self.store.undelivered():
            files = self._files_of(row)
            try:
                await dms.deliver(
                    meta=row.meta,
                    files=files,
                    drop_dir=self.settings.drop_dir,
                    callback_url=self.settings.callback_url,
                    callback_timeout=self.settings.callback_timeout,
                )
            except Exception as exc:
                await self.store.mark_delivered(row.id, error=f"{type(exc).__name__}: {exc}")
                log.warning("DMS hand-off of %s failed: %s", row.document_id, exc)
                continue
            await self.store.mark_delivered(row.id, error=None)
            n += 1
        return n

    @staticmethod
    def _files_of(row: InboxRow) -> list[compose.FileSpec]:
        folder = Path(row.folder)
        if not row.ok or not folder.is_dir():
            return []
        return [compose.FileSpec.of(p.name, p.read_bytes()) for p in sorted(folder.iterdir()) if p.is_file()]

    async def drain(self) -> OutboxResult:
        """Work until the inbox is empty and the outbox has nothing due: ``gateway node run --once``."""
        before = {r.id for r in await self.store.outbox_rows() if r.state == "sent"}
        await self.deliver_outbox(everything=True)
        await self.ack_processed()
        while await self.pull(wait=0):
            pass
        await self.deliver_dms()
        await self.deliver_outbox()
        rows = await self.store.outbox_rows()
        return OutboxResult(
            sent=sum(1 for r in rows if r.state == "sent" and r.id not in before),
            pending=sum(1 for r in rows if r.state == "pending"),
            failed=sum(1 for r in rows if r.state in ("refused", "mismatch")),
        )

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Long-poll the inbox and retry the outbox until ``stop`` is set; a hub that is down is awaited."""
        failures = 0
        while not stop.is_set():
            try:
                await self.deliver_outbox()
                await self.ack_processed()
                await self.deliver_dms()
                due = await self.store.next_due()
                wait = self.settings.poll_wait
                if due is not None:
                    wait = max(0, min(wait, int((due - self.clock()).total_seconds()) + 1))
                pull = asyncio.ensure_future(self.pull(wait=wait))
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait({pull, stopper}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if not pull.done():
                    pull.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await pull
                    break
                pull.result()
                failures = 0
            except HubUnavailable as exc:
                failures += 1
                delay = self.backoff(failures)
                log.warning("hub unavailable (%s); retrying in %.1f s", exc.detail, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    # ================================================================================================
    # Reports
    # ================================================================================================
    async def receipts(self, document_id: str) -> dict[str, Any]:
        """Per recipient: every status with time and author, the hub receipt, overdue flags."""
        sent = sorted(await self.store.sent_documents(document_id), key=lambda r: r.business_doc_type != 0)
        received = await self.store.received(document_id)
        if not sent and not received:
            raise GatewayError("node.unknown_document", f"{document_id} is unknown to this node")
        role = "sender" if sent else "recipient"
        package_id = sent[0].sha256 if sent else received[0].sha256
        out: dict[str, Any] = {"document_id": document_id, "role": role, "package_id": package_id}
        if sent:
            row = sent[0]
            out["outbox"] = {"state": row.state, "attempts": row.attempts, "error": row.error_code}
            if row.receipt_xml:
                receipt = self.check_receipt(row.receipt_xml, row=row, repeat=True)
                out["hub_receipt"] = {
                    "hub": receipt.hub,
                    "hub_time": receipt.hub_time.isoformat(),
                    "sha256": receipt.sha256,
                    "size": receipt.size,
                    "verdict": receipt.verdict,
                    "electronic": receipt.electronic,
                    "carriage": receipt.carriage,
                    "signature": "verified",
                }
        timeline: dict[str, Any] | None = None
        try:
            timeline = await self.client.timeline(package_id)
            out["source"] = "hub"
        except (HubUnavailable, HubRefused) as exc:
            out["source"] = "local"
            out["hub_error"] = exc.detail
        local = await self.store.notices(document_id)
        recipients: list[dict[str, Any]] = []
        if timeline is not None:
            for r in timeline["recipients"]:
                recipients.append(
                    {
                        "organ_id": r["organ_id"],
                        "state": r["state"],
                        "overdue": bool(r["overdue"]),
                        "deadline": r["deadline"],
                        "events": [
                            {
                                "code": e["code"],
                                "state": e["state"],
                                "at": e["at"],
                                "by": e["by"],
                                "description": e.get("description"),
                                "notice_verified": any(
                                    n.code == e["code"] and n.status_from == e["by"] and n.verified
                                    for n in local
                                )
                                if role == "sender"
                                else None,
                            }
                            for e in r["events"]
                        ],
                    }
                )
        elif sent:
            hub_time = sent[0].hub_time
            deadline = deadline_for(hub_time, self.holidays) if hub_time else None
            for organ in sent[0].recipients:
                mine = [
                    n
                    for n in local
                    if n.status_from == organ or (n.code == "13" and organ in sent[0].recipients)
                ]
                mine = [n for n in mine if n.status_from == organ]
                confirmed = any(n.code in ("01", "02", "03", "04", "05", "06", "15") for n in mine)
                recipients.append(
                    {
                        "organ_id": organ,
                        "state": _state_of(mine),
                        "overdue": bool(deadline and not confirmed and self.clock() > deadline),
                        "deadline": deadline.isoformat() if deadline else None,
                        "events": [
                            {
                                "code": n.code,
                                "state": None,
                                "at": n.hub_time.isoformat(),
                                "by": n.status_from,
                                "description": n.description,
                                "notice_verified": n.verified,
                            }
                            for n in mine
                        ],
                    }
                )
        out["recipients"] = recipients
        if role == "recipient":
            out["my_statuses"] = [
                {
                    "code": r.status_code,
                    "state": r.state,
                    "at": (r.hub_time or r.created_at).isoformat(),
                    "error": r.error_code,
                }
                for r in await self.store.statuses_sent(document_id)
            ]
        return out

    async def overdue(self) -> dict[str, Any]:
        """Dispatches still unconfirmed past the deadline, and received documents not yet confirmed (03+)."""
        now = self.clock()
        sent_out: list[dict[str, Any]] = []
        for row in await self.store.sent_documents():
            if row.business_doc_type != 0 or row.state != "sent":
                if row.business_doc_type == 0 and row.state == "pending":
                    sent_out.append(
                        {
                            "document_id": row.document_id,
                            "recipient": None,
                            "state": "not sent yet",
                            "deadline": None,
                            "subject": row.meta.get("subject"),
                        }
                    )
                continue
            notices = await self.store.notices(row.document_id)
            unconfirmed = [
                r
                for r in row.recipients
                if not any(
                    n.status_from == r and n.code in ("01", "02", "03", "04", "05", "06", "15")
                    for n in notices
                )
            ]
            if not unconfirmed:
                continue
            deadline = deadline_for(row.hub_time or row.created_at, self.holidays)
            flags: dict[str, tuple[bool, str]] = {}
            try:
                timeline = await self.client.timeline(row.sha256)
                flags = {r["organ_id"]: (bool(r["overdue"]), r["state"]) for r in timeline["recipients"]}
            except (HubUnavailable, HubRefused):
                pass
            for organ in unconfirmed:
                overdue, state = flags.get(organ, (now > deadline, "queued"))
                if overdue:
                    sent_out.append(
                        {
                            "document_id": row.document_id,
                            "recipient": organ,
                            "state": state,
                            "deadline": deadline.isoformat(),
                            "subject": row.meta.get("subject"),
                        }
                    )
        received_out: list[dict[str, Any]] = []
        for r in await self.store.received():
            if not r.ok or r.business_doc_type != 0:
                continue
            mine = [
                s for s in await self.store.statuses_sent(r.document_id) if s.state in ("sent", "pending")
            ]
            if any(s.status_code in CONFIRMED_BY_CLERK for s in mine):
                continue
            deadline = deadline_for(r.received_at, self.holidays)
            requests = [n for n in await self.store.notices(r.document_id) if n.code == "13"]
            received_out.append(
                {
                    "document_id": r.document_id,
                    "sender": r.sender,
                    "subject": r.subject,
                    "received_at": r.received_at.isoformat(),
                    "last_status": mine[-1].status_code if mine else None,
                    "deadline": deadline.isoformat(),
                    "overdue": now > deadline,
                    "recall_requested": bool(requests),
                }
            )
        return {"agency": self.organ_id, "now": now.isoformat(), "sent": sent_out, "received": received_out}

    async def requests(self) -> list[dict[str, Any]]:
        """Recall/update/replace requests received and not yet answered with 15/16: a status 13 on a
        document, or a BussinessDocType 1/2/3 package (recall, update, replacement) naming its targets —
        the hub applies such a package as the request itself, without a separate 13."""
        asked: list[tuple[str, str, str | None]] = [
            (n.document_id, n.status_from, n.description)
            for n in await self.store.notices()
            if n.code == "13" and n.status_from != self.organ_id
        ]
        for r in await self.store.received():
            if r.ok and r.business_doc_type in (1, 2, 3) and r.sender != self.organ_id:
                reason = r.meta.get("business_doc_reason")
                asked.extend((target, r.sender, reason) for target in r.targets)
        out: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        for document_id, sender, description in asked:
            if (document_id, sender) in seen:
                continue
            seen.add((document_id, sender))
            answered = [
                s for s in await self.store.statuses_sent(document_id) if s.status_code in ("15", "16")
            ]
            if not answered:
                out.append({"document_id": document_id, "from": sender, "description": description})
        return out


def _state_of(notices: list[Any]) -> str:
    order = {
        "01": "arrived",
        "02": "refused",
        "03": "accepted",
        "04": "assigned",
        "05": "in_progress",
        "06": "done",
        "13": "recall_requested",
        "15": "recalled",
        "16": "recall_refused",
    }
    return order.get(notices[-1].code, "queued") if notices else "queued"


def dms_write(path: Path, data: bytes) -> None:
    from gateway.node.store import write_durable

    write_durable(path, data)
