"""The image carries only what the server imports: serving works with the gates' dependencies
(``shipml.build._package.NOT_SERVED``) made unimportable, so leaving them out of the image is safe."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import requests
from packaging.requirements import Requirement

from shipml.build._package import NOT_SERVED, requirements
from shipml.onnx_model import OnnxModel
from tests.conftest import Case
from tests.serve.conftest import Server, start_server, write_serve_config

_BLOCKER = '''
import importlib.abc
import sys

BLOCKED = {blocked!r}


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is not in the serving image")
        return None


sys.meta_path.insert(0, _Blocker())
'''


def test_the_server_answers_without_the_packages_the_image_leaves_out(
        binary_case: Case, tmp_path: Path, servers: list[Server]) -> None:
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(_BLOCKER.format(blocked=sorted(NOT_SERVED)))
    config = write_serve_config(tmp_path, binary_case)
    server = start_server(tmp_path, "--config", str(config), env={"PYTHONPATH": str(blocker)})
    servers.append(server)
    frame = pd.read_csv(binary_case.test).drop(columns=[binary_case.label]).head(20)
    expected = OnnxModel(binary_case.model).predict(frame)
    answer = requests.post(f"{server.url}/predict",
                           json={"rows": json.loads(frame.to_json(orient="records"))}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == expected.tolist()
    installed = {Requirement(item).name.lower() for item in requirements()}
    assert installed and not installed & NOT_SERVED
