"""The report stage: read the stage results, render them and publish where the run happens."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from shipml import stages
from shipml.ci import Platform
from shipml.config import Config
from shipml.errors import ConfigError, ShipmlError
from shipml.github import check_token
from shipml.report._options import OPTIONS, TOKEN_VARIABLES
from shipml.report.model import KEY_PATTERN, Links, Report, build_report, marker
from shipml.report.publish import CommentMode, PublishPlan, publish
from shipml.report.render import (
    MAX_SUMMARY_BYTES,
    fit,
    fit_summary,
    render_html,
    render_markdown,
    render_text,
)
from shipml.results import StageClock, StageError, StageResult, read_all, results_path

log = logging.getLogger("shipml.report")

NO_RESULTS = (
    "no stage results under {folder}: run a stage first (shipml validate, optimize, latency, ...), "
    "or download the .shipml artifact of the jobs that did into --output-dir"
)



@dataclass(frozen=True)
class ReportRun:
    """What one ``shipml report`` produced."""

    report: Report
    comment: str
    files: dict[str, Path]
    comment_url: str


def run_report(config: Config, output_dir: Path, platform: Platform, token: str, *,
               results: Sequence[StageResult] | None = None) -> ReportRun:
    """Render the results under ``output_dir`` (or ``results``, when given) and publish them
    where ``platform`` runs.

    The comment is cut to ``report.max_comment_chars`` and the job summary to GitHub's 1 MiB
    per step, each keeping as many failure names as fit. Raises ConfigError when there are no
    results or a template is broken; publishing errors are raised only with
    ``fail_on_publish_error`` (else they are a warning annotation).
    """
    section = config.section("report")
    results = list(read_all(output_dir) if results is None else results)
    if not results:
        raise ConfigError(NO_RESULTS.format(folder=output_dir / "results"))
    template_dir = (config.resolve_path(section["template_dir"], "report", "template_dir")
                    if section["template_dir"] else None)
    run_url = platform.run_url() or ""
    artifacts = section["artifacts_url"] or (
        f"{run_url}#artifacts" if run_url and platform.name == "github" else "")
    links = Links(run=run_url, artifacts=artifacts,
                  full_report=section["full_report_url"] or artifacts)
    report = build_report(results, key=section["key"], title=section["title"], links=links,
                          commit=platform.commit_sha() or "",
                          expected=stages.configured_gates(config.written))
    full_markdown = render_markdown(report, template_dir)
    comment, _ = fit(report, int(section["max_comment_chars"]), template_dir=template_dir,
                     rendered=full_markdown)
    if not comment.startswith(marker(report.key)):
        raise ConfigError(
            f"{config.where('report', 'template_dir')}: report.md.j2 in {template_dir} must start "
            f"with {{{{ marker }}}}: the hidden marker is how the sticky comment is found again")
    text = render_text(report, template_dir)

    folder = output_dir / "report"
    folder.mkdir(parents=True, exist_ok=True)
    files = {"markdown": folder / "report.md", "comment": folder / "comment.md",
             "text": folder / "report.txt"}
    files["markdown"].write_text(full_markdown, encoding="utf-8")
    files["comment"].write_text(comment, encoding="utf-8")
    files["text"].write_text(text, encoding="utf-8")
    if section["html"]:
        files["html"] = folder / "report.html"
        files["html"].write_text(render_html(report, template_dir), encoding="utf-8")

    plan = PublishPlan(
        key=section["key"], comment=bool(section["comment"]),
        mode=cast(CommentMode, section["comment_mode"]), summary=bool(section["summary"]),
        commit_comment=bool(section["commit_comment"]),
        fail_on_publish_error=bool(section["fail_on_publish_error"]), token=token,
        pull_request=section["pull_request"],
    )
    summary = full_markdown
    if platform.name in ("github", "act") and plan.summary:
        summary, _ = fit_summary(report, _summary_room(platform), template_dir,
                                 rendered=full_markdown)
    shown = comment if platform.name == "act" else text
    outcome = publish(platform, plan, comment, summary,
                      lambda: print(shown, end="" if shown.endswith("\n") else "\n"))
    return ReportRun(report=report, comment=comment, files=files,
                     comment_url=outcome.comment_url)


def set_outputs(platform: Platform, run: ReportRun) -> None:
    """Set the step outputs of a finished report: verdict, markdown, comment-url, html."""
    platform.set_output("verdict", run.report.verdict)
    platform.set_output("markdown", str(run.files["markdown"]))
    platform.set_output("comment-url", run.comment_url)
    if "html" in run.files:
        platform.set_output("html", str(run.files["html"]))


def _summary_room(platform: Platform) -> int:
    # The 1 MiB is per step: what this step wrote before (another stage under `shipml run`)
    # counts, and add_summary may append a newline.
    path = platform.environ.get("GITHUB_STEP_SUMMARY") or ""
    try:
        used = os.path.getsize(path) if path else 0
    except OSError:
        used = 0
    return max(MAX_SUMMARY_BYTES - used - 1, 0)


def read_token(flag_value: str | None = None) -> str:
    """Return the token from ``--github-token`` (``flag_value``), else the first set of
    TOKEN_VARIABLES, else ''; raise ConfigError (exit 2, without the token) when it is not one
    line of printable ASCII."""
    if flag_value:
        return check_token(str(flag_value), "--github-token")
    for variable in TOKEN_VARIABLES:
        value = os.environ.get(variable, "")
        if value.strip():
            return check_token(value, f"environment {variable}")
    return ""


def publish_error_report(output_dir: Path, platform: Platform, token: str | None = None,
                         message: str = "", *, stage: str = "report") -> ReportRun | None:
    """Render and publish a report when configuration did not load, with the report's defaults
    (overridden by the ``SHIPML_*`` variables when those are valid), and return what it
    produced, or None when even that failed (logged as a warning).

    It reports the results under ``output_dir`` that can be read, plus, when ``message`` is
    given and no result carries that error yet, an ``error`` result of ``stage`` (kind
    ``config``, exit 2) kept in memory only, so that a later good run is not haunted by it. The
    verdict is then "not ready to ship" with the message, which replaces a standing "ready to
    ship" comment. ``token`` None reads it as ``shipml report`` does (an unusable one posts
    nothing). Never raises a ShipmlError: the config error that led here is what the user must
    fix, and the caller still exits with it.
    """
    from shipml._stage import overrides
    from shipml.config import load_config

    try:
        if token is None:
            token = read_token()
            if token:
                platform.mask(token)
    except ShipmlError as exc:
        log.warning("report: the error report is not posted: %s", exc.message)
        token = ""
    try:
        try:
            config = load_config(None, overrides(argparse.Namespace(), OPTIONS))
        except ShipmlError:
            config = load_config(None, ())  # the variables are what failed: defaults alone
        results = _readable_results(output_dir)
        if message and not any(r.error is not None and r.error.message == message
                               for r in results):
            clock = StageClock()
            first = next((line.strip() for line in message.splitlines() if line.strip()), "")
            results.append(StageResult(
                stage=stage if KEY_PATTERN.fullmatch(stage) else "report", status="error",
                summary=f"configuration error: {first}", started_at=clock.started_at,
                duration_s=0.0, error=StageError(kind="config", exit_code=2, message=message)))
        run = run_report(config, output_dir, platform, token, results=results)
        set_outputs(platform, run)
        return run
    except ShipmlError as exc:
        log.warning("report: the error report was not published: %s", exc.message)
        return None


def _readable_results(output_dir: Path) -> list[StageResult]:
    # A result that cannot be read must not keep the others from the pull request.
    folder = results_path(output_dir, "x").parent
    readable = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            readable.append(StageResult.read(path))
        except ShipmlError as exc:
            log.warning("report: %s", exc.message)
    return readable
