"""Peak memory of ``medlung predict`` per film size: the measurement behind medlung.memory's constants.

Each film goes through ``medlung predict FILM -o OUT`` in a fresh process
(all outputs), and its peak resident memory is read from ``wait4``. The
smallest film gives the process's base (Python, torch, the model); the
others give the bytes per pixel beyond it, compared with
:data:`medlung.memory.BASE_BYTES` and :data:`medlung.memory.BYTES_PER_PIXEL`
(the declared decode cost a batch holds per film must not be below what a
film really takes).

Usage::

    python benchmarks/memory_budget.py            # prints one line per film, then the ratios
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medlung.memory import BASE_BYTES, BYTES_PER_PIXEL, PER_FILM_BYTES, declared_decode_cost  # noqa: E402
from tests import dicom_factory as factory  # noqa: E402

#: Films measured: (name, rows, cols, extra DICOM attributes).
FILMS = (
    ("stub", 64, 64, {}),
    ("1024", 1024, 1024, {}),
    ("2048", 2048, 2048, {}),
    ("4020x4892", 4892, 4020, {}),
    (
        "4020x4892 rescale+window",
        4892,
        4020,
        {"RescaleSlope": 1.5, "RescaleIntercept": -10, "WindowCenter": 2000, "WindowWidth": 3000},
    ),
)


def peak_of(command: list, env: dict) -> tuple[int, float]:
    """Peak RSS (bytes) and wall seconds of a command run to its end."""
    import time

    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"{command} failed: {process.stderr.read().decode()[-2000:]}")
    return usage.ru_maxrss * 1024, time.perf_counter() - started


def main() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MEDLUNG_NO_PROGRESS": "1"}
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        results = []
        for name, rows, cols, extra in FILMS:
            pixels = rng.integers(0, 4096, (rows, cols), dtype=np.uint16)
            path = factory.write(
                factory.radiograph(pixels, bits_stored=12, PixelSpacing=[0.0875, 0.0875], **extra),
                Path(folder) / f"{name.replace(' ', '_')}.dcm",
            )
            command = [
                sys.executable,
                "-m",
                "medlung",
                "predict",
                str(path),
                "-o",
                f"{folder}/out-{rows}-{cols}",
                "--device",
                "cpu",
            ]
            peak, seconds = peak_of(command, env)
            results.append((name, rows * cols, peak, seconds, declared_decode_cost(rows, cols, 16)))
            print(f"{name:28s} {rows}x{cols}: peak RSS {peak / 2**20:7.0f} MB, {seconds:5.1f} s", flush=True)
    base = results[0][2]
    print(
        f"\nbase (the stub film): {base / 2**20:.0f} MB; medlung.memory.BASE_BYTES {BASE_BYTES / 2**20:.0f} MB "
        f"(ratio {BASE_BYTES / base:.2f})"
    )
    for name, pixels, peak, _, declared in results[1:]:
        per_pixel = (peak - base) / pixels
        print(
            f"{name:28s} {per_pixel:5.1f} bytes/px beyond the base; declared cost {declared / 2**20:5.0f} MB "
            f"vs measured {(peak - base) / 2**20:5.0f} MB (declared/measured {declared / max(1, peak - base):.2f}; "
            f"BYTES_PER_PIXEL {BYTES_PER_PIXEL}, PER_FILM_BYTES {PER_FILM_BYTES // 2**20} MB)"
        )


if __name__ == "__main__":
    main()
