"""The peer for bench/serve_kserve.py: the same ONNX model served by KServe's Python model server,
a custom model class calling onnxruntime as KServe's docs show (``kserve.Model`` with ``load`` and
``predict``, ``ModelServer().start``). Run with an interpreter that has ``kserve`` installed
(``pip install kserve onnxruntime``), not shipml's.

Usage: python bench/serve_kserve_peer.py MODEL.onnx NAME --http_port PORT
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.utils.utils import from_np_dtype


class OnnxModel(Model):
    """An ONNX model behind KServe's v2 protocol."""

    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.ready = False
        self.load()

    def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # as shipml serve's default
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.path, options,
                                            providers=["CPUExecutionProvider"])
        self.output_names = [output.name for output in self.session.get_outputs()]
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers: Any = None,
                response_headers: Any = None) -> InferResponse:
        feeds = {}
        for tensor in payload.inputs:
            array = tensor.as_numpy()
            if array.dtype.kind in "OSU":
                flat = [item.decode() if isinstance(item, bytes) else str(item)
                        for item in array.reshape(-1)]
                array = np.array(flat, dtype=object).reshape(array.shape)
            feeds[tensor.name] = array
        outputs = []
        for name, value in zip(self.output_names, self.session.run(None, feeds), strict=True):
            value = np.asarray(value)
            output = InferOutput(name=name, shape=list(value.shape),
                                 datatype=from_np_dtype(value.dtype))
            output.set_data_from_numpy(value, binary_data=False)
            outputs.append(output)
        return InferResponse(model_name=self.name, infer_outputs=outputs,
                             response_id=payload.id)


if __name__ == "__main__":
    path, name = sys.argv[1], sys.argv[2]
    del sys.argv[1:3]  # ModelServer reads its own flags (--http_port) from the rest
    ModelServer(enable_grpc=False, workers=1).start([OnnxModel(name, path)])
