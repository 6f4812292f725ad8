"""``shipml serve``: the thin handler over :mod:`shipml.serve.workers`."""

from __future__ import annotations

import argparse
from typing import Any

from shipml._stage import MODEL, Option, add_command, overrides
from shipml.config import Override, find_config, load_config

#: the keys ``shipml serve`` takes from flags and ``SHIPML_*`` variables
OPTIONS = (
    MODEL,
    Option("--name", ("serve", "name"), "SHIPML_SERVE_NAME",
           "the model's name in the URLs (default: the file's stem)", "NAME"),
    Option("--model-version", ("serve", "version"), "SHIPML_SERVE_VERSION",
           "the version label (default: sha256 prefix of the file)", "VERSION"),
    Option("--revision", ("serve", "revision"), "SHIPML_REVISION",
           "the deployment's revision label, set by the deployment", "REVISION"),
    Option("--host", ("serve", "host"), "SHIPML_SERVE_HOST", "address to listen on", "ADDRESS"),
    Option("--port", ("serve", "port"), "SHIPML_SERVE_PORT", "port to listen on; 0 picks one",
           "PORT"),
    Option("--workers", ("serve", "workers"), "SHIPML_SERVE_WORKERS", "server processes", "N"),
    Option("--threads", ("serve", "threads", "intra_op"), "SHIPML_SERVE_THREADS",
           "onnxruntime intra-op threads per worker", "N"),
    Option("--max-batch-size", ("serve", "batching", "max_batch_size"), "SHIPML_MAX_BATCH_SIZE",
           "dynamic batching: most rows per joined call (1: off)", "ROWS"),
    Option("--max-delay-ms", ("serve", "batching", "max_delay_ms"), "SHIPML_MAX_DELAY_MS",
           "dynamic batching: longest wait for a batch to fill", "MS"),
    Option("--tokens-file", ("serve", "auth", "tokens_file"), "SHIPML_SERVE_TOKENS_FILE",
           "accepted bearer tokens, one per line", "PATH"),
    Option("--tls-cert", ("serve", "tls", "cert_file"), "SHIPML_TLS_CERT", "PEM certificate",
           "PATH"),
    Option("--tls-key", ("serve", "tls", "key_file"), "SHIPML_TLS_KEY", "PEM private key", "PATH"),
    Option("--log-predictions", ("serve", "log_predictions", "path"), "SHIPML_LOG_PREDICTIONS",
           "write a sampled prediction log here (JSON Lines)", "PATH"),
    Option("--drain-timeout", ("serve", "drain_timeout_s"), "SHIPML_DRAIN_TIMEOUT",
           "seconds to finish in-flight requests after SIGTERM", "SECONDS"),
    Option("--request-timeout", ("serve", "request_timeout_s"), "SHIPML_REQUEST_TIMEOUT",
           "seconds a request's whole head and body may take to arrive (408 after)", "SECONDS"),
    Option("--max-connections", ("serve", "max_connections"), "SHIPML_MAX_CONNECTIONS",
           "open client connections per worker (503 beyond)", "N"),
    Option("--max-connections-per-client", ("serve", "max_connections_per_client"),
           "SHIPML_MAX_CONNECTIONS_PER_CLIENT",
           "open connections from one client address (default: half of max_connections)", "N"),
)


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``serve`` subcommand."""
    parser = add_command(
        subparsers, common, "serve", OPTIONS, run_cli,
        summary="serve the ONNX model over HTTP (Open Inference Protocol v2 and /predict)",
        description="Answer predictions for the ONNX model: POST /predict with rows as JSON "
                    "objects, or the v2 protocol (/v2/models/NAME/infer); health, metadata and "
                    "Prometheus /metrics. Ready after a warm-up inference; SIGTERM drains. "
                    "Exit 0 after a drain, 2 bad input, 3 infrastructure.",
    )
    parser.add_argument("model_file", nargs="?", metavar="MODEL",
                        help="the ONNX file to serve (serve.model; default model.path)")


def run_cli(args: argparse.Namespace) -> int:
    """Load the configuration and serve until SIGTERM; return the exit code."""
    from shipml.serve.settings import serve_settings
    from shipml.serve.workers import serve

    given = overrides(args, OPTIONS)
    if args.model_file:
        given.append(Override(path=("serve", "model"), value=args.model_file,
                              source="the MODEL argument"))
    config = load_config(find_config(args.config), given)
    return serve(serve_settings(config, debug=bool(getattr(args, "debug", False))))
