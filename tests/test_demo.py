"""``shipml demo --release`` (what ``bash .ci/demo`` runs when a Docker Engine answers): the whole
loop on the bundled example, the release half on the services of ``bash .ci/services``: build on
the loopback registry, sign with a fresh key, a first deploy, a canary of the optimized model
analysed on live traffic through two steps to promotion, and the report with the rollout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from shipml.cli import main
from shipml.commands._demo_release import NEEDS_SERVICES, run_release
from shipml.errors import InfrastructureError
from shipml.example import example_dir

pytestmark = [pytest.mark.docker, pytest.mark.e2e, pytest.mark.slow]


def _result(folder: Path, stage: str) -> dict[str, object]:
    return dict(json.loads((folder / "results" / f"{stage}.json").read_text(encoding="utf-8")))


def test_the_release_half_builds_signs_deploys_and_rolls_out_the_optimized_model(
        services: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import docker

    folder = tmp_path / "demo"
    code = main(["demo", "--dir", str(folder), "--release"])
    out = capsys.readouterr().out
    assert code == 0, out[-6000:]
    release = yaml.safe_load((example_dir() / "release.yaml").read_text(encoding="utf-8"))
    service = release["canary"]["service"]
    for stage in ("validate", "optimize", "latency", "build", "sign", "canary"):
        assert _result(folder, stage)["status"] == "pass", (stage, out[-6000:])
    # a fresh key signed the image the canary rolled out: the optimized model's
    assert (folder / "cosign.key").is_file() and (folder / "cosign.pub").is_file()
    build, canary = _result(folder, "build"), _result(folder, "canary")
    metrics: dict[str, object] = canary["metrics"]  # type: ignore[assignment]
    assert str(metrics["image"]).split("@")[1] == build["metrics"]["digest"]  # type: ignore[index]
    assert metrics["phase"] == "promoted" and metrics["final_weight"] == 100
    assert "shipml-demo: no stable revision yet: first deploy of" in out
    # live analysis lines at both weighted steps, judged on the demo's load through the router
    decisions = [str(line) for line in metrics["decisions"]]  # type: ignore[attr-defined]
    for step in ("step 1/3 weight 25%", "step 2/3 weight 50%"):
        analysed = [line for line in decisions if line.startswith(f"canary {service} {step}: ")
                    and "error-rate=" in line and " → pass" in line]
        assert analysed, (step, decisions)
    assert "verify: its signature and gates attestation with cosign.pub" in out
    assert "shipml verify: PASS" in out
    # the Prometheus it ran is the one --print-prometheus-config prints for release.yaml
    scraped = yaml.safe_load((folder / "prometheus" / "prometheus.yml").read_text("utf-8"))
    assert scraped["scrape_configs"][0]["static_configs"][0]["targets"] == [
        f"127.0.0.1:{port}" for port in release["canary"]["target"]["docker"]["ports"]]
    sent = [line for line in out.splitlines() if line.startswith("shipml demo: the load sent ")]
    assert sent and int(sent[0].split()[5]) > 0, out[-3000:]
    report = (folder / "report" / "report.md").read_text(encoding="utf-8")
    assert "ready to ship: 6 of 6 stages passed" in report
    assert "promoted to 100%" in report and (folder / "report" / "report.html").is_file()
    assert out.rstrip().splitlines()[-1].startswith(
        "shipml demo: all gates passed, signed and rolled out (pull-request half ")
    # the demo leaves no container of its service behind
    client = docker.from_env()
    try:
        assert not client.containers.list(
            all=True, filters={"label": f"dev.shipml.canary={service}"})
    finally:
        client.close()


def test_without_an_engine_the_release_half_says_how_to_get_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-engine.sock'}")
    with pytest.raises(InfrastructureError) as raised:
        run_release(tmp_path, debug=False)
    # the registry and Prometheus may be missing too; the engine is named first
    assert raised.value.message.startswith(NEEDS_SERVICES.split("{")[0] + "a Docker Engine")
    assert "`sudo bash .ci/services`, then `bash .ci/demo`" in raised.value.message
