"""Commands that are not pipeline stages: ``init``, ``demo``, ``schema``."""

from __future__ import annotations
