"""Anatomical (whole-lung) pseudo-labels for healthy PA films that only have lung-field masks.

The only whole-lung masks are covid_v7's (sick AP films) and the Shenzhen annotation batches'; on an
ordinary PA film a model trained on them draws the left lung's lower inner edge behind the heart as a
ragged, stepped cut-out. This script makes, for every field film of the training split of the chosen
sources, a smooth anatomical pseudo-label:

1. the model's anatomical lungs on the film (native grid), united with the film's field mask (a field
   lies inside the anatomical lung);
2. per lung (the two largest components), the lower half filled up to the lung's convex hull: the whole
   lung runs behind the heart and down to the diaphragm as a smooth curve, where the cut-out was;
3. a closing of 2 % of the film's width smooths the outline; the field mask stays inside.

It writes ``OUT/<stem>_anatomical.png`` (0/255), a CSV equal to the input with a ``pseudo`` column for
those films (the training reads it: :mod:`medlung.transforms.conventions`), and ``OUT/check.png``, a
montage of films with the field mask, the model's anatomical lungs and the pseudo-label, to be checked by
eye before training on it. Usage::

    python scripts/anatomical_pseudo_labels.py runs/multi_source.csv --model runs/m3a/run -o runs/pseudo \\
        --csv runs/multi_source_pseudo.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def pseudo_label(anatomical: np.ndarray, field: np.ndarray, closing_fraction: float = 0.02) -> np.ndarray:
    """The smoothed whole-lung pseudo-label of one film (see the module docstring).

    Parameters
    ----------
    anatomical : numpy.ndarray
        ``(rows, cols)`` model's anatomical lungs, non-zero = lung.
    field : numpy.ndarray
        ``(rows, cols)`` the film's lung-field mask, non-zero = lung.
    closing_fraction : float
        Radius of the smoothing closing, fraction of the film's width.

    Returns
    -------
    numpy.ndarray of bool
    """
    from scipy import ndimage
    from skimage.morphology import convex_hull_image, disk

    field = np.asarray(field) > 0
    union = (np.asarray(anatomical) > 0) | field
    labelled, count = ndimage.label(union)
    if count == 0:
        return field
    sizes = ndimage.sum(union, labelled, range(1, count + 1))
    result = np.zeros_like(union)
    rows = np.arange(union.shape[0])[:, None]
    for index in np.argsort(sizes)[::-1][:2]:
        lung = labelled == index + 1
        hull = convex_hull_image(lung)
        lung_rows = np.nonzero(lung.any(axis=1))[0]
        middle = (lung_rows[0] + lung_rows[-1]) / 2
        result |= lung | (hull & (rows >= middle))
    radius = max(1, round(closing_fraction * union.shape[1]))
    padded = np.pad(result, radius)
    closed = ndimage.binary_closing(padded, structure=disk(radius))[radius:-radius, radius:-radius]
    return closed | field


def check_montage(items: list, target: Path, columns: int = 4) -> None:
    """Film with field mask (orange), the model's anatomical lungs (blue) and the pseudo-label (green)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = (len(items) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.4 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, (name, film, field, anatomical, pseudo) in zip(axes.flat, items):
        axis.imshow(film, cmap="gray")
        for mask, colour in ((field, "#ff8c00"), (anatomical, "#1e90ff"), (pseudo, "#32cd32")):
            axis.contour(mask, levels=[0.5], colors=[colour], linewidths=0.8)
        axis.set_title(name, fontsize=7)
    fig.suptitle("field (orange), model anatomical (blue), pseudo-label (green)", fontsize=9)
    fig.tight_layout()
    fig.savefig(target, dpi=80)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datalist", type=Path, help="CSV from scripts/multi_source_datalist.py")
    parser.add_argument("--model", type=Path, required=True, help="model with an anatomical output")
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder for the pseudo-labels")
    parser.add_argument("--csv", type=Path, required=True, help="the datalist with a pseudo column, written")
    parser.add_argument("--sources", default="shenzhen,montgomery", help="sources whose field films get one")
    parser.add_argument("--check", type=int, default=16, help="films in the check montage")
    args = parser.parse_args(argv)

    from PIL import Image

    from medlung.inference import Segmenter
    from medlung.io import load_film
    from medlung.io.masks import load_label_map

    segmenter = Segmenter(args.model, lungs="anatomical")
    sources = set(args.sources.split(","))
    with open(args.datalist, newline="") as handle:
        rows = list(csv.DictReader(handle))
    args.output.mkdir(parents=True, exist_ok=True)

    def wanted(row: dict) -> bool:
        return row["split"] == "train" and row["lungs"] == "field" and row["source"] in sources

    every = max(1, sum(map(wanted, rows)) // max(1, args.check))  # the montage's films, spread over the list
    montage, done = [], 0
    for row in rows:
        row["pseudo"] = ""
        if not wanted(row):
            continue
        film = load_film(row["image"])
        field = load_label_map(row["mask"], film.shape) > 0
        anatomical = segmenter(film).labels > 0
        pseudo = pseudo_label(anatomical, field)
        target = args.output / f"{Path(row['image']).stem}_anatomical.png"
        Image.fromarray(pseudo.astype(np.uint8) * 255).save(target)
        row["pseudo"] = str(target.resolve())
        done += 1
        if len(montage) < args.check and (done - 1) % every == 0:
            montage.append((Path(row["image"]).stem, film.pixels, field, anatomical, pseudo))
    columns = [*rows[0].keys()]
    with open(args.csv, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    check_montage(montage, args.output / "check.png")
    print(f"{done} pseudo-labels in {args.output}; datalist {args.csv}; check {args.output / 'check.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
