"""shipml.measure: the stage-neutral measuring kit behind latency, optimize's timing and (later)
the server benchmark and the canary probe.

- :mod:`shipml.measure.harness`: fresh measuring processes, pinned threads, warm-up, adaptive
  repetitions and interleaved comparisons (``HarnessSettings`` in, ``Measurement`` out);
- :mod:`shipml.measure.inputs`: what a model is fed (rows of a table, rows of a tensor file, or
  tensors made from the model's spec), from ``InputSettings``;
- :mod:`shipml.measure.stats`: percentiles with confidence intervals, CDF points, ratio of medians.

Every setting arrives as an argument: nothing here knows which stage's section it came from.
Kept import-light on purpose: stages import it on their way to a measurement.
"""

from __future__ import annotations
