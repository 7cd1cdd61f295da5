"""Dice of a bundle's Segmenter on a datalist: the work behind ``configs/evaluate.json``.

Every film goes through the same :class:`~medlung.inference.Segmenter` as
``medlung predict`` (working grid, back to the native grid, clean-up), and its
lung mask (both lungs) is scored against the reference mask on the film's
native grid. ``medlung evaluate`` gives the full set of metrics (HD95, surface
distance in mm); this is the bundle's quick check.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np

from medlung.errors import BundleError, MedlungError
from medlung.writers.atomic import check_writable, write_atomically

logger = logging.getLogger("medlung.bundle")

PARTS = ("training", "validation", "test", "all")
COLUMNS = ("image", "label", "status", "dice", "iou", "rows", "cols", "seconds", "error")


def evaluate_datalist(segmenter, data, output_dir, part: str = "test", limit=None, overwrite=False) -> dict:
    """Segment the films of a datalist and score them against their masks.

    Parameters
    ----------
    segmenter : medlung.inference.Segmenter
        The model.
    data : str or Path
        A folder with ``images/`` + ``masks/``, a CSV ``image,mask[,split]``
        or a MONAI datalist JSON (as for ``medlung train``).
    output_dir : str or Path
        Receives ``evaluation.csv`` (one row per film) and
        ``evaluation.json`` (summary and rows).
    part : {"test", "validation", "training", "all"}
        Which part of the split; data without a split is scored whole.
    limit : int, optional
        Score at most this many films.
    overwrite : bool or str
        Replace an earlier evaluation in ``output_dir``.

    Returns
    -------
    dict
        Summary: ``films``, ``scored``, ``failed``, ``mean_dice``,
        ``median_dice``, ``min_dice``, ``mean_iou`` (native grid, both lungs
        as one mask), ``part``, ``data``, ``model_version``.

    Raises
    ------
    BundleError
        When the part is unknown or empty, or outputs exist and overwrite is false.
    """
    import torch

    from medlung.bundle.components import as_bool, as_optional
    from medlung.io import load_film
    from medlung.io.datasets import find_datalist
    from medlung.io.masks import load_label_map
    from medlung.training.loop import dice_iou

    if part not in PARTS:
        raise BundleError(f"part must be one of {', '.join(PARTS)}, got {part!r}", hint="Give --part test, for example.")
    out = Path(output_dir)
    overwrite = as_bool(overwrite, "overwrite")
    targets = (out / "evaluation.csv", out / "evaluation.json")
    for target in targets:
        check_writable(target, overwrite)
    datalist = find_datalist(data)
    if part == "all" or not datalist.has_split:
        entries = datalist.all_entries()
        used = "all" if part == "all" else f"all (the data has no split, {part} asked)"
    else:
        entries, used = datalist.parts[part], part
    limit = as_optional(limit)
    if limit is not None:
        entries = entries[: int(limit)]
    if not entries:
        raise BundleError(f"no films in the {part} part", data, "Check the data, or give --part all.")

    rows = []
    for number, entry in enumerate(entries, start=1):
        started = time.perf_counter()
        row = {"image": entry["image"], "label": entry["label"], "status": "error"}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                film = load_film(entry["image"])
            reference = load_label_map(entry["label"], film.shape) > 0
            if reference.shape != film.shape:
                raise BundleError(f"mask is {reference.shape[0]}x{reference.shape[1]} but the film is "
                                  f"{film.rows}x{film.cols}", entry["label"], "Give a mask on the film's grid.")
            masks = segmenter(film)
            dice, iou = dice_iou(torch.from_numpy(masks.lungs), torch.from_numpy(reference))
            row.update(status="ok", dice=round(dice, 6), iou=round(iou, 6), rows=film.rows, cols=film.cols)
        except MedlungError as exc:
            row["error"] = str(exc)
        except Exception as exc:  # one bad film never stops the evaluation
            row["error"] = f"{entry['image']}: unexpected {type(exc).__name__}: {exc}"
        row["seconds"] = round(time.perf_counter() - started, 3)
        rows.append(row)
        if row["status"] == "ok":
            logger.info(f"[{number}/{len(entries)}] {entry['image']}: Dice {row['dice']:.4f} IoU {row['iou']:.4f}")
        else:
            logger.error(f"[{number}/{len(entries)}] {row['error']}")

    dices = [r["dice"] for r in rows if r["status"] == "ok"]
    ious = [r["iou"] for r in rows if r["status"] == "ok"]
    summary = {
        "data": str(data),
        "part": used,
        "model_version": segmenter.model_version,
        "grid": "native (each film's own pixels); both lungs as one mask",
        "films": len(rows),
        "scored": len(dices),
        "failed": len(rows) - len(dices),
        "mean_dice": float(np.mean(dices)) if dices else None,
        "median_dice": float(np.median(dices)) if dices else None,
        "min_dice": float(np.min(dices)) if dices else None,
        "mean_iou": float(np.mean(ious)) if ious else None,
        "settings": {"roi_size": segmenter.roi_size, "overlap": segmenter.overlap, "tta": segmenter.tta},
    }
    out.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in COLUMNS})
    table = text.getvalue()
    document = json.dumps({"summary": summary, "films": rows}, indent=2)
    write_atomically(targets[0], lambda tmp: tmp.write_text(table), overwrite=overwrite)
    write_atomically(targets[1], lambda tmp: tmp.write_text(document), overwrite=overwrite)
    if dices:
        logger.info(f"{used}: {len(dices)} film(s) scored, mean Dice {summary['mean_dice']:.4f}, "
                    f"mean IoU {summary['mean_iou']:.4f}; {summary['failed']} failed; {targets[1]}")
    else:
        logger.error(f"no film could be scored; see {targets[0]}")
    return summary
