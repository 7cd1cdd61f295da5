"""Full-resolution prediction: the working-grid design against the naive native-grid sliding window.

A real Shenzhen film is upsampled to 4020x4892 (WxH), 12-bit, 0.0875 mm, and
wrapped in a JPEG 2000 lossless DX DICOM, as DESIGN.md §4 describes. Then,
each in its own process (so peak memory is its own):

* ``medlung``: load + Segmenter (working grid) + DICOM-SEG, PNG, NIfTI, overlay;
* ``segment only``: the Segmenter call alone;
* ``naive``: MONAI ``sliding_window_inference`` with the same network and roi
  over the native 4020x4892 grid (no resampling).

Prints seconds and peak resident memory of each and the ratios from this one
run. Run: ``.venv/bin/python benchmarks/predict_full_resolution.py [--skip-naive]``.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_film(folder: Path) -> Path:
    import numpy as np
    from PIL import Image

    from tests import dicom_factory as factory

    small = np.asarray(Image.open(REPO / "medlung" / "samples" / "CHNCXR_0001_0.png"))
    big = np.asarray(Image.fromarray(small).resize((4020, 4892), Image.BICUBIC)).astype(np.uint16) * 16
    ds = factory.radiograph(big, factory.DX_PRESENTATION, bits_stored=12, PixelSpacing=[0.0875, 0.0875],
                            PatientOrientation=["L", "F"])
    return factory.write(ds, folder / "film.dcm", factory.JPEG2000Lossless)


def run_medlung(film: str, out: str) -> dict:
    import medlung
    from medlung.inference.predict import PredictOptions, predict_files

    segmenter = medlung.Segmenter(device="cpu")
    segmenter(medlung.load_film(REPO / "medlung" / "samples" / "CHNCXR_0001_0.png"))  # warm-up
    started = time.perf_counter()
    report = predict_files([Path(film)], Path(out), segmenter, PredictOptions())
    seconds = time.perf_counter() - started
    row = report.rows[0]
    assert row["status"] == "ok", row["error"]
    loaded = medlung.load_film(film)
    started = time.perf_counter()
    masks = segmenter(loaded)
    segment_seconds = time.perf_counter() - started
    return {"seconds": seconds, "segment_seconds": segment_seconds, "total_cm2": row["total_cm2"],
            "shape": list(masks.labels.shape)}


def run_naive(film: str) -> dict:
    import torch
    from monai.inferers import sliding_window_inference
    from monai.transforms import ScaleIntensityRangePercentiles

    import medlung
    from medlung.inference.segmenter import load_model
    from medlung.training.loop import autocast, resolve_precision

    model, spec = load_model(None, "cpu")
    image = torch.from_numpy(medlung.load_film(film).pixels)[None]
    started = time.perf_counter()
    scaled = ScaleIntensityRangePercentiles(*spec.intensity_percentiles, 0.0, 1.0, clip=True)(image)
    with torch.no_grad(), autocast(torch.device("cpu"), resolve_precision("auto", torch.device("cpu"))):
        logits = sliding_window_inference(torch.as_tensor(scaled)[None], (spec.roi_size, spec.roi_size), 4, model,
                                          overlap=0.25, mode="gaussian")
    labels = logits.argmax(1)[0]
    return {"seconds": time.perf_counter() - started, "shape": list(labels.shape)}


def child(kind: str, film: str, out: str) -> None:
    result = run_medlung(film, out) if kind == "medlung" else run_naive(film)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> None:
    skip_naive = "--skip-naive" in sys.argv
    with tempfile.TemporaryDirectory() as folder:
        film = make_film(Path(folder))
        results = {}
        for kind in ("medlung",) + (() if skip_naive else ("naive",)):
            output = subprocess.run([sys.executable, __file__, "--child", kind, str(film), str(Path(folder) / "out")],
                                    capture_output=True, text=True, check=True).stdout
            results[kind] = json.loads(output.strip().splitlines()[-1])
    m = results["medlung"]
    print(f"film 4020x4892 (WxH) 12-bit DX, JPEG 2000 lossless, 0.0875 mm")
    print(f"medlung predict (load + segment + SEG/PNG/NIfTI/overlay): {m['seconds']:.2f} s, "
          f"peak RSS {m['peak_rss_mb']:.0f} MB, mask {m['shape']}, total {m['total_cm2']} cm2")
    print(f"segmenter call alone: {m['segment_seconds']:.2f} s")
    if "naive" in results:
        n = results["naive"]
        print(f"naive native-grid sliding window (network only): {n['seconds']:.1f} s, peak RSS {n['peak_rss_mb']:.0f} MB")
        print(f"ratio naive / medlung segmenter: {n['seconds'] / m['segment_seconds']:.0f}x; "
              f"naive / whole medlung predict: {n['seconds'] / m['seconds']:.0f}x")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
    else:
        main()
