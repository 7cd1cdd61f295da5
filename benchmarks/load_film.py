"""Time loading a 4020x4892 16-bit film at 0.0875 mm, uncompressed and JPEG 2000 lossless.

Run: ``.venv/bin/python benchmarks/load_film.py [SHENZHEN_PNG]``. Prints seconds
and the J2K/uncompressed ratio measured in this one run.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import medlung
from tests import dicom_factory as factory


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(medlung.__file__).parent / "samples" / "CHNCXR_0001_0.png"
    small = np.asarray(Image.open(source).convert("L"))
    big = np.asarray(Image.fromarray(small).resize((4020, 4892), Image.BILINEAR)).astype(np.uint16) * 16
    seconds = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, syntax in (("uncompressed", None), ("jpeg2000-lossless", factory.JPEG2000Lossless)):
            ds = factory.radiograph(big, factory.DX_PRESENTATION, bits_stored=12, PixelSpacing=[0.0875, 0.0875])
            path = factory.write(ds, Path(folder) / f"{name}.dcm", syntax)
            start = time.perf_counter()
            film = medlung.load_film(path)
            seconds[name] = time.perf_counter() - start
            assert film.shape == (4892, 4020)
            print(f"{name:<20} {path.stat().st_size / 1e6:6.1f} MB  load {seconds[name]:.2f} s")
    print(f"ratio jpeg2000-lossless / uncompressed: {seconds['jpeg2000-lossless'] / seconds['uncompressed']:.1f}x")


if __name__ == "__main__":
    main()
