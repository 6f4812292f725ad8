"""shipml: take a machine-learning model from pull request to production, inside CI."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def _installed_version() -> str:
    # The version is the git tag the package was built from (setuptools-scm writes it into the
    # metadata); a source tree on sys.path without an install has none.
    try:
        return version("shipml")
    except PackageNotFoundError:
        return "0.0.0"


__version__ = _installed_version()
