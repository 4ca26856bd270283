"""Properties the hostile-input work relies on, beyond the round trips of test_edxml_roundtrip.py and the
random sequences of test_lifecycle.py:

* parse/inspect on *damaged* packages (bytes flipped, inserted, deleted, truncated) fail only with a
  :class:`GatewayError`, and a truncated package is never read as a package;
* what the signature covers reads back as exactly the model that was signed, in both reference modes,
  and no text of a signed document can change without the verification noticing;
* the lifecycle table is total (every consistent input gives a transition or a GatewayError), the wrong
  party always gets ``auth.forbidden`` whatever the state, and along any accepted sequence the main-chain
  state never moves backwards and the terminal states are reached only the way DESIGN §4 says.

The atheris target ``fuzz/fuzz_package.py`` explores the same entry points without a model; these run in
the suite.
"""

from __future__ import annotations

import contextlib
import itertools

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from lxml import etree
from strategies import document_packages, status_messages

from gateway.edxml.build import build
from gateway.edxml.model import DocumentPackage, StatusMessage
from gateway.edxml.parse import parse, parse_element
from gateway.errors import GatewayError
from gateway.lifecycle import (
    CODE_ACTOR,
    MAIN_CHAIN,
    OVERLAY_STATES,
    STATUS_CODES,
    RequestKind,
    State,
    apply,
    effective_state,
    rank,
)
from gateway.signature.sign import sign_message
from gateway.signature.verify import verify_signature
from gateway.verification import inspect_package

pytest_plugins = ["pki_fixtures"]

DAMAGE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SIGNING = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# --- damaged packages ------------------------------------------------------------------------------


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """A built package with a few random byte-level edits."""
    data = bytearray(build(draw(document_packages() | status_messages())))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "insert", "delete", "duplicate"]))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[at:at] = draw(st.sampled_from([b"<", b">", b"&", b"\x00", b"\xff", b"]]>", b"<!--", b"<x>"]))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 64))]
    return bytes(data)


@DAMAGE
@given(damaged())
def test_damaged_packages_fail_only_with_gateway_errors(data: bytes) -> None:
    with contextlib.suppress(GatewayError):
        parse(data)
    inspection = inspect_package(data)  # never raises for a bad package
    assert not inspection.ok
    assert inspection.code is not None


@DAMAGE
@given(document_packages() | status_messages(), st.data())
def test_a_truncated_package_is_never_read_as_a_package(
    msg: DocumentPackage | StatusMessage, data: st.DataObject
) -> None:
    full = build(msg)
    cut = data.draw(st.integers(0, len(full.rstrip()) - 1))
    with pytest.raises(GatewayError) as info:
        parse(full[:cut])
    assert info.value.code in {"input.empty", "xml.malformed", "xml.encoding"}


# --- what the signature covers ---------------------------------------------------------------------


@SIGNING
@given(
    msg=document_packages(extension=True) | status_messages(),
    reference=st.sampled_from(["document", "envelope"]),
)
def test_the_signed_node_set_reads_back_as_the_signed_model(pki, msg, reference) -> None:
    signer = pki.district_ec
    data = sign_message(msg, key=signer.key, cert=signer.cert, chain=signer.chain, reference=reference)
    checked = verify_signature(data)
    assert checked.reference == reference
    read = parse_element(checked.signed_root)
    if reference == "envelope" and isinstance(msg, DocumentPackage):
        assert read == DocumentPackage(header=msg.header, trace=msg.trace, manifest=msg.manifest)
    else:
        assert read == msg


@SIGNING
@given(msg=document_packages() | status_messages(), data=st.data())
def test_no_signed_text_changes_unnoticed(pki, msg, data) -> None:
    """Document mode: change any one text node or attribute anywhere, and verification fails."""
    signer = pki.district_ec
    signed = sign_message(msg, key=signer.key, cert=signer.cert, chain=signer.chain)
    root = etree.fromstring(signed)
    signature = root.find(".//{http://www.w3.org/2000/09/xmldsig#}Signature")
    targets = [
        el
        for el in root.iter()
        if isinstance(el.tag, str)
        and el.text
        and el.text.strip()
        and signature not in el.iterancestors()
        and el is not signature
    ]
    assume(targets)
    target = data.draw(st.sampled_from(targets))
    target.text = target.text + data.draw(st.sampled_from(["x", " ", "0", "Đ"]))
    with pytest.raises(GatewayError) as info:
        verify_signature(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
    assert info.value.code == "signature.digest_mismatch"


# --- the lifecycle table ---------------------------------------------------------------------------

PENDING = (None, *RequestKind)


def _consistent_inputs() -> list[tuple[State, State | None, RequestKind | None]]:
    """Every (state, previous, pending) the store can hold: overlays carry a main-chain ``previous``."""
    out: list[tuple[State, State | None, RequestKind | None]] = []
    for state in State:
        previous_options = MAIN_CHAIN if state in OVERLAY_STATES else (None, *MAIN_CHAIN)
        pending_options = PENDING if state is State.RECALL_REQUESTED else (None,)
        out += [(state, p, q) for p in previous_options for q in pending_options]
    return out


def test_apply_is_total_and_the_wrong_party_always_gets_forbidden() -> None:
    codes = (*STATUS_CODES, "00", "07", "12", "14", "17", "", "1", "013")
    for (state, previous, pending), code, actor, request in itertools.product(
        _consistent_inputs(), codes, ("sender", "recipient"), PENDING
    ):
        error: GatewayError | None = None
        try:
            t = apply(state, code, actor=actor, previous=previous, pending=pending, request=request)
        except GatewayError as exc:
            error = exc
        if error is not None:
            if code in CODE_ACTOR and CODE_ACTOR[code] != actor:
                expected = "auth.forbidden"  # whatever the state: a forbidden party learns nothing
            elif code not in CODE_ACTOR:
                expected = "field.status_code"
            else:
                expected = "conflict.transition"
            assert error.code == expected, (state, previous, pending, code, actor, error)
            continue
        assert code in CODE_ACTOR
        assert CODE_ACTOR[code] == actor
        assert isinstance(t.state, State)
        effective_state(t.state, t.previous)  # always defined for what apply returns


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(STATUS_CODES), st.sampled_from(list(RequestKind))), max_size=40))
def test_accepted_sequences_follow_design_section_4(steps) -> None:
    state, previous, pending = State.QUEUED, None, None
    for code, kind in steps:
        try:
            t = apply(state, code, actor=CODE_ACTOR[code], previous=previous, pending=pending, request=kind)
        except GatewayError:
            continue
        before_main = (
            effective_state(state, previous) if state not in (State.REFUSED, State.RECALLED) else None
        )
        if t.state is State.REFUSED and t.changed:
            # queued/arrived → refused(02), also under a pending request
            assert before_main in (State.QUEUED, State.ARRIVED)
        elif t.state is State.RECALLED and t.changed:
            # recall_requested → recalled(15), only for a recall
            assert state is State.RECALL_REQUESTED
            assert (pending or RequestKind.RECALL) is RequestKind.RECALL
        elif t.state is State.RECALL_REQUESTED and t.changed and state is not State.RECALL_REQUESTED:
            # any but done/refused (/recalled) → recall_requested(13)
            assert state not in (State.DONE, State.REFUSED, State.RECALLED)
        if before_main is not None and t.state not in (State.REFUSED, State.RECALLED):
            assert rank(t.main) >= rank(before_main), (state, previous, code, t)  # never backwards
        if state in (State.REFUSED, State.RECALLED):
            assert (t.state, t.changed) == (state, False)  # terminal
        state, previous, pending = t.state, t.previous, t.request
