"""Run the benchmarks, keep their figures, and put the latest ones in the README (``make bench``).

    .venv/bin/python -m bench.run [--only core,multipart,hub] [--quick]

Each benchmark writes ``bench/results/<name>.json`` (figures plus the machine: CPU model, cores, Python,
date, load average). The README section between ``<!-- bench:begin -->`` and ``<!-- bench:end -->`` is
rewritten from all result files present, so running one benchmark keeps the others' last figures.

Benchmarks:

* ``core``: :mod:`bench.core` (sign/verify in both forms beside the floors, the issue-2 targets);
* ``multipart``: :mod:`bench.multipart_stream` as a subprocess (reader vs SHA-256 throughput, then the
  memory of streaming a large body); its printed figures are parsed;
* ``hub``: :mod:`bench.hub_ingest` (10 KB packages over mTLS on SQLite and PostgreSQL beside the
  verify-only floor, then a 100 MB multipart package beside the SHA-256 and durable-write floors);
* ``rate``: :mod:`bench.rate` (the rate by level pair and month over 1,000,000 exchanges beside a bare
  ``count(*)``, on PostgreSQL and SQLite);
* ``scale``: :mod:`bench.scale_out` (ingest through nginx on PostgreSQL with one hub process, then two,
  in the same run; CPU shares of every party).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
NAMES = ("core", "multipart", "hub", "rate", "scale")


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for dist in ("lxml", "cryptography", "signxml", "xmlsec"):
        try:
            from importlib.metadata import version

            versions[dist] = version(dist)
        except Exception:
            versions[dist] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_average": os.getloadavg(),
        "versions": versions,
    }


# --------------------------------------------------------------------------------------------------
# The benchmarks
# --------------------------------------------------------------------------------------------------


def run_core(quick: bool) -> dict[str, Any]:
    from bench import core

    result = core.run(quick=quick)
    core.print_table(result)
    return result


_MULTIPART_FIGURES = {
    "sha256_mb_per_s": r"hashlib\.sha256\s+([\d.]+) MB/s",
    "reader_mb_per_s": r"MultipartReader\s+([\d.]+) MB/s",
    "ratio": r"ratio\s+([\d.]+)%",
    "streamed_mb_per_s": r"streamed \d+ MB in [\d.]+ s \(([\d.]+) MB/s",
    "heap_peak_kib": r"tracemalloc\) ([\d.]+) KiB",
    "max_rss_mb": r"max RSS of the process ([\d.]+) MB",
}


def run_multipart(quick: bool) -> dict[str, Any]:
    """bench/multipart_stream.py (MiB-based) twice: throughput, then memory while streaming a large body."""
    size, repeat, stream = (20, 3, 100) if quick else (100, 5, 1024)
    outputs = []
    for args in (["--size", str(size), "--repeat", str(repeat)], ["--size", str(stream), "--memory"]):
        out = subprocess.run(
            [sys.executable, "-m", "bench.multipart_stream", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        print(out.stdout, end="")
        outputs.append(out.stdout)
    text = "".join(outputs)
    figures: dict[str, Any] = {"name": "multipart", "attachment_mib": size, "streamed_mib": stream}
    for key, pattern in _MULTIPART_FIGURES.items():
        m = re.search(pattern, text)
        figures[key] = float(m.group(1)) if m else None
    if figures["ratio"] is not None:
        figures["ratio"] /= 100
    figures["output"] = text
    return figures


def run_hub(quick: bool) -> dict[str, Any]:
    """:mod:`bench.hub_ingest` (10 KB ingest on SQLite and PostgreSQL, then the 100 MB multipart package)."""
    from bench import hub_ingest

    return {"name": "hub", **hub_ingest.run(quick=quick)}


def run_rate(quick: bool) -> dict[str, Any]:
    """bench/rate.py: the rate by level pair and month over 1,000,000 exchanges beside ``count(*)``."""
    from bench import rate

    return rate.run(quick=quick)


def run_scale(quick: bool) -> dict[str, Any]:
    """bench/scale_out.py: one hub process vs two behind nginx on PostgreSQL, same run, same load."""
    from bench import scale_out

    return scale_out.run(quick=quick)


BENCHMARKS: dict[str, Callable[[bool], dict[str, Any]]] = {
    "core": run_core,
    "multipart": run_multipart,
    "hub": run_hub,
    "rate": run_rate,
    "scale": run_scale,
}


# --------------------------------------------------------------------------------------------------
# README
# --------------------------------------------------------------------------------------------------


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def readme_section() -> str:
    """The Markdown between the markers, from the result files present."""
    from bench import core

    lines = ["Figures of the last `make bench` (per core, one process; each beside its floor measured in the"]
    lines.append("same run). Machine noise matters on shared VMs: compare ratios, not absolutes.")
    core_result = _load("core")
    if core_result is not None:
        m = core_result["machine"]
        quick = " (quick run)" if core_result.get("quick") else ""
        lines += [
            "",
            f"**Core** — {m['date'][:10]}{quick}, {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
            f"load {m['load_average'][0]:.2f}:",
            "",
            *core.markdown(core_result),
        ]
    mp = _load("multipart")
    if mp is not None and mp.get("reader_mb_per_s") is not None:
        lines += [
            "",
            f"**Multipart reader** ({mp['attachment_mib']} MiB attachment): "
            f"{mp['reader_mb_per_s']:,.0f} MB/s vs SHA-256 {mp['sha256_mb_per_s']:,.0f} MB/s "
            f"({mp['ratio']:.0%}); streaming "
            f"{mp['streamed_mib']} MiB: Python heap peak {mp['heap_peak_kib']:,.0f} KiB, "
            f"max RSS {mp['max_rss_mb']:,.0f} MB.",
        ]
    hub = _load("hub")
    if hub is not None:
        if "skipped" in hub:
            lines += ["", f"**Hub ingest**: not measured ({hub['skipped']})."]
        else:
            lines += ["", "**Hub ingest**: see `bench/results/hub.json`."]
            summary = hub.get("markdown") or hub.get("summary")
            if isinstance(summary, str):
                lines += ["", summary]
    rate = _load("rate")
    if rate is not None and isinstance(rate.get("markdown"), str):
        lines += ["", "**Electronic-exchange rate** (`bench/rate.py`): " + rate["markdown"]]
    scale = _load("scale")
    if scale is not None and isinstance(scale.get("markdown"), str):
        lines += [
            "",
            "**Scale-out** (`bench/scale_out.py`; why, in docs/operations.md): " + scale["markdown"],
        ]
    return "\n".join(lines)


def write_readme() -> None:
    """Replace what is between the markers; everything outside them stays byte for byte."""
    text = README.read_text(encoding="utf-8")
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        print(f"README.md has no {BEGIN} … {END} section; not updated", file=sys.stderr)
        return
    new = text[: start + len(BEGIN)] + "\n" + readme_section() + "\n" + text[end:]
    README.write_text(new, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", default=",".join(NAMES), help=f"comma-separated subset of {','.join(NAMES)}"
    )
    parser.add_argument("--quick", action="store_true", help="short time boxes and sizes (a smoke run)")
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    info = machine()
    failed = []
    for name in names:
        print(f"== {name} ==")
        start = time.perf_counter()
        try:
            result = BENCHMARKS[name](args.quick)
        except Exception as exc:  # one broken benchmark must not lose the others' figures
            print(f"{name}: failed: {exc}", file=sys.stderr)
            failed.append(name)
            continue
        result.update(machine=info, quick=args.quick, elapsed_s=round(time.perf_counter() - start, 1))
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        print(f"({name}: {result['elapsed_s']} s → bench/results/{name}.json)")
    write_readme()
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
