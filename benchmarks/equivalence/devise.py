"""Equivalence check: DeViSE (methods/devise.py) against mvp18/Popular-ZSL-Algorithms ``DeViSE/devise.py``.

DeViSE and SJE share the bilinear model and the per-image update of mvp18, so one script checks
both: this entry point runs ``sje.py`` (see its docstring for what is compared).

    python benchmarks/equivalence/devise.py --official /path/to/Popular-ZSL-Algorithms
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sje import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
