"""Prometheus metrics in the text exposition format, without a client library.

Why not ``prometheus_client``: the hub needs three families and a way to add up N worker processes behind
one port (a scrape lands on any worker). That is a few dozen lines: each worker keeps its counters in
memory and, when they changed, writes a JSON snapshot to ``<metrics_dir>/<pid>.json`` (atomically, at most
once a second); a scrape adds the live counters of the worker that answers to the snapshots of the others.
Snapshots of workers that died stay, so counters never go backwards; ``gateway hub serve`` clears the folder
when it starts.

Families:

* ``gateway_packages_accepted_total{kind,form}``: packages (``kind="package"``) and status messages
  (``kind="status"``) stored; ``form`` is ``single``, ``multipart`` or ``status``;
* ``gateway_packages_rejected_total{reason}``: every problem answered, by its stable code;
* ``gateway_verification_seconds``: histogram of the time a package spent in the verification pool;
* ``gateway_inbox_depth{agency}``: unacknowledged inbox items, read from the database at scrape time (so it
  is the same whichever worker answers).
"""

from __future__ import annotations

import json
import os
import time
from bisect import bisect_left
from collections.abc import Mapping
from pathlib import Path
from typing import Any

BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_HELP = {
    "gateway_packages_accepted_total": ("counter", "Packages and status messages stored by the hub."),
    "gateway_packages_rejected_total": ("counter", "Requests refused with a problem, by reason code."),
    "gateway_verification_seconds": ("histogram", "Time spent verifying a package in the worker pool."),
    "gateway_inbox_depth": ("gauge", "Unacknowledged inbox items per agency."),
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Mapping[str, str]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs.items()) + "}"


class Metrics:
    """One worker's counters; :meth:`render` adds the other workers' snapshots."""

    def __init__(self, metrics_dir: Path | None = None) -> None:
        self.accepted: dict[tuple[str, str], int] = {}
        self.rejected: dict[str, int] = {}
        self.hist_counts: list[int] = [0] * (len(BUCKETS) + 1)
        self.hist_sum = 0.0
        self._dir = metrics_dir
        self._dirty = False
        self._last_flush = 0.0
        if metrics_dir is not None:
            metrics_dir.mkdir(parents=True, exist_ok=True)

    # --- recording ----------------------------------------------------------------------------------
    def count_accepted(self, kind: str, form: str) -> None:
        key = (kind, form)
        self.accepted[key] = self.accepted.get(key, 0) + 1
        self._dirty = True

    def count_rejected(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        self._dirty = True

    def observe_verification(self, seconds: float) -> None:
        self.hist_counts[bisect_left(BUCKETS, seconds)] += 1
        self.hist_sum += seconds
        self._dirty = True

    # --- sharing between workers --------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "accepted": [[k, f, n] for (k, f), n in self.accepted.items()],
            "rejected": self.rejected,
            "hist_counts": self.hist_counts,
            "hist_sum": self.hist_sum,
        }

    def flush(self, *, force: bool = False) -> None:
        """Write this worker's snapshot if it changed (at most once a second unless ``force``)."""
        if self._dir is None or not self._dirty:
            return
        now = time.monotonic()
        if not force and now - self._last_flush < 1.0:
            return
        self._last_flush = now
        self._dirty = False
        target = self._dir / f"{os.getpid()}.json"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.snapshot()))
        os.replace(tmp, target)

    def _others(self) -> list[dict[str, Any]]:
        if self._dir is None:
            return []
        own = f"{os.getpid()}.json"
        found = []
        for file in self._dir.glob("*.json"):
            if file.name == own:
                continue
            try:
                found.append(json.loads(file.read_text()))
            except (OSError, ValueError):
                continue  # a worker is replacing it right now; next scrape will see it
        return found

    # --- exposition ---------------------------------------------------------------------------------
    def render(self, inbox_depth: Mapping[str, int] | None = None) -> str:
        accepted = dict(self.accepted)
        rejected = dict(self.rejected)
        counts = list(self.hist_counts)
        total = self.hist_sum
        for snap in self._others():
            for kind, form, n in snap.get("accepted", []):
                accepted[(kind, form)] = accepted.get((kind, form), 0) + int(n)
            for reason, n in snap.get("rejected", {}).items():
                rejected[reason] = rejected.get(reason, 0) + int(n)
            for i, n in enumerate(snap.get("hist_counts", [])[: len(counts)]):
                counts[i] += int(n)
            total += float(snap.get("hist_sum", 0.0))

        out: list[str] = []

        def head(name: str) -> None:
            kind, text = _HELP[name]
            out.append(f"# HELP {name} {text}")
            out.append(f"# TYPE {name} {kind}")

        head("gateway_packages_accepted_total")
        for (kind, form), n in sorted(accepted.items()):
            out.append(f"gateway_packages_accepted_total{_labels({'kind': kind, 'form': form})} {n}")
        head("gateway_packages_rejected_total")
        for reason, n in sorted(rejected.items()):
            out.append(f"gateway_packages_rejected_total{_labels({'reason': reason})} {n}")
        head("gateway_verification_seconds")
        running = 0
        for bound, n in zip((*BUCKETS, float("inf")), counts, strict=True):
            running += n
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f'gateway_verification_seconds_bucket{{le="{le}"}} {running}')
        out.append(f"gateway_verification_seconds_sum {total}")
        out.append(f"gateway_verification_seconds_count {running}")
        head("gateway_inbox_depth")
        for agency, n in sorted((inbox_depth or {}).items()):
            out.append(f"gateway_inbox_depth{_labels({'agency': agency})} {n}")
        return "\n".join(out) + "\n"
