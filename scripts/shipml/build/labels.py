"""The image's labels: OCI annotation keys, the model's sha256 and the gate verdicts. Pure: the
values come in, a mapping goes out; the user's own labels win."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from shipml.results import StageResult

OCI = "org.opencontainers.image"
#: shipml's own label namespace
SHIPML = "dev.shipml"


def gate_verdicts(results: Iterable[StageResult], gates: Iterable[str]) -> dict[str, str]:
    """Return ``{stage: status}`` for each result of a gate in ``gates``, in that order."""
    found = {result.stage: result.status for result in results}
    return {stage: found[stage] for stage in gates if stage in found}


def image_labels(*, source: str, revision: str, created: str, version: str, licenses: str,
                 title: str, model_sha256: str, model_name: str, runtime: str,
                 verdicts: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """Return the labels of the image: ``org.opencontainers.image.*`` (source, revision,
    created, version, licenses, title), ``dev.shipml.model.*``, one ``dev.shipml.gate.<stage>``
    per verdict and ``dev.shipml.gates`` (all passed or not), then ``extra``. Empty values
    are left out."""
    labels = {
        f"{OCI}.source": source,
        f"{OCI}.revision": revision,
        f"{OCI}.created": created,
        f"{OCI}.version": version,
        f"{OCI}.licenses": licenses,
        f"{OCI}.title": title,
        f"{SHIPML}.model.sha256": model_sha256,
        f"{SHIPML}.model.name": model_name,
        f"{SHIPML}.runtime": runtime,
    }
    for stage, status in verdicts.items():
        labels[f"{SHIPML}.gate.{stage}"] = status
    if verdicts:
        passed = all(status in ("pass", "skipped") for status in verdicts.values())
        labels[f"{SHIPML}.gates"] = "pass" if passed else "fail"
    labels.update(extra)
    return {key: value for key, value in labels.items() if value}
