"""Quantization: dynamic INT8 over FP32 p50 speed-up on a transformer encoder, and its parity.

Exports a transformer encoder (width 256, 2 layers) from PyTorch with dynamic batch and sequence
axes, runs ``shipml optimize`` with the dynamic_int8 candidate (parity by cosine similarity on
synthetic token ids, timing interleaved with the FP32 original in fresh processes, batch 1,
sequence 128) and prints the speed-up and the smallest cosine similarity
(targets: ≥ 2×, ≥ 0.99).
Usage: python bench/optimize_quantization.py
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shipml.cli import main  # noqa: E402
from tests._models import export_encoder  # noqa: E402


def main_bench() -> None:
    logging.disable(logging.INFO)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = folder / "encoder.onnx"
        export_encoder(model, width=256)
        (folder / "shipml.yaml").write_text(yaml.safe_dump({
            "model": {"path": str(model)},
            "optimize": {"candidates": ["dynamic_int8"], "parity": {"rows": 64},
                         "timing": {"rounds": 10, "process_time_s": 0.5},
                         "inputs": {"dims": {"sequence_length": 128}}},
        }))
        with contextlib.redirect_stdout(io.StringIO()):
            code = main(["optimize", "--config", str(folder / "shipml.yaml"),
                         "--output-dir", str(folder / "out")])
        result = json.loads((folder / "out" / "results" / "optimize.json").read_text())
        metrics = result["metrics"]
        timing = metrics["timing"]
        record = metrics["candidates"]["dynamic_int8"]
        low, high = timing["ratio_to_original"]["dynamic_int8"][1:]
        print(f"exit code {code}; kept {metrics['chosen']}")
        print(f"FP32 p50 {timing['p50_ms']['original']:.3f} ms, dynamic INT8 p50 "
              f"{timing['p50_ms']['dynamic_int8']:.3f} ms ({timing['rounds']} interleaved rounds)")
        print(f"quantization: dynamic INT8 over FP32 p50 speed-up "
              f"{timing['speedup']['dynamic_int8']:.2f}× (95% CI {1 / high:.2f}–{1 / low:.2f}×; "
              f"target ≥ 2×), smallest cosine {record['parity']['min_cosine']:.5f} over "
              f"{metrics['parity_rows']} rows (target ≥ 0.99); size "
              f"{metrics['original']['size_bytes'] / 2**20:.1f} → "
              f"{record['size_bytes'] / 2**20:.1f} MiB")


if __name__ == "__main__":
    main_bench()
