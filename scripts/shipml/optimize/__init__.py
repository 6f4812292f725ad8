"""shipml optimize: make the ONNX artifact smaller and faster, and prove it still answers the same."""

from __future__ import annotations
