"""`gateway report rate|exchanges` and `gateway paper import`: outputs parse back to the same figures."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rate_data import BACKENDS, Dataset, generate, loaded_database, oracle_ids, oracle_rate, oracle_rows
from typer.testing import CliRunner

from gateway.cli.paper import app as paper_app
from gateway.cli.report import app as report_app
from gateway.rate import BUCKETS
from gateway.store.db import open_database
from gateway.store.rate import exchanges_report, rate_report

FROM, TO = "2026-07-01", "2026-12-31"
D_FROM, D_TO = dt.date(2026, 7, 1), dt.date(2026, 12, 31)
runner = CliRunner()


@pytest.fixture(scope="module")
def data() -> Dataset:
    return generate(seed=7, n=2500, n_paper=150)


@pytest.fixture(scope="module", params=BACKENDS)
def url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, data: Dataset
) -> Iterator[str]:
    with loaded_database(request, tmp_path_factory, data) as loaded:
        yield loaded


def report(*args: str) -> str:
    result = runner.invoke(report_app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def _nonzero(d: dict[str, object]) -> dict[str, int]:
    return {b.value: int(d[b.value]) for b in BUCKETS if int(d[b.value])}  # type: ignore[call-overload]


@pytest.mark.parametrize(
    "by", [("level_pair",), ("sender",), ("recipient",), ("month",), ("level_pair", "month"), ()], ids=str
)
def test_rate_csv_parses_back_to_the_figures(url: str, data: Dataset, by: tuple[str, ...]) -> None:
    args = ["rate", "--from", FROM, "--to", TO, "--format", "csv", "--db", url]
    if by:
        args += ["--by", ",".join(g.replace("_", "-") for g in by)]
    else:
        args += ["--by", ""]
    rows = list(csv.DictReader(io.StringIO(report(*args))))
    expected = oracle_rows(data, by, D_FROM, D_TO)
    got = {tuple(r[g] for g in by): _nonzero(r) for r in rows}
    assert got == expected
    for r in rows:
        counts = expected[tuple(r[g] for g in by)]
        assert int(r["total"]) == sum(counts.values())
        rate = oracle_rate(counts)
        assert (r["rate"] == "") if rate is None else float(r["rate"]) == pytest.approx(rate, abs=5e-7)


def test_rate_json_parses_back_to_the_figures(url: str, data: Dataset) -> None:
    out = report(
        "rate", "--from", FROM, "--to", TO, "--by", "level-pair", "--by", "month", "-f", "json", "--db", url
    )
    doc = json.loads(out)
    assert doc["by"] == ["level_pair", "month"]
    expected = oracle_rows(data, ("level_pair", "month"), D_FROM, D_TO)
    assert {(r["level_pair"], r["month"]): _nonzero(r) for r in doc["rows"]} == expected
    for r in doc["rows"]:
        assert r["rate"] == pytest.approx(oracle_rate(expected[(r["level_pair"], r["month"])]))
    total = oracle_rows(data, (), D_FROM, D_TO)[()]
    assert _nonzero(doc["total"]) == total
    assert doc["total"]["rate"] == pytest.approx(oracle_rate(total))


def test_rate_json_equals_the_api(url: str) -> None:
    out = report(
        "rate",
        "--from",
        FROM,
        "--to",
        TO,
        "--by",
        "sender",
        "-f",
        "json",
        "--sender",
        "000.00.00.H53",
        "--db",
        url,
    )

    async def api() -> list[dict[str, object]]:
        db = open_database(url)
        try:
            rows = await rate_report(
                db, date_from=D_FROM, date_to=D_TO, by=("sender",), sender="000.00.00.H53"
            )
        finally:
            await db.close()
        return [r.as_dict() for r in rows]

    assert [{k: v for k, v in r.items() if k != "label"} for r in json.loads(out)["rows"]] == asyncio.run(
        api()
    )


def test_rate_table_in_both_languages(url: str, data: Dataset) -> None:
    total = oracle_rows(data, (), D_FROM, D_TO)[()]
    rate = oracle_rate(total)
    assert rate is not None
    vi = report("rate", "--from", FROM, "--to", TO, "--db", url)
    assert "Hoàn toàn điện tử" in vi
    assert "Tổng cộng" in vi
    assert "Cấp tỉnh → Cấp huyện" in vi
    assert f"{rate * 100:.1f} %" in vi
    en = report("rate", "--from", FROM, "--to", TO, "--lang", "en", "--by", "month", "--db", url)
    assert "Fully electronic" in en
    assert "2026-09" in en


def test_exchanges_csv_lists_the_figure(url: str, data: Dataset) -> None:
    filters = {"level_pair": "district→commune", "month": "2026-10"}
    for bucket in ("fully_electronic", "refused", "paper_only", "recalled"):
        out = report(
            "exchanges", "--from", FROM, "--to", TO, "--bucket", bucket, "--level-pair", "district->commune",
            "--month", "2026-10", "--limit", "0", "-f", "csv", "--db", url,
        )  # fmt: skip
        rows = list(csv.DictReader(io.StringIO(out)))
        ids, papers = oracle_ids(data, D_FROM, D_TO, bucket=bucket, **filters)
        assert {int(r["exchange_id"]) for r in rows if r["exchange_id"]} == ids
        assert sum(1 for r in rows if r["kind"] == "paper_only") == papers
        assert all(r["bucket"] == bucket and r["reason"] for r in rows)


def test_exchanges_json_and_table(url: str, data: Dataset) -> None:
    doc = json.loads(
        report(
            "exchanges",
            "--from",
            FROM,
            "--to",
            TO,
            "--sender",
            "000.00.21.H53",
            "-f",
            "json",
            "--limit",
            "5",
            "--db",
            url,
        )
    )
    ids, papers = oracle_ids(data, D_FROM, D_TO, sender="000.00.21.H53")
    assert doc["count"] == len(ids) + papers
    assert len(doc["rows"]) == 5

    async def api() -> list[dict[str, object]]:
        db = open_database(url)
        try:
            items = await exchanges_report(
                db, date_from=D_FROM, date_to=D_TO, sender="000.00.21.H53", limit=5
            )
        finally:
            await db.close()
        return [{**i.as_dict(), "reason": i.reason_vi} for i in items]

    assert doc["rows"] == asyncio.run(api())
    table = report(
        "exchanges", "--from", FROM, "--to", TO, "--bucket", "refused", "--lang", "en", "--db", url
    )
    assert "Refused" in table
    assert "status 02" in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rate", "--by", "county"], "cannot group by"),
        (["rate", "--by", "month,month"], "twice"),
        (["rate", "--level-pair", "province→city"], "unknown level"),
        (["exchanges", "--bucket", "lost"], "unknown bucket"),
    ],
)
def test_usage_errors_exit_2_with_one_line(url: str, args: list[str], message: str) -> None:
    result = runner.invoke(report_app, [*args, "--from", FROM, "--to", TO, "--db", url])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_from_after_to_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(
        report_app, ["rate", "--from", TO, "--to", FROM, "--db", f"sqlite:///{tmp_path}/x.db"]
    )
    assert result.exit_code == 2
    assert "after" in result.output


def test_unmigrated_database_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(
        report_app, ["rate", "--from", FROM, "--to", TO, "--db", f"sqlite:///{tmp_path}/x.db"]
    )
    assert result.exit_code == 1
    assert "gateway db upgrade" in result.output


def test_mounted_in_the_gateway_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "report", "rate", "--help"], capture_output=True, text=True
    )
    if out.returncode != 0:  # no __main__: mount explicitly as gateway.cli.main does
        code = (
            "import typer; from gateway.cli import report, paper; app = typer.Typer();"
            "app.add_typer(report.app, name='report'); app.add_typer(paper.app, name='paper'); app()"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, "report", "rate", "--help"], capture_output=True, text=True
        )
    assert out.returncode == 0, out.stderr
    assert "--by" in out.stdout


# --------------------------------------------------------------------------------------------------
# gateway paper import
# --------------------------------------------------------------------------------------------------

GOOD = """sender,recipient,number,notation,date,subject
000.00.00.H53,000.00.21.H53;000.00.22.H53,15,UBND-VP,2026-03-04,Về việc kiểm tra
000.00.00.H53,000.00.01.H53,16,UBND-VP,05/03/2026,"Về việc A, B"
000.00.01.H53,000.00.00.H54,7,SNV,2026-04-01,
"""


def _write(tmp_path: Path, text: str, name: str = "register.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return path


def paper(*args: str) -> tuple[int, str]:
    result = runner.invoke(paper_app, list(args))
    return result.exit_code, result.output


def _paper_rows(url: str) -> list[dict[str, object]]:
    async def main() -> list[dict[str, object]]:
        db = open_database(url)
        try:
            items = await exchanges_report(
                db,
                date_from=dt.date(2026, 1, 1),
                date_to=dt.date(2026, 12, 31),
                bucket="paper_only",
                limit=None,
            )
        finally:
            await db.close()
        return [i.as_dict() for i in items]

    return asyncio.run(main())


def test_paper_import_is_idempotent_and_counts_in_the_rate(database_url: str, tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    code, out = paper("import", str(path), "--db", database_url)
    assert code == 0, out
    assert "4 new, 0 already registered" in out
    assert "not in the directory" in out  # the test database's directory is empty
    code, out = paper("import", str(path), "--db", database_url)
    assert code == 0, out
    assert "0 new, 4 already registered" in out
    rows = _paper_rows(database_url)
    assert len(rows) == 4
    assert {r["source"] for r in rows} == {"csv:register.csv"}
    assert {(r["recipient"], r["document_date"]) for r in rows if r["number"] == "15"} == {
        ("000.00.21.H53", "2026-03-04"),
        ("000.00.22.H53", "2026-03-04"),
    }
    assert [r["subject"] for r in rows if r["number"] == "16"] == ["Về việc A, B"]
    out = report(
        "rate", "--from", "2026-03-01", "--to", "2026-03-31", "--by", "", "-f", "json", "--db", database_url
    )
    assert json.loads(out)["total"]["paper_only"] == 3


def test_paper_import_with_a_bad_line_stores_nothing(database_url: str, tmp_path: Path) -> None:
    bad = (
        GOOD
        + "000.00.00.H53,000.00.00.H53,17,UBND-VP,2026-02-30,\n"
        + "XYZ,000.00.21.H53,,UBND-VP,2099-01-01,\n"
    )
    code, out = paper("import", str(_write(tmp_path, bad)), "--db", database_url)
    assert code == 1
    assert "line 5: the sender is also a recipient" in out
    assert "line 5: date '2026-02-30'" in out
    assert "line 6: sender: agency code 'XYZ'" in out
    assert "line 6: number is empty" in out
    assert "line 6: date 2099-01-01 is in the future" in out
    assert "nothing was imported" in out
    assert _paper_rows(database_url) == []


def test_paper_import_number_notation_column_bom_and_semicolons(database_url: str, tmp_path: Path) -> None:
    text = (
        "Noi_gui;Noi_nhan;So_ky_hieu;Ngay;Trich_yeu;Ghi chu\n"
        "000.00.00.H53;000.00.21.H53;21/UBND-VP;2026-05-02;X;y\n"
    )
    path = _write(tmp_path, text, encoding="utf-8-sig")
    code, out = paper("import", str(path), "--delimiter", ";", "--db", database_url)
    assert code == 0, out
    assert "ignored columns: Ghi chu" in out
    (row,) = _paper_rows(database_url)
    assert (row["number"], row["notation"], row["subject"]) == ("21", "UBND-VP", "X")


def test_paper_import_header_and_encoding_errors(tmp_path: Path) -> None:
    code, out = paper("import", str(_write(tmp_path, "sender,recipient,date\n")), "--dry-run")
    assert code == 1
    assert "number and notation" in out
    latin = tmp_path / "latin.csv"
    latin.write_bytes("sender,recipient,number,notation,date\nCơ quan,x,1,2,2026-01-01\n".encode("cp1258"))
    code, out = paper("import", str(latin), "--dry-run")
    assert code == 1
    assert "not UTF-8" in out


def test_paper_import_dry_run_stores_nothing(database_url: str, tmp_path: Path) -> None:
    code, out = paper(
        "import", str(_write(tmp_path, GOOD + GOOD.splitlines()[1] + "\n")), "--dry-run", "--db", database_url
    )
    assert code == 0, out
    assert "4 dispatch(es) valid (2 repeated in the file); dry run" in out
    assert _paper_rows(database_url) == []
