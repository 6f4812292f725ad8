"""Fixtures of the report tests: a local fake of GitHub's API and a token to keep secret."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.report.fake_github import FakeGitHub, serve

TOKEN = "ghs_S3cretTokenValue0123456789abcdefXYZ"


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    """A fake GitHub API on 127.0.0.1 that accepts :data:`TOKEN`."""
    yield from serve(TOKEN)
