"""``shipml canary [run|status|promote|abort|resume]``: the thin handler over
:mod:`shipml.canary.core`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipml import cli as _cli
from shipml._stage import MODEL, TEST, Option, add_command, conclude, stage_config
from shipml.errors import EXIT_OK, ConfigError
from shipml.results import Check, StageClock, handed_on, is_local_image_id

if TYPE_CHECKING:
    from shipml.canary.engine import Revision, RolloutState
    from shipml.config import Config

IMAGE = Option("--image", ("canary", "image"), "SHIPML_CANARY_IMAGE",
               "the image to roll out (default: build's hand-off)", "IMAGE")
#: the keys ``shipml canary`` takes from flags and ``SHIPML_*`` variables (action inputs)
OPTIONS = (
    IMAGE,
    Option("--service", ("canary", "service"), "SHIPML_CANARY_SERVICE",
           "the service's name on the target", "NAME"),
    Option("--target", ("canary", "target", "type"), "SHIPML_CANARY_TARGET",
           "docker or kubernetes", "TYPE"),
    Option("--method", ("canary", "target", "kubernetes", "method"), "SHIPML_CANARY_METHOD",
           "kubernetes traffic method: replicas, gateway-api, istio or kserve", "METHOD"),
    Option("--namespace", ("canary", "target", "kubernetes", "namespace"),
           "SHIPML_CANARY_NAMESPACE", "kubernetes namespace", "NAMESPACE"),
    Option("--port", ("canary", "target", "docker", "port"), "SHIPML_CANARY_PORT",
           "docker: the router's port", "PORT"),
    Option("--steps", ("canary", "steps"), "SHIPML_CANARY_STEPS",
           "the plan, WEIGHT[:PAUSE] comma-separated, e.g. 10:1m,50:manual,100", "LIST"),
    Option("--interval", ("canary", "interval"), "SHIPML_CANARY_INTERVAL",
           "time between analyses (30s, 2m)", "DURATION"),
    Option("--failure-limit", ("canary", "failure_limit"), "SHIPML_FAILURE_LIMIT",
           "failed analyses before rollback", "N"),
    Option("--min-requests", ("canary", "min_requests"), "SHIPML_MIN_REQUESTS",
           "canary requests an analysis window needs", "N"),
    Option("--inconclusive", ("canary", "inconclusive"), "SHIPML_INCONCLUSIVE",
           "hold, fail or pass for an analysis without enough data", "POLICY"),
    Option("--step-timeout", ("canary", "step_timeout"), "SHIPML_STEP_TIMEOUT",
           "longest a step may last without a conclusive analysis", "DURATION"),
    Option("--lease", ("canary", "lease"), "SHIPML_CANARY_LEASE",
           "how long the rollout lock outlives its holder", "DURATION"),
    Option("--prometheus-url", ("canary", "prometheus", "url"), "SHIPML_PROMETHEUS_URL",
           "Prometheus that scrapes both revisions", "URL"),
    Option("--public-key", ("canary", "public_key"), "SHIPML_CANARY_PUBLIC_KEY",
           "pre-flight: cosign.pub the image's signature must verify with", "PATH"),
    Option("--require-gates", ("canary", "require_gates"), "SHIPML_CANARY_REQUIRE_GATES",
           "pre-flight: also require the gates attestation"),
    MODEL,
    TEST,
)
ACTIONS = ("run", "status", "promote", "abort", "resume")
NOT_SIGNED = "not rolled out: {detail}"
UNPUSHED_PREFLIGHT = ("{where}: the image to roll out, {image}, is a local image id (built but "
                      "not pushed): no registry holds a signature of it to verify; push it "
                      "(build.push: true, the default) and sign it, or leave canary.public_key "
                      "unset")
PROMETHEUS_CONFIG_DOCKER_ONLY = (
    "--print-prometheus-config: canary.target.type is {kind}; the printed configuration is the "
    "docker target's (its slots on 127.0.0.1); on kubernetes scrape the pods with your "
    "Prometheus' kubernetes_sd_configs")
PINNED = ("canary: {image} resolved to {verified} in its registry, whose signature verified; "
          "only that digest runs (never an image of the same tag on the target)")


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``canary`` subcommand and its actions."""
    parser = add_command(
        subparsers, common, "canary", OPTIONS, run_cli,
        summary="roll the image out step by step, analysed against the stable, with rollback",
        description="Shift traffic to the new image in steps, analyse it against the stable "
                    "every interval (Prometheus, a probe with real test rows) and promote it or "
                    "roll it back. ACTION: run (default; resumes a stopped rollout), status, "
                    "promote, abort, resume. Exit 0 promoted (or paused), 1 rolled back or not "
                    "verified, 2 bad input, 3 infrastructure.",
    )
    parser.add_argument("action", nargs="?", choices=ACTIONS, default=None, metavar="ACTION",
                        help="run (default), status, promote, abort or resume ($SHIPML_CANARY_ACTION)")
    parser.add_argument("--print-prometheus-config", action="store_true",
                        help="docker target: print the prometheus.yml that scrapes both slots "
                             "(from canary.target.docker and canary.prometheus) and exit")


def run_cli(args: argparse.Namespace) -> int:
    """Run the chosen action; write ``results/canary.json`` (except for status); return the
    exit code."""
    from shipml.canary import core
    from shipml.ci import detect

    clock = StageClock()
    platform = detect()
    args.action = _action(args.action)
    config = stage_config(args, OPTIONS)
    settings = core.read_settings(config)
    if args.print_prometheus_config:
        return _print_prometheus_config(settings)
    output = _cli.output_dir(args)
    if args.action == "status":
        return _status(settings, config)
    image = _image(config, output) if args.action == "run" else None
    preflight: tuple[Check, ...] = ()
    verified = image
    if image is not None and config.section("canary")["public_key"]:
        preflight, verified = _preflight(config, image)
        failed = [check for check in preflight if check.status != "pass"]
        if failed:
            result = core.stage_result(None, clock, None, preflight=preflight,
                                       summary=NOT_SIGNED.format(
                                           detail=failed[0].detail or failed[0].name))
            return conclude(result, result.write(output), platform, config=config,
                            outputs={"outcome": "refused", "final-weight": "0", "analysis": ""})
    runner = core.make_runner(settings, config)
    if verified != image:
        runner.say(PINNED.format(image=image, verified=verified))
    # From here on only the verified digest exists: run, probe and record exactly it.
    image = verified
    if args.action == "run":
        state = core.roll_out(runner, image)
    else:
        state = core.manual(runner, args.action)
    result = core.stage_result(state, clock, runner, preflight=preflight)
    last = runner.rounds[-1] if runner.rounds else None
    return conclude(result, result.write(output), platform, config=config, outputs={
        "outcome": state.phase, "final-weight": str(state.weight),
        "analysis": core.summary_of(last)})


def _action(given: str | None) -> str:
    """Return the action: the positional ACTION, else $SHIPML_CANARY_ACTION (the action input),
    else ``run``; raise ConfigError for another word."""
    import os

    chosen = given or os.environ.get("SHIPML_CANARY_ACTION", "").strip() or "run"
    if chosen not in ACTIONS:
        from shipml.errors import did_you_mean

        raise ConfigError(f"environment SHIPML_CANARY_ACTION: {chosen!r} is not an action; valid: "
                          f"{', '.join(ACTIONS)}{did_you_mean(chosen, ACTIONS)}")
    return chosen


def _status(settings: Any, config: Config) -> int:
    """Print where the stored rollout stands: its phase, the stable revision now (after a
    promotion, the canary it promoted), each step's analyses and why it ended; then the stored
    state as JSON. Returns 0."""
    from shipml.canary.targets import build_target

    target = build_target(settings.target_type, settings.service, settings.target, config.where)
    state = target.store.read_state()
    if state is None:
        print(f"shipml canary: no rollout stored on {target.describe()}")
        return EXIT_OK
    for line in status_lines(state, len(settings.plan.steps), settings.plan.failure_limit,
                             target.workload.stable()):
        print(line)
    print(json.dumps(state.to_dict(), sort_keys=True))
    return EXIT_OK


def status_lines(state: RolloutState, steps: int, failure_limit: int,
                 running: Revision | None) -> list[str]:
    """Return the lines of ``shipml canary status`` for the stored ``state``: the stable is the
    promoted canary once the rollout promoted it, else the state's stable; ``running`` (what the
    target serves as stable) is named too when it differs after the rollout ended."""
    lines = [f"shipml canary: {state.service}: {state.phase.replace('_', ' ')} at step "
             f"{state.step + 1}/{steps}, weight {state.weight}%"]
    stable: Revision | None = state.canary
    if state.phase == "promoted":
        before = state.stable
        lines.append(f"  stable  {state.canary.revision} ({state.canary.image}), promoted by "
                     "this rollout" + (f"; before it: {before.revision}"
                                       if before and before.revision != state.canary.revision
                                       else ""))
    else:
        stable = state.stable or running
        ended = {"rolled_back": ", rolled back", "aborted": ", aborted"}.get(state.phase, "")
        lines.append(f"  canary  {state.canary.revision} ({state.canary.image}){ended}")
        if stable is not None:
            lines.append(f"  stable  {stable.revision} ({stable.image})")
    # While a rollout moves, the state's stable is the one traffic is split with (KServe's
    # spec already names the canary); once it ended, the target's stable must be the state's.
    if state.final and running is not None and stable is not None \
            and running.revision != stable.revision:
        lines.append(f"  the target serves {running.revision} ({running.image}) as its stable")
    lines.append(f"  failures {state.failures}/{failure_limit}")
    for record in state.history:
        lines.append(f"  step {record.step + 1} ({record.weight}%): {record.status}, "
                     f"{record.tally}" + (f"; {record.reason}" if record.reason else ""))
    if state.reason:
        lines.append(f"  reason  {state.reason}")
    return lines


def _print_prometheus_config(settings: Any) -> int:
    """Print the Prometheus configuration of the docker target's slots; return 0. Raises
    ConfigError for another target."""
    from shipml.canary.targets.docker_prometheus import scrape_config

    if settings.target_type != "docker":
        raise ConfigError(PROMETHEUS_CONFIG_DOCKER_ONLY.format(kind=settings.target_type))
    print(scrape_config(settings.service, settings.target, settings.prometheus,
                        min_requests=settings.plan.min_requests), end="")
    return EXIT_OK


def _image(config: Config, output: Path) -> str | None:
    chosen = config.section("canary")["image"]
    if chosen:
        return str(chosen)
    handed = handed_on(output, "image")
    return (handed.handoff.argument or None) if handed is not None else None


def _preflight(config: Config, image: str) -> tuple[tuple[Check, ...], str]:
    """Verify the image's signature (and gates attestation) with ``canary.public_key``; return
    the checks and the image pinned to the digest they verified (a tag resolved once, here)."""
    from shipml.oci import Reference, RegistryClient, RegistryOptions
    from shipml.sign.core import describe_key, verify_image
    from shipml.sign.keys import load_public_key

    section = config.section("canary")
    key_text = str(section["public_key"])
    if is_local_image_id(image):
        raise ConfigError(UNPUSHED_PREFLIGHT.format(where=config.where("canary", "public_key"),
                                                    image=image))
    if "://" in key_text and not key_text.startswith("env://"):
        raise ConfigError(f"{config.where('canary', 'public_key')}: {key_text} is a key URI; the "
                          "pre-flight reads key files and env://VARIABLE")
    key_path = key_text if key_text.startswith("env://") else \
        config.resolve_path(key_text, "canary", "public_key")
    key = load_public_key(key_path)
    reference = Reference.parse(image, config.where("canary", "image"))
    client = RegistryClient(reference.registry, RegistryOptions())
    verification = verify_image(client, reference, key, key_name=describe_key(key, key_text),
                                require_gates=bool(section["require_gates"]))
    return verification.checks, str(verification.image)
