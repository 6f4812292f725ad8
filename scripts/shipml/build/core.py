"""The build stage: render the Dockerfile (or take the user's), build it through the Docker
Engine, label and tag it, push it, and hand the digest on."""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shipml import stages
from shipml.build import dockerfile as _dockerfile
from shipml.build import triton as _triton
from shipml.build._engine import Engine, registry_of
from shipml.build._git import Provenance, detect_provenance, work_tree
from shipml.build._package import requirements, wheel_name, write_wheel
from shipml.build.labels import gate_verdicts, image_labels
from shipml.build.tags import parse_version, render_tags
from shipml.ci import Platform
from shipml.config import Config
from shipml.errors import ConfigError
from shipml.results import Artifact, Check, Handoff, StageClock, StageResult, read_all
from shipml.serve.settings import feature_columns

log = logging.getLogger("shipml.build")

STAGE = "build"
#: where the image's config and model live inside the built-in image
MODEL_FOLDER = "model"
DEFAULT_INDEX = "https://pypi.org/simple"
_CA_CANDIDATES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")
#: a repository the engine accepts: [registry[:port]/]lower-case path, no tag
_REPOSITORY = re.compile(
    r"(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")
#: ``serve:`` keys the image sets itself (model file, SHIPML_SERVE_HOST/_PORT)
_SERVE_KEYS_SET_BY_IMAGE = ("model", "host", "port")
#: what the image keeps of the ``model:`` section (the data files stay behind)
_MODEL_KEYS = ("task", "label", "features", "categorical_features", "ignore_columns")
#: the model's name in the image's URLs (/v2/models/NAME) unless ``serve.name`` declares one:
#: the same for every version, whatever the model file is called (model.optimized.onnx too)
SERVED_NAME = "model"

NO_IMAGE = (
    "no image to build: set the registry and repository it is pushed to, e.g.\n"
    "  build:\n    image: ghcr.io/OWNER/NAME\n(or --image, or SHIPML_IMAGE)"
)
NO_MODEL = (
    "no model to put in the image: set model.path (or build.model, or --model), e.g.\n"
    "  model:\n    path: model.onnx"
)
OUTSIDE_WORK_TREE = (
    "{where}: {what} {path} is outside the working tree {root} (symlinks resolved); shipml builds "
    "only what the repository holds, so that a build cannot send the folders around it to the "
    "engine. Move it into the repository, or allow it explicitly:\n"
    "  build:\n    allow_outside_repository: true\n"
    "(or --allow-outside-repository, SHIPML_ALLOW_OUTSIDE_REPOSITORY=true)"
)
BAD_REPOSITORY = (
    "{where}: {value!r} is not a repository such as ghcr.io/acme/churn-model or "
    "127.0.0.1:5000/churn (lower-case path, no tag: tags come from build.tags)"
)


@dataclass(frozen=True)
class BuildRun:
    """A finished build: its result, where it was written and the step outputs."""

    result: StageResult
    result_path: Path
    outputs: Mapping[str, str]
    dockerfile: Path


@dataclass(frozen=True)
class Context:
    """A build context on disk: the folder, the Dockerfile in it, and the base image."""

    folder: Path
    dockerfile: Path
    base_image: str = ""


def run_build(config: Config, output_dir: Path, platform: Platform) -> BuildRun:
    """Build, tag and push the image; write the result and return the run.

    Raises ConfigError for bad configuration or input (a failing build step among them),
    InfrastructureError when the engine or the registry cannot be reached.
    """
    clock = StageClock()
    section = config.section(STAGE)
    repository = image_repository(config, section)
    provenance = detect_provenance(platform, config.base_dir, section.get("default_branch"))
    tags = render_tags(section["tags"], provenance.git, config.where)
    model = _model(config, section)
    auth = registry_auth(platform) if section["push"] else None
    context = prepare_context(config, section, model, output_dir / STAGE / "context")

    model_sha256 = _sha256(model) if model is not None else ""
    gates_before = [name for name in stages.gates() if stages.rank(name) < stages.rank(STAGE)]
    verdicts = gate_verdicts(read_all(output_dir), gates_before)
    labels = image_labels(
        source=provenance.source, revision=provenance.git.sha, created=_created(),
        version=_version(provenance, tags), licenses=section.get("licenses") or provenance.licenses,
        title=repository.rsplit("/", 1)[-1], model_sha256=model_sha256,
        model_name=model.name if model is not None else "",
        runtime="dockerfile" if section.get("dockerfile") else section["runtime"],
        verdicts=verdicts, extra={str(k): str(v) for k, v in section["labels"].items()})
    buildargs = {str(k): _arg(v) for k, v in section["build_args"].items()}

    engine = Engine()
    try:
        log.info("build: %s:%s from %s (%s)", repository, tags[0], context.dockerfile,
                 provenance.git.event)
        built = engine.build(context.folder, _dockerfile_argument(context), f"{repository}:{tags[0]}",
                             buildargs=buildargs, labels=labels,
                             base_key=config.where(STAGE, "base_image"), echo=_echo)
        for tag in tags[1:]:
            engine.tag(built.image_id, repository, tag)
        size = engine.size(built.image_id)
        added = _added_bytes(engine, size, context.base_image)
        digest = built.image_id
        if section["push"]:
            for tag in tags:
                digest = engine.push(repository, tag, auth=auth, retries=int(section["retries"]),
                                     echo=_echo)
    finally:
        engine.close()

    pushed = bool(section["push"])
    reference = f"{repository}@{digest}" if pushed else f"{repository}:{tags[0]}"
    checks = [Check(name="the image builds", status="pass", observed=built.steps,
                    detail=f"{built.steps} steps, {built.cached_steps} from the cache")]
    if pushed:
        checks.append(Check(name=f"every tag is pushed to {registry_of(repository)}",
                            status="pass", observed=len(tags), detail=", ".join(tags)))
    metrics: dict[str, Any] = {
        "image": repository, "digest": digest, "tags": tags, "reference": reference,
        "image_id": built.image_id, "pushed": pushed, "size_bytes": size, "added_bytes": added,
        "steps": built.steps, "cached_steps": built.cached_steps,
        "runtime": labels.get("dev.shipml.runtime", ""), "base_image": context.base_image,
        "model_sha256": model_sha256, "labels": labels,
    }
    where = "pushed" if pushed else "built locally"
    summary = f"{reference} {where}, tags {', '.join(tags)}"
    result = StageResult(
        stage=STAGE, status="pass", summary=summary, started_at=clock.started_at,
        duration_s=clock.elapsed(), metrics=metrics, checks=tuple(checks),
        artifacts=(Artifact(name="Dockerfile", path=str(context.dockerfile)),),
        handoff=(Handoff(kind="image", ref=reference, digest=digest),),
    )
    result_path = result.write(output_dir)
    outputs = {"image": repository, "digest": digest, "tags": ",".join(tags)}
    return BuildRun(result=result, result_path=result_path, outputs=outputs,
                    dockerfile=context.dockerfile)


def image_repository(config: Config, section: Mapping[str, Any]) -> str:
    """Return ``build.image``; ConfigError when it is missing or not a repository."""
    value = section.get("image")
    if not value:
        raise ConfigError(NO_IMAGE)
    value = str(value).strip()
    if not _REPOSITORY.fullmatch(value):
        raise ConfigError(BAD_REPOSITORY.format(where=config.where(STAGE, "image"), value=value))
    return value


def registry_auth(platform: Platform) -> dict[str, str] | None:
    """Return credentials from ``SHIPML_REGISTRY_USERNAME``/``_PASSWORD`` (masked), or None to
    use Docker's own (``docker login``, ``DOCKER_CONFIG``). ConfigError when only one is set."""
    username = platform.environ.get("SHIPML_REGISTRY_USERNAME", "")
    password = platform.environ.get("SHIPML_REGISTRY_PASSWORD", "")
    if password:
        platform.mask(password)
    if not username and not password:
        return None
    if not (username and password):
        missing = "SHIPML_REGISTRY_PASSWORD" if username else "SHIPML_REGISTRY_USERNAME"
        raise ConfigError(f"environment {missing} is not set: registry credentials need both "
                          "SHIPML_REGISTRY_USERNAME and SHIPML_REGISTRY_PASSWORD")
    return {"username": username, "password": password}


def _model(config: Config, section: Mapping[str, Any]) -> Path | None:
    if section.get("model"):
        path, where = config.resolve_path(section["model"], STAGE, "model"), config.where(STAGE, "model")
    elif config.section("model").get("path"):
        path = config.resolve_path(config.section("model")["path"], "model", "path")
        where = config.where("model", "path")
    elif section.get("dockerfile"):
        return None  # the user's Dockerfile brings its own model
    else:
        raise ConfigError(NO_MODEL)
    if not path.is_file():
        raise ConfigError(f"{where}: model file {path} not found")
    return path


def prepare_context(config: Config, section: Mapping[str, Any], model: Path | None,
                    folder: Path) -> Context:
    """Return the build context: the user's Dockerfile and folder, or a fresh ``folder`` with
    the rendered Dockerfile and what it copies. ConfigError for a missing Dockerfile or
    context, or a model the runtime cannot serve."""
    if section.get("dockerfile"):
        return _user_context(config, section)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    assert model is not None  # _model raised for a template build without one
    if section["runtime"] == "triton":
        return triton_context(section, model, folder, served_name(config))
    return builtin_context(config, section, model, folder)


def _user_context(config: Config, section: Mapping[str, Any]) -> Context:
    dockerfile = config.resolve_path(section["dockerfile"], STAGE, "dockerfile")
    if not dockerfile.is_file():
        raise ConfigError(f"{config.where(STAGE, 'dockerfile')}: Dockerfile {dockerfile} not found")
    if section.get("context"):
        folder = config.resolve_path(section["context"], STAGE, "context")
        if not folder.is_dir():
            raise ConfigError(f"{config.where(STAGE, 'context')}: build context {folder} is not "
                              "a folder")
    else:
        folder = dockerfile.parent
    if not section.get("allow_outside_repository"):
        root = work_tree(config.base_dir)
        _require_inside(root, dockerfile, "Dockerfile", config.where(STAGE, "dockerfile"))
        where = config.where(STAGE, "context" if section.get("context") else "dockerfile")
        _require_inside(root, folder, "build context", where)
    return Context(folder=folder, dockerfile=dockerfile)


def _require_inside(root: Path, path: Path, what: str, where: str) -> None:
    """Raise ConfigError (exit 2) naming ``where`` unless ``path``, symlinks resolved, is
    ``root`` or inside it."""
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise ConfigError(OUTSIDE_WORK_TREE.format(where=where, what=what, path=resolved,
                                                   root=root))


def builtin_context(config: Config, section: Mapping[str, Any], model: Path, folder: Path) -> Context:
    """Write the built-in server's context into ``folder``: Dockerfile, requirements, the
    shipml wheel, the host's CA bundle (pip inside the build needs it behind a proxy that
    re-signs TLS), the image's shipml.yaml and the model."""
    base_image = _dockerfile.check_image_reference(str(section["base_image"]),
                                                   config.where(STAGE, "base_image"))
    model_file = _model_file_name(model)
    (folder / "requirements.txt").write_text(
        "# shipml[serve]'s dependencies, written by shipml build\n"
        + "".join(f"{line}\n" for line in requirements()), encoding="utf-8")
    write_wheel(folder)
    ca_bundle = _ca_bundle()
    if ca_bundle is not None:
        shutil.copyfile(ca_bundle, folder / "ca-certificates.crt")
    (folder / "shipml.yaml").write_text(_image_config(config, model_file), encoding="utf-8")
    (folder / MODEL_FOLDER).mkdir()
    shutil.copyfile(model, folder / MODEL_FOLDER / model_file)
    text = _dockerfile.render_builtin(_dockerfile.BuiltinImage(
        base_image=base_image, model_file=model_file, wheel=wheel_name(),
        port=int(section["port"]), user=int(section["user"]),
        pip_index_url=_index_url(section), ca_bundle=ca_bundle is not None))
    (folder / "Dockerfile").write_text(text, encoding="utf-8")
    return Context(folder=folder, dockerfile=folder / "Dockerfile", base_image=base_image)


def triton_context(section: Mapping[str, Any], model: Path, folder: Path,
                   served: str = SERVED_NAME) -> Context:
    """Write Triton's context into ``folder``: ``model_repository/<name>/config.pbtxt``,
    ``model_repository/<name>/1/model.onnx`` and the Dockerfile; ``<name>`` is made from
    ``served`` (:func:`served_name`), not from the model file's stem."""
    triton = section["triton"]
    inputs, outputs = _triton.read_signature(model)
    max_batch = int(triton["max_batch_size"])
    batching = max_batch > 0 and _triton.batchable([*inputs, *outputs])
    name = _triton.triton_name(served)
    config_text = _dockerfile.render_triton_config(_dockerfile.TritonConfig(
        name=name, source=_model_file_name(model), max_batch_size=max_batch if batching else 0,
        inputs=_triton.triton_tensors(inputs, batching, model),
        outputs=_triton.triton_tensors(outputs, batching, model),
        instances=int(triton["instances"]), kind=str(triton["kind"])))
    version_dir = folder / "model_repository" / name / "1"
    version_dir.mkdir(parents=True)
    shutil.copyfile(model, version_dir / "model.onnx")
    (folder / "model_repository" / name / "config.pbtxt").write_text(config_text, encoding="utf-8")
    base_image = str(triton["base_image"])
    (folder / "Dockerfile").write_text(
        _dockerfile.render_triton(_dockerfile.TritonImage(base_image=base_image)), encoding="utf-8")
    return Context(folder=folder, dockerfile=folder / "Dockerfile", base_image=base_image)


def served_name(config: Config) -> str:
    """Return the model's name in the image's URLs: ``serve.name`` where the user declared one,
    else :data:`SERVED_NAME`, never the model file's stem (which changes between versions)."""
    return str(config.section("serve").get("name") or SERVED_NAME)


def _image_config(config: Config, model_file: str) -> str:
    model = {key: value for key, value in config.section("model").items() if key in _MODEL_KEYS}
    # The training data stays behind: the image carries the column names the gates bound the
    # model's single tensor to, so that /predict takes the same named rows as outside it.
    features, _ = feature_columns(config)
    if features and not model.get("features"):
        model["features"] = list(features)
    document: dict[str, Any] = {"model": {"path": f"{MODEL_FOLDER}/{model_file}", **model}}
    serve: dict[str, Any] = {}
    if "serve" in config.written:
        # The image decides where the model is and where the server listens (its ENV).
        serve = {key: value for key, value in config.section("serve").items()
                 if key not in _SERVE_KEYS_SET_BY_IMAGE}
    document["serve"] = {**serve, "name": served_name(config)}
    return ("# written by shipml build: what `shipml serve` reads inside the image\n"
            + yaml.safe_dump(document, sort_keys=False))


def _model_file_name(model: Path) -> str:
    name = model.name
    return name if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name) else "model.onnx"


def _ca_bundle() -> Path | None:
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"),
                      os.environ.get("REQUESTS_CA_BUNDLE"), *_CA_CANDIDATES):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _index_url(section: Mapping[str, Any]) -> str:
    if section.get("pip_index_url"):
        return str(section["pip_index_url"])
    host = os.environ.get("PIP_INDEX_URL", "")
    # A file:// or local index of the build machine is not there inside the build.
    return host if host.startswith(("http://", "https://")) else DEFAULT_INDEX


def _dockerfile_argument(context: Context) -> str:
    # The SDK wants the Dockerfile relative to the context; one outside it is sent along.
    try:
        return context.dockerfile.resolve().relative_to(context.folder.resolve()).as_posix()
    except ValueError:
        return str(context.dockerfile.resolve())


def _added_bytes(engine: Engine, size: int, base_image: str) -> int | None:
    if not base_image:
        return None
    try:
        return size - engine.size(base_image)
    except Exception:  # the base came from a registry under another name: no figure
        return None


def _version(provenance: Provenance, tags: list[str]) -> str:
    version = parse_version(provenance.git.tag) if provenance.git.tag else None
    return version.version if version is not None else tags[0]


def _created() -> str:
    # SOURCE_DATE_EPOCH makes the label reproducible, as reproducible-builds.org asks.
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    moment = (_dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc) if epoch.isdigit()
              else _dt.datetime.now(_dt.timezone.utc))
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _arg(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _echo(line: str) -> None:
    print(line, flush=True)
