"""shipml serve: the built-in model server that the default image runs.

- :mod:`shipml.serve.settings`: the ``serve:`` section as one frozen :class:`ServeSettings`;
- :mod:`shipml.serve.model`: the served model, rows and v2 tensors bound to its inputs the way
  ``validate`` binds them (:class:`shipml.onnx_model.OnnxModel`), outputs decoded in one place;
- :mod:`shipml.serve.app`: one worker's application state: the model once loaded, readiness,
  metrics, tokens, the prediction slots, the batcher and the prediction log;
- :mod:`shipml.serve.routes`: the one route table (Open Inference Protocol v2 and ``/predict``):
  method and path to handler, and the 404/405 answers it implies;
- :mod:`shipml.serve.workers`: the listening socket (TLS), worker processes, signals, drain;
- private helpers: ``_http`` (the HTTP protocol: connections, framing, deadlines, the drain
  of connections), ``_framing`` (framing rules), ``_protocol`` (request parsing into precise 4xx
  errors), ``_metrics`` (Prometheus), ``_batching`` (dynamic batching), ``_predlog`` (sampled prediction log),
  ``_log`` (JSON log lines).

The HTTP stack is the standard library's (``http.server``), measured against uvicorn + starlette
(see ``bench/serve_stack.py``): lower overhead per request for this workload and nothing to add to
the image but ``prometheus_client``.
"""

from __future__ import annotations
