"""The latency HTML page: figures, checks and the CDF per batch size, from the stage result."""

from __future__ import annotations

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
    low = min(values)
    high = max(point[0] for points in distribution.values() for point in points
               if point[1] <= 0.99)
    span = (high - low) or 1.0
    inner_w, inner_h = _WIDTH - 2 * _PAD, _HEIGHT - 2 * _PAD

    def x(value: float) -> float:
        return round(_PAD + min(value - low, span) / span * inner_w, 1)

    def y(quantile: float) -> float:
        return round(_HEIGHT - _PAD - quantile * inner_h, 1)

    lines = []
    for index, (batch, points) in enumerate(distribution.items()):
        lines.append({
            "label": f"batch {batch}",
            "colour": _COLOURS[index % len(_COLOURS)],
            "points": " ".join(f"{x(v)},{y(q)}" for v, q in points),
        })
    ticks = [{"x": x(low + span * i / 4), "label": f"{low + span * i / 4:.3g}"} for i in range(5)]
    return {"lines": lines, "ticks": ticks, "width": _WIDTH, "height": _HEIGHT, "pad": _PAD,
            "y_top": y(1.0), "y_bottom": y(0.0)}
