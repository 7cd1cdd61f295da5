"""Choose the anatomical shape prior's radius (``anatomical_closing_mm``) on validation films only.

The network runs once per film; each radius is then applied to the same working-grid logits with the plan's own
chain (:func:`medlung.inference.native_grid.convention_margin` and ``native_labels``), so the rows differ only by
the closing. Groups of the ``--split`` (default ``val``) of a datalist from ``scripts/multi_source_datalist.py``:

* anatomical truth (covid_v7, the Shenzhen annotation batches): mean / 5th percentile Dice, ignore masks left out;
* lung-field truth (Montgomery, Shenzhen outside the batches): the share of the truth field outside the
  anatomical lungs, which should be 0 (a field lies inside its whole lung): the bays cut into the field.

Usage::

    python scripts/anatomical_closing_choice.py runs/multi_source.csv --model bundles/medlung_cxr_lung \\
        --radii 0,10,20,30,40

Prints a Markdown table (the model card's "How 3.0.1's shape prior was chosen").
"""

from __future__ import annotations

import argparse
import csv
import warnings
from pathlib import Path

import numpy as np
import torch


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datalist", type=Path, help="CSV from scripts/multi_source_datalist.py")
    parser.add_argument("--model", type=Path, required=True, help="bundle or run folder with an anatomical output")
    parser.add_argument("--radii", default="0,10,20,30,40", help="closing radii to try, mm (0: none)")
    parser.add_argument("--split", default="val", help="the split scored (never tune on test)")
    args = parser.parse_args(argv)

    from medlung.evaluation.scoring import load_truth
    from medlung.inference import Segmenter
    from medlung.inference.native_grid import convention_margin, native_labels
    from medlung.io import load_film
    from medlung.io.masks import load_label_map
    from medlung.metrics import dice

    radii = [float(r) for r in args.radii.split(",")]
    with open(args.datalist, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == args.split]
    segmenter = Segmenter(args.model, device="cpu", lungs="anatomical", dice_estimate="off")
    plan = segmenter.spec.plan
    scores: dict[tuple[str, str], dict[float, list[float]]] = {}
    for row in rows:
        film = load_film(row["image"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            masks = segmenter(film, keep_working=True)
        logits = torch.from_numpy(masks.working.logits)
        truth = load_truth(row["mask"], film.shape).both
        keep = ~(load_label_map(row["ignore"], film.shape) > 0) if row.get("ignore") else np.ones(film.shape, bool)
        group = scores.setdefault((row["source"], row["lungs"]), {r: [] for r in radii})
        for radius in radii:
            margin = convention_margin(logits, plan.updated(anatomical_closing_mm=radius), "anatomical")
            lungs = native_labels(margin, film.shape, film.spacing or (1.0, 1.0), film.orientation).labels > 0
            if row["lungs"] == "anatomical":
                group[radius].append(dice(lungs & keep, truth & keep))
            else:
                group[radius].append(float((truth & ~lungs).sum() / max(int(truth.sum()), 1)))
    names = sorted(scores)
    print("| radius (mm) | " + " | ".join(f"{s} {c} (n={len(scores[(s, c)][radii[0]])})" for s, c in names) + " |")
    print("|---|" + "---|" * len(names))
    for radius in radii:
        cells = []
        for key in names:
            values = np.array(scores[key][radius])
            if key[1] == "anatomical":
                cells.append(f"Dice {values.mean():.4f}, p5 {np.percentile(values, 5):.4f}")
            else:
                cells.append(f"field outside {100 * values.mean():.2f} %")
        print(f"| {radius:g} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
