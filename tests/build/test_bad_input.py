"""What the user must fix (exit 2) and what is not theirs to fix (exit 3), each said plainly:
the key, the failing step and its log, the registry and its reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests._services import free_port
from tests.build.conftest import (
    AUTH_REGISTRY,
    BASE_IMAGE,
    REGISTRY,
    REGISTRY_USER,
    SESSION,
    Project,
    record_image,
    run_build,
)

pytestmark = [pytest.mark.docker]


def _error(project: Project, capsys: pytest.CaptureFixture[str]) -> str:
    record = json.loads((project.output_dir / "results" / "build.json").read_text())
    assert record["status"] == "error"
    return capsys.readouterr().err


def test_a_missing_dockerfile_names_the_key(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    project.write(dockerfile="docker/Dockerfile")
    assert run_build(project) == 2
    err = _error(project, capsys)
    assert err.startswith(f"shipml build: {project.config}:")
    assert f"build.dockerfile: Dockerfile {project.folder / 'docker' / 'Dockerfile'} not found" in err


def test_an_unknown_runtime_names_the_key_and_the_choices(project: Project,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    project.write(runtime="tensorrt")
    assert run_build(project) == 2
    assert "build.runtime: 'tensorrt' is not valid; valid: builtin, triton" in _error(project, capsys)


def test_tag_rules_that_yield_no_tag_name_the_key(project: Project,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    project.write(tags=[{"type": "pr"}, {"type": "semver", "pattern": "{{version}}"}])
    assert run_build(project) == 2
    err = _error(project, capsys)
    assert "build.tags: the tag rules yield no tag for this build" in err
    assert "- {type: sha}" in err


def test_no_image_says_what_to_write(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    project.write(image=None)
    (project.folder / "shipml.yaml").write_text(
        (project.folder / "shipml.yaml").read_text().replace(
            f"  image: 127.0.0.1:5000/shipml-build-test-{SESSION}\n", ""))
    assert run_build(project) == 2
    assert "no image to build: set the registry and repository it is pushed to, e.g.\n  build:\n" \
           "    image: ghcr.io/OWNER/NAME" in _error(project, capsys)


def test_a_tag_in_the_image_is_refused(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    project.write()
    assert run_build(project, "--image", "127.0.0.1:5000/Model:v1") == 2
    assert "--image: '127.0.0.1:5000/Model:v1' is not a repository" in _error(project, capsys)


def test_a_failing_run_shows_the_step_and_the_end_of_its_log(
        project: Project, capsys: pytest.CaptureFixture[str], docker_client: object) -> None:
    (project.folder / "Dockerfile").write_text(
        f"FROM {BASE_IMAGE}\n"
        "RUN echo compiling the feature store client\n"
        "RUN for i in 1 2 3; do echo line $i; done; echo 'error: libfeature.so not found' >&2; exit 7\n"
        "RUN echo never reached\n")
    project.write(dockerfile="Dockerfile")
    assert run_build(project) == 2
    err = _error(project, capsys)
    # the engine adds one step per label after the Dockerfile's own: 3 of 4 + labels
    assert "shipml build: the image build failed at step 3/" in err
    assert (": RUN for i in 1 2 3; do echo line $i; done; "
            "echo 'error: libfeature.so not found' >&2; exit 7\n"
            "its command exited with code 7\nlast lines of its log:\n") in err
    assert "  line 3\n" in err and "  error: libfeature.so not found\n" in err
    assert "never reached" not in err.split("last lines of its log:")[1]


@pytest.fixture
def tiny_image(project: Project) -> Project:
    """A project whose own Dockerfile builds in a second: the base image plus a label."""
    (project.folder / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nLABEL purpose=shipml-test\n")
    return project


def test_an_unreachable_registry_is_infrastructure_after_retries(
        tiny_image: Project, capsys: pytest.CaptureFixture[str], docker_client: object) -> None:
    port = free_port()
    tiny_image.write(dockerfile="Dockerfile", image=f"127.0.0.1:{port}/nobody-home", retries=1)
    assert run_build(tiny_image) == 3
    err = _error(tiny_image, capsys)
    assert f"the registry 127.0.0.1:{port} could not be reached to push 127.0.0.1:{port}/nobody-home:test " \
           "after 2 attempt(s)" in err
    assert "connection refused" in err
    record = json.loads((tiny_image.output_dir / "results" / "build.json").read_text())
    assert record["error"]["kind"] == "infrastructure" and record["error"]["exit_code"] == 3


def test_a_refused_push_names_the_registry_and_the_reason_never_the_password(
        tiny_image: Project, capsys: pytest.CaptureFixture[str], docker_client: object,
        monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "not-the-password-0xBAD"
    monkeypatch.setenv("SHIPML_REGISTRY_USERNAME", REGISTRY_USER)
    monkeypatch.setenv("SHIPML_REGISTRY_PASSWORD", wrong)
    tiny_image.write(dockerfile="Dockerfile", image=f"{AUTH_REGISTRY}/refused-{SESSION}")
    assert run_build(tiny_image) == 2
    captured = capsys.readouterr()
    record = json.loads((tiny_image.output_dir / "results" / "build.json").read_text())
    assert record["status"] == "error"
    assert f"the registry {AUTH_REGISTRY} refused the push of {AUTH_REGISTRY}/refused-{SESSION}:test: " \
           in captured.err
    assert "unauthorized" in captured.err.lower()
    assert "packages: write" in captured.err
    assert wrong not in captured.out + captured.err + json.dumps(record)


def test_one_credential_without_the_other(tiny_image: Project, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPML_REGISTRY_USERNAME", REGISTRY_USER)
    tiny_image.write(dockerfile="Dockerfile")
    assert run_build(tiny_image) == 2
    assert "environment SHIPML_REGISTRY_PASSWORD is not set" in _error(tiny_image, capsys)


def test_your_own_dockerfile_gets_the_labels_and_the_model_hash(
        tiny_image: Project, docker_client: object) -> None:
    tiny_image.write(dockerfile="Dockerfile", push=False, labels={"team": "fraud"},
                     build_args={"UNUSED": 1})
    assert run_build(tiny_image) == 0
    metrics = tiny_image.result()["metrics"]
    record_image(metrics["image_id"])
    labels = docker_client.images.get(metrics["image_id"]).labels  # type: ignore[attr-defined]
    assert labels["purpose"] == "shipml-test" and labels["team"] == "fraud"
    assert labels["dev.shipml.runtime"] == "dockerfile"
    assert len(labels["dev.shipml.model.sha256"]) == 64
    assert metrics["reference"].endswith(":test") and metrics["pushed"] is False


def test_the_engine_unreachable_is_infrastructure(project: Project, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-docker.sock'}")
    project.write()
    assert run_build(project) == 3
    assert "cannot reach the Docker Engine" in _error(project, capsys)


def test_a_base_image_the_registry_does_not_have_is_bad_input_naming_the_key(
        project: Project, capsys: pytest.CaptureFixture[str], docker_client: object) -> None:
    # the local registry answers, and says "not found": the user must choose another image
    project.write(base_image=f"{REGISTRY}/shipml-test/debian:no-such-tag", push=False)
    assert run_build(project) == 2
    err = _error(project, capsys)
    assert f"shipml build: {project.config}:" in err
    assert (f" build.base_image: the base image cannot be had: manifest for {REGISTRY}/shipml-test/"
            "debian:no-such-tag not found") in err
    assert "build it or pull it into the engine, or choose another" in err


def test_a_base_image_on_a_registry_that_does_not_answer_is_infrastructure(
        project: Project, capsys: pytest.CaptureFixture[str], docker_client: object) -> None:
    port = free_port()  # nothing listens there: the pull is refused, not judged
    project.write(base_image=f"127.0.0.1:{port}/shipml-test/debian:bookworm", push=False)
    assert run_build(project) == 3
    err = _error(project, capsys)
    assert f"shipml build: {project.config}:" in err
    assert (f" build.base_image: the base image could not be pulled: Get \"http://127.0.0.1:{port}/v2/\"")\
        in err
    assert "connection refused" in err


def test_the_base_image_flag_overrides_the_file_and_is_checked(project: Project,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    project.write()
    assert run_build(project, "--base-image", "Not An Image") == 2
    assert "--base-image: 'Not An Image' is not an image reference" in _error(project, capsys)


# --- a Dockerfile or build context outside the working tree -------------------------------------


def _nested(project: Project) -> Project:
    """The project moved one folder down (``repo/``), with the folder around it holding a
    Dockerfile, a secret and a folder of its own: what a build must never send to the engine."""
    repo = project.folder / "repo"
    repo.mkdir()
    shutil.copy(project.folder / "model.onnx", repo / "model.onnx")
    (project.folder / "Dockerfile.outside").write_text(f"FROM {BASE_IMAGE}\nLABEL purpose=shipml-test\n")
    (project.folder / "id_rsa").write_text("not a key, but it stands for one\n")
    (project.folder / "elsewhere").mkdir()
    (project.folder / "elsewhere" / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\n")
    return Project(folder=repo)


def _key_line(project: Project, key: str) -> str:
    """Return how messages point at ``build.<key>`` of the project's shipml.yaml."""
    lines = project.config.read_text().splitlines()
    number = next(index for index, line in enumerate(lines, 1) if line.strip().startswith(f"{key}:"))
    return f"{project.config}:{number} build.{key}"


def _outside(where: str, what: str, path: Path, root: Path) -> str:
    return (f"{where}: {what} {path} is outside the working tree {root} (symlinks resolved); "
            "shipml builds only what the repository holds, so that a build cannot send the "
            "folders around it to the engine. Move it into the repository, or allow it "
            "explicitly:\n  build:\n    allow_outside_repository: true\n"
            "(or --allow-outside-repository, SHIPML_ALLOW_OUTSIDE_REPOSITORY=true)")


def test_a_dockerfile_outside_the_repository_is_refused_naming_key_path_and_option(
        project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    inner = _nested(project)
    inner.write(dockerfile="../Dockerfile.outside")
    assert run_build(inner) == 2
    err = _error(inner, capsys)
    assert err.startswith("shipml build: " + _outside(
        _key_line(inner, "dockerfile"), "Dockerfile",
        project.folder.resolve() / "Dockerfile.outside", inner.folder.resolve()))


def test_a_symlink_out_of_the_repository_is_refused(
        project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    inner = _nested(project)
    (inner.folder / "docker").symlink_to(project.folder / "elsewhere")
    inner.write(dockerfile="docker/Dockerfile")
    assert run_build(inner) == 2
    assert _outside(_key_line(inner, "dockerfile"), "Dockerfile",
                    project.folder.resolve() / "elsewhere" / "Dockerfile",
                    inner.folder.resolve()) in _error(inner, capsys)


def test_a_build_context_outside_the_repository_is_refused(
        project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    inner = _nested(project)
    (inner.folder / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\n")
    inner.write()
    assert run_build(inner, "--dockerfile", str(inner.folder / "Dockerfile"), "--context",
                     str(project.folder)) == 2
    assert _outside("--context", "build context", project.folder.resolve(),
                    inner.folder.resolve()) in _error(inner, capsys)


def test_a_path_outside_is_built_when_allowed_explicitly(
        project: Project, docker_client: object) -> None:
    inner = _nested(project)
    inner.write(dockerfile="../Dockerfile.outside", push=False)
    assert run_build(inner, "--allow-outside-repository") == 0
    record_image(inner.result()["metrics"]["image_id"])


def test_the_working_tree_is_the_git_repository_around_shipml_yaml(
        project: Project, docker_client: object) -> None:
    import subprocess

    subprocess.run(["git", "init", "-q", str(project.folder)], check=True)
    inner = _nested(project)
    inner.write(dockerfile="../Dockerfile.outside", push=False)
    assert run_build(inner) == 0
    record_image(inner.result()["metrics"]["image_id"])
