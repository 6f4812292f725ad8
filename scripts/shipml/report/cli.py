"""``shipml report``: the thin handler over :mod:`shipml.report.core` (read the stage results,
render, publish)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from shipml import cli as _cli
from shipml._stage import add_command, stage_config
from shipml.errors import EXIT_GATE_FAILED, EXIT_OK, ConfigError
from shipml.report._options import OPTIONS, TOKEN_VARIABLES

log = logging.getLogger("shipml.report")

#: the options are declared in shipml.report._options, below both this module and the core
__all__ = ["OPTIONS", "TOKEN_VARIABLES", "register", "run_cli"]


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``report`` subcommand."""
    parser = add_command(
        subparsers, common, "report", OPTIONS, run_cli,
        summary="render the stage results and publish them: sticky PR comment, job summary, HTML",
        description="Read .shipml/results/*.json and publish one report: a sticky pull-request "
                    "comment (edited in place), the job summary, a terminal rendering and an HTML "
                    "page. Publishing problems are warnings unless --fail-on-publish-error. "
                    "Exit 0, 1 when --fail-on fail and the pipeline failed, 2 bad input, "
                    "3 GitHub unreachable (with --fail-on-publish-error).",
    )
    parser.add_argument("--github-token", metavar="TOKEN",
                        help="token for the GitHub API (prefer $GITHUB_TOKEN: flags show in "
                             "process lists)")


def run_cli(args: argparse.Namespace) -> int:
    """Load configuration and results, render, publish; return the exit code."""
    from shipml.ci import detect
    from shipml.report.core import publish_error_report, read_token, run_report, set_outputs
    from shipml.report.render import one_line

    platform = detect()
    token = read_token(args.github_token)
    if token:
        platform.mask(token)
    try:
        config = stage_config(args, OPTIONS)
    except ConfigError as exc:
        # The stages' error results must still reach the pull request: publish them with the
        # report's defaults, then fail on the config as every stage does.
        publish_error_report(_cli.output_dir(args), platform, token, exc.message)
        raise
    run = run_report(config, _cli.output_dir(args), platform, token)
    report = run.report
    set_outputs(platform, run)
    if platform.name in ("github", "jenkins"):
        print(f"shipml report: {report.verdict.upper()}: {one_line(report.headline)}")
        if run.comment_url:
            print(f"comment: {one_line(run.comment_url)}")
    log.info("report: %s written", ", ".join(str(path) for path in run.files.values()))
    section = config.section("report")
    if section["fail_on"] == "fail" and report.verdict in ("fail", "error"):
        return EXIT_GATE_FAILED
    return EXIT_OK
