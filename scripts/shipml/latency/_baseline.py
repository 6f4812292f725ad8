"""The regression gate's baseline must take the candidate's inputs (the file itself comes from
:func:`shipml.baseline.resolve_baseline`)."""

from __future__ import annotations

from shipml.errors import ConfigError
from shipml.onnx_model import TensorSpec


def compare_inputs(baseline: tuple[TensorSpec, ...], candidate: tuple[TensorSpec, ...],
                   baseline_name: str, candidate_name: str, where: str) -> None:
    """Raise ConfigError showing both input lists when the two models take different inputs."""
    def shown(specs: tuple[TensorSpec, ...]) -> str:
        return ", ".join(f"{s.name} {s.type} [{', '.join(_axis(a) for a in s.shape)}]"
                         for s in specs)

    def key(specs: tuple[TensorSpec, ...]) -> list[tuple[str, str, int]]:
        return [(s.name, s.type, len(s.shape)) for s in specs]

    if key(baseline) != key(candidate):
        raise ConfigError(
            f"{where}: the baseline takes different inputs than the candidate, so one cannot "
            f"stand in for the other:\n  baseline  {baseline_name}: {shown(baseline)}\n"
            f"  candidate {candidate_name}: {shown(candidate)}"
        )


def _axis(size: object) -> str:
    return "?" if size is None or size == "" else str(size)
