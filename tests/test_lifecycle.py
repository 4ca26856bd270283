"""The per-recipient lifecycle table (gateway.lifecycle): every rule, and a property over random sequences."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import AuthError, Conflict, FieldError
from gateway.lifecycle import (
    CODE_ACTOR,
    MAIN_CHAIN,
    OVERLAY_STATES,
    STATUS_CODES,
    RequestKind,
    State,
    Transition,
    apply,
    effective_state,
    is_confirmed,
)

Q, A, ACC, ASG, IP, D = MAIN_CHAIN
R, RR, RC, RF = State.REFUSED, State.RECALL_REQUESTED, State.RECALLED, State.RECALL_REFUSED


def recipient(state, code, previous=None, pending=None) -> Transition:
    return apply(state, code, actor="recipient", previous=previous, pending=pending)


def sender(state, previous=None, pending=None, request=None) -> Transition:
    return apply(state, "13", actor="sender", previous=previous, pending=pending, request=request)


# --- the main chain ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "target"), [("01", A), ("03", ACC), ("04", ASG), ("05", IP), ("06", D)])
def test_every_main_chain_code_reaches_its_state_from_queued(code, target):
    t = recipient(Q, code)
    assert (t.state, t.previous, t.outcome, t.changed) == (target, None, "applied", True)


def test_step_by_step_chain():
    state = Q
    for code in ("01", "03", "04", "05", "06"):
        t = recipient(state, code)
        assert t.changed
        state = t.state
    assert state is D


def test_accepted_without_arrival_implies_arrival():
    t = recipient(Q, "03")
    assert t.state is ACC
    assert t.confirmed


@pytest.mark.parametrize("state", [A, ACC, ASG, IP, D])
def test_repeating_the_current_code_is_a_no_op(state):
    code = {A: "01", ACC: "03", ASG: "04", IP: "05", D: "06"}[state]
    t = recipient(state, code)
    assert (t.state, t.outcome, t.changed) == (state, "repeat", False)


def test_an_earlier_code_after_a_later_one_is_stale_not_an_error():
    t = recipient(ACC, "01")  # 03 overtook the 01 it followed
    assert (t.state, t.outcome) == (ACC, "stale")
    assert recipient(D, "04").outcome == "stale"


# --- refusal ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [Q, A])
def test_refusal_before_acceptance(state):
    t = recipient(state, "02")
    assert (t.state, t.previous, t.changed) == (R, state, True)
    assert not t.confirmed


@pytest.mark.parametrize("state", [ACC, ASG, IP, D, RC])
def test_refusal_after_acceptance_is_a_conflict(state):
    with pytest.raises(Conflict) as info:
        recipient(state, "02", previous=A if state is RC else None)
    assert info.value.code == "conflict.transition"
    assert info.value.status == 409


def test_refused_is_terminal_except_repeats_and_a_late_arrival():
    assert recipient(R, "02", previous=A).outcome == "repeat"
    assert recipient(R, "01", previous=Q).outcome == "stale"
    for code in ("03", "04", "05", "06", "15", "16"):
        with pytest.raises(Conflict):
            recipient(R, code, previous=A)
    with pytest.raises(Conflict):
        sender(R, previous=A)


# --- who may send what ------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [c for c in STATUS_CODES if c != "13"])
def test_sender_cannot_send_recipient_codes(code):
    with pytest.raises(AuthError) as info:
        apply(Q, code, actor="sender")
    assert info.value.code == "auth.forbidden"


def test_recipient_cannot_request_a_recall():
    with pytest.raises(AuthError):
        apply(A, "13", actor="recipient")


@pytest.mark.parametrize("code", ["00", "07", "08", "09", "10", "11", "12", "14", "17", "1", "x"])
def test_undefined_codes_are_rejected(code):
    with pytest.raises(FieldError) as info:
        apply(Q, code, actor="recipient")
    assert info.value.code == "field.status_code"


def test_actor_check_comes_before_the_state():
    # A forbidden actor learns nothing about the state: the same error whatever the state.
    for state in (Q, D, R):
        with pytest.raises(AuthError):
            apply(state, "06", actor="sender", previous=Q)


# --- recall -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [Q, A, ACC, ASG, IP])
def test_recall_request_keeps_the_main_chain_state(state):
    t = sender(state)
    assert (t.state, t.previous, t.request) == (RR, state, RequestKind.RECALL)
    assert effective_state(t.state, t.previous) is state


@pytest.mark.parametrize("state", [D, R, RC])
def test_recall_request_on_a_closed_exchange_is_a_conflict(state):
    with pytest.raises(Conflict):
        sender(state, previous=A)


def test_recall_agreed():
    t = recipient(RR, "15", previous=ACC, pending="recall")
    assert (t.state, t.previous, t.request) == (RC, ACC, None)
    assert recipient(RC, "15", previous=ACC).outcome == "repeat"


def test_recall_refused_returns_to_the_previous_state_for_every_later_rule():
    t = recipient(RR, "16", previous=ACC, pending="recall")
    assert (t.state, t.previous) == (RF, ACC)
    assert effective_state(t.state, t.previous) is ACC
    assert recipient(RF, "16", previous=ACC).outcome == "repeat"
    assert recipient(RF, "03", previous=ACC).outcome == "repeat"
    assert recipient(RF, "01", previous=ACC).outcome == "stale"
    nxt = recipient(RF, "05", previous=ACC)
    assert (nxt.state, nxt.previous, nxt.changed) == (IP, None, True)
    again = sender(RF, previous=ACC)
    assert (again.state, again.previous) == (RR, ACC)


@pytest.mark.parametrize("state", [Q, A, ACC, ASG, IP, D, R])
@pytest.mark.parametrize("code", ["15", "16"])
def test_answers_without_a_pending_request_are_conflicts(state, code):
    with pytest.raises(Conflict):
        recipient(state, code, previous=Q if state is R else None)


def test_work_goes_on_while_a_recall_is_pending():
    t = recipient(RR, "04", previous=A, pending="recall")
    assert (t.state, t.previous, t.request) == (RR, ASG, RequestKind.RECALL)
    done = recipient(RR, "06", previous=ASG, pending="recall")
    assert (done.state, done.previous) == (RR, D)
    # documented exception: done under a pending recall can still be recalled
    assert recipient(RR, "15", previous=D, pending="recall").state is RC


def test_refusal_while_a_recall_is_pending_makes_it_moot():
    t = recipient(RR, "02", previous=A, pending="recall")
    assert (t.state, t.request) == (R, None)
    with pytest.raises(Conflict):
        recipient(RR, "02", previous=ACC, pending="recall")


def test_repeated_recall_request_is_a_no_op():
    assert sender(RR, previous=A, pending="recall").outcome == "repeat"


# --- update and replacement -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [RequestKind.UPDATE, RequestKind.REPLACE])
def test_update_or_replacement_agreed_continues_the_chain(kind):
    asked = sender(ACC, request=kind)
    assert (asked.state, asked.request) == (RR, kind)
    agreed = recipient(RR, "15", previous=ACC, pending=kind)
    assert (agreed.state, agreed.previous, agreed.request, agreed.changed) == (ACC, None, None, True)


@pytest.mark.parametrize("kind", [RequestKind.UPDATE, RequestKind.REPLACE])
def test_update_or_replacement_refused(kind):
    t = recipient(RR, "16", previous=IP, pending=kind)
    assert (t.state, t.previous) == (RF, IP)


def test_a_new_request_kind_replaces_the_pending_one():
    t = sender(RR, previous=A, pending="update", request="recall")
    assert (t.state, t.request, t.outcome) == (RR, RequestKind.RECALL, "applied")


# --- helpers ----------------------------------------------------------------------------------------


def test_confirmation():
    assert not is_confirmed(Q)
    assert is_confirmed(A)
    assert not is_confirmed(R, Q)
    assert not is_confirmed(R, A)  # refused is its own bucket (DESIGN §5 rule 3: "not 02")
    assert is_confirmed(RR, ACC)
    assert not is_confirmed(RR, Q)
    assert is_confirmed(RC, A)


def test_overlay_needs_previous():
    with pytest.raises(ValueError, match="previous"):
        effective_state(RR, None)


# --- property: random sequences ---------------------------------------------------------------------

codes = st.sampled_from(STATUS_CODES)
kinds = st.sampled_from(list(RequestKind))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(codes, kinds), max_size=30))
def test_random_sequences_stay_in_defined_states(steps):
    state, previous, pending = State.QUEUED, None, None
    for code, kind in steps:
        actor = CODE_ACTOR[code]
        try:
            t = apply(state, code, actor=actor, previous=previous, pending=pending, request=kind)
        except Conflict:
            continue
        assert isinstance(t.state, State)
        if t.state in OVERLAY_STATES:
            assert t.previous in MAIN_CHAIN
        if t.state is State.RECALL_REQUESTED:
            assert t.request is not None
        else:
            assert t.request is None
        if not t.changed:
            assert (t.state, t.previous) == (state, previous)
        # terminal states are left only as documented: never, except done under an overlay
        if state in (State.REFUSED, State.RECALLED):
            assert t.state is state
        if state is State.DONE:
            assert t.state is State.DONE
        effective_state(t.state, t.previous)  # always defined
        state, previous, pending = t.state, t.previous, t.request


@settings(max_examples=200, deadline=None)
@given(st.lists(codes, max_size=20))
def test_applying_the_same_code_twice_is_idempotent(sequence):
    state, previous, pending = State.QUEUED, None, None
    for code in sequence:
        actor = CODE_ACTOR[code]
        try:
            t = apply(state, code, actor=actor, previous=previous, pending=pending)
        except Conflict:
            continue
        again = apply(t.state, code, actor=actor, previous=t.previous, pending=t.request)
        if code != "15" or t.state is State.RECALLED:  # an agreed update leaves no request to agree to
            assert not again.changed
            assert (again.state, again.previous) == (t.state, t.previous)
        state, previous, pending = t.state, t.previous, t.request
