"""shipml serve: the built-in model server that the default image runs.

- :mod:`shipml.serve.settings`: the ``serve:`` section as one frozen :class:`ServeSettings`;
- :mod:`shipml.serve.model`: the served model, rows and v2 tensors bound to its inputs the way
  ``validate`` binds them (:class:`shipml.onnx_model.OnnxModel`), outputs decoded in one place;
- :mod:`shipml.serve.server`: HTTP (Open Inference Protocol v2 and ``/predict``), readiness,
  SIGTERM drain, auth, TLS, limits, access logs, worker processes;
- private helpers: ``_protocol`` (request parsing into precise 4xx errors), ``_metrics``
  (Prometheus), ``_batching`` (dynamic batching), ``_predlog`` (sampled prediction log),
  ``_log`` (JSON log lines).

The HTTP stack is the standard library's (``http.server``), measured against uvicorn + starlette
(see ``bench/serve_stack.py``): lower overhead per request for this workload and nothing to add to
the image but ``prometheus_client``.
"""

from __future__ import annotations
