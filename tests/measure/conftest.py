"""Fixtures of the measuring-kit tests: the shared tiny transformer."""

from __future__ import annotations

from tests._models import encoder as encoder  # the shared session fixture
