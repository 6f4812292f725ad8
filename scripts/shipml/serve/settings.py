"""The ``serve:`` section of ``shipml.yaml`` (plus ``model:``) as one frozen value, with tokens,
certificate files and the model's column names resolved and checked before anything listens."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipml.config import Config
from shipml.errors import ConfigError

NO_MODEL = (
    "serve.model: no model to serve; run `shipml serve model.onnx`, or set it in shipml.yaml:\n"
    "  model:\n    path: model.onnx"
)
TLS_HALF = (
    "{where}: serve.tls needs both cert_file and key_file; set both, e.g.\n"
    "  serve:\n    tls:\n      cert_file: tls/server.crt\n      key_file: tls/server.key"
)
BAD_TOKEN = (
    "{where}: token {position} contains whitespace or characters outside printable ASCII; a bearer "
    "token is one word of printable ASCII (the token itself is not shown)"
)
NO_TOKENS_IN_FILE = "{where}: {path} holds no token; write one token per line"


@dataclass(frozen=True)
class PredictionLogSettings:
    """Where and how much of the traffic is written for monitoring (off while ``path`` is None)."""

    path: Path | None = None
    sample: float = 0.1
    max_bytes: int = 64 * 2**20
    max_files: int = 5
    queue_size: int = 10_000


@dataclass(frozen=True)
class ServeSettings:
    """Everything the server needs, resolved: paths absolute, tokens loaded, defaults applied."""

    model_path: Path
    name: str
    version: str | None = None
    revision: str = "unknown"
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    intra_op: int = 1
    inter_op: int = 1
    max_body_bytes: int = 16 * 2**20
    max_rows: int = 100_000
    max_concurrency: int = 64
    max_connections: int = 512
    #: open connections from one client address (default: half of max_connections)
    max_connections_per_client: int = 256
    read_timeout_s: float = 30.0
    #: the whole head and body of a request must arrive within this long
    request_timeout_s: float = 30.0
    drain_timeout_s: float = 25.0
    access_log: bool = True
    #: accepted bearer tokens; never shown (repr=False), never logged
    tokens: tuple[str, ...] = field(default=(), repr=False)
    auth_metrics: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_batch_size: int = 1
    max_delay_s: float = 0.002
    prediction_log: PredictionLogSettings = field(default_factory=PredictionLogSettings)
    #: the model's feature columns in order, for a single-tensor model (model.features or train's)
    features: tuple[str, ...] | None = None
    #: where the feature columns came from, for messages
    features_source: str = ""
    #: --debug: a 500's traceback goes to the log
    debug: bool = False
    #: the shadow file ($SHIPML_SHADOW_FILE): where to mirror a share of /predict, re-read while
    #: serving (:mod:`shipml.serve.shadow`); None: never mirror
    shadow_file: Path | None = None

    @property
    def auth(self) -> bool:
        """Return True when requests need a bearer token."""
        return bool(self.tokens)

    @property
    def batching(self) -> bool:
        """Return True when concurrent requests are joined into one onnxruntime call."""
        return self.max_batch_size > 1


def serve_settings(config: Config, environ: dict[str, str] | None = None,
                   debug: bool = False) -> ServeSettings:
    """Return the server's settings from ``config`` (``debug``: log a 500's traceback).

    Raises ConfigError for no model, half a TLS pair, a missing certificate, key or tokens file,
    an empty tokens file or a malformed token (named by position, never shown).
    """
    env = dict(os.environ) if environ is None else environ
    serve = config.section("serve")
    model = config.section("model")
    if serve.get("model"):
        model_path = config.resolve_path(str(serve["model"]), "serve", "model")
    elif model.get("path"):
        model_path = config.resolve_path(str(model["path"]), "model", "path")
    else:
        raise ConfigError(NO_MODEL)
    auth = serve["auth"]
    tls = serve["tls"]
    batching = serve["batching"]
    log = serve["log_predictions"]
    features, features_source = feature_columns(config)
    return ServeSettings(
        model_path=model_path,
        name=str(serve.get("name") or _url_name(model_path.stem)),
        version=serve.get("version"),
        revision=str(serve.get("revision") or "unknown"),
        host=str(serve["host"]),
        port=int(serve["port"]),
        workers=int(serve["workers"]),
        intra_op=int(serve["threads"]["intra_op"]),
        inter_op=int(serve["threads"]["inter_op"]),
        max_body_bytes=int(float(serve["max_body_mb"]) * 2**20),
        max_rows=int(serve["max_rows"]),
        max_concurrency=int(serve["max_concurrency"]),
        max_connections=int(serve["max_connections"]),
        max_connections_per_client=_per_client(serve),
        read_timeout_s=float(serve["read_timeout_s"]),
        request_timeout_s=float(serve["request_timeout_s"]),
        drain_timeout_s=float(serve["drain_timeout_s"]),
        access_log=bool(serve["access_log"]),
        tokens=_tokens(config, auth, env),
        auth_metrics=bool(auth["metrics"]),
        tls_cert=_tls_file(config, tls, "cert_file"),
        tls_key=_tls_file(config, tls, "key_file"),
        max_batch_size=int(batching["max_batch_size"]),
        max_delay_s=float(batching["max_delay_ms"]) / 1000,
        prediction_log=PredictionLogSettings(
            path=(config.resolve_path(str(log["path"]), "serve", "log_predictions", "path")
                  if log.get("path") else None),
            sample=float(log["sample"]),
            max_bytes=max(1, int(float(log["max_mb"]) * 2**20)),
            max_files=int(log["max_files"]),
            queue_size=int(log["queue_size"]),
        ),
        features=features,
        features_source=features_source,
        debug=debug,
        shadow_file=Path(env["SHIPML_SHADOW_FILE"]) if env.get("SHIPML_SHADOW_FILE") else None,
    )


def _per_client(serve: dict[str, Any]) -> int:
    """Return ``max_connections_per_client``, by default half of ``max_connections``: one address
    (a client, or a proxy in front) can never hold every slot."""
    given = serve.get("max_connections_per_client")
    total = int(serve["max_connections"])
    return min(int(given), total) if given is not None else max(1, total // 2)


def _url_name(stem: str) -> str:
    cleaned = "".join(char if char.isalnum() or char in "._-" else "-" for char in stem)
    return cleaned.lstrip("._-") or "model"


def _tls_file(config: Config, tls: dict[str, Any], key: str) -> Path | None:
    cert, private = tls.get("cert_file"), tls.get("key_file")
    if bool(cert) != bool(private):
        raise ConfigError(TLS_HALF.format(where=config.where("serve", "tls")))
    value = tls.get(key)
    if not value:
        return None
    path = config.resolve_path(str(value), "serve", "tls", key)
    if not path.is_file():
        raise ConfigError(f"{config.where('serve', 'tls', key)}: {path} not found; give a PEM file")
    return path


def _tokens(config: Config, auth: dict[str, Any], env: dict[str, str]) -> tuple[str, ...]:
    found: list[str] = []
    where = config.where("serve", "auth", "tokens_file")
    if auth.get("tokens_file"):
        path = config.resolve_path(str(auth["tokens_file"]), "serve", "auth", "tokens_file")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(f"{where}: cannot read {path}: {reason}") from None
        lines = [line.strip() for line in text.splitlines()]
        from_file = [line for line in lines if line and not line.startswith("#")]
        if not from_file:
            raise ConfigError(NO_TOKENS_IN_FILE.format(where=where, path=path))
        for number, token in enumerate(from_file, 1):
            _check_token(token, f"{where} ({path})", f"#{number}")
        found += from_file
    variable = str(auth["token_env"])
    for number, token in enumerate(part.strip() for part in env.get(variable, "").split(",")):
        if token:
            _check_token(token, f"environment {variable}", f"#{number + 1}")
            found.append(token)
    return tuple(dict.fromkeys(found))


def _check_token(token: str, where: str, position: str) -> None:
    if not all(33 <= ord(char) <= 126 for char in token):
        raise ConfigError(BAD_TOKEN.format(where=where, position=position))


def feature_columns(config: Config) -> tuple[tuple[str, ...] | None, str]:
    """Return ``(names, source)``: the column names a single-tensor model reads and where they
    came from: ``model.features``, else the training data's header without the label and
    ``model.ignore_columns`` (the rule ``validate`` binds a table by), else ``(None, "")`` (rows
    are then lists). Never raises: an unreadable training file names no columns."""
    model = config.section("model")
    if model.get("features"):
        return tuple(str(name) for name in model["features"]), config.where("model", "features")
    train = model.get("train")
    if not train:
        return None, ""
    path = config.resolve_path(str(train), "model", "train")
    if not path.is_file():
        return None, ""
    header = _header(path)
    ignored = {str(model.get("label") or "")} | {str(c) for c in model.get("ignore_columns") or []}
    return tuple(column for column in header if column not in ignored), str(path)


def _header(path: Path) -> list[str]:
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return [str(name) for name in pq.read_schema(path).names]
        import csv

        with path.open(newline="", encoding="utf-8") as handle:
            return [str(c) for c in next(csv.reader(handle, delimiter="\t" if suffix == ".tsv"
                                                    else ","), [])]
    except Exception:  # only names for /predict: an unreadable file leaves rows unnamed
        return []
