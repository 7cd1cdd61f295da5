"""What the estimated Dice costs: a film's segmentation with the estimate off, fast and perturbed.

For a 512x512 Shenzhen PNG and the 4020x4892 16-bit DICOM of ``fullres.py``
(the same Shenzhen film upsampled), the shipped model segments each film
``--rounds`` times (default 5) per setting, in rotated order, and the script
prints the medians of the segmenter's own seconds (``LungMasks.seconds``:
working grid to quality flags; reading and writing the film are not in it)
and of the estimate's stage (``timings["dice_estimate"]``), in wall and CPU
seconds, with the ratios:

* fast estimate / segmentation: the share the default estimate adds
  (target: at most 0.25);
* perturbed / off: what the opt-in perturbed evidence costs (three more
  network passes in one batch).

Run: ``.venv/bin/python benchmarks/dice_estimate.py [--rounds N] [--device cpu]``. It asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from fullres import SAMPLE, make_film

    import medlung
    from medlung.inference import Segmenter

    segmenters = {level: Segmenter(device=args.device, dice_estimate=level) for level in ("off", "fast", "perturbed")}
    if segmenters["fast"].calibration is None:
        raise SystemExit("the shipped bundle has no Dice calibration (models/dice_estimate.json): nothing to time")
    with tempfile.TemporaryDirectory() as folder:
        films = {
            "512x512 PNG": medlung.load_film(SAMPLE),
            "4020x4892 DICOM": medlung.load_film(make_film(Path(folder))),
        }
    print(f"{'film':16} {'estimate':10} {'wall s':>8} {'cpu s':>8} {'estimate wall s':>16} {'estimate cpu s':>15}")
    for name, film in films.items():
        times: dict = {level: [] for level in segmenters}
        for segmenter in segmenters.values():
            segmenter(film)  # warm up
        for round_ in range(args.rounds):
            order = list(segmenters)
            order = order[round_ % len(order) :] + order[: round_ % len(order)]
            for level in order:
                cpu = time.process_time()
                masks = segmenters[level](film, keep_working=level != "off")
                cpu = time.process_time() - cpu
                stage = masks.timings.get("dice_estimate", 0.0)
                cpu_stage = _cpu_of_estimate(segmenters[level], masks) if level != "off" else 0.0
                times[level].append((masks.seconds, cpu, stage, cpu_stage))
        medians = {
            level: [statistics.median(v[i] for v in values) for i in range(4)] for level, values in times.items()
        }
        for level, (wall, cpu, stage, cpu_stage) in medians.items():
            print(f"{name:16} {level:10} {wall:8.3f} {cpu:8.3f} {stage:16.4f} {cpu_stage:15.4f}")
        fast, off, perturbed = medians["fast"], medians["off"], medians["perturbed"]
        print(
            f"{name:16} fast estimate / segmentation: wall {fast[2] / off[0]:.3f}, cpu {fast[3] / off[1]:.3f}; "
            f"perturbed / off: wall {perturbed[0] / off[0]:.2f}, cpu {perturbed[1] / off[1]:.2f}"
        )


def _cpu_of_estimate(segmenter, masks) -> float:
    """CPU seconds of the estimate alone: the evidence and the regressor again on the kept working-grid output."""
    started = time.process_time()
    if masks.working is None:
        return 0.0
    level = "perturbed" if segmenter.perturb else "fast"
    segmenter.calibration.estimate(segmenter.dice_evidence(masks.working, masks.qc_measures), segmenter.lungs, level)
    return time.process_time() - started


if __name__ == "__main__":
    main()
