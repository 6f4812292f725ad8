"""Run one deepchecks suite on several CPU cores, with the result deepchecks would give serially.

deepchecks runs a suite's checks one after the other in one thread, and its heaviest check
(WeakSegmentsPerformance: a grid search of decision trees per feature pair, with ``n_jobs=1``
fixed inside) leaves every other core idle. The unit of work here is what deepchecks itself runs
as one step: a train-test check, or a single-dataset check on the train *or* the test dataset
(``Suite.run(run_single_dataset=...)``, deepchecks' own switch). Units are spread over forked
worker processes, heaviest first; every worker runs plain ``Suite.run`` calls on its share, sends
its results back (cloudpickle: conditions are closures), and the parent puts them back in the
order a serial run produces, attached to the parent's own check objects. The parent runs one
share itself.

Workers need Linux (multiprocessing's fork server); elsewhere, or with one worker, the suite runs
in-process, and a share whose worker dies is run in-process too.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("shipml.validate")

#: relative cost of a check on the 50,000-row benchmark (1: the typical check); used only to
#: spread the work, never to skip it
_COST = {
    "WeakSegmentsPerformance": 20.0,
    "TrainTestSamplesMix": 3.0,
    "OutlierSampleDetection": 3.0,
    "ConflictingLabels": 3.0,
    "MultivariateDrift": 3.0,
}


@dataclass(frozen=True)
class _Unit:
    index: int  # position in the original run order
    check_position: int  # position of the check in the suite
    mode: str | None  # "Train" or "Test" for a single-dataset check, None otherwise
    cost: float


def run_suite(suite: Any, kwargs: Mapping[str, Any], workers: int,
              configure: Callable[[], Any]) -> Any:
    """Run ``suite`` with ``kwargs`` on up to ``workers`` processes and return one SuiteResult.

    ``configure`` returns a context manager entered around every ``Suite.run`` (warnings,
    logging, joblib settings), in the parent and in each worker.
    """
    from deepchecks.core.suite import SuiteResult

    checks = list(suite.checks.values())
    units = _units(checks, kwargs)
    if workers <= 1 or len(units) < 2 or not sys.platform.startswith("linux"):
        with configure():
            return suite.run(**kwargs)
    shares = _spread(units, workers)
    results = _run_shares(checks, shares, kwargs, configure)
    ordered = []
    for unit in units:  # built in run order
        result = results[unit.index]
        result.check = checks[unit.check_position]  # the parent's object, not a worker's copy
        ordered.append(result)
    return SuiteResult(suite.name, ordered)


def _units(checks: list[Any], kwargs: Mapping[str, Any]) -> list[_Unit]:
    from deepchecks.core.checks import SingleDatasetBaseCheck

    both = kwargs.get("train_dataset") is not None and kwargs.get("test_dataset") is not None
    units: list[_Unit] = []
    for position, check in enumerate(checks):
        cost = _COST.get(type(check).__name__, 1.0)
        if isinstance(check, SingleDatasetBaseCheck) and both:
            for mode in ("Train", "Test"):
                units.append(_Unit(len(units), position, mode, cost / 2))
        else:
            units.append(_Unit(len(units), position, None, cost))
    return units


def _spread(units: list[_Unit], workers: int) -> list[list[_Unit]]:
    """Longest-processing-time-first: each unit, heaviest first, to the least loaded worker."""
    shares: list[list[_Unit]] = [[] for _ in range(min(workers, len(units)))]
    loads = [0.0] * len(shares)
    for unit in sorted(units, key=lambda unit: (-unit.cost, unit.index)):
        lightest = loads.index(min(loads))
        shares[lightest].append(unit)
        loads[lightest] += unit.cost
    return shares


def _run_share(checks: list[Any], share: list[_Unit], kwargs: Mapping[str, Any],
               configure: Callable[[], Any]) -> dict[int, Any]:
    """Run one worker's units: one ``Suite.run`` per dataset mode; return results by unit index."""
    from deepchecks.tabular import Suite

    started = time.perf_counter()
    results: dict[int, Any] = {}
    for mode in ("Train", "Test", None):
        batch = sorted((unit for unit in share if unit.mode == mode), key=lambda unit: unit.index)
        if not batch:
            continue
        part = Suite("shipml worker", *(checks[unit.check_position] for unit in batch))
        with configure():
            suite_result = part.run(**kwargs, run_single_dataset=mode)
        # One result per check here (single-dataset checks run on one dataset), in deepchecks'
        # display order (SuiteResult sorts them): match them to the units by their check.
        by_check = {id(result.check): result for result in suite_result.results}
        wanted = [id(checks[unit.check_position]) for unit in batch]
        if len(suite_result.results) != len(batch) or set(by_check) != set(wanted):
            raise RuntimeError(f"deepchecks returned {len(suite_result.results)} results for "
                               f"{len(batch)} checks")
        results.update({unit.index: by_check[key] for unit, key in zip(batch, wanted, strict=True)})
    log.debug("validate: %d deepchecks steps (cost %.1f) in %.2f s", len(share),
              sum(unit.cost for unit in share), time.perf_counter() - started)
    return results


def start_workers(workers: int) -> None:
    """Start the clean process workers are forked from, early, so its imports overlap other work.

    Workers come from multiprocessing's fork server, not from this process: a process forked
    after OpenMP threads ran (scikit-learn's histogram gradient boosting, inside deepchecks)
    deadlocks the next time it uses OpenMP. The server imports deepchecks once, before any such
    thread exists, and every worker is forked from it.
    """
    if workers <= 1 or not sys.platform.startswith("linux"):
        return
    import multiprocessing
    from multiprocessing import forkserver

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["shipml.validate._quiet", __name__, "deepchecks.tabular"])
    forkserver.ensure_running()


def _worker(receive: Any, send: Any) -> None:
    """Body of a worker process: read a share, run it, send the results (or the traceback)."""
    import cloudpickle


    payload: tuple[str, Any, str]
    try:
        began = time.perf_counter()
        checks, share, kwargs, configure = cloudpickle.loads(receive.recv_bytes())
        loaded = time.perf_counter() - began
        results = _run_share(checks, share, kwargs, configure)
        payload = ("ok", results, f"inputs read in {loaded:.2f} s, "
                                  f"{len(share)} steps in {time.perf_counter() - began - loaded:.2f} s")
    except BaseException:  # reported to the parent, which runs the share itself
        payload = ("error", traceback.format_exc(), "")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        send.send_bytes(cloudpickle.dumps(payload))
    send.close()


def _launch(process: Any, child_ends: tuple[Any, Any], to_child: Any, payload: Any) -> None:
    """Start a worker and send it its share; runs in a thread so the parent starts its own share
    at once (the fork server may still be importing deepchecks)."""
    import cloudpickle

    try:
        process.start()
        log.debug("validate: deepchecks worker %d started", process.pid)
    except Exception as exc:  # the parent runs the share itself
        log.debug("validate: could not start a deepchecks worker: %s", exc)
        to_child.close()
        return
    finally:
        # Closing the worker's ends here is what lets the parent see EOF if the worker dies.
        for end in child_ends:
            end.close()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            to_child.send_bytes(cloudpickle.dumps(payload))
    except OSError:
        pass  # the worker died before reading; the parent sees that and runs the share itself
    finally:
        to_child.close()


def _run_shares(checks: list[Any], shares: list[list[_Unit]], kwargs: Mapping[str, Any],
                configure: Callable[[], Any]) -> dict[int, Any]:
    import multiprocessing

    import cloudpickle

    start_workers(len(shares))
    context = multiprocessing.get_context("forkserver")
    children = []
    for share in shares[1:]:
        child_reads, to_child = context.Pipe(duplex=False)
        from_child, child_writes = context.Pipe(duplex=False)
        process = context.Process(target=_worker, args=(child_reads, child_writes),
                                  name="shipml-deepchecks", daemon=True)
        launcher = threading.Thread(
            target=_launch, daemon=True,
            args=(process, (child_reads, child_writes), to_child,
                  (checks, share, dict(kwargs), configure)))
        launcher.start()
        children.append((process, from_child, share, launcher))

    results = _run_share(checks, shares[0], kwargs, configure)
    for process, from_child, share, launcher in children:
        outcome: tuple[str, Any, str] | None = None
        try:
            outcome = cloudpickle.loads(from_child.recv_bytes())
        except (EOFError, OSError):
            outcome = None
        finally:
            from_child.close()
            launcher.join()
            if process.pid is not None:
                process.join()
        if outcome is not None and outcome[0] == "ok":
            log.debug("validate: deepchecks worker %s", outcome[2])
            results.update(outcome[1])
            continue
        reason = outcome[1] if outcome else f"worker exited with code {process.exitcode}"
        log.debug("validate: a deepchecks worker failed, running its checks here:\n%s", reason)
        results.update(_run_share(checks, share, kwargs, configure))
    return results
