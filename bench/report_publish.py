"""Render + publish time of a full pipeline report against the local GitHub fake, and its size.

Runs ``shipml report`` in-process as on a GitHub pull request (six stages incl. the canary
timeline, 150 unrelated comments on the PR over two pages) and prints the median wall time of a
run (target ≤ 1 s) and the size of the comment in characters. Then once with 20,000 failing
checks: the time to render, shorten (comment ≤ 65,536 characters, job summary ≤ 1 MiB, each
keeping as many failure names as fit) and publish, and how many names each kept.
Usage: python bench/report_publish.py [--runs 10]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

IMPORT_START = time.perf_counter()
from shipml.cli import build_parser, main  # noqa: E402

build_parser()  # imports every stage's CLI module, as a fresh `shipml` does
import jsonschema  # noqa: E402,F401  (imported when the config is validated: start-up, not report)

IMPORT_S = time.perf_counter() - IMPORT_START

from tests.report import pipelines  # noqa: E402
from tests.report.fake_github import HUMAN, FakeGitHub  # noqa: E402

TOKEN = "ghs_bench_token"


def bench(runs: int) -> None:
    home = os.getcwd()
    github = FakeGitHub(TOKEN).start()
    try:
        for index in range(150):
            github.add_comment(7, f"unrelated comment {index}", HUMAN)
        with tempfile.TemporaryDirectory() as folder:
            work = Path(folder)
            pipelines.write(pipelines.passing(), work / ".shipml")
            event = work / "event.json"
            event.write_text(json.dumps({"number": 7, "pull_request": {"number": 7},
                                         "repository": {"full_name": "octo/models"}}))
            os.environ.update({
                "GITHUB_ACTIONS": "true", "GITHUB_EVENT_PATH": str(event),
                "GITHUB_REPOSITORY": "octo/models", "GITHUB_API_URL": github.base_url,
                "GITHUB_TOKEN": TOKEN, "GITHUB_RUN_ID": "42",
                "GITHUB_STEP_SUMMARY": str(work / "summary.md"),
            })
            os.chdir(work)
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()):
                    code = main(["report"])
                times.append(time.perf_counter() - start)
                assert code == 0
            logging.disable(logging.NOTSET)
            comments = [c for c in github.comments[7] if "shipml-report" in c["body"]]
            assert len(comments) == 1
            size = len(comments[0]["body"])
            os.chdir(home)
            huge = _huge(github, work)
    finally:
        github.stop()
    print(f"render + publish, full pipeline report (6 stages, PR with 150 comments): "
          f"median {statistics.median(times) * 1000:.0f} ms, first (templates compiled) "
          f"{times[0] * 1000:.0f} ms, max {max(times) * 1000:.0f} ms over {runs} runs "
          f"(target <= 1000 ms)")
    print(f"process start-up before that (importing shipml.cli and building the parser): "
          f"{IMPORT_S * 1000:.0f} ms")
    print(f"comment size of the full example: {size} characters (GitHub's limit: 65536)")
    print(huge)


def _huge(github: FakeGitHub, work: Path) -> str:
    failing = work / "huge"
    pipelines.write(pipelines.big_failing(20_000), failing / ".shipml")
    summary = failing / "summary.md"
    os.environ["GITHUB_STEP_SUMMARY"] = str(summary)
    os.chdir(failing)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["report"]) == 0
    seconds = time.perf_counter() - start
    body = next(c["body"] for c in github.comments[7] if "shipml-report" in c["body"])
    text = summary.read_text(encoding="utf-8")
    return (f"20,000 checks (10,000 failing): render + shorten + publish {seconds:.1f} s; comment "
            f"{len(body)} characters naming {body.count('- **validate**')} failures; job "
            f"summary {len(text.encode())} bytes naming {text.count('- **validate**')} "
            f"(full report.md {(failing / '.shipml/report/report.md').stat().st_size} bytes)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    bench(parser.parse_args().runs)
