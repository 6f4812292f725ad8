"""Where a rendered report goes, decided by the CI platform.

GitHub pull request: one sticky comment per report key (found by a hidden marker and its author,
the token's own account; edited in place) and the job summary. Push: job summary, and a commit
comment when configured. Jenkins: the same PR comment through the same client. act: printed and
written, never posted, with one line saying where it would have gone. Local: files and the
terminal. Publishing problems become a warning annotation unless the caller asks them to fail the
job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from shipml.ci import Platform, PullRequest
from shipml.errors import ConfigError, ShipmlError
from shipml.github import GitHubClient, authored_by
from shipml.report.model import marker

log = logging.getLogger("shipml.report")

CommentMode = Literal["update", "hide-superseded"]

NO_TOKEN = (
    "no GitHub token, so the report was not posted to pull request #{number}. Pass one to the "
    "action (`github-token: ${{{{ github.token }}}}`, the default) with\n"
    "    permissions:\n"
    "      pull-requests: write\n"
    "or set GITHUB_TOKEN / SHIPML_GITHUB_TOKEN (Jenkins: a credential bound to GITHUB_TOKEN)."
)
DRY_RUN = "shipml report: dry run (act): would post to {target}"
NO_REPOSITORY = (
    "pull request #{number} found but not its repository; set SHIPML_GITHUB_REPOSITORY=owner/name"
)


@dataclass(frozen=True)
class CommentOutcome:
    """What publishing a sticky comment did."""

    comment: dict[str, Any]
    action: Literal["created", "updated"]
    deleted: tuple[int, ...] = ()
    hidden: tuple[int, ...] = ()

    @property
    def url(self) -> str:
        """Return the comment's ``html_url`` (empty when GitHub sent none)."""
        return str(self.comment.get("html_url") or "")


def upsert_comment(client: GitHubClient, pull: PullRequest, key: str, body: str,
                   mode: CommentMode = "update") -> CommentOutcome:
    """Create or update the one comment of report ``key`` on ``pull``; return what happened.

    ``body`` must already carry :func:`marker`. The report's comments are those that start with the
    marker *and* were written by the token's own account (:meth:`GitHubClient.login`): a look-alike
    by anyone else is left alone. In ``update`` mode the oldest one is edited in place; since
    creation is not idempotent (two jobs may both create one), the marked comments are listed again
    after writing and every copy but the oldest is deleted. In ``hide-superseded`` mode a new
    comment is created and the earlier ones are minimized as outdated.
    Raises the client's errors.
    """
    tag = marker(key)
    if not is_marked(body, tag):
        raise ValueError("the comment body does not start with its marker")
    repository, number = pull.repository, pull.number
    author = client.login()
    existing = _marked(client.list_issue_comments(repository, number), tag, author)
    if mode == "hide-superseded":
        created = client.create_issue_comment(repository, number, body)
        hidden = []
        for comment in existing:
            if comment.get("node_id"):
                client.minimize_comment(str(comment["node_id"]))
                hidden.append(int(comment["id"]))
        return CommentOutcome(created, "created", hidden=tuple(hidden))

    action: Literal["created", "updated"]
    if existing:
        written = client.update_issue_comment(repository, int(existing[0]["id"]), body)
        action = "updated"
    else:
        written = client.create_issue_comment(repository, number, body)
        action = "created"
    # Another job may have created its own copy meanwhile: the oldest one wins, the rest go.
    copies = _marked(client.list_issue_comments(repository, number), tag, author)
    deleted = []
    for comment in copies[1:]:
        if client.delete_issue_comment(repository, int(comment["id"])):
            deleted.append(int(comment["id"]))
    if copies and int(copies[0]["id"]) != int(written["id"]):
        # Ours was a duplicate (deleted above or by the other job): carry our body to the survivor.
        written = client.update_issue_comment(repository, int(copies[0]["id"]), body)
        action = "updated"
    return CommentOutcome(written, action, deleted=tuple(deleted))


def is_marked(body: str, tag: str) -> bool:
    """Return True when a comment ``body`` is the report of marker ``tag``: its first line is
    exactly the marker. A marker quoted anywhere else (a stage name, a check, another report's
    text, a human's reply) does not make a comment ours."""
    first = body.split("\n", 1)[0]
    return first.rstrip("\r") == tag


def _marked(comments: list[dict[str, Any]], tag: str, author: str) -> list[dict[str, Any]]:
    found = [c for c in comments
             if is_marked(str(c.get("body") or ""), tag) and authored_by(c, author)]
    return sorted(found, key=lambda c: (str(c.get("created_at") or ""), int(c["id"])))


@dataclass
class PublishPlan:
    """Everything the publisher needs, resolved from configuration and the environment."""

    key: str
    comment: bool = True
    mode: CommentMode = "update"
    summary: bool = True
    commit_comment: bool = False
    fail_on_publish_error: bool = False
    token: str = ""
    #: the pull request to comment on when the event names none (a ``workflow_run`` job)
    pull_request: int | None = None
    client_factory: Callable[[str, str], GitHubClient] = field(
        default=lambda token, api_url: GitHubClient(token, api_url))


@dataclass
class PublishOutcome:
    """Where the report went."""

    comment_url: str = ""
    summary_written: bool = False
    printed: bool = False
    problems: list[str] = field(default_factory=list)


def publish(platform: Platform, plan: PublishPlan, comment_body: str, summary_body: str,
            print_body: Callable[[], None]) -> PublishOutcome:
    """Publish the report where ``platform`` runs; return where it went.

    A publishing problem is a warning annotation; with ``fail_on_publish_error`` it is raised
    instead (ConfigError for what the user must fix, InfrastructureError for GitHub down).
    """
    outcome = PublishOutcome()
    if platform.name in ("github", "act") and plan.summary:
        outcome.summary_written = platform.add_summary(summary_body)
    if platform.name in ("act", "local"):
        # act is a dry run: show what would be posted; a laptop gets the terminal rendering.
        print_body()
        outcome.printed = True
        target = _target(platform, plan) if platform.name == "act" else ""
        if target:
            print(DRY_RUN.format(target=target))
        return outcome
    if not plan.comment and not plan.commit_comment:
        return outcome
    pull = _pull(platform, plan)
    try:
        if pull is not None and plan.comment:
            _post_to_pull(platform, plan, pull, comment_body, outcome)
        elif pull is None and plan.commit_comment:
            _post_to_commit(platform, plan, comment_body, outcome)
    except ShipmlError as exc:
        if plan.fail_on_publish_error:
            raise
        outcome.problems.append(exc.message)
        platform.annotate("warning", f"shipml report not published: {exc.message}",
                          title="shipml report")
    return outcome


def _pull(platform: Platform, plan: PublishPlan) -> PullRequest | None:
    pull = platform.pull_request()
    if plan.pull_request is not None:
        pull = PullRequest(repository=pull.repository if pull else (platform.repository() or ""),
                           number=plan.pull_request)
    return pull


def _target(platform: Platform, plan: PublishPlan) -> str:
    # Where a real run would post: OWNER/REPO#N, or OWNER/REPO@SHA for a commit comment.
    pull = _pull(platform, plan)
    if pull is not None and plan.comment:
        where = f"{pull.repository or '?'}#{pull.number}"
    elif pull is None and plan.commit_comment and platform.commit_sha():
        where = f"{platform.repository() or '?'}@{(platform.commit_sha() or '')[:12]}"
    else:
        return ""
    return "".join(char if char.isprintable() else "?" for char in where)


def _client(platform: Platform, plan: PublishPlan, number: int | None) -> GitHubClient:
    if not plan.token:
        raise ConfigError(NO_TOKEN.format(number=number if number is not None else "?"))
    return plan.client_factory(plan.token, platform.api_url())


def _post_to_pull(platform: Platform, plan: PublishPlan, pull: PullRequest, body: str,
                  outcome: PublishOutcome) -> None:
    if not pull.repository:
        raise ConfigError(NO_REPOSITORY.format(number=pull.number))
    client = _client(platform, plan, pull.number)
    result = upsert_comment(client, pull, plan.key, body, plan.mode)
    outcome.comment_url = result.url
    log.info("report: %s comment %s on %s#%d%s", result.action, result.comment.get("id"),
             pull.repository, pull.number,
             f" (deleted duplicates {list(result.deleted)})" if result.deleted else "")


def _post_to_commit(platform: Platform, plan: PublishPlan, body: str,
                    outcome: PublishOutcome) -> None:
    repository, sha = platform.repository(), platform.commit_sha()
    if not (repository and sha):
        raise ConfigError("commit_comment is on but the repository or commit is unknown "
                          "(GITHUB_REPOSITORY, GITHUB_SHA)")
    client = _client(platform, plan, None)
    comment = client.create_commit_comment(repository, sha, body)
    outcome.comment_url = str(comment.get("html_url") or "")
    log.info("report: commented on commit %s of %s", sha[:12], repository)
