"""``gateway demo`` end to end: the newcomer's command, run as a subprocess in a temporary folder.

It must exit 0, print the outcomes the month's script promises (the receipts of one dispatch, the special
cases, the rate table whose totals match the script), and leave no process behind — also when it is
interrupted with Ctrl-C. The demo runs in its own session, so every process it started (hub, nodes, the
hub's verification pool) can be found by session id afterwards.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from gateway.demo import scenario as sc

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]

# ``gateway`` with ``demo`` mounted, whether or not gateway/cli/__init__.py mounts it already.
CLI = """
import importlib, sys
import gateway.cli as cli
_orig = cli._mount
def _mount():
    _orig()
    if "demo" not in {g.name for g in cli.app.registered_groups}:
        module = importlib.import_module("gateway.cli.demo")
        cli.app.add_typer(module.app, name="demo", help=module.__doc__)
cli._mount = _mount
sys.argv[0] = "gateway"
cli.main()
"""


def start_demo(folder: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(COLUMNS="220", PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-c", CLI, "demo", "--dir", str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env=env,
        start_new_session=True,  # its session id is its pid: every descendant can be found
    )


def survivors(session: int) -> list[str]:
    """Processes still in the demo's session (its children and theirs), as ``pid cmdline``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        state, sid = fields[0], int(fields[3])
        if sid == session and state != "Z":
            found.append(f"{entry.name} {cmdline.strip()}")
    return found


def assert_no_survivors(session: int) -> None:
    deadline = time.monotonic() + 5
    while survivors(session) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert survivors(session) == []


def expected_totals() -> Counter[str]:
    """The rate's buckets computed from the script, independently of the demo and the rate engine."""
    totals: Counter[str] = Counter()
    for plan in sc.PLANS:
        if plan.role == "revoked":  # refused by the hub: no exchange exists
            continue
        for recipient in plan.recipients:
            if plan.role == "recalled":
                totals["recalled"] += 1
            elif plan.paper:
                totals["paper_copy"] += 1
            elif plan.role in ("refused", "tampered"):
                totals["refused"] += 1
            elif recipient not in sc.NODES:
                totals["unconfirmed"] += 1
            else:
                totals["fully_electronic"] += 1
    totals["paper_only"] = len(sc.PAPER)
    return totals


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds survivors through /proc")
def test_the_demo_plays_the_month_prints_the_outcomes_and_stops_everything(tmp_path: Path) -> None:
    proc = start_demo(tmp_path / "demo")
    try:
        out, _ = proc.communicate(timeout=300)  # a hang guard, not a speed target (about 1 min idle)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out[-5000:]

    # The receipts of the showcase dispatch: done, in progress, accepted, and one recipient overdue.
    showcase = next(line for line in out.splitlines() if line.startswith("$ gateway receipts"))
    assert ",3413/KH-UBND" in showcase
    for state in ("done", "in_progress", "accepted", "queued", "overdue", "06 hoàn thành"):
        assert state in out, state

    # The special cases, each with how the system caught it.
    assert re.search(r"refused with a reason .*refused \(01 → 02\): Văn bản không thuộc thẩm quyền", out)
    assert len(re.findall(r"recalled .*recalled \(01 → 13 → 15\): Đồng ý thu hồi", out)) == 2
    assert re.search(r"tampered in transit .*refused \(02\): signature\.digest_mismatch", out)
    assert re.search(r"signed with a revoked certificate .*rejected: certificate\.revoked", out)
    overdue = re.findall(r"unconfirmed and overdue .*→ (UBND [^│]+?)\s+│ no 01 yet", out)
    assert set(overdue) == {"UBND huyện Châu Thành", "UBND xã Thạnh Bắc"}

    # The rate table by level pair: its totals are what the script says.
    total = next(line for line in out.splitlines() if line.startswith("│ Total"))
    cells = [c.strip() for c in total.strip("│ ").split("│")]
    want = expected_totals()
    columns = ["fully_electronic", "paper_copy", "invalid_signature", "refused", "unconfirmed", "paper_only",
               "recalled"]  # fmt: skip
    numbers = [int(c.replace(",", "")) for c in cells[1 : 1 + len(columns)]]
    assert dict(zip(columns, numbers, strict=True)) == {c: want.get(c, 0) for c in columns}
    for pair in ("Central → Province", "Province → District", "District → Commune", "Commune → District"):
        assert pair in out

    # The web accounts and where to sign in; then a clean stop.
    assert re.search(r"https://localhost:\d+/ui/", out)
    assert re.search(r"vanthu\.tanbien\s+│ demo-\S{10,}", out)
    assert re.search(r"kiemtra\.tinh\s+│ demo-\S{10,}", out)
    assert "stopped 6 process(es)" in out
    assert_no_survivors(proc.pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds survivors through /proc")
def test_ctrl_c_stops_the_hub_and_the_nodes(tmp_path: Path) -> None:
    proc = start_demo(tmp_path / "demo")
    assert proc.stdout is not None
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if "nodes running" in line:
                break
        else:
            pytest.fail("the demo ended before its nodes ran:\n" + "".join(seen))
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C: the whole process group
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, "".join(seen) + rest
    assert "interrupted" in rest
    assert_no_survivors(proc.pid)
