"""The rate in SQL (gateway/store/rate.py) on a generated dataset, on SQLite and PostgreSQL.

The dataset (tests/rate_data.py) knows each exchange's bucket by construction; every figure is compared
with a recomputation in plain Python that does not use gateway.rate.classify.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest
from rate_data import (
    BACKENDS,
    BUCKET_NAMES,
    Dataset,
    generate,
    loaded_database,
    oracle_bucket,
    oracle_ids,
    oracle_rate,
    oracle_rows,
)
from sqlalchemy import select

from gateway.errors import RequestError
from gateway.rate import Bucket, classify
from gateway.store.db import Database, open_database
from gateway.store.models import Exchange
from gateway.store.rate import (
    bucket_case,
    exchanges_count,
    exchanges_report,
    monthly_series,
    rate_report,
)

FROM, TO = dt.date(2026, 7, 1), dt.date(2026, 12, 31)
GROUPINGS = [
    (),
    ("level_pair",),
    ("sender",),
    ("recipient",),
    ("month",),
    ("level_pair", "month"),
    ("month", "level_pair"),
    ("sender", "month"),
    ("recipient", "month"),
    ("sender", "recipient"),
    ("level_pair", "sender", "recipient", "month"),
]


@pytest.fixture(scope="module")
def data() -> Dataset:
    return generate()


@pytest.fixture(scope="module", params=BACKENDS)
def loaded_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, data: Dataset
) -> Iterator[str]:
    """The dataset, loaded once per backend for this module (the reports only read)."""
    with loaded_database(request, tmp_path_factory, data) as url:
        yield url


@pytest.fixture
async def loaded(loaded_url: str) -> AsyncIterator[Database]:
    db = open_database(loaded_url, pool_size=2)
    try:
        yield db
    finally:
        await db.close()


def _counts(row: object) -> dict[str, int]:
    return {b.value: n for b, n in row.counts.items() if n}  # type: ignore[attr-defined]


def test_the_generator_hits_every_bucket_and_the_oracle_agrees_with_it(data: Dataset) -> None:
    assert len(data.exchanges) >= 4000
    counts = data.known_counts()
    assert set(counts) == set(BUCKET_NAMES)
    assert min(counts.values()) >= 250
    assert all(oracle_bucket(e) == e.target for e in data.exchanges)


async def test_sql_case_agrees_with_classify_row_by_row(loaded: Database, data: Dataset) -> None:
    async with loaded.read() as session:
        got = dict((await session.execute(select(Exchange.id, bucket_case()))).all())  # type: ignore[call-overload]
    assert len(got) == len(data.exchanges)
    for e in data.exchanges:
        pure = classify(
            signature_ok=e.signature_ok, paper=e.paper, state=e.state, previous_state=e.previous_state
        )
        assert got[e.id] == pure.value == e.target, e


async def test_known_bucket_counts(loaded: Database, data: Dataset) -> None:
    (total,) = await rate_report(loaded, date_from=FROM, date_to=TO, by=())
    assert _counts(total) == dict(data.known_counts())
    assert total.total == len(data.exchanges) + len(data.papers)
    assert total.denominator == total.total - data.known_counts()["recalled"]


@pytest.mark.parametrize("by", GROUPINGS, ids=lambda by: "+".join(by) or "total")
async def test_every_grouping_equals_the_recomputation(
    loaded: Database, data: Dataset, by: tuple[str, ...]
) -> None:
    rows = await rate_report(loaded, date_from=FROM, date_to=TO, by=by)  # type: ignore[arg-type]
    expected = oracle_rows(data, by, FROM, TO)
    assert {row.key: _counts(row) for row in rows} == expected
    assert [row.key for row in rows] == sorted(expected)
    for row in rows:
        assert row.rate == pytest.approx(oracle_rate(expected[row.key]))
        assert row.denominator == sum(expected[row.key].values()) - expected[row.key].get("recalled", 0)


async def test_partial_months_count_by_the_hub_receipt_day_in_vietnam_time(
    loaded: Database, data: Dataset
) -> None:
    """From the 15th of one month to the 1st of another: rows at 00:00-00:59 and 23:59 VN sit on the edges."""
    for start, end in [
        (dt.date(2026, 8, 15), dt.date(2026, 10, 1)),
        (dt.date(2026, 9, 1), dt.date(2026, 9, 30)),
        (dt.date(2026, 8, 31), dt.date(2026, 8, 31)),
        (dt.date(2026, 12, 1), dt.date(2026, 12, 1)),
    ]:
        rows = await rate_report(loaded, date_from=start, date_to=end, by=("level_pair", "month"))
        assert {r.key: _counts(r) for r in rows} == oracle_rows(data, ("level_pair", "month"), start, end), (
            start,
            end,
        )


async def test_filters(loaded: Database, data: Dataset) -> None:
    cases = [
        {"sender": "000.00.00.H53"},
        {"recipient": "000.01.21.H53"},
        {"level_pair": "province→district"},
        {"level_pair": "unknown→commune"},
        {"month": "2026-09"},
        {"sender": "000.00.01.H53", "month": "2026-11"},
    ]
    for filters in cases:
        rows = await rate_report(loaded, date_from=FROM, date_to=TO, by=("recipient",), **filters)  # type: ignore[arg-type]
        assert {r.key: _counts(r) for r in rows} == oracle_rows(data, ("recipient",), FROM, TO, **filters), (
            filters
        )
        assert rows, filters


async def test_agency_names_label_sender_rows(loaded: Database) -> None:
    rows = await rate_report(loaded, date_from=FROM, date_to=TO, by=("sender",))
    labels = {r.key[0]: r.labels["vi"][0] for r in rows}
    assert labels["000.00.00.H53"] == "Cơ quan 000.00.00.H53"
    assert labels["000.00.00.H54"] == "000.00.00.H54"  # not in the directory: the code itself


async def test_drill_down_lists_exactly_the_exchanges_behind_each_figure(
    loaded: Database, data: Dataset
) -> None:
    rows = await rate_report(loaded, date_from=FROM, date_to=TO, by=("level_pair", "month"))
    checked = Counter[str]()
    for row in rows[::7]:
        for bucket in Bucket:
            if not row.counts[bucket]:
                continue
            items = await exchanges_report(
                loaded, date_from=FROM, date_to=TO, bucket=bucket, limit=None, **row.filters()
            )
            ids, papers = oracle_ids(data, FROM, TO, bucket=bucket.value, **row.filters())
            assert {i.exchange_id for i in items if i.exchange_id is not None} == ids
            assert sum(1 for i in items if i.exchange_id is None) == papers
            assert len(items) == row.counts[bucket]
            assert {i.bucket for i in items} == {bucket}
            assert all(i.reason and i.reason_vi for i in items)
            checked[bucket.value] += 1
    assert set(checked) == set(BUCKET_NAMES)


async def test_drill_down_pages_and_counts(loaded: Database, data: Dataset) -> None:
    filters = {"sender": "000.00.00.H53"}
    everything = await exchanges_report(loaded, date_from=FROM, date_to=TO, limit=None, **filters)
    ids, papers = oracle_ids(data, FROM, TO, **filters)
    assert len(everything) == len(ids) + papers
    assert await exchanges_count(loaded, date_from=FROM, date_to=TO, **filters) == len(everything)
    pages = []
    for offset in range(0, len(everything), 97):
        pages += await exchanges_report(
            loaded, date_from=FROM, date_to=TO, limit=97, offset=offset, **filters
        )
    assert pages == everything
    months = [i.month for i in everything]
    assert months == sorted(months, reverse=True)


async def test_drill_down_reasons(loaded: Database, data: Dataset) -> None:
    by_id = {e.id: e for e in data.exchanges}
    items = await exchanges_report(loaded, date_from=FROM, date_to=TO, limit=400)
    for item in items:
        if item.exchange_id is None:
            assert item.bucket is Bucket.PAPER_ONLY
            assert item.source == "test"
            assert item.document_date is not None
            continue
        e = by_id[item.exchange_id]
        assert item.bucket.value == e.target
        assert item.reason.startswith(item.bucket.reason("en"))
        assert (item.state, item.paper, item.signature_ok) == (e.state, e.paper, e.signature_ok)
        assert item.received_at == e.received_at
        assert item.package_id == e.package_id
        assert item.verdict in ("valid", "signature.invalid")
        flagged = not e.signature_ok and item.verdict == "signature.invalid"
        assert ("[signature.invalid]" in item.reason) is flagged


async def test_monthly_series(loaded: Database, data: Dataset) -> None:
    series = await monthly_series(loaded, date_from=dt.date(2026, 6, 1), date_to=TO, by="level_pair")
    expected = oracle_rows(data, ("level_pair", "month"), dt.date(2026, 6, 1), TO)
    pairs = {k[0] for k in expected}
    assert {s.key for s in series} == pairs
    for s in series:
        assert s.months == ("2026-06", "2026-07", "2026-08", "2026-09", "2026-10", "2026-11", "2026-12")
        assert s.points[0].total == 0
        assert s.points[0].rate is None  # June has nothing: a gap, not a zero
        for month, point in zip(s.months, s.points, strict=True):
            assert _counts(point) == expected.get((s.key, month), {})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"by": ("level",)},
        {"by": ("month", "month")},
        {"level_pair": "province→city"},
        {"month": "2026-13"},
        {"date_from": TO, "date_to": FROM},
    ],
)
async def test_bad_requests_are_request_errors(db: Database, kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"date_from": FROM, "date_to": TO, **kwargs}
    with pytest.raises(RequestError):
        await rate_report(db, **args)  # type: ignore[arg-type]


async def test_unknown_bucket_is_a_request_error(db: Database) -> None:
    with pytest.raises(RequestError, match="bucket"):
        await exchanges_report(db, date_from=FROM, date_to=TO, bucket="lost")


async def test_empty_database_gives_no_rows(db: Database) -> None:
    assert await rate_report(db, date_from=FROM, date_to=TO, by=("level_pair",)) == []
    assert await exchanges_report(db, date_from=FROM, date_to=TO) == []
