"""Full-resolution prediction: medlung's working grid against the naive native-grid sliding window.

Builds a 4020x4892 (WxH) 16-bit DX DICOM at 0.0875 mm from a real Shenzhen
film (bicubic upsampling), JPEG 2000 lossless, then measures:

(a) ``medlung``: decode, working grid, network, back to the native grid and
    clean-up, and writing DICOM-SEG, PNG, NIfTI and overlay -- per stage, end
    to end, and the process's peak RSS;
(b) ``naive``: MONAI ``sliding_window_inference`` with roi 512 directly on the
    native grid with the same network (own process, own peak RSS);
(c) ``floor``: decode + writing the same outputs from a ready mask.

Prints the ratios naive/medlung and medlung/floor and the Dice between (a)
and (b), measured in this one run (the machine is noisy: compare ratios).
Run: ``.venv/bin/python benchmarks/fullres.py [--skip-naive] [--device cpu]``.
Also times a batch of 512x512 PNG films (model loaded once).
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
SAMPLE = REPO / "medlung" / "samples" / "CHNCXR_0001_0.png"


def make_film(folder: Path) -> Path:
    import numpy as np
    from PIL import Image

    from tests import dicom_factory as factory

    small = np.asarray(Image.open(SAMPLE))
    big = np.asarray(Image.fromarray(small).resize((4020, 4892), Image.BICUBIC)).astype(np.uint16) * 257
    ds = factory.radiograph(big, factory.DX_PRESENTATION, bits_stored=16, PixelSpacing=[0.0875, 0.0875],
                            PatientOrientation=["L", "F"])
    return factory.write(ds, folder / "film.dcm", factory.JPEG2000Lossless)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_medlung(film: Path, out: Path, device: str) -> dict:
    import numpy as np

    import medlung
    from medlung.inference.predict import PredictOptions, planned_outputs, write_outputs

    segmenter = medlung.Segmenter(device=device)
    segmenter(medlung.load_film(SAMPLE))  # warm-up, as in a batch
    options = PredictOptions()
    stages = {}
    started = time.perf_counter()
    loaded = medlung.load_film(film)
    stages["decode"] = time.perf_counter() - started
    masks = segmenter(loaded)
    stages.update(masks.timings)
    mark = time.perf_counter()
    write_outputs(loaded, masks, planned_outputs(out / "a", loaded, options.formats), segmenter.model_version, options)
    stages["write"] = time.perf_counter() - mark
    total = time.perf_counter() - started
    np.save(out / "medlung_labels.npy", masks.labels)

    # (c) the floor: decode + the same writes from a ready mask
    started = time.perf_counter()
    again = medlung.load_film(film)
    write_outputs(again, masks, planned_outputs(out / "floor", again, options.formats), segmenter.model_version,
                  options)
    floor = time.perf_counter() - started

    # 512x512 PNG films in a batch
    paths = sorted((REPO.parent / "shared" / "data" / "shenzhen" / "images").glob("*.png"))[:20] or [SAMPLE] * 20
    started = time.perf_counter()
    for _, result in segmenter.segment_files(paths):
        assert not isinstance(result, Exception), result
    png_each = (time.perf_counter() - started) / len(paths)
    return {"stages": stages, "total": total, "floor": floor, "png_each": png_each, "peak_rss_mb": _peak_rss_mb(),
            "total_cm2": masks.areas_cm2["total"]}


def child_naive(film: Path, out: Path, device: str) -> dict:
    import numpy as np
    import torch
    from monai.inferers import sliding_window_inference
    from monai.transforms import ScaleIntensityRangePercentiles

    import medlung
    from medlung.networks.loading import load_model
    from medlung.networks.running import autocast, resolve_device, resolve_precision

    device = resolve_device(device)
    model, spec = load_model(None, device)
    started = time.perf_counter()
    image = torch.from_numpy(medlung.load_film(film).pixels)[None]
    scaled = torch.as_tensor(ScaleIntensityRangePercentiles(*spec.intensity_percentiles, 0.0, 1.0, clip=True)(image))
    with torch.no_grad(), autocast(device, resolve_precision("auto", device)):
        logits = sliding_window_inference(scaled[None].to(device), (512, 512), 4, model, overlap=0.25,
                                          mode="gaussian", sw_device=device, device="cpu")
    labels = (logits[0, 1] > logits[0, 0]).numpy()
    seconds = time.perf_counter() - started
    np.save(out / "naive_labels.npy", labels)
    return {"total": seconds, "peak_rss_mb": _peak_rss_mb()}


def main() -> None:
    import numpy as np

    device = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cpu"
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        film = make_film(folder)
        results = {}
        for kind in ("medlung",) + (() if "--skip-naive" in sys.argv else ("naive",)):
            run = subprocess.run([sys.executable, __file__, "--child", kind, str(film), str(folder), device],
                                 capture_output=True, text=True)
            if run.returncode:
                sys.exit(f"{kind} failed:\n{run.stderr[-3000:]}")
            results[kind] = json.loads(run.stdout.strip().splitlines()[-1])
        m = results["medlung"]
        print("film: 4020x4892 (WxH), 16-bit DX, JPEG 2000 lossless, 0.0875 mm; device:", device)
        print("(a) medlung end to end: " + ", ".join(f"{k} {v:.2f}s" for k, v in m["stages"].items())
              + f" = {m['total']:.2f} s; peak RSS {m['peak_rss_mb']:.0f} MB; lungs {m['total_cm2']:.1f} cm2")
        print(f"(c) floor (decode + write the same outputs): {m['floor']:.2f} s")
        print(f"    ratio medlung / floor: {m['total'] / m['floor']:.2f}")
        print(f"512x512 PNG films in a batch: {m['png_each']:.3f} s per film")
        if "naive" in results:
            n = results["naive"]
            a = np.load(folder / "medlung_labels.npy") > 0
            b = np.load(folder / "naive_labels.npy")
            dice = 2 * (a & b).sum() / max(1, a.sum() + b.sum())
            print(f"(b) naive sliding window roi 512 on the native grid: {n['total']:.1f} s; "
                  f"peak RSS {n['peak_rss_mb']:.0f} MB")
            print(f"    ratio naive / medlung: {n['total'] / m['total']:.1f}x; Dice(medlung, naive) = {dice:.4f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, film, out, device = sys.argv[2:6]
        function = child_medlung if kind == "medlung" else child_naive
        print(json.dumps(function(Path(film), Path(out), device)))
    else:
        main()
