"""The options of ``shipml report``: the keys it takes from flags and ``SHIPML_*`` variables, and
the variables it reads the GitHub token from. Below both :mod:`shipml.report.cli` (which registers
them) and :mod:`shipml.report.core` (which reads the token and loads the config of an error
report), so that neither imports the other for them."""

from __future__ import annotations

from shipml._stage import Option

#: the keys ``shipml report`` takes from flags and ``SHIPML_*`` variables (action inputs)
OPTIONS = (
    Option("--key", ("report", "key"), "SHIPML_REPORT_KEY", "report key: one comment per key",
           "KEY", pipeline_input="report-key"),
    Option("--title", ("report", "title"), "SHIPML_REPORT_TITLE", "report heading", "TEXT"),
    Option("--comment", ("report", "comment"), "SHIPML_COMMENT",
           "post the pull-request comment"),
    Option("--comment-mode", ("report", "comment_mode"), "SHIPML_COMMENT_MODE",
           "update or hide-superseded", "MODE"),
    Option("--pull-request", ("report", "pull_request"), "SHIPML_PR_NUMBER",
           "pull request to comment on when the event does not say, e.g. in a workflow_run job",
           "NUMBER"),
    Option("--summary", ("report", "summary"), "SHIPML_SUMMARY", "write the job summary"),
    Option("--commit-comment", ("report", "commit_comment"), "SHIPML_COMMIT_COMMENT",
           "comment on the commit of a push"),
    Option("--fail-on-publish-error", ("report", "fail_on_publish_error"),
           "SHIPML_FAIL_ON_PUBLISH_ERROR", "fail when publishing fails"),
    Option("--fail-on", ("report", "fail_on"), "SHIPML_REPORT_FAIL_ON",
           "never or fail: exit 1 on a failed pipeline", "LEVEL"),
    Option("--template-dir", ("report", "template_dir"), "SHIPML_TEMPLATE_DIR",
           "templates searched before the built-in ones", "DIR"),
    Option("--artifacts-url", ("report", "artifacts_url"), "SHIPML_ARTIFACTS_URL",
           "link to the stored artifacts", "URL"),
)
TOKEN_VARIABLES = ("SHIPML_GITHUB_TOKEN", "GITHUB_TOKEN")
