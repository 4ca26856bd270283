"""The working-day calendar of the overdue rule (Nghị định 30/2020, Điều 21)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from gateway.calendar import VN_TZ, Holidays, deadline_for, is_overdue, month_key, vn_date
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
OFFICIAL = Holidays.load(ROOT / "config" / "holidays.toml")


def vn(y, m, d, hh=10, mm=0) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, tzinfo=VN_TZ)


def end_of(y, m, d) -> dt.datetime:
    return dt.datetime(y, m, d, 23, 59, 59, 999999, tzinfo=VN_TZ)


def test_weekday_is_due_the_next_day_at_midnight_vietnam_time():
    deadline = deadline_for(vn(2027, 3, 2), None)  # a Tuesday
    assert deadline == end_of(2027, 3, 3)
    assert deadline.tzinfo == dt.UTC
    assert deadline == dt.datetime(2027, 3, 3, 16, 59, 59, 999999, tzinfo=dt.UTC)


@pytest.mark.parametrize("day", [5, 6, 7])  # Friday, Saturday, Sunday
def test_friday_and_weekend_are_due_monday(day):
    assert deadline_for(vn(2027, 3, day), None) == end_of(2027, 3, 8)


def test_the_day_is_taken_in_vietnam_not_utc():
    # 2027-03-05 18:00 UTC is already Saturday 01:00 in Vietnam: due Monday either way, but
    # Thursday 20:00 UTC is Friday 03:00 in Vietnam, so due Monday, not Friday.
    thursday_utc = dt.datetime(2027, 3, 4, 20, 0, tzinfo=dt.UTC)
    assert vn_date(thursday_utc) == dt.date(2027, 3, 5)
    assert deadline_for(thursday_utc, None) == end_of(2027, 3, 8)


def test_naive_times_are_refused():
    with pytest.raises(ValueError, match="aware"):
        deadline_for(dt.datetime(2027, 3, 2, 10), None)


def test_holiday_chain_before_tet_2026():
    # Friday 13/2/2026: Tết holidays run 14/2 (Sat) to 22/2 (Sun); next working day is Monday 23/2.
    assert deadline_for(vn(2026, 2, 13), OFFICIAL) == end_of(2026, 2, 23)
    # the Thursday before: due Friday 13/2, the last working day before Tết
    assert deadline_for(vn(2026, 2, 12), OFFICIAL) == end_of(2026, 2, 13)


def test_received_during_tet_is_due_the_first_day_back():
    assert deadline_for(vn(2026, 2, 17), OFFICIAL) == end_of(2026, 2, 23)


def test_make_up_saturday_is_a_working_day():
    # Tết Dương lịch 2026: off Thu 1/1 to Sun 4/1; Friday 2/1 swapped to Saturday 10/1.
    assert deadline_for(vn(2025, 12, 31), OFFICIAL) == end_of(2026, 1, 5)
    assert deadline_for(vn(2026, 1, 9), OFFICIAL) == end_of(2026, 1, 10)  # Friday → the make-up Saturday


def test_reunification_and_labour_day_chain_2026():
    # Giỗ Tổ (Sun 26/4, nghỉ bù Mon 27/4), then 30/4 and 1/5 (Thu, Fri).
    assert deadline_for(vn(2026, 4, 24), OFFICIAL) == end_of(2026, 4, 28)
    assert deadline_for(vn(2026, 4, 29), OFFICIAL) == end_of(2026, 5, 4)


def test_national_day_2026_and_2027():
    assert deadline_for(vn(2026, 8, 28), OFFICIAL) == end_of(2026, 9, 3)
    assert deadline_for(vn(2027, 9, 1), OFFICIAL) == end_of(2027, 9, 6)  # 2/9 Thu + 3/9 Fri off


def test_tet_2027_provisional():
    assert deadline_for(vn(2027, 2, 4), OFFICIAL) == end_of(2027, 2, 12)
    assert not OFFICIAL.is_working_day(dt.date(2027, 4, 16))  # Giỗ Tổ, 10/3 âm lịch


def test_plain_list_of_days_is_accepted():
    assert deadline_for(vn(2027, 3, 2), [dt.date(2027, 3, 3)]) == end_of(2027, 3, 4)


def test_overdue_rule():
    received = vn(2027, 3, 5, 16)  # Friday afternoon
    assert not is_overdue(received, vn(2027, 3, 8, 23, 59), None, None)
    assert is_overdue(received, vn(2027, 3, 9, 0, 1), None, None)
    assert not is_overdue(received, vn(2027, 3, 20), vn(2027, 3, 8, 9), None)  # confirmed in time
    assert is_overdue(received, vn(2027, 3, 20), vn(2027, 3, 9, 9), None)  # confirmed late


def test_month_key_uses_vietnam_time():
    assert month_key(dt.datetime(2027, 1, 31, 18, tzinfo=dt.UTC)) == 202702
    assert month_key(dt.datetime(2027, 1, 31, 16, tzinfo=dt.UTC)) == 202701


def test_official_file_covers_2026_and_2027():
    years = {d.year for d in OFFICIAL.days_off}
    assert {2026, 2027} <= years
    for day in (dt.date(2026, 1, 1), dt.date(2026, 4, 30), dt.date(2026, 5, 1), dt.date(2026, 9, 2)):
        assert not OFFICIAL.is_working_day(day)
    assert OFFICIAL.names[dt.date(2026, 2, 17)].startswith("Tết Nguyên đán")


@pytest.mark.parametrize(
    "text",
    [
        "holiday = 3",
        "[[holiday]]\nname = 'no date'",
        "[[holiday]]\ndate = '2026-01-01'",
        "[[holiday]]\nfrom = 2026-01-05\nto = 2026-01-01",
        "[[holiday]]\ndate = 2026-01-10\n[[working_day]]\ndate = 2026-01-10",
        "not toml [",
    ],
)
def test_bad_holiday_files_are_config_errors(text):
    with pytest.raises(ConfigError) as info:
        Holidays.parse(text)
    assert info.value.code == "config.invalid"


def test_missing_holiday_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        Holidays.load(tmp_path / "nope.toml")


def test_times_are_shown_to_clerks_in_vietnam_time() -> None:
    from gateway.calendar import vn_display

    # A deadline stored as 16:59:59 UTC is the end of the day in Vietnam, not 5 p.m.
    assert vn_display("2026-11-23T16:59:59+00:00") == "2026-11-23 23:59:59"
    assert vn_display(dt.datetime(2026, 11, 23, 17, 0, tzinfo=dt.UTC)) == "2026-11-24 00:00:00"
    assert vn_display("2026-11-23T16:59:59") == "2026-11-23 23:59:59"  # naive: UTC
    assert vn_display(None) == ""
