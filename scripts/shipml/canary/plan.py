"""The rollout plan: the ``canary:`` section turned into steps of traffic weight and pause, the
analysis cadence and the limits that end a rollout. Pure data; every bad value is a ConfigError
that names the key and says what is valid.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from shipml.errors import ConfigError

Inconclusive = Literal["hold", "fail", "pass"]
INCONCLUSIVE_POLICIES: tuple[Inconclusive, ...] = ("hold", "fail", "pass")

#: the longest duration any key takes (a week): a typo such as 30h instead of 30s is caught
MAX_DURATION_S = 7 * 24 * 3600.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_STEP_TEXT = re.compile(r"^\s*(\d+)\s*(?::\s*(\S+))?\s*$")

NO_STEPS = ("{where}: the plan has no steps; give at least one, e.g.\n"
            "  canary:\n    steps:\n      - {{weight: 10, pause: 30s}}\n      - {{weight: 100}}")
NOT_INCREASING = ("{where}: step {number} has weight {weight}, not above the {previous} of step "
                  "{before}; weights must increase step by step (e.g. 10, 50, 100)")
OVER_100 = "{where}: step {number} has weight {weight}; a weight is a share of traffic, 1 to 100"
SHADOW_AFTER_WEIGHT = ("{where}[{index}]: a shadow step comes after the weight step {before}; "
                       "shadow steps go first, before any traffic moves, e.g.\n  canary:\n"
                       "    steps:\n      - {{shadow: 2m, sample: 0.2}}\n"
                       "      - {{weight: 10, pause: 1m}}\n      - {{weight: 100}}")
SHADOW_ONLY = ("{where}: the plan has only shadow steps; a shadow step sends the canary no user "
               "traffic, so weight steps must follow it, e.g. - {{weight: 10, pause: 1m}}")
BAD_SAMPLE = ("{where}.sample: {value!r} is not a share of requests; give a number above 0 and at "
              "most 1 (0.2: one request in five is mirrored)")
BAD_SHADOW_KEY = ("{where}: {key!r} is not a key of a shadow step; valid: shadow, sample, "
                  "min_agreement, shadow_by")
#: who mirrors at a shadow step: the stable's own server, or the mesh (istio, gateway-api)
SHADOW_BY = ("server", "mesh")
BAD_SHADOW_BY = ("{where}.shadow_by: {value!r}; valid: server (the stable's server mirrors and "
                 "compares) or mesh (the istio or gateway-api mirror of the kubernetes target)")
BAD_MIN_AGREEMENT = ("{where}.min_agreement: {value!r}; give the share of mirrored requests the "
                     "canary must answer like the stable, 0 to 1 (unset: agreement is a figure)")
#: the share of live requests a shadow step mirrors when its ``sample`` is not given
DEFAULT_SHADOW_SAMPLE = 0.1
BAD_DURATION = ("{where}: {value!r} is not a duration; use seconds (30) or a number with a unit: "
                "500ms, 30s, 2m, 1h")


@dataclass(frozen=True)
class Step:
    """One step: the canary's share of traffic (1-100) and how long it holds there before the
    next (seconds; None: until ``shipml canary resume`` or ``promote``).

    A shadow step (``shadow``) gives the canary no user traffic (weight 0): the stable mirrors
    ``sample`` of its live ``/predict`` requests to it off the request path, for ``pause_s``;
    ``min_agreement`` (None: a figure only) is the share of answers that must match the stable's;
    ``shadow_by`` says who mirrors: the stable's ``server``, or the ``mesh``.
    """

    weight: int
    pause_s: float | None = 0.0
    shadow: bool = False
    sample: float = 0.0
    min_agreement: float | None = None
    shadow_by: str = "server"

    @property
    def manual(self) -> bool:
        """Return whether this step waits for a person."""
        return self.pause_s is None


@dataclass(frozen=True)
class Plan:
    """How a rollout proceeds: steps, analysis every ``interval_s`` over the last ``window_s``,
    ``failure_limit`` failed analyses before rollback, ``min_requests`` per window, what an
    inconclusive analysis counts as, and how long one step may last."""

    steps: tuple[Step, ...]
    interval_s: float
    failure_limit: int
    min_requests: int
    inconclusive: Inconclusive
    step_timeout_s: float
    window_s: float

    def weight(self, step: int) -> int:
        """Return the canary weight of step ``step`` (0-based)."""
        return self.steps[step].weight

    @property
    def has_shadow(self) -> bool:
        """Return whether any step mirrors traffic to the canary (a shadow step)."""
        return any(step.shadow for step in self.steps)

    @property
    def last(self) -> int:
        """Return the index of the last step."""
        return len(self.steps) - 1


def parse_duration(value: Any, where: str, *, allow_zero: bool = True) -> float:
    """Return ``value`` (seconds as a number, or text such as ``30s``, ``2m``, ``500ms``) in
    seconds; raise ConfigError naming ``where`` when it is not a duration or out of bounds."""
    if isinstance(value, bool):
        raise ConfigError(BAD_DURATION.format(where=where, value=value))
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match[1]) * _UNITS[match[2]]
    else:
        raise ConfigError(BAD_DURATION.format(where=where, value=value))
    if seconds < 0 or (seconds == 0 and not allow_zero) or seconds > MAX_DURATION_S:
        low = "0" if allow_zero else "more than 0"
        raise ConfigError(f"{where}: {value!r} is out of range; a duration here is {low} to "
                          f"{MAX_DURATION_S / 3600:.0f} h")
    return seconds


def parse_steps(raw: Sequence[Any], where: str) -> tuple[Step, ...]:
    """Return the steps of ``raw``: objects ``{weight, pause}``, text ``WEIGHT[:PAUSE]``
    (``10:30s``, ``50:manual``, ``100``) or shadow steps ``{shadow: 2m, sample: 0.2}`` before the
    weight steps. Raise ConfigError for no steps, a weight out of 1-100 or not above the previous
    one, a bad pause, a shadow step after a weight step or a plan of shadow steps only."""
    if not raw:
        raise ConfigError(NO_STEPS.format(where=where))
    steps: list[Step] = []
    for number, item in enumerate(raw, 1):
        here = f"{where}[{number - 1}]"
        if isinstance(item, Mapping) and "shadow" in item:
            if steps and not steps[-1].shadow:
                raise ConfigError(SHADOW_AFTER_WEIGHT.format(where=where, index=number - 1,
                                                             before=number - 1))
            steps.append(_shadow_step(item, here))
            continue
        if isinstance(item, Mapping):
            weight, pause = item.get("weight"), item.get("pause", 0)
        elif isinstance(item, str) and (match := _STEP_TEXT.match(item)):
            weight, pause = int(match[1]), (match[2] if match[2] is not None else 0)
        else:
            raise ConfigError(f"{here}: {item!r} is not a step; write {{weight: 10, pause: 30s}} "
                              "or 10:30s")
        if isinstance(weight, bool) or not isinstance(weight, int):
            raise ConfigError(f"{here}.weight: {weight!r} is not a whole number from 1 to 100")
        if weight < 1 or weight > 100:
            raise ConfigError(OVER_100.format(where=where, number=number, weight=weight))
        if steps and weight <= steps[-1].weight:
            raise ConfigError(NOT_INCREASING.format(where=where, number=number, weight=weight,
                                                    previous=steps[-1].weight, before=number - 1))
        manual = pause is None or (isinstance(pause, str) and pause.strip().lower() == "manual")
        steps.append(Step(weight, None if manual else parse_duration(pause, f"{here}.pause")))
    if steps[-1].shadow:
        raise ConfigError(SHADOW_ONLY.format(where=where))
    return tuple(steps)


def _shadow_step(item: Mapping[str, Any], here: str) -> Step:
    """Return the shadow step ``{shadow: DURATION | manual, sample, min_agreement}`` of ``item``;
    raise ConfigError naming the key that is wrong."""
    for key in item:
        if key not in ("shadow", "sample", "min_agreement", "shadow_by"):
            raise ConfigError(BAD_SHADOW_KEY.format(where=here, key=key))
    duration = item["shadow"]
    manual = duration is None or (isinstance(duration, str)
                                  and duration.strip().lower() == "manual")
    pause = None if manual else parse_duration(duration, f"{here}.shadow", allow_zero=False)
    sample = item.get("sample", DEFAULT_SHADOW_SAMPLE)
    if isinstance(sample, bool) or not isinstance(sample, (int, float)) \
            or not 0 < float(sample) <= 1:
        raise ConfigError(BAD_SAMPLE.format(where=here, value=sample))
    agreement = item.get("min_agreement")
    if agreement is not None and (isinstance(agreement, bool)
                                  or not isinstance(agreement, (int, float))
                                  or not 0 <= float(agreement) <= 1):
        raise ConfigError(BAD_MIN_AGREEMENT.format(where=here, value=agreement))
    by = item.get("shadow_by", "server")
    if by not in SHADOW_BY:
        raise ConfigError(BAD_SHADOW_BY.format(where=here, value=by))
    return Step(0, pause, shadow=True, sample=float(sample),
                min_agreement=None if agreement is None else float(agreement), shadow_by=str(by))


def plan_from_section(section: Mapping[str, Any], where: Any) -> Plan:
    """Return the plan of a ``canary:`` section; ``where(*key)`` names a key for messages.

    Raises ConfigError for an empty plan, weights that do not increase or exceed 100, durations
    out of range, or a step timeout shorter than the interval.
    """
    steps = parse_steps(section["steps"], where("canary", "steps"))
    interval = parse_duration(section["interval"], where("canary", "interval"), allow_zero=False)
    timeout = parse_duration(section["step_timeout"], where("canary", "step_timeout"),
                             allow_zero=False)
    window_raw = section.get("window")
    window = (parse_duration(window_raw, where("canary", "window"), allow_zero=False)
              if window_raw is not None else interval)
    if timeout < interval:
        raise ConfigError(f"{where('canary', 'step_timeout')}: {section['step_timeout']!r} is "
                          f"shorter than the analysis interval ({section['interval']!r}); a step "
                          "must last at least one analysis")
    policy = section["inconclusive"]
    if policy not in INCONCLUSIVE_POLICIES:
        raise ConfigError(f"{where('canary', 'inconclusive')}: {policy!r}; valid: "
                          f"{', '.join(INCONCLUSIVE_POLICIES)}")
    return Plan(steps=steps, interval_s=interval, failure_limit=int(section["failure_limit"]),
                min_requests=int(section["min_requests"]), inconclusive=policy,
                step_timeout_s=timeout, window_s=window)


def format_duration(seconds: float | None) -> str:
    """Return ``seconds`` as the shortest text a user would write (``30s``, ``2m``, ``manual``)."""
    if seconds is None:
        return "manual"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    if seconds < 1 and seconds > 0:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"
