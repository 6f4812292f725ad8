"""``shipml monitor``: the thin handler over :mod:`shipml.monitor.core`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from shipml import cli as _cli
from shipml._stage import LABEL, MODEL, TRAIN, Option, add_command, conclude, stage_config

#: the keys ``shipml monitor`` takes from flags and ``SHIPML_*`` variables (action inputs)
OPTIONS = (
    MODEL,
    TRAIN,
    LABEL,
    Option("--logs", ("monitor", "logs", "path"), "SHIPML_MONITOR_LOGS",
           "prediction log file (with its rotations), folder or glob", "PATH"),
    Option("--since", ("monitor", "logs", "since"), "SHIPML_MONITOR_SINCE",
           "window start: ISO-8601 time or a duration back from now (24h, 7d)", "TIME"),
    Option("--until", ("monitor", "logs", "until"), "SHIPML_MONITOR_UNTIL",
           "window end: ISO-8601 time or a duration back from now", "TIME"),
    Option("--production", ("monitor", "production"), "SHIPML_MONITOR_PRODUCTION",
           "a CSV/Parquet of production rows instead of logs", "PATH"),
    Option("--reference", ("monitor", "reference"), "SHIPML_MONITOR_REFERENCE",
           "reference data, CSV/Parquet (default: model.train)", "PATH"),
    Option("--labels", ("monitor", "labels", "path"), "SHIPML_MONITOR_LABELS",
           "late labels joined by request id", "PATH"),
    Option("--min-records", ("monitor", "min_records"), "SHIPML_MONITOR_MIN_RECORDS",
           "fewer production rows is an error", "N"),
    Option("--key", ("monitor", "key"), "SHIPML_MONITOR_KEY",
           "model key: one issue per key", "KEY"),
    Option("--issue", ("monitor", "alert", "issue"), "SHIPML_MONITOR_ISSUE",
           "open or update the drift issue"),
    Option("--repository", ("monitor", "alert", "repository"), "SHIPML_MONITOR_REPOSITORY",
           "owner/name of the issue's repository", "REPO"),
    Option("--on-clear", ("monitor", "alert", "on_clear"), "SHIPML_MONITOR_ON_CLEAR",
           "close or leave the issue when drift clears", "ACTION"),
    Option("--dispatch-event", ("monitor", "alert", "dispatch", "event_type"),
           "SHIPML_MONITOR_DISPATCH_EVENT", "repository_dispatch event type on drift", "TYPE"),
    Option("--fail-on", ("monitor", "fail_on"), "SHIPML_FAIL_ON", "fail, warn or never", "LEVEL"),
)


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``monitor`` subcommand."""
    parser = add_command(
        subparsers, common, "monitor", OPTIONS, run_cli,
        summary="find drift in production (prediction logs) and open an issue that asks for "
                "retraining",
        description="Compare the production rows the server logged (or a table of them) with "
                    "the reference data: deepchecks drift per feature and of the predictions, "
                    "columns, null rates, out-of-range values, volume and, with late labels, "
                    "performance. One GitHub issue per model key, updated in place. Exit 0 no "
                    "drift, 1 drift, 2 bad input, 3 infrastructure (GitHub unreachable).",
    )
    parser.add_argument("--github-token", metavar="TOKEN",
                        help="token for the GitHub API (prefer $GITHUB_TOKEN: flags show in "
                             "process lists)")


def run_cli(args: argparse.Namespace) -> int:
    """Load the configuration, judge production, alert; return the exit code."""
    from shipml.ci import detect
    from shipml.monitor.core import run_monitor
    from shipml.report.core import read_token

    platform = detect()
    token = read_token(getattr(args, "github_token", None))
    if token:
        platform.mask(token)
    config = stage_config(args, OPTIONS)
    run = run_monitor(config, _cli.output_dir(args), platform, token)
    alert = run.alert
    code = conclude(run.result, run.result_path, platform,
                    outputs={"report": str(run.html_path or ""), "junit": str(run.junit_path),
                             "issue-url": alert.issue_url,
                             "drifted-features": ",".join(
                                 run.result.metrics.get("drifted_features") or [])},
                    files=[("report", run.html_path), ("junit", run.junit_path)], config=config)
    if alert.issue_url:
        print(f"issue: {alert.issue_url} ({', '.join(alert.actions) or 'unchanged'})")
    if run.alert_error is not None:
        print(f"shipml monitor: the alert was not delivered: {run.alert_error.message}",
              file=sys.stderr)
        return run.alert_error.exit_code
    return code
