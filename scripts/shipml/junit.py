"""JUnit XML for Jenkins and test reporters: one test case per check record."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

from shipml.results import Check, StageResult


def render_junit(result: StageResult, suites: Sequence[tuple[str, Sequence[Check]]] = ()) -> str:
    """Return JUnit XML for ``result``: one ``<testsuite>`` per (name, checks) pair.

    With no explicit ``suites`` every check of the result goes into one suite named after the stage.
    A ``warn`` is a passing test case with the warning in ``system-out``; ``error`` is an error.
    """
    groups = list(suites) or [(f"shipml.{result.stage}", result.checks)]
    root = ET.Element("testsuites", name=f"shipml {result.stage}",
                      time=f"{result.duration_s:.3f}")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for suite_name, checks in groups:
        failures = sum(1 for check in checks if check.status == "fail")
        errors = sum(1 for check in checks if check.status == "error")
        suite = ET.SubElement(root, "testsuite", name=suite_name, tests=str(len(checks)),
                              failures=str(failures), errors=str(errors), skipped="0",
                              timestamp=result.started_at)
        totals["tests"] += len(checks)
        totals["failures"] += failures
        totals["errors"] += errors
        for check in checks:
            case = ET.SubElement(suite, "testcase", name=check.name,
                                 classname=f"{suite_name}.{check.group}" if check.group
                                 else suite_name)
            message = _message(check)
            if check.status == "fail":
                ET.SubElement(case, "failure", message=message).text = check.detail or message
            elif check.status == "error":
                ET.SubElement(case, "error", message=message).text = check.detail or message
            elif check.status == "warn":
                ET.SubElement(case, "system-out").text = f"WARN: {message}"
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _message(check: Check) -> str:
    parts = []
    if check.observed is not None:
        parts.append(f"observed {check.observed}")
    if check.threshold is not None:
        parts.append(f"threshold {check.threshold}")
    return "; ".join(parts) or check.status
