"""shipml: take a machine-learning model from pull request to production, inside CI."""

from __future__ import annotations

__version__ = "0.1.0"
