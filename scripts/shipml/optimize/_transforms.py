"""The transforms: each reads the original ONNX file and writes one candidate file."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from numpy.typing import NDArray

from shipml.measure.inputs import InputPlan

TRANSFORMS = ("graph", "dynamic_int8", "static_int8", "fp16")
#: rows per calibration batch of static_int8
CALIBRATION_BATCH = 16
_LEVELS = {"basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile",
            "distribution": "Distribution"}


def apply(name: str, source: Path, target: Path, settings: Mapping[str, Any],
          calibration: InputPlan | None = None, calibration_rows: int = 0) -> None:
    """Write ``source`` transformed by ``name`` to ``target``.

    Raises whatever onnxruntime raises when the transform cannot apply; the caller records it
    as an ERROR check, not a crash of the stage.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with _quiet():
        if name == "graph":
            _graph(source, target, str(settings["level"]))
        elif name == "dynamic_int8":
            _dynamic(source, target, settings)
        elif name == "static_int8":
            assert calibration is not None
            _static(source, target, settings, calibration, calibration_rows)
        elif name == "fp16":
            _fp16(source, target, settings)
        else:  # the schema's enum keeps this unreachable
            raise ValueError(f"unknown transform {name!r}")


def normalized(source: Path, target: Path) -> Path:
    """Return ``source``, or ``target`` holding it with its opset imports normalised: one entry
    per domain, ``ai.onnx`` spelt as the default domain ``""``, the highest version kept.

    Exporters such as skl2onnx (a StandardScaler + LogisticRegression pipeline, target_opset 17)
    write the default domain twice; onnxruntime runs such a model, but its quantizer stops with
    "Failed to find proper ai.onnx domain".
    """
    import onnx

    model = onnx.load(str(source))
    versions: dict[str, int] = {}
    for entry in model.opset_import:
        domain = "" if entry.domain == "ai.onnx" else entry.domain
        versions[domain] = max(versions.get(domain, 0), int(entry.version))
    current = [(entry.domain, int(entry.version)) for entry in model.opset_import]
    if current == list(versions.items()):
        return source
    del model.opset_import[:]
    for domain, version in versions.items():
        model.opset_import.append(onnx.helper.make_opsetid(domain, version))
    onnx.save(model, str(target))
    return target


def _graph(source: Path, target: Path, level: str) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[level])
    options.optimized_model_filepath = str(target)
    ort.InferenceSession(str(source), sess_options=options, providers=["CPUExecutionProvider"])


def _dynamic(source: Path, target: Path, settings: Mapping[str, Any]) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source), str(target),
        weight_type=QuantType.QInt8 if settings["weight_type"] == "qint8" else QuantType.QUInt8,
        per_channel=bool(settings["per_channel"]),
    )


class _Reader:
    """Feeds calibration batches to onnxruntime's static quantizer."""

    def __init__(self, plan: InputPlan, rows: int, batch: int = CALIBRATION_BATCH) -> None:
        # Equal batches: the histogram calibrators (entropy, percentile, distribution) stack
        # what they collect and reject a ragged last batch.
        batch = max(1, min(batch, rows))
        self._batches = [plan.feeds(batch, offset=start)
                         for start in range(0, max(rows - batch + 1, 1), batch)]
        self._position = 0

    def get_next(self) -> dict[str, NDArray[Any]] | None:
        if self._position >= len(self._batches):
            return None
        self._position += 1
        return self._batches[self._position - 1]

    def rewind(self) -> None:
        self._position = 0


def _static(source: Path, target: Path, settings: Mapping[str, Any], plan: InputPlan,
            rows: int) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.inner = _Reader(plan, rows)

        def get_next(self) -> dict[str, NDArray[Any]] | None:
            return self.inner.get_next()

        def rewind(self) -> None:
            self.inner.rewind()

    def quant_type(name: str) -> Any:
        return QuantType.QInt8 if name == "qint8" else QuantType.QUInt8

    quantize_static(
        str(source), str(target), Reader(),
        quant_format=QuantFormat.QDQ,
        calibrate_method=getattr(CalibrationMethod, _METHODS[str(settings["method"])]),
        per_channel=bool(settings["per_channel"]),
        activation_type=quant_type(str(settings["activation_type"])),
        weight_type=quant_type(str(settings["weight_type"])),
    )


def _fp16(source: Path, target: Path, settings: Mapping[str, Any]) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(source))
    converted = convert_float_to_float16(
        model, keep_io_types=bool(settings["keep_io_types"]),
        op_block_list=settings.get("op_block_list"),
    )
    onnx.save(converted, str(target))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # onnxruntime.quantization logs advice ("consider pre-processing") on the root logger.
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(previous)
