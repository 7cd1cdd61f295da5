"""Inference cost per film of candidate model plans, as a ratio to the shipped model's (#29: at most 1.5x).

Each candidate is the shipped Segmenter with its network and plan replaced (random weights: the cost does
not depend on them): a wider BasicUNet, the UNet++ variant, a finer working grid (1.5 mm, window 288 px so
that a chest still fits one window), and any ``--bundle`` given (a trained model, e.g. a run folder).
Deep supervision changes training only, not the network that runs at inference (cost 1.0 by construction).

Every candidate segments the same films (real ones from ../shared/data: Shenzhen and Montgomery 512x512
PNGs, the 1841x1955 RG1 DICOM, covid_v7 films) in ``--rounds`` rounds, the candidates rotated per round;
a film's cost is the Segmenter's whole call (working grid, network, native grid, clean-up, quality),
in wall and CPU seconds. Prints per candidate the median per-film seconds and the ratio to the shipped
model measured in the same rounds (CPU seconds are the steadier measure on a shared machine).

Run: ``python benchmarks/model_cost.py [--rounds 3] [--films 6] [--bundle RUN_OR_BUNDLE ...] [--dice-estimate off]``.
To compare two releases, give the older bundle (e.g. ``git archive <commit> bundles/medlung_cxr_lung | tar -x -C
/tmp``) with its own Dice-estimate calibration, or time both with ``--dice-estimate off``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: name -> ModelPlan changes from the shipped plan.
CANDIDATES = {
    "basicunet wider (32,32,64,128,256,32)": {"features": (32, 32, 64, 128, 256, 32)},
    "unetpp (24,24,48,96,192,24)": {"network": "unetpp"},
    "finer grid 1.5 mm, window 288": {"working_spacing": 1.5, "roi_size": 288},
}


def films(shared: Path, count: int) -> list:
    import medlung

    paths = sorted((shared / "shenzhen" / "images").glob("*.png"))[: count // 3 + 1]
    paths += sorted((shared / "montgomery" / "images").glob("*.png"))[: count // 3 + 1]
    paths += sorted((shared / "covid_v7" / "images").glob("*.png"))[: count // 3 + 1]
    paths.append(shared / "dicom" / "RG1_J2KI.dcm")
    return [medlung.load_film(p) for p in paths]


def variant(base, changes: dict):
    """The shipped Segmenter with another network and plan (random weights)."""
    from medlung.networks import build_network
    from medlung.transforms.presets import inference_transforms

    plan = base.spec.plan.updated(**changes)
    other = copy.copy(base)
    other.spec = dataclasses.replace(base.spec, plan=plan)
    other.model = build_network(**plan.network_def()).to(base.device).eval()
    other.roi_size = plan.roi_size
    other.preprocessing = inference_transforms(plan)
    return other


def main(argv=None) -> int:
    import torch

    from medlung.inference import Segmenter
    from medlung.networks import count_parameters

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--films", type=int, default=6, help="PNG films (plus the RG1 DICOM)")
    parser.add_argument("--bundle", action="append", default=[], help="also time this model (bundle or run)")
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument(
        "--dice-estimate",
        default="fast",
        choices=("off", "fast", "perturbed"),
        help="the estimated Dice of every model timed (default fast, as predict; a bundle without a calibration "
        "for its weights has none whatever this says)",
    )
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    base = Segmenter(device="cpu", dice_estimate=args.dice_estimate)
    segmenters = {f"shipped {base.model_version}": base}
    segmenters.update({name: variant(base, changes) for name, changes in CANDIDATES.items()})
    for model in args.bundle:
        other = Segmenter(model, device="cpu", dice_estimate=args.dice_estimate)
        segmenters[f"{other.model_version} ({model})"] = other
    chosen = films(args.shared, args.films)
    for segmenter in segmenters.values():  # warm up
        segmenter(chosen[0])
    wall: dict = {n: [] for n in segmenters}
    cpu: dict = {n: [] for n in segmenters}
    names = list(segmenters)
    for round_ in range(args.rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            for film in chosen:
                w0, c0 = time.perf_counter(), time.process_time()
                segmenters[name](film)
                wall[name].append(time.perf_counter() - w0)
                cpu[name].append(time.process_time() - c0)
    reference = names[0]
    print(f"{len(chosen)} films x {args.rounds} rounds; per-film median seconds and ratio to {reference}")
    print(f"{'model':45s} {'params':>10s} {'wall s':>7s} {'ratio':>6s} {'CPU s':>7s} {'ratio':>6s}")
    for name in names:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        rw = w / statistics.median(wall[reference])
        rc = c / statistics.median(cpu[reference])
        params = count_parameters(segmenters[name].model)
        print(f"{name:45s} {params:10,d} {w:7.3f} {rw:6.2f} {c:7.3f} {rc:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
