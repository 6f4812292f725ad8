"""Markers of the action tests (also listed for the lead to add to pyproject's pytest markers)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "act: runs workflows through real act (offline, host mode)")
