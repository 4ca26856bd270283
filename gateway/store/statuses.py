"""Status messages applied to exchanges, the timeline, and the overdue lists.

:func:`apply_status` is one transaction: it locks the exchanges concerned (``FOR UPDATE`` on PostgreSQL;
the single SQLite writer on SQLite), runs :func:`gateway.lifecycle.apply`, records the message once (its
SHA-256 is unique) and one event per exchange, updates the exchanges and queues the message for the other
party. A transition the lifecycle forbids raises before anything is written, so the database is unchanged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import lifecycle
from gateway.calendar import HolidaysLike, deadline_for, is_overdue
from gateway.errors import AuthError, Conflict, FieldError, NotFound
from gateway.lifecycle import RequestKind, State, Transition
from gateway.store.db import Database
from gateway.store.models import Exchange, InboxItem, Package, StatusEvent, StatusMessage


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusResult:
    """What :func:`apply_status` did. ``created`` is False when the same message was applied before."""

    message: StatusMessage
    created: bool
    events: tuple[StatusEvent, ...]

    @property
    def changed(self) -> bool:
        return any(e.outcome == "applied" for e in self.events)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangeTimeline:
    """One recipient's line in a timeline."""

    exchange: Exchange
    events: tuple[StatusEvent, ...]
    deadline: dt.datetime
    overdue: bool
    """Arrival was not confirmed by the deadline (still unconfirmed past it, or confirmed late)."""
    pending: bool
    """Still waiting for the recipient's 01 (not confirmed, refused or recalled)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeline:
    package: Package
    """The package asked about."""
    document: Package
    """The new document (BussinessDocType 0) whose exchanges these are (itself, or a 1/2/3's target)."""
    exchanges: tuple[ExchangeTimeline, ...]


def _value(state: State | RequestKind | None) -> str | None:
    return state.value if state is not None else None


def apply_transition(exchange: Exchange, transition: Transition, *, at: dt.datetime) -> None:
    """Write a transition onto an exchange row, and the milestone times it reaches (hub time ``at``).

    Milestones use the hub's clock, not the sender's timestamp: the overdue rule must not be decided by
    a clock the party being judged controls.
    """
    exchange.state = transition.state.value
    exchange.previous_state = _value(transition.previous)
    exchange.request_kind = _value(transition.request)
    if not transition.changed:
        return
    exchange.updated_at = at
    if exchange.arrived_at is None and transition.confirmed:
        exchange.arrived_at = at
    behind = transition.previous if transition.state is State.RECALLED else transition.main
    if (
        exchange.accepted_at is None
        and behind is not None
        and behind in lifecycle.MAIN_CHAIN
        and lifecycle.rank(behind) >= lifecycle.rank(State.ACCEPTED)
    ):
        exchange.accepted_at = at
    if transition.state in lifecycle.TERMINAL_STATES:
        exchange.closed_at = exchange.closed_at or at
    else:
        exchange.closed_at = None


def new_event(
    exchange: Exchange,
    transition: Transition,
    *,
    actor_organ_id: str,
    received_at: dt.datetime,
    message_id: int | None = None,
    package_id: int | None = None,
    sent_at: dt.datetime | None = None,
    description: str | None = None,
) -> StatusEvent:
    assert exchange.id is not None
    return StatusEvent(
        exchange_id=exchange.id,
        message_id=message_id,
        package_id=package_id,
        code=transition.code,
        actor=transition.actor,
        actor_organ_id=actor_organ_id,
        state_before=transition.before.value,
        state_after=transition.state.value,
        outcome=transition.outcome,
        request_kind=_value(transition.request),
        sent_at=sent_at,
        received_at=received_at,
        description=description,
    )


async def find_document(session: AsyncSession, sender: str, document_id: str) -> Package | None:
    """The new-document package (BussinessDocType 0) with this sender and DocumentId, if any."""
    result = await session.execute(
        select(Package).where(
            Package.sender_organ_id == sender,
            Package.document_id == document_id,
            Package.bussiness_doc_type == 0,
        )
    )
    return result.scalar_one_or_none()


async def _existing_status(db: Database, sha256: str) -> StatusResult | None:
    async with db.read() as session:
        message = (
            await session.execute(select(StatusMessage).where(StatusMessage.sha256 == sha256))
        ).scalar_one_or_none()
        if message is None:
            return None
        events = (
            await session.execute(
                select(StatusEvent).where(StatusEvent.message_id == message.id).order_by(StatusEvent.id)
            )
        ).scalars()
        return StatusResult(message=message, created=False, events=tuple(events))


async def apply_status(
    db: Database,
    *,
    document_sender: str,
    document_id: str,
    actor_organ_id: str,
    code: str,
    message_sha256: str,
    received_at: dt.datetime,
    message: bytes | None = None,
    sent_at: dt.datetime | None = None,
    description: str | None = None,
    forwarded: bytes | None = None,
    receipt: bytes | None = None,
    recipients: Sequence[str] | None = None,
    request: RequestKind = RequestKind.RECALL,
) -> StatusResult:
    """Apply a status message about ``(document_sender, document_id)`` sent by ``actor_organ_id``.

    The actor is the document's sender (only 13, to every recipient or to ``recipients``) or one of its
    recipients (every other code, to its own exchange). Idempotent by ``message_sha256``: the same
    message again returns the first result with ``created=False``. A different message repeating the
    current code is recorded (outcome ``repeat``) but not forwarded. ``forwarded`` is the hub-signed copy
    the other party fetches and ``receipt`` the hub's answer to the poster, both built by the caller
    before this call and stored with the message (a repeat is answered with the stored ``receipt``).

    Raises :class:`NotFound` (no such document), :class:`AuthError` (the actor is not a party, or not
    the party allowed to send this code), :class:`Conflict` (``conflict.transition``).
    """
    if code not in lifecycle.STATUS_CODES:
        raise FieldError("field.status_code", f"status code {code!r} is not defined")
    found = await _existing_status(db, message_sha256)
    if found is not None:
        return found
    try:
        async with db.write() as session:
            again = (
                await session.execute(select(StatusMessage.id).where(StatusMessage.sha256 == message_sha256))
            ).scalar_one_or_none()
            if again is not None:
                raise _AlreadyApplied
            document = await find_document(session, document_sender, document_id)
            if document is None:
                raise NotFound("resource.not_found", f"no document {document_id} from {document_sender}")
            query = select(Exchange).where(Exchange.package_id == document.id)
            if actor_organ_id == document_sender:
                actor: lifecycle.Actor = "sender"
                if recipients is not None:
                    query = query.where(Exchange.recipient_organ_id.in_(list(recipients)))
            else:
                actor = "recipient"
                query = query.where(Exchange.recipient_organ_id == actor_organ_id)
            exchanges = list((await session.execute(query.order_by(Exchange.id).with_for_update())).scalars())
            if not exchanges:
                raise AuthError("auth.forbidden", f"{actor_organ_id} is not a party to {document_id}")

            planned: list[tuple[Exchange, Transition]] = []
            refusals: list[Conflict] = []
            for exchange in exchanges:
                try:
                    transition = lifecycle.apply(
                        exchange.state,
                        code,
                        actor=actor,
                        previous=exchange.previous_state,
                        pending=exchange.request_kind,
                        request=request,
                    )
                except Conflict as exc:
                    if actor == "recipient":
                        raise
                    refusals.append(exc)  # a 13 goes to the recipients it can reach
                    continue
                planned.append((exchange, transition))
            if not planned:
                raise refusals[0]

            stored = StatusMessage(
                sha256=message_sha256,
                code=code,
                actor_organ_id=actor_organ_id,
                document_sender_organ_id=document_sender,
                document_id=document_id,
                sent_at=sent_at,
                received_at=received_at,
                description=description,
                message=message,
                forwarded=forwarded,
                receipt=receipt,
            )
            session.add(stored)
            await session.flush()
            assert stored.id is not None
            events: list[StatusEvent] = []
            notify: list[str] = []
            for exchange, transition in planned:
                apply_transition(exchange, transition, at=received_at)
                events.append(
                    new_event(
                        exchange,
                        transition,
                        actor_organ_id=actor_organ_id,
                        received_at=received_at,
                        message_id=stored.id,
                        sent_at=sent_at,
                        description=description,
                    )
                )
                if transition.changed:
                    notify.append(document_sender if actor == "recipient" else exchange.recipient_organ_id)
            session.add_all(events)
            for organ_id in dict.fromkeys(notify):
                session.add(
                    InboxItem(
                        organ_id=organ_id, kind="status", status_message_id=stored.id, created_at=received_at
                    )
                )
            await session.flush()
            return StatusResult(message=stored, created=True, events=tuple(events))
    except (_AlreadyApplied, IntegrityError):
        # The same message was applied by another transaction (another hub process) in the meantime.
        found = await _existing_status(db, message_sha256)
        if found is None:
            raise
        return found


class _AlreadyApplied(Exception):
    """Internal: leave the write transaction and report the stored result instead."""


async def get_status_message(db: Database, message_id: int) -> StatusMessage:
    async with db.read() as session:
        message = await session.get(StatusMessage, message_id)
    if message is None:
        raise NotFound("resource.not_found", f"no status message {message_id}")
    return message


def _response_at(exchange: Exchange) -> dt.datetime | None:
    """When the recipient answered for the overdue rule: its 01, else a refusal or agreed recall."""
    if exchange.arrived_at is not None:
        return exchange.arrived_at
    if exchange.state in (State.REFUSED.value, State.RECALLED.value):
        return exchange.closed_at
    return None


def _line(
    exchange: Exchange, events: Sequence[StatusEvent], now: dt.datetime, holidays: HolidaysLike
) -> ExchangeTimeline:
    response = _response_at(exchange)
    return ExchangeTimeline(
        exchange=exchange,
        events=tuple(events),
        deadline=deadline_for(exchange.created_at, holidays),
        overdue=is_overdue(exchange.created_at, now, response, holidays),
        pending=response is None,
    )


async def timeline(
    db: Database, package_id: int, *, now: dt.datetime, holidays: HolidaysLike = None
) -> Timeline:
    """Per recipient, every status with times and the overdue flag (computed with ``holidays`` now).

    For a recall/update/replacement package, the timeline is that of the document it acted on.
    """
    async with db.read() as session:
        package = await session.get(Package, package_id)
        if package is None:
            raise NotFound("resource.not_found", f"no package {package_id}")
        document = package
        if package.bussiness_doc_type != 0 and package.target_package_id is not None:
            document = await session.get(Package, package.target_package_id) or package
        exchanges = list(
            (
                await session.execute(
                    select(Exchange).where(Exchange.package_id == document.id).order_by(Exchange.id)
                )
            ).scalars()
        )
        events = list(
            (
                await session.execute(
                    select(StatusEvent)
                    .join(Exchange, Exchange.id == StatusEvent.exchange_id)
                    .where(Exchange.package_id == document.id)
                    .order_by(StatusEvent.id)
                )
            ).scalars()
        )
    by_exchange: dict[int, list[StatusEvent]] = {}
    for event in events:
        by_exchange.setdefault(event.exchange_id, []).append(event)
    lines = tuple(_line(e, by_exchange.get(e.id or 0, []), now, holidays) for e in exchanges)
    return Timeline(package=package, document=document, exchanges=lines)


async def overdue_exchanges(
    db: Database,
    *,
    organ_id: str,
    role: lifecycle.Actor,
    now: dt.datetime,
    holidays: HolidaysLike = None,
    limit: int = 500,
) -> list[ExchangeTimeline]:
    """Exchanges of ``organ_id`` (as sender or as recipient) still unconfirmed past their deadline.

    The stored ``deadline`` (computed at receipt) narrows the search through a partial index; the flag is
    then recomputed with the current calendar, so a holiday added later can only remove false alarms.
    """
    column = Exchange.sender_organ_id if role == "sender" else Exchange.recipient_organ_id
    async with db.read() as session:
        rows = (
            await session.execute(
                select(Exchange)
                .where(
                    column == organ_id,
                    Exchange.arrived_at.is_(None),  # type: ignore[union-attr]
                    Exchange.deadline < now,
                    Exchange.state.not_in([State.REFUSED.value, State.RECALLED.value]),  # type: ignore[attr-defined]
                )
                .order_by(Exchange.deadline, Exchange.id)
                .limit(limit)
            )
        ).scalars()
        lines = [_line(e, (), now, holidays) for e in rows]
    return [line for line in lines if line.overdue]
