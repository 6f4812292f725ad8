"""The latency HTML page: figures, checks and the CDF per batch size, from the stage result."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2

from shipml.results import StageResult

_WIDTH, _HEIGHT, _PAD = 640, 300, 40
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf")


def render_html(result: StageResult) -> str:
    """Return the HTML page of a latency result (self-contained, an inline SVG chart)."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("shipml.latency", "templates"),
        autoescape=True, trim_blocks=True, lstrip_blocks=True,
    )
    metrics = result.metrics
    distribution: Mapping[str, Sequence[Sequence[float]]] = metrics.get("distribution") or {}
    return environment.get_template("latency.html.j2").render(
        result=result, metrics=metrics, batches=metrics.get("batches") or {},
        regression=metrics.get("regression") or {}, chart=_chart(distribution),
    )


def _chart(distribution: Mapping[str, Sequence[Sequence[float]]]) -> dict[str, Any]:
    values = [point[0] for points in distribution.values() for point in points]
    if not values:
        return {"lines": [], "ticks": [], "width": _WIDTH, "height": _HEIGHT}
    # The axis ends at the largest p99: a single slow run would otherwise squash the curve.
    tail = [point[0] for points in distribution.values() for point in points if point[1] <= 0.99]
    low, high, step = latency_axis(min(values), max(tail or values))
    span = high - low
    inner_w, inner_h = _WIDTH - 2 * _PAD, _HEIGHT - 2 * _PAD

    def x(value: float) -> float:
        return round(_PAD + min(max(value - low, 0.0), span) / span * inner_w, 1)

    def y(quantile: float) -> float:
        return round(_HEIGHT - _PAD - quantile * inner_h, 1)

    lines = []
    for index, (batch, points) in enumerate(distribution.items()):
        lines.append({
            "label": f"batch {batch}",
            "colour": _COLOURS[index % len(_COLOURS)],
            "points": " ".join(f"{x(v)},{y(q)}" for v, q in points),
        })
    count = round(span / step)
    ticks = [{"x": x(low + step * i), "label": f"{low + step * i:.3g}"} for i in range(count + 1)]
    quantiles = [{"y": y(q), "label": f"{q:.0%}"} for q in (0.0, 0.5, 1.0)]
    return {"lines": lines, "ticks": ticks, "quantiles": quantiles, "width": _WIDTH,
            "height": _HEIGHT, "pad": _PAD, "y_top": y(1.0), "y_bottom": y(0.0)}


def latency_axis(low: float, high: float) -> tuple[float, float, float]:
    """Return ``(start, end, step)`` of a latency axis that spans ``low``..``high`` with 2 to 10
    round steps (1, 2 or 5 times a power of ten), at the scale of the data itself: 0.007 ms data
    gets an axis in thousandths of a millisecond, not one from 0 to 1 or 50 ms."""
    if not (math.isfinite(low) and math.isfinite(high)) or high < low:
        low, high = 0.0, 1.0
    span = high - low
    if span <= 0:  # every run took the same time: a window of ±10% around it
        span = abs(high) * 0.2 or 1e-3
        low, high = low - span / 2, high + span / 2
    magnitude = 10 ** math.floor(math.log10(span / 4))
    step = next(m * magnitude for m in (1, 2, 5, 10) if span / (m * magnitude) <= 8)
    digits = 3 - math.floor(math.log10(step))  # whole steps, without 0.0068000000000000005
    start = round(math.floor(round(low / step, 6)) * step, digits)
    end = round(math.ceil(round(high / step, 6)) * step, digits)
    if low >= 0 and start < 0:
        start = 0.0
    if end <= start:
        end = start + step
    return start, end, step
