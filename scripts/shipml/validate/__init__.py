"""``shipml validate``: deepchecks suites and the team's pytest model tests on the shipped ONNX model.

deepchecks lives in the ``shipml[validate]`` extra; only ``shipml.validate._deepchecks`` imports it.
"""

from __future__ import annotations
