"""What a shadow step costs the stable's users: the stable's p50/p99 of ``POST /predict`` while it
mirrors ``sample`` 0.2 of its requests to a canary, against the same stable mirroring nothing,
under the same load (wrk, loopback, one row per request), side by side with their ratio.

One stable process serves both columns: its shadow file (``SHIPML_SHADOW_FILE``) is written and
removed between the rounds, which alternate, so both columns see the same machine and the same
warm process. The canary is a second ``shipml serve`` of the same model on the same machine, so
the "shadow" column also pays for the canary's CPU (on a real deployment it runs elsewhere): this
is an upper bound of the overhead. Also printed: the requests mirrored, dropped and agreeing in
the shadow rounds, from the stable's own /metrics.

Usage: python bench/shadow_overhead.py [--rounds 3] [--seconds 5] [--connections 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_common import example_rows, source_env, start_shipml, wrk

SAMPLE = 0.2


def _shadow_totals(url: str) -> dict[str, float]:
    """Return the stable's shadow counters, summed over targets."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("shipml_serve_shadow_") and sample.name.endswith("_total"):
                name = sample.name.removeprefix("shipml_serve_shadow_").removesuffix("_total")
                totals[name] = totals.get(name, 0.0) + sample.value
    return totals


def _switch(path: Path, record: dict[str, object] | None, stable: object) -> None:
    """Write (or remove) the shadow file and wait until the stable has logged the switch."""
    event = "shadow_on" if record is not None else "shadow_off"
    seen = len(stable.events(event))  # type: ignore[attr-defined]
    if record is None and not path.exists():
        return  # off already
    if record is None:
        path.unlink()
    else:
        part = path.with_suffix(".part")
        part.write_text(json.dumps(record), encoding="utf-8")
        part.replace(path)
    deadline = time.monotonic() + 30
    while len(stable.events(event)) == seen:  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            raise RuntimeError(f"the stable never logged {event}")
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    body = {"rows": example_rows(1)}
    with tempfile.TemporaryDirectory() as folder:
        shadow = Path(folder) / "shadow.json"
        env = source_env(None, Path(folder))
        # no access log: its line per request would be most of what the log files hold
        config = Path(folder) / "shipml.yaml"
        config.write_text("serve:\n  access_log: false\n", encoding="utf-8")
        canary, canary_url = start_shipml("--config", str(config),
                                          env={**env, "SHIPML_REVISION": "canary"})
        stable, stable_url = start_shipml("--config", str(config),
                                          env={**env, "SHIPML_REVISION": "stable",
                                               "SHIPML_SHADOW_FILE": str(shadow)})
        target = {"url": canary_url, "sample": SAMPLE, "revision": "canary"}
        figures: dict[str, list[dict[str, float]]] = {"off": [], "shadow": []}
        try:
            wrk(f"{stable_url}/predict", body, connections=args.connections, seconds=1)  # warm
            before = _shadow_totals(stable_url)
            for _ in range(args.rounds):
                for column in ("off", "shadow"):
                    _switch(shadow, target if column == "shadow" else None, stable)
                    figures[column].append(wrk(f"{stable_url}/predict", body,
                                               connections=args.connections,
                                               seconds=args.seconds))
            _switch(shadow, None, stable)
            time.sleep(3)  # the senders finish what they queued
            after = _shadow_totals(stable_url)
        finally:
            stable.stop()
            canary.stop()
    print(f"stable /predict, {args.connections} connections, {args.rounds} alternating rounds of "
          f"{args.seconds:g} s; medians over rounds")
    print(f"{'':8} {'no shadow':>12} {'shadow 0.2':>12} {'ratio':>8}")
    for key in ("p50_ms", "p99_ms", "rps"):
        off = statistics.median(round_[key] for round_ in figures["off"])
        on = statistics.median(round_[key] for round_ in figures["shadow"])
        print(f"{key:8} {off:12.3f} {on:12.3f} {on / off:8.3f}")
    failed = sum(round_["errors"] + round_["non2xx"] for rounds in figures.values()
                 for round_ in rounds)
    served = sum(round_["requests"] for round_ in figures["shadow"])
    mirrored = {name: after.get(name, 0.0) - before.get(name, 0.0)
                for name in ("requests", "dropped", "errors", "compared", "agreed")}
    print(f"user requests failed: {failed:.0f}; shadow rounds served {served:.0f}, mirrored "
          f"{mirrored['requests']:.0f} ({mirrored['requests'] / max(served, 1):.3f}), dropped "
          f"{mirrored['dropped']:.0f}, canary errors {mirrored['errors']:.0f}, agreed "
          f"{mirrored['agreed']:.0f}/{mirrored['compared']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
