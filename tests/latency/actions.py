"""Moved to :mod:`tests._action_step`; this name stays while other test packages still import it."""

from __future__ import annotations

from tests._action_step import ROOT, load_action, run_step  # noqa: F401
