"""shipml latency: an onnxruntime benchmark that stays honest on noisy 2-core CI runners.

Kept import-light on purpose: the measuring child (``python -m shipml.latency._worker``) imports
this package, and every millisecond here is paid once per fresh process.
"""

from __future__ import annotations
