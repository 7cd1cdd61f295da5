"""Ablation of the named augmentations on a hospital the runs never train on (short runs, one protocol).

Every row is one ``medlung train`` run with the same data, seed, crops and schedule; only the
augmentations differ: all of them, all but one (one row per name), the chain of 2.0.0, and none.
The data is ``scripts/multi_source_datalist.py --held-out montgomery``: the runs train on Shenzhen and
covid_v7 and are validated on their validation films plus 59 Montgomery training and validation films
they never see (no test film is in it). Each row reports the validation Dice per group of
its **last** epoch (no model selection on the held-out hospital); the first row is the starting model
itself, not trained further.

Usage::

    python scripts/multi_source_datalist.py ../shared/data -o runs/unseen_montgomery.csv --held-out montgomery
    python scripts/augmentation_ablation.py runs/unseen_montgomery.csv -o runs/ablation \\
        --init bundles/medlung_cxr_lung --epochs 2 --samples-per-epoch 200

Rows already finished (``RUN/summary.json``) are kept, so an interrupted ablation continues where it
stopped. The table goes to ``OUT/ablation.md`` and ``OUT/ablation.csv``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

#: Sampling of the ablation runs: the sources they train on (Montgomery is held out).
SAMPLING = "shenzhen/field=0.45,shenzhen/anatomical=0.15,covid_v7/anatomical=0.4"


def rows(names: list[str]) -> list[tuple[str, str | None]]:
    """``(row name, --augmentations value)``: all, all but each one, the 2.0.0 chain (None), none."""
    table: list[tuple[str, str | None]] = [("all", ",".join(names))]
    table += [(f"without {n}", ",".join(m for m in names if m != n)) for n in names]
    table += [("2.0.0 chain (affine, intensity, sick film)", None), ("none (crop only)", "")]
    return table


def folder_name(row: str) -> str:
    return row.split(" (")[0].replace(" ", "_").replace(".", "")


def train_run(run: Path, arguments: list[str]) -> Path:
    """``medlung train ARGUMENTS -o RUN --overwrite``, logged to ``RUN.log``; skipped when ``RUN/summary.json``
    exists (a finished run), so that an interrupted table continues where it stopped."""
    if (run / "summary.json").is_file():
        return run
    command = [sys.executable, "-m", "medlung", "train", *arguments, "-o", str(run), "--overwrite"]
    started = time.perf_counter()
    with open(run.parent / f"{run.name}.log", "w") as log:
        log.write(" ".join(command) + "\n")
        log.flush()
        subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=True, env={**os.environ})
    print(f"{run.name}: {time.perf_counter() - started:.0f} s", flush=True)
    return run


def run_row(args, row: str, augmentations: str | None) -> Path:
    arguments = [
        str(args.datalist),
        "--init",
        str(args.init),
        "--epochs",
        str(args.epochs),
        "--samples-per-epoch",
        str(args.samples_per_epoch),
        "--sampling",
        args.sampling,
        "--lr",
        str(args.lr),
        "--seed",
        "0",
        "--consistency-weight",
        str(args.consistency_weight),
    ]
    if augmentations is not None:
        arguments += ["--augmentations", augmentations or "none"]
    return train_run(args.output / folder_name(row), arguments)


def last_epoch(run: Path) -> dict:
    with open(run / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))[-1]


def starting_point(args) -> dict:
    """Validation Dice per group of the ``--init`` model itself, with the training's own scoring."""
    import torch

    from medlung.networks.loading import load_model
    from medlung.training.config import TrainConfig
    from medlung.training.loop import Trainer
    from medlung.training.losses import PartialLabelLoss
    from medlung.transforms.presets import partial_label_transforms

    cache = args.output / "start.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    model, spec = load_model(args.init, "cpu")
    trainer = Trainer(
        TrainConfig(data=str(args.datalist), output=str(args.output / "start"), plan=spec.plan), overwrite=True
    )
    datalist = trainer.prepare_data()
    trainer.plan = spec.plan
    from monai.data import Dataset

    with torch.no_grad():
        result = trainer.evaluate_part(
            model, Dataset(datalist.parts["validation"], partial_label_transforms(spec.plan)), PartialLabelLoss()
        )
    values = {f"val_{k}": v for k, v in result.items() if k.startswith("dice") and isinstance(v, float)}
    cache.write_text(json.dumps(values, indent=2))
    return values


def main(argv=None) -> int:
    from medlung.plans import AUGMENTATIONS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datalist", type=Path, help="CSV from multi_source_datalist.py --held-out SOURCE")
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder of the runs and the table")
    parser.add_argument("--init", type=Path, required=True, help="starting model (the shipped bundle)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--samples-per-epoch", type=int, default=200)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--consistency-weight", type=float, default=0.1)
    parser.add_argument("--sampling", default=SAMPLING)
    parser.add_argument("--only", help="comma-separated row folder names to run (default: every row)")
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    table = rows(list(AUGMENTATIONS))
    if args.only:
        wanted = set(args.only.split(","))
        table = [r for r in table if folder_name(r[0]) in wanted]
    results = [("starting model, not trained further", starting_point(args))]
    for row, augmentations in table:
        results.append((row, last_epoch(run_row(args, row, augmentations))))
    groups = sorted(k for k in results[-1][1] if k.startswith("val_dice_") and k not in ("val_dice_field",))
    groups = [g for g in groups if g != "val_dice_anatomical"]
    header = ["row", "mean", *(g[len("val_dice_") :] for g in groups)]
    with open(args.output / "ablation.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row, values in results:
            writer.writerow([row, values["val_dice"], *(values.get(g, "") for g in groups)])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row, values in results:
        cells = [float(values["val_dice"]), *(float(values.get(g, "nan")) for g in groups)]
        lines.append(f"| {row} | " + " | ".join(f"{c:.4f}" for c in cells) + " |")
    (args.output / "ablation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
