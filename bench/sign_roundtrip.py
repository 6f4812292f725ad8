"""Wall time of sign + attest + verify for one image on a local registry (the Debian
docker-registry on 127.0.0.1, started and stopped here), built-in signer.

Each figure is the median of ``--rounds`` runs, each in a fresh ``shipml`` process as CI runs
it (interpreter start and imports included), measured side by side in this one run: sign +
attest (``shipml sign``), verify of the signature (``shipml verify``), verify with the gates
(``shipml verify --require-gates``), and the scrypt key unlock alone (cosign's N=65536), which
every sign pays. Needs ``apt-get install -y docker-registry apache2-utils``.

    .venv/bin/python bench/sign_roundtrip.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from shipml.oci import RegistryClient  # noqa: E402
from shipml.results import Check, StageResult  # noqa: E402
from shipml.sign.keys import generate_key_pair, load_private_key  # noqa: E402
from tests.oci._registry import push_test_image, run_registry  # noqa: E402

PASSWORD = "bench-password"


def _timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    completed = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(argv[1:3])} failed: {completed.stdout}{completed.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    shipml = str(Path(sys.executable).parent / "shipml")
    with tempfile.TemporaryDirectory(prefix="shipml-bench-sign-") as folder:
        work = Path(folder)
        private, public = generate_key_pair(PASSWORD)
        (work / "cosign.key").write_bytes(private)
        (work / "cosign.pub").write_bytes(public)
        (work / "model.onnx").write_bytes(os.urandom(4096))
        (work / "shipml.yaml").write_text("model:\n  path: model.onnx\n")
        for stage in ("validate", "optimize", "latency"):
            StageResult(stage=stage, status="pass", summary="ok", started_at="", duration_s=1.0,
                        checks=tuple(Check(f"{stage} check {i}", "pass", observed=i, threshold=10)
                                     for i in range(8))).write(work / ".shipml")
        env = {**os.environ, "COSIGN_PASSWORD": PASSWORD, "SHIPML_COSIGN": "never",
               "DOCKER_CONFIG": str(work / "docker")}
        in_process: list[float] = []
        figures: dict[str, list[float]] = {"sign + attest": [], "verify": [],
                                           "verify --require-gates": [], "key unlock (scrypt)": []}
        with run_registry(work / "registry") as registry:
            client = RegistryClient(registry.address)
            for round_number in range(args.rounds):
                digest = push_test_image(client, "bench/model", f"r{round_number}",
                                         f"round {round_number}".encode())
                image = f"{registry.address}/bench/model@{digest}"
                figures["sign + attest"].append(
                    _timed([shipml, "sign", "--key", "cosign.key", image], work, env))
                figures["verify"].append(
                    _timed([shipml, "verify", "--key", "cosign.pub", image], work, env))
                figures["verify --require-gates"].append(
                    _timed([shipml, "verify", "--key", "cosign.pub", "--require-gates", image],
                           work, env))
                started = time.perf_counter()
                load_private_key(work / "cosign.key", PASSWORD)
                figures["key unlock (scrypt)"].append(time.perf_counter() - started)
                in_process.append(_in_process(work, env, image))
        started = time.perf_counter()
        subprocess.run([shipml, "--version"], capture_output=True, check=True)
        startup = time.perf_counter() - started
    print(f"sign + attest + verify, one image, local registry, built-in signer "
          f"(median of {args.rounds}, fresh processes)")
    for name, values in figures.items():
        print(f"  {name:24} {statistics.median(values) * 1000:8.0f} ms")
    total = sum(statistics.median(figures[name]) for name in
                ("sign + attest", "verify --require-gates"))
    print(f"  {'sign+attest+verify':24} {total * 1000:8.0f} ms  (shipml --version alone: "
          f"{startup * 1000:.0f} ms)")
    print(f"  {'same, in one process':24} {statistics.median(in_process) * 1000:8.0f} ms  "
          "(sign + attest + verify --require-gates through main(), imports warm)")


def _in_process(work: Path, env: dict[str, str], image: str) -> float:
    from contextlib import redirect_stdout
    from io import StringIO

    from shipml.cli import main as shipml_main

    previous = dict(os.environ)
    os.environ.update(env)
    cwd = Path.cwd()
    os.chdir(work)
    try:
        with redirect_stdout(StringIO()):
            shipml_main(["verify", "--key", "cosign.pub", image])  # warm the imports
            started = time.perf_counter()
            codes = (shipml_main(["sign", "--key", "cosign.key", image]),
                     shipml_main(["verify", "--key", "cosign.pub", "--require-gates", image]))
            elapsed = time.perf_counter() - started
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(previous)
    if codes != (0, 0):
        raise SystemExit(f"in-process sign/verify exited {codes}")
    return elapsed


if __name__ == "__main__":
    main()
