"""CPU seconds of the native-grid clean-up (clean_lung_mask + split_lungs, as clean_and_split) of a 4020x4892 film.

Builds :func:`fullres.make_film` (a real Shenzhen film upsampled to 4020x4892 at 0.0875 mm), segments it
with the shipped model and takes the raw mask the clean-up starts from (the lung margin resized to the native
grid, > 0), for each lung convention. Times the clean-up of this checkout, and with ``--against FILE`` that of
another ``medlung/inference/postprocess.py`` (e.g. an older commit's) on the same mask, alternating, in
``time.process_time`` seconds (CPU seconds stay meaningful when other work shares the machine), and checks that
both give identical label maps. One run; compare ratios.

Run: ``.venv/bin/python benchmarks/cleanup.py [--against OTHER/postprocess.py] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def _timed(module, mask, area, orientation):
    """CPU seconds of the clean-up as the Segmenter of that version runs it, and the label map."""
    start = time.process_time()
    if hasattr(module, "clean_and_split"):
        labels = module.clean_and_split(mask, area, orientation)[0]
    else:  # before clean_and_split
        labels = module.split_lungs(module.clean_lung_mask(mask, area), orientation)[0]
    return time.process_time() - start, labels


def main() -> None:
    import numpy as np
    from fullres import make_film

    import medlung
    from medlung.inference import postprocess
    from medlung.inference.native_grid import upsample_margin

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, help="another postprocess.py to time on the same masks")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    other = None
    if args.against:
        spec = importlib.util.spec_from_file_location("other_postprocess", args.against)
        other = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(other)
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as folder:
        film = medlung.load_film(make_film(Path(folder)))
    for lungs in ("field", "anatomical"):
        segmenter = medlung.Segmenter(device="cpu", lungs=lungs)
        working = segmenter.working_image(film)
        meta = working.meta
        mask = upsample_margin(segmenter.lung_margin(working.as_tensor()), meta["native_shape"]) > 0
        area, orientation = float(np.prod(meta["native_spacing"])), meta["orientation"]
        times: dict = {"this checkout": [], "--against": []}
        for _ in range(args.repeat):
            seconds, labels = _timed(postprocess, mask, area, orientation)
            times["this checkout"].append(seconds)
            if other is not None:
                seconds, expected = _timed(other, mask, area, orientation)
                times["--against"].append(seconds)
                assert np.array_equal(labels, expected), "the two clean-ups give different label maps"
        line = f"{lungs:10s} {mask.shape[1]}x{mask.shape[0]} ({mask.mean():.0%} lung before clean-up): "
        line += ", ".join(f"{name} first {v[0]:.3f} s, best {min(v):.3f} s CPU" for name, v in times.items() if v)
        if other is not None:
            line += (
                f"; --against/this {min(times['--against']) / min(times['this checkout']):.2f}x, label maps identical"
            )
        print(line)


if __name__ == "__main__":
    main()
