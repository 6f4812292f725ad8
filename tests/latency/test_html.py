"""The latency page's chart is scaled to the data, whatever its magnitude."""

from __future__ import annotations

import pytest

from shipml.latency._html import _chart, latency_axis


@pytest.mark.parametrize(("low", "high"), [(0.0068, 0.0075), (0.007, 0.007), (1.2, 48.0),
                                           (0.5, 0.52), (120.0, 2400.0)])
def test_the_axis_spans_the_data_in_a_few_round_steps(low: float, high: float) -> None:
    start, end, step = latency_axis(low, high)
    assert start <= low and high <= end
    assert 2 <= round((end - start) / step) <= 10
    assert end - start <= 3 * max(high - low, high * 0.2)


def test_microsecond_latencies_get_a_microsecond_axis() -> None:
    # 0.007 ms data used to get an axis from 0.007 to 1.007 ms (a 1 ms fallback span).
    points = [[0.0068 + 0.0001 * i, i / 10] for i in range(11)]
    chart = _chart({"1": points})
    labels = [float(tick["label"]) for tick in chart["ticks"]]
    assert labels[0] <= 0.0068 and 0.0078 <= labels[-1] <= 0.0081
    assert [mark["label"] for mark in chart["quantiles"]] == ["0%", "50%", "100%"]
    xs = [float(pair.split(",")[0]) for pair in chart["lines"][0]["points"].split()]
    assert xs[-1] - xs[0] > 0.5 * (chart["width"] - 2 * chart["pad"])  # the curve fills it
