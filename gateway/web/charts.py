"""Server-rendered SVG charts: geometry only, as plain data the templates draw (no JavaScript library).

:func:`line_chart` lays out the monthly rate per level pair (a line per series, a gap where a month has
no exchange rather than a false zero); :func:`stacked_bars` lays out the buckets per month. Every point
and segment carries its value, a title for the tooltip (SVG ``<title>``) and the drill-down link, so a
figure is one click from the exchanges behind it. Text is escaped by the templates, not here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.rate import BUCKETS, Bucket, RateRow, Series

BUCKET_COLORS: dict[Bucket, str] = {
    Bucket.FULLY_ELECTRONIC: "#2e7d32",
    Bucket.PAPER_COPY: "#f9a825",
    Bucket.INVALID_SIGNATURE: "#6a1b9a",
    Bucket.REFUSED: "#c62828",
    Bucket.UNCONFIRMED: "#9e9e9e",
    Bucket.PAPER_ONLY: "#8d6e63",
    Bucket.RECALLED: "#1565c0",
}
SERIES_COLORS = ("#1565c0", "#2e7d32", "#c62828", "#6a1b9a", "#ef6c00", "#00838f", "#5d4037", "#ad1457")

WIDTH, HEIGHT = 760, 300
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 40


@dataclass(frozen=True, slots=True, kw_only=True)
class Mark:
    """A point (line chart) or a rectangle (bar chart), with what it shows."""

    x: float
    y: float
    width: float = 0.0
    height: float = 0.0
    value: str
    title: str
    href: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Line:
    key: str
    label: str
    color: str
    path: str
    """SVG path data; ``M`` starts again after a gap."""
    points: tuple[Mark, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    pos: float
    label: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LineChart:
    width: int
    height: int
    plot: tuple[float, float, float, float]
    """left, top, right, bottom of the plotting area."""
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    lines: tuple[Line, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Bar:
    label: str
    total: int
    segments: tuple[Mark, ...]
    colors: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class BarChart:
    width: int
    height: int
    plot: tuple[float, float, float, float]
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    bars: tuple[Bar, ...]
    legend: tuple[tuple[str, str], ...]
    """(color, label) per bucket."""


def _x_positions(n: int, left: float, right: float) -> list[float]:
    if n == 1:
        return [(left + right) / 2]
    step = (right - left) / (n - 1)
    return [left + i * step for i in range(n)]


def _month_label(month: str) -> str:
    year, mm = month.split("-")
    return f"{mm}/{year[2:]}"


def line_chart(
    series: Sequence[Series],
    *,
    label: Callable[[Series], str],
    point_title: Callable[[Series, RateRow], str],
    href: Callable[[Series, str], str],
) -> LineChart:
    """The rate (0-100 %) per month, one line per series."""
    left, top, right, bottom = LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM
    months = series[0].months if series else ()
    xs = _x_positions(len(months), left + 12, right - 12) if months else []

    def y_of(rate: float) -> float:
        return bottom - rate * (bottom - top)

    lines: list[Line] = []
    for i, s in enumerate(series):
        parts: list[str] = []
        points: list[Mark] = []
        pen_down = False
        for x, month, row in zip(xs, s.months, s.points, strict=True):
            if row.rate is None:
                pen_down = False
                continue
            y = y_of(row.rate)
            parts.append(f"{'L' if pen_down else 'M'}{x:.1f},{y:.1f}")
            pen_down = True
            points.append(
                Mark(
                    x=round(x, 1),
                    y=round(y, 1),
                    value=f"{row.rate:.4f}",
                    title=point_title(s, row),
                    href=href(s, month),
                )
            )
        lines.append(
            Line(
                key=s.key,
                label=label(s),
                color=SERIES_COLORS[i % len(SERIES_COLORS)],
                path=" ".join(parts),
                points=tuple(points),
            )
        )
    return LineChart(
        width=WIDTH,
        height=HEIGHT,
        plot=(left, top, right, bottom),
        x_ticks=tuple(Tick(pos=round(x, 1), label=_month_label(m)) for x, m in zip(xs, months, strict=True)),
        y_ticks=tuple(Tick(pos=round(y_of(v / 100), 1), label=f"{v} %") for v in (0, 25, 50, 75, 100)),
        lines=tuple(lines),
    )


def _axis(value: int) -> tuple[int, int]:
    """A round top for a count axis and its step (1, 2, 5 × 10^k), so every tick is a whole number."""
    step = 1
    while value > step * 5:
        for factor in (2, 2.5, 2):  # 1 → 2 → 5 → 10 → 20 → 50 …
            step = int(step * factor)
            if value <= step * 5:
                break
    top = max(step, -(-value // step) * step)
    return top, step


def stacked_bars(
    rows: Sequence[RateRow],
    *,
    bucket_label: Callable[[Bucket], str],
    segment_title: Callable[[RateRow, Bucket], str],
    href: Callable[[RateRow, Bucket], str],
) -> BarChart:
    """One bar per row (a month), stacked by bucket in :data:`~gateway.rate.BUCKETS` order."""
    left, top, right, bottom = LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM
    peak, step = _axis(max((r.total for r in rows), default=0))
    slot = (right - left) / max(len(rows), 1)
    bar_width = min(48.0, slot * 0.7)
    bars: list[Bar] = []
    ticks: list[Tick] = []
    for i, row in enumerate(rows):
        x = left + slot * i + (slot - bar_width) / 2
        base = float(bottom)
        segments: list[Mark] = []
        colors: list[str] = []
        for bucket in BUCKETS:
            count = row.counts.get(bucket, 0)
            if not count:
                continue
            h = count / peak * (bottom - top)
            base -= h
            segments.append(
                Mark(
                    x=round(x, 1),
                    y=round(base, 1),
                    width=round(bar_width, 1),
                    height=round(h, 1),
                    value=str(count),
                    title=segment_title(row, bucket),
                    href=href(row, bucket),
                )
            )
            colors.append(BUCKET_COLORS[bucket])
        month = row.key[-1] if row.key else ""
        bars.append(Bar(label=month, total=row.total, segments=tuple(segments), colors=tuple(colors)))
        ticks.append(Tick(pos=round(x + bar_width / 2, 1), label=_month_label(month) if month else ""))
    y_ticks = tuple(
        Tick(pos=round(bottom - v / peak * (bottom - top), 1), label=str(v)) for v in range(0, peak + 1, step)
    )
    return BarChart(
        width=WIDTH,
        height=HEIGHT,
        plot=(left, top, right, bottom),
        x_ticks=tuple(ticks),
        y_ticks=y_ticks,
        bars=tuple(bars),
        legend=tuple((BUCKET_COLORS[b], bucket_label(b)) for b in BUCKETS),
    )
