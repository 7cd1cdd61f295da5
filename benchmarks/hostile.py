"""Each case of the hostile corpus through its own ``medlung predict`` process: exit status, seconds, peak RSS.

The cases are those of ``tests/hostile/corpus.py`` (#28), made in a temporary
folder; each runs capped as in ``tests/hostile/test_predict_hostile.py``
(1.5 GB of address space). Seconds include starting Python, torch and the
model (about 5 s on a quiet 2-core machine); the report row's own seconds
(the film's) are printed beside them.

Run: ``.venv/bin/python benchmarks/hostile.py [CASE ...]``.
"""

from __future__ import annotations

import csv
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(names: list[str]) -> None:
    from tests.hostile import corpus
    from tests.hostile.test_predict_hostile import LARGE_MEMORY_CAP, MEMORY_CAP, predict

    print(
        f"medlung predict CASE -o OUT under RLIMIT_AS {MEMORY_CAP >> 20} MB ({LARGE_MEMORY_CAP >> 20} MB for the "
        "film at the limit, which is segmented), one process per case:"
    )
    print(f"  {'case':24s} {'expected':8s} {'exit':>4s} {'process s':>9s} {'film s':>7s} {'peak RSS MB':>11s}  error")
    with tempfile.TemporaryDirectory() as folder:
        for name in names or list(corpus.CASES):
            where = Path(folder) / name
            where.mkdir()
            path = corpus.CASES[name](where)
            cap = LARGE_MEMORY_CAP if corpus.EXPECTED[name] == "ok" else MEMORY_CAP
            status, stderr, seconds, peak = predict([path], where / "out", bundle=None, cap=cap)
            rows = (
                list(csv.DictReader(open(where / "out" / "report.csv")))
                if (where / "out" / "report.csv").exists()
                else []
            )
            row = rows[0] if rows else {"seconds": "nan", "error": stderr.strip().splitlines()[-1:]}
            error = str(row.get("error") or "").replace(str(path), "FILE")[:110]
            print(
                f"  {name:24s} {corpus.EXPECTED[name]:8s} {status:4d} {seconds:9.1f} {float(row['seconds']):7.2f} "
                f"{peak:11.0f}  {error}"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
