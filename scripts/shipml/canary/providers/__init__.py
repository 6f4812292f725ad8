"""Metric providers: where the analysis gets its numbers, behind one small protocol and chosen by
the ``provider`` key of each metric (``prometheus`` or ``probe``).

``query`` returns one value of a revision over the last ``window_s`` seconds (None: no data);
``samples`` returns per-interval values for the statistical judge (None: no data);
``is_online`` says whether the source answers at all. No value is never a pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from shipml.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from shipml.canary.judges import PairedOutcomes

PROVIDER_TYPES = ("prometheus", "probe")


class MetricProvider(Protocol):
    """A source of canary and stable figures."""

    #: the ``type`` key that chooses this provider
    type: str

    def is_online(self) -> bool:
        """Return whether the source answers now."""
        ...

    def describe(self) -> str:
        """Return how messages name this source (its address)."""
        ...

    def query(self, query: str, revision: str, window_s: float) -> float | None:
        """Return the value of ``query`` for ``revision`` over the last ``window_s`` seconds, or
        None when there is no data."""
        ...

    def samples(self, query: str, revision: str, window_s: float) -> list[float] | None:
        """Return per-interval values of ``query`` for ``revision`` over the last ``window_s``
        seconds, or None when there is no data."""
        ...


@runtime_checkable
class Explains(Protocol):
    """A source that can say why a revision gave no value (the probe: the server's own 4xx)."""

    def why_none(self, revision: str) -> str:
        """Return why ``revision`` gave nothing to measure; empty when it did."""
        ...


@runtime_checkable
class PairedSource(Protocol):
    """A source of the paired record against the labels (the probe), for the quality judge."""

    def outcomes(self, canary: str, stable: str, requested_task: str = "auto",
                 where: str = "model.task") -> PairedOutcomes | None:
        """Return the canary's and stable's outcomes on the same labelled rows; None without
        any. Raises ConfigError when ``model.task`` contradicts the model's answers."""
        ...


def check_type(name: str, where: str) -> str:
    """Return ``name`` when it is a provider type; raise ConfigError listing the valid ones."""
    if name not in PROVIDER_TYPES:
        raise ConfigError(f"{where}: unknown metric provider {name!r}; valid: "
                          f"{', '.join(PROVIDER_TYPES)}{did_you_mean(name, PROVIDER_TYPES)}")
    return name


def build_provider(kind: str, settings: Mapping[str, Any], **context: Any) -> MetricProvider:
    """Return the provider of type ``kind`` from its settings section (and, for the probe, the
    endpoints and rows in ``context``)."""
    if kind == "prometheus":
        from shipml.canary.providers.prometheus import PrometheusProvider

        return PrometheusProvider.from_settings(settings)
    from shipml.canary.providers.probe import ProbeProvider

    return ProbeProvider.from_settings(settings, **context)
