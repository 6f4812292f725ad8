"""actions/sign runs its step the way the runner does (tests/_action_step.py): inputs only
through ``env:``, outputs through ``GITHUB_OUTPUT``, hostile inputs inert."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipml.sign.core import attestation_tag, signature_tag
from tests._action_step import load_action, run_step
from tests.oci._registry import Registry
from tests.sign.conftest import KeyPair, pushed


def test_the_action_is_a_shim_with_every_input_in_env() -> None:
    action = load_action("sign")
    steps = action["runs"]["steps"]
    assert [step["id"] for step in steps] == ["install", "sign"]
    assert steps[0]["env"]["SHIPML_SETUP_EXTRAS"] == "sign"
    assert steps[1]["run"] == 'exec "$SHIPML_EXECUTABLE" sign'
    assert "${{" not in steps[1]["run"]
    assert {"image", "digest", "signature", "attestation", "status", "result"} <= \
        set(action["outputs"])


@pytest.mark.registry
def test_the_action_signs_and_sets_its_outputs(registry: Registry, key_pair: KeyPair,
                                               workspace: Path) -> None:
    image = pushed(registry)
    completed, outputs = run_step("sign", {"image": str(image.with_digest(image.digest)),
                                           "key": str(key_pair.private), "cosign": "never"},
                                  workspace, {"COSIGN_PASSWORD": key_pair.password})
    assert completed.returncode == 0, completed.stderr
    assert key_pair.password not in completed.stdout + completed.stderr
    repository = f"{registry.address}/{image.repository}"
    assert outputs["status"] == "pass"
    assert outputs["image"] == repository and outputs["digest"] == image.digest
    assert outputs["signature"] == f"{repository}:{signature_tag(image.digest)}"
    assert outputs["attestation"] == f"{repository}:{attestation_tag(image.digest)}"


@pytest.mark.parametrize("hostile", ['$(touch {marker})', "x`touch {marker}`",
                                     "a; touch {marker}", "a\n::error::forged"])
def test_hostile_inputs_stay_data(hostile: str, workspace: Path, key_pair: KeyPair) -> None:
    marker = workspace / "pwned"
    completed, outputs = run_step("sign", {"image": hostile.format(marker=marker),
                                           "key": str(key_pair.private), "cosign": "never"},
                                  workspace, {"COSIGN_PASSWORD": key_pair.password})
    assert completed.returncode == 2
    assert "is not an image reference" in completed.stderr
    assert not marker.exists()
    assert outputs["status"] == "error"
