"""The per-recipient lifecycle of an exchange (one document × one recipient), as a pure transition table.

DESIGN §4 gives the skeleton::

    queued → arrived(01) → accepted(03) → assigned(04) → in_progress(05) → done(06)
    queued/arrived → refused(02)
    any but done/refused → recall_requested(13) → recalled(15) | recall_refused(16)

The design leaves details open; this module decides them, and :func:`apply` is the only place they live
(the hub, the node and the store all call it):

* **Forward jumps.** A recipient may move forward along the main chain by more than one step: a DMS often
  sends 01 and 03 within a second and the hub may process them out of order. ``03`` on a ``queued``
  exchange therefore means the document arrived *and* was accepted.
* **Repeats and stale codes are no-ops, not errors.** The same code again (``repeat``), or a main-chain
  code behind the current state (``stale``, e.g. an 01 processed after the 03 that overtook it) changes
  nothing; the store still records it as evidence. Only moves the table forbids raise
  :class:`~gateway.errors.Conflict` (``conflict.transition``).
* **Who sends what.** The recipient sends 01-06, 02, 15 and 16; the sender sends 13. The wrong party gets
  :class:`~gateway.errors.AuthError` (``auth.forbidden``), checked before the state, so a forbidden actor
  never learns the state.
* **Requests are an overlay on the main chain.** ``recall_requested`` and ``recall_refused`` do not forget
  where the document was: the main-chain state before the request is kept in ``previous`` and the
  recipient may keep working (a 04 while a recall is pending moves ``previous`` forward). After a refusal
  (16) the exchange *is* in its pre-request state for every rule that follows (``recall_refused`` is that
  state plus a visible "the recipient said no"); the next main-chain move or a new 13 clears the overlay.
  :func:`effective_state` gives the main-chain state behind any state.
* **Update and replacement.** A package with BussinessDocType 2 (update) or 3 (replace) is a *request*
  like 13, answered with 15/16 as well; the pending request's :class:`RequestKind` travels with the
  exchange. 15 on a recall ends in ``recalled`` (terminal; the exchange leaves the rate); 15 on an update
  or replacement returns the exchange to its main-chain state (the document lives on, amended); 16 on any
  request ends in ``recall_refused``. A new request while one is pending replaces it (latest wins).
* **Refusal.** 02 is allowed while the document has not been accepted (``queued``/``arrived``, also under
  a pending request, which it makes moot). An 01 after a refusal is stale (the refusal implies arrival).
* **Terminal states.** ``done``, ``refused`` and ``recalled`` accept only repeats and stale codes, with one
  documented exception: an exchange that reaches ``done`` *while* a request is pending (``previous`` is
  ``done`` under ``recall_requested``) can still be recalled by the recipient's 15. A 13 on a ``done``
  exchange is refused, as the design says.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

from gateway.errors import AuthError, Conflict, FieldError

Actor = Literal["sender", "recipient"]
Outcome = Literal["applied", "repeat", "stale"]


class State(StrEnum):
    """Where one exchange is. Values are stored in the database: never rename them."""

    QUEUED = "queued"
    ARRIVED = "arrived"
    ACCEPTED = "accepted"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    REFUSED = "refused"
    RECALL_REQUESTED = "recall_requested"
    RECALLED = "recalled"
    RECALL_REFUSED = "recall_refused"


class RequestKind(StrEnum):
    """What a sender's pending request asks: BussinessDocType 1 or status 13 (recall), 2 (update), 3."""

    RECALL = "recall"
    UPDATE = "update"
    REPLACE = "replace"


MAIN_CHAIN: Final[tuple[State, ...]] = (
    State.QUEUED,
    State.ARRIVED,
    State.ACCEPTED,
    State.ASSIGNED,
    State.IN_PROGRESS,
    State.DONE,
)
"""The main chain in order; a state's index is its rank."""

_RANK: Final[dict[State, int]] = {s: i for i, s in enumerate(MAIN_CHAIN)}

OVERLAY_STATES: Final[frozenset[State]] = frozenset({State.RECALL_REQUESTED, State.RECALL_REFUSED})
"""States that sit on top of a main-chain state kept in ``previous``."""

TERMINAL_STATES: Final[frozenset[State]] = frozenset({State.DONE, State.REFUSED, State.RECALLED})

STATUS_CODES: Final[tuple[str, ...]] = ("01", "02", "03", "04", "05", "06", "13", "15", "16")
"""Every defined status code; 07-12 and 14 are not defined (DESIGN §2)."""

CODE_TARGET: Final[dict[str, State]] = {
    "01": State.ARRIVED,
    "03": State.ACCEPTED,
    "04": State.ASSIGNED,
    "05": State.IN_PROGRESS,
    "06": State.DONE,
}
"""Main-chain codes and the state each one reaches."""

CODE_STATE: Final[dict[str, State]] = {
    **CODE_TARGET,
    "02": State.REFUSED,
    "13": State.RECALL_REQUESTED,
    "15": State.RECALLED,
    "16": State.RECALL_REFUSED,
}
"""The state each code names (for display; 15 on an update does not end in ``recalled``)."""

CODE_ACTOR: Final[dict[str, Actor]] = {code: "recipient" for code in STATUS_CODES} | {"13": "sender"}
"""Who may send each code."""

REQUEST_FOR_DOC_TYPE: Final[dict[int, RequestKind]] = {
    1: RequestKind.RECALL,
    2: RequestKind.UPDATE,
    3: RequestKind.REPLACE,
}
"""The request a package of each BussinessDocType makes of the exchanges of the document it refers to."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """The result of applying one status code to one exchange.

    ``state``/``previous``/``request`` are what to store. ``main`` is the main-chain state behind
    ``state`` (what the rate and the overdue rule look at); ``changed`` is False for repeats and stale
    codes, which the store records but does not forward.
    """

    code: str
    actor: Actor
    before: State
    state: State
    previous: State | None
    request: RequestKind | None
    outcome: Outcome

    @property
    def changed(self) -> bool:
        return self.outcome == "applied"

    @property
    def main(self) -> State:
        return effective_state(self.state, self.previous)

    @property
    def confirmed(self) -> bool:
        """True once the recipient has confirmed arrival (01 or any later main-chain code)."""
        return is_confirmed(self.state, self.previous)


def rank(state: State) -> int:
    """Position on the main chain (``queued`` = 0 … ``done`` = 5); only for main-chain states."""
    return _RANK[state]


def effective_state(state: State | str, previous: State | str | None = None) -> State:
    """The main-chain state behind ``state``: ``previous`` under an overlay, else ``state`` itself.

    For ``refused`` and ``recalled`` it is the state itself (they end the chain).
    """
    state = State(state)
    if state in OVERLAY_STATES:
        if previous is None:
            raise ValueError(f"state {state} needs the previous main-chain state")
        prev = State(previous)
        if prev not in _RANK:
            raise ValueError(f"previous state {prev} is not on the main chain")
        return prev
    return state


def is_confirmed(state: State | str, previous: State | str | None = None) -> bool:
    """Whether the recipient confirmed arrival electronically (DESIGN §5 rule 3: 01 or later, not 02)."""
    state = State(state)
    if state is State.REFUSED:
        return False
    if state is State.RECALLED:
        return previous is not None and State(previous) in _RANK and _RANK[State(previous)] >= 1
    return _RANK[effective_state(state, previous)] >= 1


def _conflict(state: State, code: str, why: str) -> Conflict:
    return Conflict(
        "conflict.transition", f"status {code} is not allowed in state {state}: {why}", state=str(state)
    )


def apply(
    state: State | str,
    code: str,
    *,
    actor: Actor,
    previous: State | str | None = None,
    pending: RequestKind | str | None = None,
    request: RequestKind | str | None = None,
) -> Transition:
    """Apply status ``code`` sent by ``actor`` to an exchange in ``state``.

    ``previous`` is the stored main-chain state (required under an overlay, kept for ``recalled`` and
    ``refused`` as history). ``pending`` is the stored kind of the pending request (meaningful under
    ``recall_requested``; ``None`` there means recall). ``request`` is, for 13, the kind of request being
    made now (default recall); it is ignored for other codes. Raises :class:`FieldError`
    (``field.status_code``) for an undefined code, :class:`AuthError` for the wrong actor and
    :class:`Conflict` (``conflict.transition``) for a move the table forbids.
    """
    if code not in CODE_ACTOR:
        raise FieldError("field.status_code", f"status code {code!r} is not one of {', '.join(STATUS_CODES)}")
    if actor not in ("sender", "recipient"):
        raise ValueError(f"actor must be 'sender' or 'recipient', not {actor!r}")
    expected = CODE_ACTOR[code]
    if actor != expected:
        raise AuthError("auth.forbidden", f"status {code} can only be sent by the {expected} of the exchange")
    st = State(state)
    prev = State(previous) if previous is not None else None
    pend = RequestKind(pending or RequestKind.RECALL) if st is State.RECALL_REQUESTED else None

    def result(
        new: State, new_prev: State | None, new_req: RequestKind | None, outcome: Outcome
    ) -> Transition:
        return Transition(
            code=code,
            actor=actor,
            before=st,
            state=new,
            previous=new_prev,
            request=new_req,
            outcome=outcome,
        )

    def same(outcome: Outcome) -> Transition:
        return result(st, prev, pend, outcome)

    if st in OVERLAY_STATES:
        main = effective_state(st, prev)
    elif st in _RANK:
        main = st
    else:
        main = None  # refused / recalled

    if code in CODE_TARGET:
        target = CODE_TARGET[code]
        if st is State.REFUSED:
            if target is State.ARRIVED:
                return same("stale")
            raise _conflict(st, code, "the recipient refused the document")
        if st is State.RECALLED:
            if prev is not None and prev in _RANK and _RANK[target] <= _RANK[prev]:
                return same("stale")
            raise _conflict(st, code, "the document was recalled")
        assert main is not None
        if _RANK[target] == _RANK[main]:
            return same("repeat")
        if _RANK[target] < _RANK[main]:
            return same("stale")
        if st is State.RECALL_REQUESTED:
            return result(st, target, pend, "applied")  # work goes on under the pending request
        return result(target, None, None, "applied")  # also ends a recall_refused overlay

    if code == "02":
        if st is State.REFUSED:
            return same("repeat")
        if main is not None and main in (State.QUEUED, State.ARRIVED):
            return result(State.REFUSED, main, None, "applied")
        raise _conflict(st, code, "a document can be refused only before it is accepted")

    if code == "13":
        kind = RequestKind(request or RequestKind.RECALL)
        if st in TERMINAL_STATES:
            raise _conflict(st, code, "the exchange is closed")
        if st is State.RECALL_REQUESTED:
            # The same request again is a repeat; another kind replaces the pending one (latest wins).
            return result(st, prev, kind, "repeat" if kind is pend else "applied")
        return result(State.RECALL_REQUESTED, main, kind, "applied")

    if code == "15":
        if st is State.RECALL_REQUESTED:
            if pend is RequestKind.RECALL:
                return result(State.RECALLED, main, None, "applied")
            return result(main, None, None, "applied")  # update/replacement agreed: the chain goes on
        if st is State.RECALLED:
            return same("repeat")
        raise _conflict(st, code, "no request is pending")

    # code == "16"
    if st is State.RECALL_REQUESTED:
        return result(State.RECALL_REFUSED, main, None, "applied")
    if st is State.RECALL_REFUSED:
        return same("repeat")
    raise _conflict(st, code, "no request is pending")
