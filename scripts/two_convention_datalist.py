"""The training CSV of model 2.0.0 (Shenzhen and covid_v7): ``multi_source_datalist.py --sources shenzhen,covid_v7``.

Usage::

    python scripts/two_convention_datalist.py ../shared/data -o runs/two_conventions.csv
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from multi_source_datalist import main

if __name__ == "__main__":
    raise SystemExit(main([*sys.argv[1:], "--sources", "shenzhen,covid_v7"]))
