from __future__ import annotations

import sys

from shipml.cli import main

if __name__ == "__main__":
    sys.exit(main())
