"""``shipml validate``: deepchecks suites and the team's pytest model tests on the shipped ONNX model.

deepchecks lives in the ``shipml[validate]`` extra; only ``shipml.validate.suite`` (the suite
builder validate and monitor share), ``_deepchecks`` and ``_parallel`` import it.
"""

from __future__ import annotations
