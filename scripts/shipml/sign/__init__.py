"""``shipml sign``, ``shipml verify``, ``shipml keygen``: cosign-format image signatures and a
signed attestation of the gate results.

The cosign CLI does the work when it is on PATH (``sign.cosign: auto``); otherwise the built-in
signer writes what ``cosign sign --key`` and ``cosign attest --key`` write
(:mod:`shipml.sign.core`, formats in :mod:`shipml.sign.formats`, keys in :mod:`shipml.sign.keys`,
the predicate in :mod:`shipml.sign.attestation`). Needs the ``sign`` extra.
"""

from __future__ import annotations
