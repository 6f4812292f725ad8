"""The report of what stages really write: a real ``shipml optimize`` and ``shipml latency`` on the
bundled example, rendered and compared with a golden file whose numbers are masked (timings
vary; the shape, the words and the order must not). Set SHIPML_UPDATE_GOLDEN=1 to rewrite it
after an intended change of a stage's figures or of the report."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from shipml.cli import main
from shipml.report import build_report, render_markdown, render_stage_summary
from shipml.results import read_all
from tests.report.test_render import GOLDEN, LINKS, UPDATE

#: the smallest settings that still measure: the numbers are masked, the shape is the point
CONFIG = """\
model:
  path: model.onnx
  label: benign
  train: train.csv
  test: test.csv
optimize:
  candidates: [graph]
  pick: graph
latency:
  batch_sizes: [1]
  budgets:
    "1": {p95_ms: 1000}
  min_processes: 1
  min_runs: 20
  process_time_s: 0.1
  max_time_s: 1
  remeasure: 0
  html: false
"""


def masked(markdown: str) -> str:
    """Return ``markdown`` with every measured number replaced by N (names such as p95 kept),
    and a chart's points by …: how many a distribution has depends on the runs."""
    markdown = re.sub(r"^(    (?:x-axis \"[^\"]*\"|line|bar) )\[.*\]$", r"\1[…]", markdown,
                      flags=re.M)
    return re.sub(r"(?<![A-Za-z\d.])\d+(?:\.\d+)?(?:e[+-]?\d+)?", "N", markdown)


@pytest.fixture(scope="module")
def real_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from shipml.example import example_dir

    folder = tmp_path_factory.mktemp("real")
    for name in ("model.onnx", "train.csv", "test.csv"):
        shutil.copy(Path(example_dir()) / name, folder / name)
    (folder / "shipml.yaml").write_text(CONFIG)
    output = folder / ".shipml"
    config = str(folder / "shipml.yaml")
    assert main(["optimize", "--config", config, "--output-dir", str(output)]) == 0
    assert main(["latency", "--config", config, "--output-dir", str(output)]) == 0
    return output


def test_a_real_optimize_and_latency_report_matches_its_golden(real_results: Path) -> None:
    results = read_all(real_results)
    assert {r.stage for r in results} == {"optimize", "latency"}
    assert all(r.tables for r in results)  # both stages state their figures for the report
    markdown = masked(render_markdown(build_report(results, links=LINKS,
                                                   commit="feedfacefeedface")))
    golden = GOLDEN / "real.md"
    if UPDATE:
        golden.write_text(markdown, encoding="utf-8")
    assert markdown == golden.read_text(encoding="utf-8")


def test_each_real_stage_summary_is_its_report_section(real_results: Path) -> None:
    for result in read_all(real_results):
        assert render_stage_summary(result) in render_markdown(build_report([result]))
