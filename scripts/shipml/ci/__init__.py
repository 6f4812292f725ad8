"""Where shipml runs: GitHub Actions, act, Jenkins or a laptop.

Every stage talks to its CI platform through :func:`detect` and the :class:`Platform` it returns;
no other module writes workflow commands, step outputs or summaries itself. The CLI runs inside
:func:`guard_output`, so that nothing else it prints can be taken for a workflow command.
"""

from __future__ import annotations

from shipml.ci._guard import neutralize
from shipml.ci._links import remote_url, repository_name, repository_url
from shipml.ci._platform import (
    ActPlatform,
    GitHubPlatform,
    JenkinsPlatform,
    LocalPlatform,
    Platform,
    PullRequest,
    detect,
    event_field,
    guard_output,
    read_event,
)

__all__ = [
    "ActPlatform",
    "GitHubPlatform",
    "JenkinsPlatform",
    "LocalPlatform",
    "Platform",
    "PullRequest",
    "detect",
    "event_field",
    "guard_output",
    "neutralize",
    "read_event",
    "remote_url",
    "repository_name",
    "repository_url",
]
