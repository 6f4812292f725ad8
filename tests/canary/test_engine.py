"""The pure parts, driven directly: the plan from config, the engine's transitions, the judges,
the lock's rules."""

from __future__ import annotations

import os
import random

import pytest

from shipml.canary import engine
from shipml.canary.engine import Revision, Verdicts
from shipml.canary.judges import MetricResult, absolute, mann_whitney, mann_whitney_u, relative
from shipml.canary.lock import Lock, LockHeld, may_take, refuse
from shipml.canary.plan import Plan, Step, parse_duration, parse_steps
from shipml.errors import ConfigError

PLAN = Plan(steps=(Step(10, 2.0), Step(50, 2.0), Step(100, 0.0)), interval_s=1.0,
            failure_limit=2, min_requests=10, inconclusive="hold", step_timeout_s=10.0,
            window_s=1.0)
NEW, OLD = Revision("img:new", "svc-new"), Revision("img:old", "svc-old")


def _round(verdict: str, error_rate: float | None = 0.0) -> Verdicts:
    result = MetricResult("error-rate", "canary error-rate is at most 0.01", verdict,  # type: ignore[arg-type]
                          error_rate, None, 0.01, "0 ≤ 0.01")
    return Verdicts(verdict, (result,), error_rate, 12.0)  # type: ignore[arg-type]


# --- plan ---------------------------------------------------------------------------------------


def test_steps_from_objects_and_text() -> None:
    assert parse_steps([{"weight": 10, "pause": "30s"}, "50:manual", "100"], "canary.steps") == (
        Step(10, 30.0), Step(50, None), Step(100, 0.0))


@pytest.mark.parametrize(("raw", "message"), [
    ([], "canary.steps: the plan has no steps; give at least one"),
    ([{"weight": 50}, {"weight": 10}],
     "canary.steps: step 2 has weight 10, not above the 50 of step 1"),
    ([{"weight": 10}, {"weight": 10}],
     "canary.steps: step 2 has weight 10, not above the 10 of step 1"),
    ([{"weight": 120}], "canary.steps: step 1 has weight 120; a weight is a share of traffic, 1 to 100"),
    ([{"weight": 10, "pause": "soon"}], "canary.steps[0].pause: 'soon' is not a duration"),
])
def test_a_bad_plan_is_refused_precisely(raw: list[object], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_steps(raw, "canary.steps")
    assert error.value.message.startswith(message)


def test_durations() -> None:
    assert parse_duration("500ms", "x") == 0.5
    assert parse_duration("2m", "x") == 120
    assert parse_duration(3, "x") == 3
    with pytest.raises(ConfigError, match="out of range"):
        parse_duration("200h", "x")
    with pytest.raises(ConfigError, match="out of range"):
        parse_duration(0, "x", allow_zero=False)


# --- engine -------------------------------------------------------------------------------------


def test_a_good_canary_walks_every_step_then_is_promoted() -> None:
    decision = engine.begin(PLAN, "svc", NEW, OLD, now=0.0)
    assert (decision.action, decision.weight) == ("set_weight", 10)
    state, weights, now = decision.state, [10], 0.0
    while not state.final:
        now += 1.0
        decision = engine.decide(PLAN, state, _round("pass"), now)
        state = decision.state
        if decision.action in ("set_weight", "promote"):
            weights.append(decision.weight)
    assert weights == [10, 50, 100]
    assert state.phase == "promoted" and state.failures == 0
    assert [record.status for record in state.history] == ["pass", "pass", "pass"]
    assert "→ pass: step 3/3, promote, weight 100%" in decision.line


def test_failures_up_to_the_limit_roll_back_and_the_line_names_value_and_threshold() -> None:
    state = engine.begin(PLAN, "svc", NEW, OLD, now=0.0).state
    first = engine.decide(PLAN, state, _round("fail", 0.3), 1.0)
    assert (first.action, first.state.phase, first.state.failures) == ("hold", "progressing", 1)
    assert first.line == ("canary svc step 1/3 weight 10%: error-rate=0.3 (0 ≤ 0.01) fail → fail, "
                          "failure 1/2: hold at 10%")
    second = engine.decide(PLAN, first.state, _round("fail", 0.3), 2.0)
    assert (second.action, second.weight, second.state.phase) == ("rollback", 0, "rolled_back")
    assert second.state.reason == ("rolled back at step 1 (10%): error-rate — 0 ≤ 0.01 — after "
                                   "2 analyses, 2 failed")


def test_no_data_never_moves_forward_and_times_out_into_rollback() -> None:
    state = engine.begin(PLAN, "svc", NEW, OLD, now=0.0).state
    for now in range(1, 10):
        decision = engine.decide(PLAN, state, _round("inconclusive", None), float(now))
        assert decision.action == "hold" and decision.weight == 10
        assert "no data is not good news" in decision.line
        state = decision.state
    timed_out = engine.decide(PLAN, state, _round("inconclusive", None), 10.0)
    assert timed_out.action == "rollback" and timed_out.state.phase == "rolled_back"
    assert "no conclusive analysis within 10s" in timed_out.state.reason


def test_inconclusive_can_count_as_a_failure() -> None:
    plan = Plan(**{**PLAN.__dict__, "inconclusive": "fail"})
    state = engine.begin(plan, "svc", NEW, OLD, now=0.0).state
    state = engine.decide(plan, state, _round("inconclusive", None), 1.0).state
    assert state.failures == 1
    assert engine.decide(plan, state, _round("inconclusive", None), 2.0).action == "rollback"


def test_a_step_holds_for_its_pause_after_passing() -> None:
    state = engine.begin(PLAN, "svc", NEW, OLD, now=0.0).state
    held = engine.decide(PLAN, state, _round("pass"), 1.0)
    assert held.action == "hold" and "1s of 2s" in held.line
    moved = engine.decide(PLAN, held.state, _round("pass"), 2.0)
    assert (moved.action, moved.weight) == ("set_weight", 50)


def test_a_manual_step_pauses_and_resume_or_promote_continue() -> None:
    plan = Plan(**{**PLAN.__dict__, "steps": (Step(10, None), Step(50, 0.0), Step(100, 0.0))})
    state = engine.begin(plan, "svc", NEW, OLD, now=0.0).state
    paused = engine.decide(plan, state, _round("pass"), 1.0).state
    assert paused.phase == "paused"
    assert engine.decide(plan, paused, _round("fail"), 2.0).action == "hold"
    resumed = engine.command(plan, paused, "resume", 3.0)
    assert (resumed.action, resumed.weight, resumed.state.phase) == ("set_weight", 50,
                                                                     "progressing")
    promoted = engine.command(plan, paused, "promote", 3.0)
    assert (promoted.action, promoted.state.phase, promoted.weight) == ("promote", "promoted", 100)
    aborted = engine.command(plan, paused, "abort", 3.0)
    assert (aborted.action, aborted.state.phase, aborted.weight) == ("rollback", "aborted", 0)
    with pytest.raises(ConfigError, match="has already ended"):
        engine.command(plan, aborted.state, "resume", 4.0)
    with pytest.raises(ConfigError, match="is progressing, not paused"):
        engine.command(plan, state, "resume", 4.0)


def test_the_state_survives_its_stored_form() -> None:
    state = engine.begin(PLAN, "svc", NEW, OLD, now=5.0).state
    state = engine.decide(PLAN, state, _round("fail", 0.2), 6.0).state
    assert engine.RolloutState.from_dict(state.to_dict(), "x") == state
    with pytest.raises(ConfigError, match="x: the stored rollout state cannot be read"):
        engine.RolloutState.from_dict({"version": 1, "phase": "flying"}, "x")


# --- what each step records: the story of the rollout -------------------------------------------


def _quality(verdict: str, canary: float, stable: float) -> MetricResult:
    points = (stable - canary) * 100
    return MetricResult("quality", "canary accuracy is not worse than stable's by more than 0.02",
                        verdict, canary, stable, 0.02,  # type: ignore[arg-type]
                        f"canary accuracy {canary:.3f} vs stable {stable:.3f}, {points:.1f} "
                        "points worse", figures={"low": -0.05, "high": -0.012, "drop": 0.031,
                                                 "discordant": 41, "p_value": 0.003,
                                                 "agreement": 0.95})


def test_a_rollback_reads_as_one_naming_the_metric_and_counting_every_analysis() -> None:
    plan = Plan(**{**PLAN.__dict__, "failure_limit": 1})
    state = engine.begin(plan, "svc", NEW, OLD, now=0.0).state
    for now, verdict in ((1.0, "inconclusive"), (2.0, "inconclusive")):
        state = engine.decide(plan, state, _round(verdict, None), now).state
    failing = _quality("fail", 0.871, 0.902)
    error_rate = _round("pass").results[0]
    decision = engine.decide(plan, state, Verdicts("fail", (error_rate, failing), 0.0, 12.0), 3.0)
    assert decision.action == "rollback"
    assert decision.state.reason == (
        "rolled back at step 1 (10%): quality — canary accuracy 0.871 vs stable 0.902, 3.1 points "
        "worse — after 3 analyses, 1 failed, 2 inconclusive")
    (record,) = decision.state.history
    assert (record.rounds, record.failed, record.inconclusive, record.status) == (3, 1, 2, "fail")
    assert record.metrics == (error_rate, failing) and record.failing == failing
    assert record.reason.startswith("rolled back: quality — canary accuracy 0.871")


def test_a_step_keeps_the_failure_a_later_passing_round_followed() -> None:
    state = engine.begin(PLAN, "svc", NEW, OLD, now=0.0).state
    failing = _quality("fail", 0.871, 0.902)
    state = engine.decide(PLAN, state, Verdicts("fail", (failing,)), 1.0).state
    passing = _quality("pass", 0.90, 0.902)
    moved = engine.decide(PLAN, state, Verdicts("pass", (passing,)), 2.0)
    assert moved.action == "set_weight"
    first = moved.state.history[0]
    assert (first.status, first.metrics, first.failing) == ("pass", (passing,), failing)
    assert moved.state.history[1] == engine.StepRecord(1, 50)


def test_a_step_timeout_says_which_metric_had_no_data_and_counts_the_inconclusive() -> None:
    state = engine.begin(PLAN, "svc", NEW, OLD, now=0.0).state
    nothing = absolute("prediction-agreement", None, minimum=0.99,
                       why_missing="both revisions answered 422")
    for now in range(1, 11):
        decision = engine.decide(PLAN, state, Verdicts("inconclusive", (nothing,), missing=True),
                                 float(now))
        state = decision.state
    assert decision.action == "rollback"
    assert state.reason == (
        "rolled back at step 1 (10%): no conclusive analysis within 10s (prediction-agreement — "
        "no data: both revisions answered 422) — after 10 analyses, 0 failed, 10 inconclusive")
    assert state.history[-1].failing is None and state.history[-1].metrics == (nothing,)


def test_abort_and_promote_by_hand_say_so_in_the_step() -> None:
    state = engine.begin(PLAN, "svc", NEW, OLD, now=0.0).state
    aborted = engine.command(PLAN, state, "abort", 1.0).state
    assert aborted.reason == "aborted by hand at step 1 (10%)"
    assert (aborted.history[-1].status, aborted.history[-1].reason) == ("fail", "aborted by hand")
    promoted = engine.command(PLAN, state, "promote", 1.0).state
    assert promoted.history[-1].reason == "promoted by hand"


def test_every_metric_result_and_its_figures_survive_the_stored_form() -> None:
    import json

    state = engine.begin(PLAN, "svc", NEW, OLD, now=5.0).state
    odd = MetricResult("four-xx", "canary 4xx rate is at most stable's", "pass", float("nan"),
                       0.0, None, "", "ratio", figures={"requests": 120, "nan": float("inf")})
    state = engine.decide(PLAN, state, Verdicts("fail", (_quality("fail", 0.871, 0.902), odd)),
                          6.0).state
    stored = json.loads(json.dumps(state.to_dict(), allow_nan=False))
    again = engine.RolloutState.from_dict(stored, "x")
    record = again.history[-1]
    assert record.failing == _quality("fail", 0.871, 0.902)
    assert record.metrics[0].figures == {"low": -0.05, "high": -0.012, "drop": 0.031,
                                         "discordant": 41, "p_value": 0.003, "agreement": 0.95}
    assert record.metrics[1].canary is None and record.metrics[1].figures == {
        "requests": 120, "nan": None}
    assert again.to_dict() == stored


#: a rollout state as shipml stored it before steps recorded their metrics: a later job resumes it
EARLIER_STATE = {
    "canary": {"image": "img@sha256:" + "b" * 64, "revision": "svc-new"}, "failures": 1,
    "history": [{"error_rate": 0.3, "failed": 1, "p95_ms": 12.0, "rounds": 2, "status": "pass",
                 "step": 0, "weight": 10},
                {"error_rate": None, "failed": 0, "p95_ms": None, "rounds": 0,
                 "status": "running", "step": 1, "weight": 50}],
    "passed_in_step": 0, "phase": "progressing", "reason": "", "service": "svc",
    "stable": {"image": "img@sha256:" + "a" * 64, "revision": "svc-old"}, "started_at": 1000.0,
    "step": 1, "step_started_at": 1010.0, "updated_at": 1010.0, "version": 1, "weight": 50}


def test_a_state_stored_by_an_earlier_shipml_still_loads_and_moves_on() -> None:
    state = engine.RolloutState.from_dict(EARLIER_STATE, "x")
    first = state.history[0]
    assert (first.rounds, first.failed, first.error_rate, first.status) == (2, 1, 0.3, "pass")
    assert (first.inconclusive, first.metrics, first.failing, first.reason) == (0, (), None, "")
    decision = engine.decide(PLAN, state, _round("fail", 0.4), 1011.0)
    assert decision.action == "rollback"
    assert decision.state.reason.endswith("after 1 analysis, 1 failed (failure 2/2 of the "
                                          "rollout)")


@pytest.mark.parametrize("history", [[{"weight": 10}], [{"step": 0, "weight": 10,
                                                          "metrics": [{"name": "m"}]}],
                                     [{"step": 0, "weight": 10, "failing": "error-rate"}]])
def test_a_step_record_that_is_not_one_is_refused_naming_the_source(
        history: list[object]) -> None:
    with pytest.raises(ConfigError, match="x: the stored rollout state cannot be read"):
        engine.RolloutState.from_dict({**EARLIER_STATE, "history": history}, "x")


# --- judges -------------------------------------------------------------------------------------


def test_absolute_and_relative_judges_say_the_threshold() -> None:
    passed = absolute("error-rate", 0.004, maximum=0.01)
    assert (passed.verdict, passed.sentence) == ("pass", "canary error-rate is at most 0.01")
    assert absolute("error-rate", 0.3, maximum=0.01).verdict == "fail"
    assert absolute("agreement", 0.5, minimum=0.99).verdict == "fail"
    assert absolute("error-rate", None, maximum=0.01, why_missing="down").detail == "no data: down"
    slow = relative("p95", 60.0, 10.0, max_ratio=1.2, unit="ms")
    assert slow.verdict == "fail" and slow.threshold == 12.0
    assert slow.sentence == "canary p95 is at most stable × 1.2"
    assert relative("p95", 2.0, 1.0, max_ratio=1.2, slack=5).verdict == "pass"
    assert relative("p95", 2.0, None, max_ratio=1.2).verdict == "inconclusive"


def test_mann_whitney_u_agrees_with_scipy() -> None:
    from scipy import stats  # scikit-learn (a dev dependency) requires scipy
    rng = random.Random(7)
    for size in ((5, 6), (12, 9), (40, 35)):
        first = [round(rng.gauss(10, 2), 1) for _ in range(size[0])]
        second = [round(rng.gauss(9, 2), 1) for _ in range(size[1])]
        u_value, p_value = mann_whitney_u(first, second)
        expected = stats.mannwhitneyu(first, second, alternative="greater",
                                      method="asymptotic" if len(set(first + second)) <
                                      len(first + second) or sum(size) > 20 else "exact")
        assert u_value == pytest.approx(expected.statistic)
        assert p_value == pytest.approx(expected.pvalue, rel=1e-6)


def test_the_latency_judge_fails_a_slower_canary_only() -> None:
    rng = random.Random(1)
    stable = [rng.gauss(3, 0.3) for _ in range(20)]
    slower = [value + 50 for value in stable]
    same = [rng.gauss(3, 0.3) for _ in range(20)]
    assert mann_whitney("latency", slower, stable, alpha=0.05, min_samples=3).verdict == "fail"
    assert mann_whitney("latency", same, stable, alpha=0.05, min_samples=3).verdict == "pass"
    few = mann_whitney("latency", [1.0], stable, alpha=0.05, min_samples=3)
    assert few.verdict == "inconclusive" and "at least 3 each" in few.detail
    # 3 against 3 can never reach p < 0.05 (the smallest exact p is 1/20): inconclusive, not pass
    unreachable = mann_whitney("latency", slower[:3], stable[:3], alpha=0.05, min_samples=3)
    assert unreachable.verdict == "inconclusive"


# --- lock ---------------------------------------------------------------------------------------


def test_the_lock_is_refused_while_its_holder_lives_and_taken_after_its_lease() -> None:
    mine = Lock("me", "host", os.getpid(), 100.0, 10.0)
    other_live = Lock("job 7 (pid 1)", "elsewhere", 1, 95.0, 10.0)
    assert not may_take(other_live, mine, 100.0)
    assert may_take(other_live, mine, 106.0)
    assert may_take(None, mine, 100.0)
    dead_here = Lock("killed", "host", 2 ** 22 + 12345, 99.0, 10.0)
    assert may_take(dead_here, mine, 100.0)
    error = refuse("svc", other_live, 100.0)
    assert isinstance(error, LockHeld) and error.exit_code == 2
    assert error.message.startswith("another shipml canary holds the rollout of svc: job 7 (pid 1), "
                                    "lease renewed 5s ago, expires in 5s")


# --- no data is never good news, whatever canary.inconclusive says ------------------------------


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _spec(**fields: object) -> object:
    from shipml.canary.analysis import metric_specs

    return metric_specs([{"name": "m", "query": "error_rate", "max": 0.01, **fields}],
                        "canary.metrics")[0]


@pytest.mark.parametrize("policy", ["hold", "fail", "pass"])
def test_a_source_that_does_not_answer_never_passes_under_any_policy(policy: str) -> None:
    from shipml.canary.analysis import analyse
    from shipml.canary.providers import build_provider

    plan = Plan(**{**PLAN.__dict__, "inconclusive": policy})
    down = {"prometheus": build_provider("prometheus",
                                         {"url": f"http://127.0.0.1:{_closed_port()}"}),
            "probe": build_provider("probe", {}, endpoints={}, rows=[{"x": 1.0}])}
    specs = (_spec(), _spec(name="lat", query="p95_ms", judge="relative", max_ratio=1.2,
                            max=None),
             _spec(name="shift", query="mean_ms", judge="mann-whitney", max=None),
             _spec(name="agree", provider="probe", query="agreement", min=0.99, max=None))
    state = engine.begin(plan, "svc", NEW, OLD, now=0.0).state
    for now in range(1, 10):
        round_ = analyse(specs, down, canary="svc-new", stable="svc-old", window_s=1.0,
                         sample_window_s=1.0, min_requests=1).verdicts(specs)  # type: ignore[arg-type]
        assert round_.verdict == "inconclusive" and round_.missing
        decision = engine.decide(plan, state, round_, float(now))
        assert decision.action in ("hold", "rollback"), decision.line
        state = decision.state
        if state.final:
            break
    assert state.phase in ("progressing", "rolled_back")


def test_no_metrics_at_all_is_missing_data_not_a_pass() -> None:
    plan = Plan(**{**PLAN.__dict__, "inconclusive": "pass"})
    state = engine.begin(plan, "svc", NEW, OLD, now=0.0).state
    decision = engine.decide(plan, state, Verdicts("inconclusive", (), missing=True), 1.0)
    assert decision.action == "hold"
    assert decision.line.endswith("(no data is not good news; inconclusive: pass covers a thin "
                                  "window, never a source that gave no data)")


def test_pass_still_passes_a_thin_window() -> None:
    plan = Plan(**{**PLAN.__dict__, "inconclusive": "pass",
                   "steps": (Step(10, 0.0), Step(100, 0.0))})
    state = engine.begin(plan, "svc", NEW, OLD, now=0.0).state
    thin = mann_whitney("latency", [1.0, 2.0], [1.0, 2.0], alpha=0.05, min_samples=4)
    assert thin.verdict == "inconclusive" and not thin.missing
    decision = engine.decide(plan, state, Verdicts("inconclusive", (thin,)), 1.0)
    assert (decision.action, decision.weight) == ("promote", 100)


def test_every_judge_says_missing_only_without_a_value() -> None:
    assert absolute("e", None, maximum=1).missing
    assert absolute("e", float("nan"), maximum=1).missing
    assert not absolute("e", 0.5, maximum=1).missing
    assert relative("p", None, 1.0, max_ratio=1.2).missing
    assert relative("p", 1.0, None, max_ratio=1.2).missing
    assert mann_whitney("l", None, [1.0] * 5, alpha=0.05, min_samples=3).missing
    assert mann_whitney("l", [1.0] * 5, [1.0] * 5, alpha=0.05, min_samples=3,
                        why_missing="down").missing
    assert not mann_whitney("l", [1.0], [1.0] * 5, alpha=0.05, min_samples=3).missing

