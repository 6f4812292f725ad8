"""Figures of shipml canary on the docker target, measured in one run with the test fixtures'
real pieces (the example model's image, HAProxy router, Prometheus scraping both slots, steady
load of real rows at ``--rate`` requests per second):

- rollback: time from the first request the bad canary (500 on 30% of requests) answered with
  an error to its weight reaching 0, and the share of all requests it served badly meanwhile,
  with ``--interval`` (default 10 s, the issue's figure) and ``failure_limit: 2``;
- promotion: requests that failed while a good canary was promoted through 20% → 50% → 100%;
- one analysis round: the time of the queries plus the judge, median over the rollout's rounds.

Needs what the tests need (bash .ci/services; apt-get install -y prometheus).

    .venv/bin/python bench/canary_rollout.py [--interval 10] [--rate 40]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from shipml.cli import main  # noqa: E402
from tests.canary import conftest  # noqa: E402


def _run(service: conftest.Service, image: str, interval: float) -> dict[str, Any]:
    config = service.config(image, interval=f"{interval:g}s", window=f"{max(4, interval):g}s",
                            step_timeout=f"{interval * 6:g}s", lease=f"{interval * 4:g}s")
    main(["canary", "--config", str(config), "--output-dir", str(service.folder / ".shipml")])
    return dict(json.loads((service.folder / ".shipml/results/canary.json").read_text()))


def main_bench() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=40.0)
    options = parser.parse_args()
    import docker

    client = docker.from_env(timeout=600)
    with tempfile.TemporaryDirectory() as build_folder, tempfile.TemporaryDirectory() as folder:
        images = conftest.build_images(client, Path(build_folder))
        service = conftest.new_service(Path(folder))
        try:
            rows = conftest.sample_rows(service.folder)
            _run(service, images["base"], options.interval)
            with conftest.Load(f"http://127.0.0.1:{service.port}", rows, options.rate) as load:
                promoted = _run(service, images["good"], options.interval)
                time.sleep(1)
            print(f"promotion ({promoted['metrics']['phase']}): {len(load.failed())} failed of "
                  f"{len(load.codes)} requests at {options.rate:g}/s")
            print("one analysis round (queries + judge): "
                  f"{promoted['metrics']['analysis_s_mean'] * 1000:.0f} ms mean over "
                  f"{promoted['metrics']['analyses']} rounds")
            with conftest.Load(f"http://127.0.0.1:{service.port}", rows, options.rate) as load:
                started = time.time()
                rolled = _run(service, images["errors"], options.interval)
                ended = time.time()
            bad = [at for at, code in load.codes if code != 200 and at >= started]
            during = [code for at, code in load.codes if started <= at <= ended]
            first_bad = min(bad) if bad else float("nan")
            print(f"rollback ({rolled['metrics']['phase']}, interval {options.interval:g}s, "
                  f"failure_limit 2): {ended - first_bad:.1f}s from the first bad answer to "
                  f"weight 0 and the canary removed; {len(bad)} of {len(during)} requests in "
                  f"that time failed ({100 * len(bad) / max(1, len(during)):.1f}%)")
        finally:
            conftest.end_service(client, service)
            conftest.remove_images(client, images)
    return 0


if __name__ == "__main__":
    raise SystemExit(main_bench())
