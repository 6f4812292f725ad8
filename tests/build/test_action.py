"""actions/build: a thin shim, run the way the runner runs it, hostile inputs included."""

from __future__ import annotations

import pytest

from shipml.build.cli import OPTIONS
from tests._action_step import load_action, run_step
from tests.build.conftest import BASE_IMAGE, SESSION, Project, record_image

READ_ELSEWHERE = {"SHIPML_CONFIG", "SHIPML_OUTPUT_DIR", "SHIPML_REGISTRY_USERNAME",
                  "SHIPML_REGISTRY_PASSWORD"}


def test_every_input_reaches_a_variable_the_cli_reads() -> None:
    action = load_action("build")
    (step,) = [s for s in action["runs"]["steps"] if s.get("id") == "build"]
    assert step["run"] == 'exec "$SHIPML_EXECUTABLE" build'
    mapped = {expression.split("inputs.")[1].rstrip(" }"): variable
              for variable, expression in step["env"].items() if "inputs." in expression}
    assert set(mapped) == set(action["inputs"]) - {"working-directory", "python-version"}
    assert set(mapped.values()) == {option.env for option in OPTIONS} | READ_ELSEWHERE
    for name, output in action["outputs"].items():
        assert output["value"] == f"${{{{ steps.build.outputs.{name} }}}}"
    assert {"image", "digest", "tags"} <= set(action["outputs"])


@pytest.mark.docker
def test_the_action_builds_pushes_and_outputs_the_digest(project: Project, docker_client: object) -> None:
    (project.folder / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nLABEL purpose=shipml-test\n")
    project.write(dockerfile="Dockerfile", tags=[{"type": "sha"}, {"type": "branch"}])
    completed, outputs = run_step("build", {"image": f"127.0.0.1:5000/shipml-action-{SESSION}"},
                                  project.folder, {"GITHUB_REF": "refs/heads/main",
                                                   "GITHUB_SHA": "c0ffee" + "0" * 34})
    assert completed.returncode == 0, completed.stderr
    assert outputs["status"] == "pass"
    assert outputs["image"] == f"127.0.0.1:5000/shipml-action-{SESSION}"
    assert outputs["digest"].startswith("sha256:")
    assert outputs["tags"] == "sha-c0ffee0,main"
    import json

    record_image(json.loads((project.folder / outputs["result"]).read_text())["metrics"]["image_id"])


@pytest.mark.parametrize("hostile", ['x"; touch pwned; echo "', "$(touch pwned)", "`touch pwned`"])
def test_hostile_input_is_data_not_code(project: Project, hostile: str) -> None:
    project.write()
    completed, outputs = run_step("build", {"image": hostile, "registry-password": hostile},
                                  project.folder)
    assert completed.returncode == 2
    assert not (project.folder / "pwned").exists()
    assert f"environment SHIPML_IMAGE: {hostile!r} is not a repository" in completed.stderr
    assert outputs["status"] == "error"
