"""Telling the team: one GitHub issue per model key, and a ``repository_dispatch`` event.

The issue is found again by the hidden marker on its body's first line (the second line keeps the
state it last reported), through the report's GitHub client (pagination, retries, the token only
to the API host, never printed). What to do is decided by :func:`decide`, a pure function of the
issue found and the verdict; :func:`apply` carries it out. Under act and locally nothing is
posted: :func:`dry_run` writes what would have been.

The ``repository_dispatch`` request (``POST /repos/OWNER/REPO/dispatches``)::

    {"event_type": "<monitor.alert.dispatch.event_type>",
     "client_payload": {"model": KEY, "version": "<model versions seen, comma-separated>",
                        "drifted_features": [...], "failed_checks": [...],
                        "issue": "<issue URL>", "run": "<run URL>", "records": N,
                        "window": {"since": "...", "until": "..."}, ...monitor.alert.dispatch.payload}}
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from shipml.errors import ConfigError
from shipml.github import GitHubClient, authored_by

log = logging.getLogger("shipml.monitor")

State = Literal["drift", "clear"]
Action = Literal["create", "update", "reopen", "comment", "close"]

#: top-level keys shipml puts in client_payload (GitHub allows 10 in all)
PAYLOAD_KEYS = ("model", "version", "drifted_features", "failed_checks", "issue", "run",
                "records", "window")
MAX_PAYLOAD_KEYS = 10
#: GitHub's limit for an issue or comment body (characters)
MAX_BODY_CHARS = 65536
#: failed check names the dispatch payload carries at most
MAX_PAYLOAD_CHECKS = 20
NO_TOKEN = (
    "no GitHub token, so the drift issue could not be opened, updated or closed. Pass one to the "
    "action (`github-token: ${{{{ github.token }}}}`, the default) with\n"
    "    permissions:\n"
    "      issues: write\n"
    "      contents: read\n"
    "or set GITHUB_TOKEN / SHIPML_GITHUB_TOKEN (Jenkins: a credential bound to GITHUB_TOKEN); or "
    "turn alerting off with monitor.alert.issue: false"
)
NO_REPOSITORY = (
    "monitor.alert.repository: the repository for the drift issue is unknown; set it, e.g.\n"
    "  monitor:\n    alert:\n      repository: owner/name\n"
    "(GitHub Actions sets GITHUB_REPOSITORY; on Jenkins set SHIPML_GITHUB_REPOSITORY)"
)
PAYLOAD_CLASH = ("monitor.alert.dispatch.payload: {keys} are fields shipml sets in client_payload "
                 "({fields}); choose other names")


def issue_marker(key: str) -> str:
    """Return the hidden marker on the first line of the issue of model ``key``."""
    return f"<!-- shipml-monitor:{key} -->"


def state_line(state: State) -> str:
    """Return the hidden second line that records the state the issue last reported."""
    return f"<!-- shipml-monitor-state:{state} -->"


_STATE = re.compile(r"^<!-- shipml-monitor-state:(drift|clear) -->\s*$")


def reported_state(body: str) -> State | None:
    """Return the state an issue body last reported (its second line), None when it has none."""
    lines = body.split("\n", 2)
    match = _STATE.match(lines[1].rstrip("\r")) if len(lines) > 1 else None
    return match[1] if match else None  # type: ignore[return-value]


@dataclass(frozen=True)
class Decision:
    """What to do with the issue, and whether to send the dispatch event."""

    actions: tuple[Action, ...]
    #: which comment to post with ``comment``: ``back`` (drift again) or ``cleared``
    comment: Literal["", "back", "cleared"] = ""
    dispatch: bool = False

    @property
    def changed(self) -> bool:
        """Return True when the state the issue shows changes."""
        return bool(self.comment) or "create" in self.actions


def decide(issue: Mapping[str, Any] | None, drifted: bool, *, on_clear: Literal["close", "leave"],
           dispatch_on: Literal["change", "every"] | None) -> Decision:
    """Return what to do given the issue found (None: none yet) and this run's verdict.

    Drift: open the issue, or update it in place; a closed one is reopened and a clear one gets
    a "back" comment. Clear: an issue showing drift gets a "cleared" comment and is closed (or
    left open, ``on_clear``); nothing else is touched. The dispatch goes with drift that starts
    (``change``) or with every drifted run (``every``).
    """
    if drifted:
        if issue is None:
            return Decision(("create",), dispatch=dispatch_on is not None)
        closed = issue.get("state") == "closed"
        shown = reported_state(str(issue.get("body") or ""))
        if closed:
            return Decision(("update", "reopen", "comment"), comment="back",
                            dispatch=dispatch_on is not None)
        if shown == "clear":
            return Decision(("update", "comment"), comment="back",
                            dispatch=dispatch_on is not None)
        return Decision(("update",), dispatch=dispatch_on == "every")
    if issue is None or issue.get("state") == "closed":
        return Decision(())
    if reported_state(str(issue.get("body") or "")) == "clear":
        return Decision(())
    actions: tuple[Action, ...] = ("update", "comment", "close") if on_clear == "close" else (
        "update", "comment")
    return Decision(actions, comment="cleared")


@dataclass(frozen=True)
class Message:
    """What the run tells: the issue's title, body (marker first) and comments."""

    key: str
    title: str
    body: str
    back_comment: str
    cleared_comment: str
    labels: tuple[str, ...]
    payload: Mapping[str, Any] = field(default_factory=dict)


def build_payload(fields: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Return client_payload: shipml's fields, then the user's. Raises ConfigError when the
    user's reuse a field name."""
    clash = sorted(set(extra) & set(PAYLOAD_KEYS))
    if clash:
        raise ConfigError(PAYLOAD_CLASH.format(keys=", ".join(clash), fields=", ".join(PAYLOAD_KEYS)))
    payload = {key: fields[key] for key in PAYLOAD_KEYS}
    payload.update(extra)
    return payload


@dataclass
class AlertOutcome:
    """What alerting did (or, in a dry run, would do)."""

    issue_number: int | None = None
    issue_url: str = ""
    actions: list[str] = field(default_factory=list)
    dispatched: bool = False
    dry_run_path: str = ""


def find_issue(client: GitHubClient, repository: str, key: str,
               labels: Sequence[str]) -> dict[str, Any] | None:
    """Return the oldest issue (open or closed, not a pull request) whose body starts with the
    marker of ``key`` and that the token's own account opened (an issue by anyone else that
    copies the marker is never edited or closed), or None. Raises the client's errors."""
    tag = issue_marker(key)
    author = client.login()
    query = "state=all&sort=created&direction=asc"
    if labels:
        # labels narrow the listing; the marker decides
        query += "&labels=" + _quote(labels[0])
    for issue in client.paginate(f"/repos/{repository}/issues?{query}", repository=repository):
        if "pull_request" in issue:
            continue
        first = str(issue.get("body") or "").split("\n", 1)[0].rstrip("\r")
        if first == tag and authored_by(issue, author):
            return issue
    return None


def _quote(text: str) -> str:
    import urllib.parse

    return urllib.parse.quote(text, safe="")


def apply(client: GitHubClient, repository: str, message: Message, decision: Decision,
          issue: Mapping[str, Any] | None, dispatch: tuple[str, str] | None,
          outcome: AlertOutcome) -> None:
    """Carry out ``decision`` on ``repository``; ``dispatch`` is (repository, event type) when a
    dispatch is configured. Raises the client's errors."""
    number = int(issue["number"]) if issue is not None else None
    outcome.issue_url = str(issue.get("html_url") or "") if issue is not None else ""
    outcome.issue_number = number
    for action in decision.actions:
        if action == "create":
            created = client.request_json(
                "POST", f"/repos/{repository}/issues", repository=repository,
                json_body={"title": message.title, "body": message.body,
                           "labels": list(message.labels)})
            number = int(created["number"])
            outcome.issue_number = number
            outcome.issue_url = str(created.get("html_url") or "")
        elif action == "update":
            client.request("PATCH", f"/repos/{repository}/issues/{number}", repository=repository,
                           json_body={"title": message.title, "body": message.body,
                                      "labels": _merged_labels(issue, message.labels)})
        elif action == "reopen":
            client.request("PATCH", f"/repos/{repository}/issues/{number}", repository=repository,
                           json_body={"state": "open"})
        elif action == "comment":
            text = message.back_comment if decision.comment == "back" else message.cleared_comment
            client.request("POST", f"/repos/{repository}/issues/{number}/comments",
                           repository=repository, json_body={"body": text})
        elif action == "close":
            client.request("PATCH", f"/repos/{repository}/issues/{number}", repository=repository,
                           json_body={"state": "closed", "state_reason": "completed"})
        outcome.actions.append(action)
        log.info("monitor: issue %s#%s: %s", repository, number, action)
    if decision.dispatch and dispatch is not None:
        target, event_type = dispatch
        payload = dict(message.payload)
        payload["issue"] = outcome.issue_url
        # repository_dispatch needs write access to the target's contents, not to its issues
        client.request("POST", f"/repos/{target}/dispatches", repository=target,
                       json_body={"event_type": event_type, "client_payload": payload},
                       permission="contents: write")
        outcome.dispatched = True
        log.info("monitor: repository_dispatch %s sent to %s", event_type, target)


def _merged_labels(issue: Mapping[str, Any] | None, labels: Sequence[str]) -> list[str]:
    # Labels a person added stay; ours are put back if someone removed them.
    current = [str(item.get("name")) if isinstance(item, Mapping) else str(item)
               for item in (issue or {}).get("labels") or []]
    return list(dict.fromkeys([*current, *labels]))


def dry_run(path: Path, platform_name: str, repository: str, message: Message, drifted: bool,
            dispatch: tuple[str, str] | None, on_clear: str) -> AlertOutcome:
    """Write what a real run would post (JSON) to ``path`` and say so in one line; return it."""
    plan: dict[str, Any] = {
        "platform": platform_name,
        "repository": repository or None,
        "marker": issue_marker(message.key),
        "state": "drift" if drifted else "clear",
        "issue": {
            "when": ("open the issue with this marker, or update it in place (reopen it with a "
                     "comment when it was closed)") if drifted else
                    (f"comment on an open issue with this marker that shows drift, then "
                     f"{'close it' if on_clear == 'close' else 'leave it open'}; nothing when "
                     f"there is none"),
            "title": message.title, "labels": list(message.labels), "body": message.body,
            "comment": message.back_comment if drifted else message.cleared_comment,
        },
        "repository_dispatch": None,
    }
    if dispatch is not None and drifted:
        plan["repository_dispatch"] = {
            "request": f"POST /repos/{dispatch[0]}/dispatches",
            "body": {"event_type": dispatch[1], "client_payload": dict(message.payload)}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plan, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"shipml monitor: dry run ({platform_name}): would "
          f"{'open or update' if drifted else 'clear'} the issue of {message.key}"
          f"{' in ' + repository if repository else ''}"
          f"{' and send repository_dispatch ' + dispatch[1] if dispatch and drifted else ''}; "
          f"written to {path}")
    return AlertOutcome(actions=["dry-run"], dry_run_path=str(path))


def fit_body(body: str) -> str:
    """Return ``body`` cut to GitHub's limit, keeping its head (marker, state, failures)."""
    if len(body) <= MAX_BODY_CHARS:
        return body
    note = "\n\n… (cut to GitHub's size limit: the full report is in the run's artifacts)\n"
    return body[: MAX_BODY_CHARS - len(note)] + note
