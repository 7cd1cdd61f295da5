"""DICOM-SEG size and write time of each transfer syntax for a 4020x4892 film at 0.0875 mm.

Run: ``.venv/bin/python benchmarks/seg_syntax.py [REPEATS]``. Builds the film
and its right/left lungs by upsampling the real Shenzhen film CHNCXR_0001_0
and its masks (``../shared/data``), writes the SEG in each form medlung
offers (median of REPEATS writes, default 3), and prints sizes, times and
the ratios of this one run. RLE Lossless is not written by highdicom for a
BINARY SEG and no client tested decodes it (see docs/formats.md); its line
is the size of the PackBits (RLE) coding of the same bit-packed frames, an
estimate of what CP 2301's RLE would store.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import medlung
from medlung.writers.dicom_seg import write_dicom_seg
from tests import dicom_factory as factory
from tests.conftest import shared_data_dir
from tests.writers.seg_support import shenzhen_labels

SHAPE = (4892, 4020)  # rows x cols


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    shared = shared_data_dir()
    small = np.asarray(Image.open(shared / "shenzhen" / "images" / "CHNCXR_0001_0.png").convert("L"))
    pixels = np.asarray(Image.fromarray(small).resize(SHAPE[::-1], Image.BILINEAR)).astype(np.uint16) * 16
    labels = np.asarray(Image.fromarray(shenzhen_labels(shared)).resize(SHAPE[::-1], Image.NEAREST))
    sizes, seconds = {}, {}
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = factory.radiograph(
            pixels,
            factory.CR,
            "MONOCHROME2",
            bits_stored=12,
            PixelSpacing=[0.0875, 0.0875],
            PatientOrientation=["L", "F"],
        )
        film = medlung.load_film(factory.write(ds, Path(folder) / "film.dcm"))
        for syntax in ("uncompressed", "jpeg2000"):
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                path = write_dicom_seg(
                    film,
                    labels,
                    Path(folder) / f"{syntax}.dcm",
                    model_version="1",
                    transfer_syntax=syntax,
                    overwrite=True,
                )
                times.append(time.perf_counter() - start)
            sizes[syntax], seconds[syntax] = path.stat().st_size, statistics.median(times)
        sizes["rle-estimate"], seconds["rle-estimate"] = _rle_estimate(labels)
    print(f"SEG of a {SHAPE[1]}x{SHAPE[0]} (WxH) film, 2 segments (right, left lung); median of {repeats} writes")
    for name in sizes:
        print(f"{name:<14} {sizes[name] / 1e6:7.3f} MB  write {seconds[name]:.2f} s")
    print(
        f"size uncompressed / jpeg2000: {sizes['uncompressed'] / sizes['jpeg2000']:.1f}x; "
        f"write time jpeg2000 / uncompressed: {seconds['jpeg2000'] / seconds['uncompressed']:.1f}x"
    )


def _rle_estimate(labels: np.ndarray) -> tuple[int, float]:
    """Bytes and seconds of PackBits-coding each lung's bit-packed frame (pydicom's RLE segment coder)."""
    from pydicom.pixels.encoders.native import _encode_segment

    start = time.perf_counter()
    total = 0
    for value in (1, 2):
        packed = np.packbits((labels == value).ravel(), bitorder="little").tobytes()
        total += 64 + len(_encode_segment(packed, len(packed)))  # 64-byte RLE header per frame
    return total, time.perf_counter() - start


if __name__ == "__main__":
    main()
