"""DESIGN §5 bucket rules, one case each, and the precedence between them (gateway/rate.py, pure)."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from gateway.lifecycle import State
from gateway.rate import (
    BUCKETS,
    PRECEDENCE,
    Bucket,
    build_series,
    classify,
    explain,
    failed_conditions,
    level_pair_key,
    make_row,
    months_between,
    parse_level_pair,
    parse_month,
    total_row,
)


def c(state: str, previous: str | None = None, *, sig: bool = True, paper: bool = False) -> Bucket:
    return classify(signature_ok=sig, paper=paper, state=state, previous_state=previous)


# --- one case per rule ------------------------------------------------------------------------------


def test_fully_electronic_signed_no_paper_confirmed_not_recalled() -> None:
    assert c("arrived") is Bucket.FULLY_ELECTRONIC


@pytest.mark.parametrize("state", ["arrived", "accepted", "assigned", "in_progress", "done"])
def test_confirmed_is_01_or_later(state: str) -> None:
    assert c(state) is Bucket.FULLY_ELECTRONIC


def test_paper_copy() -> None:
    assert c("done", paper=True) is Bucket.PAPER_COPY


def test_invalid_signature() -> None:
    assert c("done", sig=False) is Bucket.INVALID_SIGNATURE


def test_refused() -> None:
    assert c("refused", "arrived") is Bucket.REFUSED


def test_unconfirmed_no_01_yet() -> None:
    assert c("queued") is Bucket.UNCONFIRMED


def test_recalled() -> None:
    assert c("recalled", "accepted") is Bucket.RECALLED


def test_classify_never_says_paper_only() -> None:
    states = [s.value for s in State]
    for sig, paper, state, prev in itertools.product([True, False], [True, False], states, [None, *states]):
        assert c(state, prev, sig=sig, paper=paper) is not Bucket.PAPER_ONLY


# --- overlays: the main-chain state behind a pending or refused request decides --------------------


def test_recall_requested_on_a_confirmed_exchange_still_counts() -> None:
    assert c("recall_requested", "in_progress") is Bucket.FULLY_ELECTRONIC


def test_recall_requested_before_01_is_unconfirmed() -> None:
    assert c("recall_requested", "queued") is Bucket.UNCONFIRMED


def test_recall_refused_behaves_as_its_previous_state() -> None:
    assert c("recall_refused", "done") is Bucket.FULLY_ELECTRONIC
    assert c("recall_refused", "queued") is Bucket.UNCONFIRMED


def test_overlay_without_previous_state_is_unconfirmed() -> None:
    """Not produced by the lifecycle, but allowed by the schema: no evidence of confirmation."""
    assert c("recall_requested", None) is Bucket.UNCONFIRMED


# --- precedence ---------------------------------------------------------------------------------------


def test_recalled_beats_everything() -> None:
    assert c("recalled", "queued", sig=False, paper=True) is Bucket.RECALLED


def test_invalid_signature_beats_paper_copy_and_recipient_outcomes() -> None:
    assert c("refused", "queued", sig=False, paper=True) is Bucket.INVALID_SIGNATURE
    assert c("queued", sig=False) is Bucket.INVALID_SIGNATURE


def test_refused_with_a_paper_copy_is_paper_copy() -> None:
    """Sender-side facts come first, in the order §5 lists the conditions (docs/rate.md)."""
    assert c("refused", "arrived", paper=True) is Bucket.PAPER_COPY


def test_unconfirmed_with_a_paper_copy_is_paper_copy() -> None:
    assert c("queued", paper=True) is Bucket.PAPER_COPY


def test_every_exchange_is_in_exactly_one_bucket_and_it_is_the_first_failed_condition() -> None:
    states = [s.value for s in State]
    for sig, paper, state, prev in itertools.product([True, False], [True, False], states, [None, *states]):
        found = failed_conditions(signature_ok=sig, paper=paper, state=state, previous_state=prev)
        assert found[0] is c(state, prev, sig=sig, paper=paper)
        assert found == sorted(found, key=PRECEDENCE.index)


def test_unknown_state_is_an_error() -> None:
    with pytest.raises(ValueError, match="lost"):
        c("lost")


# --- labels, reasons, keys -----------------------------------------------------------------------------


def test_every_bucket_has_labels_and_a_reason_in_both_languages() -> None:
    assert set(BUCKETS) == set(Bucket)
    for b in Bucket:
        assert all((b.vi, b.en, b.reason("vi"), b.reason("en")))
        assert b.in_denominator is (b is not Bucket.RECALLED)


def test_explain_names_the_other_failed_conditions() -> None:
    text = explain(signature_ok=True, paper=True, state="refused", previous_state="queued", lang="en")
    assert text.startswith(Bucket.PAPER_COPY.reason("en"))
    assert "refused" in text
    assert explain(signature_ok=True, paper=False, state="done", previous_state=None, lang="vi") == (
        Bucket.FULLY_ELECTRONIC.reason("vi")
    )


def test_level_pairs() -> None:
    assert level_pair_key("province", "district") == "province→district"
    assert level_pair_key(None, "commune") == "unknown→commune"
    assert parse_level_pair("province→district") == ("province", "district")
    assert parse_level_pair("Province -> unknown") == ("province", None)
    for bad in ("province", "province→city", "x->y"):
        with pytest.raises(ValueError, match="level"):
            parse_level_pair(bad)


def test_months() -> None:
    assert parse_month("2027-03") == parse_month(202703) == parse_month("202703") == 202703
    for bad in ("2027-13", "27-03", "march"):
        with pytest.raises(ValueError, match="not a month"):
            parse_month(bad)
    assert months_between(dt.date(2026, 11, 30), dt.date(2027, 2, 1)) == [202611, 202612, 202701, 202702]


# --- rows ------------------------------------------------------------------------------------------------


def test_rate_is_fully_electronic_over_all_but_recalled() -> None:
    row = make_row(
        ("level_pair",),
        ("province→district",),
        {Bucket.FULLY_ELECTRONIC: 6, Bucket.PAPER_ONLY: 2, Bucket.REFUSED: 2, Bucket.RECALLED: 5},
    )
    assert (row.total, row.denominator, row.fully_electronic) == (15, 10, 6)
    assert row.rate == pytest.approx(0.6)
    assert row.filters() == {"level_pair": "province→district"}
    assert row.labels == {"vi": ("Cấp tỉnh → Cấp huyện",), "en": ("Province → District",)}


def test_only_recalled_has_no_rate() -> None:
    assert make_row((), (), {Bucket.RECALLED: 3}).rate is None


def test_total_row_sums() -> None:
    rows = [
        make_row(("month",), (m,), {Bucket.FULLY_ELECTRONIC: 1, Bucket.UNCONFIRMED: 1})
        for m in ("2027-01", "2027-02")
    ]
    total = total_row(rows)
    assert (total.key, total.total, total.rate) == ((), 4, 0.5)


def test_series_fill_missing_months_with_gaps() -> None:
    rows = [make_row(("level_pair", "month"), ("province→district", "2027-02"), {Bucket.FULLY_ELECTRONIC: 1})]
    (series,) = build_series("level_pair", rows, [202701, 202702, 202703])
    assert series.months == ("2027-01", "2027-02", "2027-03")
    assert [p.rate for p in series.points] == [None, 1.0, None]
