"""The canary judges quality against the labels, paired: real models trained on one seeded dataset
(skl2onnx), each built into a serving image by ``shipml build`` from the config a user writes
(``model: {path, train, test, label}``, no ``features``), rolled out on the docker target behind a
real HAProxy, scraped by a real Prometheus, under real load on 127.0.0.1 (issue 19, items 1 and 5).

A retrained model of another family that is at least as accurate is promoted with the default
quality settings; a model a few points worse, one trained on flipped labels and a regressor with
20% more error are rolled back; the same model re-packaged is promoted; a canary whose ``/predict``
rejects the stable's rows is rolled back on its 4xx rate, the server's own message in the log.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from shipml.cli import main
from tests._models import build_model_image, export_quality_classifiers, export_quality_regressors
from tests.canary.conftest import BASE_IMAGE, SESSION, Load, Service, end_service, new_service

pytestmark = [pytest.mark.docker, pytest.mark.slow]

#: the roles of the classifiers' images, and the column names the 4xx canary was built with
CLASSIFIERS = ("stable", "better", "worse", "shifted", "repackaged")
RENAMED = "renamed"


@dataclass(frozen=True)
class Dataset:
    """One seeded dataset's folder (train.csv, test.csv, label ``y``) and its models' images."""

    folder: Path
    images: dict[str, str]

    def rows(self, count: int = 40) -> list[dict[str, Any]]:
        frame = pd.read_csv(self.folder / "test.csv").drop(columns=["y"])
        return list(frame.head(count).to_dict(orient="records"))


def _build(folder: Path, model: Path, repository: str, tag: str, train: Path) -> str:
    return build_model_image(folder, model, repository, tag, train=train,
                             test=folder / "test.csv", label="y", base_image=BASE_IMAGE)


@pytest.fixture(scope="module")
def classifiers(docker_client: Any, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[Dataset]:
    """The classifiers' images, and the stable model built for rows with other column names
    (its /predict rejects the stable's rows)."""
    folder = tmp_path_factory.mktemp("quality-classifiers")
    models = export_quality_classifiers(folder)
    repository = f"shipml-canary-test/quality-{SESSION}"
    images = {role: _build(folder, models[role], repository, role, folder / "train.csv")
              for role in CLASSIFIERS}
    renamed = folder / "renamed"
    renamed.mkdir()
    train = pd.read_csv(folder / "train.csv")
    train.rename(columns={f"f{i}": f"x{i}" for i in range(6)}).to_csv(renamed / "train.csv",
                                                                       index=False)
    shutil.copy(folder / "test.csv", renamed / "test.csv")
    images[RENAMED] = _build(renamed, models["stable"], repository, RENAMED,
                             renamed / "train.csv")
    yield Dataset(folder, images)
    _remove(docker_client, images)


@pytest.fixture(scope="module")
def regressors(docker_client: Any, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Dataset]:
    folder = tmp_path_factory.mktemp("quality-regressors")
    models = export_quality_regressors(folder)
    repository = f"shipml-canary-test/quality-regression-{SESSION}"
    images = {role: _build(folder, path, repository, role, folder / "train.csv")
              for role, path in models.items()}
    yield Dataset(folder, images)
    _remove(docker_client, images)


def _remove(docker_client: Any, images: dict[str, str]) -> None:
    for tag in images.values():
        try:
            docker_client.images.remove(tag, force=True, noprune=True)
        except Exception:
            pass


@pytest.fixture
def service(docker_client: Any, tmp_path: Path) -> Iterator[Service]:
    found = new_service(tmp_path)
    yield found
    end_service(docker_client, found)


def _config(service: Service, data: Dataset, image: str, *, default_metrics: bool = False,
            **canary: Any) -> Path:
    """Write the service's config for ``image`` with the dataset's ``model:`` keys as a user
    writes them; the probe and the quality judge at their defaults (on: docker, labels)."""
    path = service.config(image, **canary)
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    document["model"] = {"path": "model.onnx", "train": str(data.folder / "train.csv"),
                         "test": str(data.folder / "test.csv"), "label": "y"}
    section = document["canary"]
    for key in ("probe", *(("metrics",) if default_metrics else ())):
        if key not in canary:
            section.pop(key)
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def _run(config: Path) -> int:
    return main(["canary", "--config", str(config), "--output-dir",
                 str(config.parent / ".shipml")])


def _result(service: Service) -> dict[str, Any]:
    return dict(json.loads((service.folder / ".shipml" / "results" / "canary.json").read_text()))


def _roll_out(service: Service, data: Dataset, canary: str, **settings: Any
              ) -> tuple[int, dict[str, Any]]:
    """Deploy the dataset's stable, then roll out ``canary`` under load; return the exit code
    and the result."""
    assert _run(_config(service, data, data.images["stable"], **settings)) == 0
    with Load(f"http://127.0.0.1:{service.port}", data.rows()):
        code = _run(_config(service, data, data.images[canary], **settings))
    return code, _result(service)


def _rolled_back_on(result: dict[str, Any], what: str) -> bool:
    """Return whether the rollout was rolled back on ``what`` (the first failed metric)."""
    failed = [check["name"] for check in result["checks"] if check["status"] == "fail"]
    return (result["metrics"]["phase"] == "rolled_back" and what in result["summary"]
            and any(what in name for name in failed))


def _quality_lines(result: dict[str, Any]) -> list[str]:
    return [line for line in result["metrics"]["decisions"] if "quality=" in line]


def test_a_more_accurate_retrained_model_of_another_family_is_promoted_by_default(
        service: Service, classifiers: Dataset) -> None:
    code, result = _roll_out(service, classifiers, "better")
    decisions = result["metrics"]["decisions"]
    assert code == 0, (result["summary"], decisions)
    assert result["metrics"]["phase"] == "promoted"
    lines = _quality_lines(result)
    assert lines and all("discordant of" in line and "agreement" in line for line in lines), \
        decisions
    # its answers differ from the stable's: no agreement threshold holds it back by default
    assert not any("prediction-agreement" in line for line in decisions)


def test_a_model_a_few_points_less_accurate_is_rolled_back(
        service: Service, classifiers: Dataset) -> None:
    code, result = _roll_out(service, classifiers, "worse")
    assert code == 1, result["summary"]
    assert _rolled_back_on(result, "accuracy"), result["summary"]
    assert "worse by" in result["summary"]


def test_a_model_trained_on_shifted_labels_is_rolled_back_at_the_first_step(
        service: Service, classifiers: Dataset) -> None:
    code, result = _roll_out(service, classifiers, "shifted")
    assert code == 1 and result["metrics"]["phase"] == "rolled_back", result["summary"]
    assert [step["weight"] for step in result["metrics"]["steps"]] == [20]
    assert _rolled_back_on(result, "accuracy"), result["summary"]


def test_a_regressor_with_a_fifth_more_error_is_rolled_back(
        service: Service, regressors: Dataset) -> None:
    code, result = _roll_out(service, regressors, "worse")
    assert code == 1 and result["metrics"]["phase"] == "rolled_back", result["summary"]
    assert _rolled_back_on(result, "mean absolute error"), result["summary"]


def test_the_same_model_repackaged_is_promoted(service: Service, classifiers: Dataset) -> None:
    code, result = _roll_out(service, classifiers, "repackaged", probe={"min_agreement": 1.0})
    decisions = result["metrics"]["decisions"]
    assert code == 0, (result["summary"], decisions)
    assert any("prediction-agreement=1 " in line for line in decisions), decisions
    assert any("0 discordant of" in line for line in _quality_lines(result)), decisions


def test_a_canary_that_rejects_the_stables_rows_is_rolled_back_with_the_servers_message(
        service: Service, classifiers: Dataset) -> None:
    code, result = _roll_out(service, classifiers, RENAMED, default_metrics=True)
    decisions = result["metrics"]["decisions"]
    assert code == 1 and result["metrics"]["phase"] == "rolled_back", (result["summary"],
                                                                        decisions)
    assert _rolled_back_on(result, "client-error-rate"), result["summary"]
    # the log says what the server said, not "no data"
    said = [line for line in decisions if "quality=none" in line]
    assert said and all("answered 4" in line and "probe rows: \"" in line for line in said), \
        decisions
