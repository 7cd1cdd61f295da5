"""Scoring one film against its truth (both lungs, and each lung when both are known), thumbnails, summary."""

from __future__ import annotations

import math
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medlung.errors import EvaluationError, MedlungError
from medlung.evaluation.discovery import find_prediction
from medlung.metrics import DISTANCE_METRICS, METRICS, compare_masks, distance_unit, summarize


#: Structures scored: both lungs together, then each lung ("" suffix = both).
STRUCTURES = (("", "both lungs"), ("_right", "patient right lung"), ("_left", "patient left lung"))

#: Films shown in worst.png, and listed in summary.json.
N_WORST_PICTURE, N_WORST_LISTED = 5, 10

#: Longest side of the pictures kept for worst.png, pixels.
THUMBNAIL_SIDE = 320
EMPTY_MASK_RULE = ("both masks empty: Dice 1, IoU 1, HD95 0, ASSD 0; exactly one empty: Dice 0, IoU 0, "
                   "HD95 and ASSD inf (metrics.csv 'inf'; excluded from the statistics and counted in n_inf)")

FIELDS = (["film", "status", "image", "truth", "prediction", "rows", "cols", "spacing_row_mm", "spacing_col_mm",
           "spacing_source", "unit"]
          + [f"{m}{s}" for s, _ in STRUCTURES for m in METRICS]
          + ["per_lung", "seconds", "segment_seconds", "note", "error"])

@dataclass
class Structures:
    """Binary masks of one film: both lungs and, when known, each lung.

    Attributes
    ----------
    both : numpy.ndarray
        bool ``(rows, cols)``.
    right, left : numpy.ndarray or None
        Patient right / left lung, ``None`` when the source has no sides.
    source : str
        The file (or model) they came from.
    note : str
        Why there is no per-lung mask, when there is none.
    """

    both: np.ndarray
    right: np.ndarray | None = None
    left: np.ndarray | None = None
    source: str = ""
    note: str = ""

    @property
    def per_lung(self) -> bool:
        return self.right is not None and self.left is not None

    def labels(self) -> np.ndarray:
        """uint8 map for pictures: 1 right, 2 left, 3 lung without side."""
        if not self.per_lung:
            return np.where(self.both, 3, 0).astype(np.uint8)
        out = np.where(self.both, 3, 0).astype(np.uint8)
        out[self.right] = 1
        out[self.left] = 2
        return out

    @classmethod
    def from_labels(cls, labels: np.ndarray, source: str, per_lung: bool | None = None,
                    note: str = "") -> "Structures":
        """Build from a label map; ``per_lung=None`` decides by the values (1 and 2 only, 2 present)."""
        labels = np.asarray(labels)
        if per_lung is None:
            values = set(np.unique(labels).tolist()) - {0}
            per_lung = bool(values) and values <= {1, 2} and 2 in values
            if not per_lung:
                note = note or f"{Path(source).name} holds no right/left labels (values {sorted(values)[:5]})"
        if per_lung:
            return cls(labels > 0, labels == 1, labels == 2, source)
        return cls(labels > 0, source=source, note=note)

def load_truth(path: str | Path, shape: tuple[int, int]) -> Structures:
    """Read a ground-truth mask with its per-lung masks when known (rules in the module notes).

    Parameters
    ----------
    path : str or Path
        The truth mask or label map (PNG or NIfTI).
    shape : tuple of int
        The film's ``(rows, cols)``; the truth must have it.

    Returns
    -------
    Structures

    Raises
    ------
    EvaluationError
        The truth is not on the film's grid.
    medlung.errors.UnreadableFileError
        A file cannot be read.
    """
    from medlung.io.masks import load_label_map

    path = Path(path)
    labels = load_label_map(path, shape)
    _check_grid(labels, shape, path, "truth")
    match = re.match(r"^(.*)_lungs(\.png|\.nii\.gz|\.nii)$", path.name, flags=re.IGNORECASE)
    if match:
        right_path = path.with_name(f"{match.group(1)}_lung_R{match.group(2)}")
        left_path = path.with_name(f"{match.group(1)}_lung_L{match.group(2)}")
        if right_path.is_file() and left_path.is_file():
            right = load_label_map(right_path, shape)
            left = load_label_map(left_path, shape)
            _check_grid(right, shape, right_path, "truth")
            _check_grid(left, shape, left_path, "truth")
            return Structures(labels > 0, right > 0, left > 0, str(path))
    structures = Structures.from_labels(labels, str(path))
    if not structures.per_lung:
        structures.note = "truth has no per-lung labels (no _lung_R/_lung_L files beside it, no 1/2 label map)"
    return structures

def load_prediction(path: str | Path, kind: str, film) -> Structures:
    """Read a predicted mask for ``film``.

    Parameters
    ----------
    path : str or Path
        The prediction file.
    kind : str
        ``"labels"`` (0/1/2 label map), ``"seg"`` (DICOM-SEG), ``"union"``
        (any non-zero = lung) or ``"auto"`` (label map when its values say so).
    film : medlung.film.Film
        The film it was made on.

    Returns
    -------
    Structures

    Raises
    ------
    EvaluationError
        The prediction is not on the film's grid, or a label map holds values
        other than 0, 1 and 2.
    """
    from medlung.io.masks import load_label_map

    path = Path(path)
    if kind == "seg":
        from medlung.io.seg import read_dicom_seg

        labels, _ = read_dicom_seg(path, source=film)
    else:
        labels = load_label_map(path, film.shape)
    _check_grid(labels, film.shape, path, "prediction")
    if kind == "labels":
        extra = sorted(set(np.unique(labels).tolist()) - {0, 1, 2})
        if extra:
            raise EvaluationError(f"label map holds values {extra[:5]}; expected 0, 1 (right lung), 2 (left lung)",
                                  path, "Give a medlung label map or a 0/255 lung mask.")
        return Structures.from_labels(labels, str(path), per_lung=True)
    if kind == "seg":
        return Structures.from_labels(labels, str(path))
    if kind == "union":
        return Structures.from_labels(labels, str(path), per_lung=False,
                                      note=f"prediction {path.name} is a union mask (no right/left)")
    return Structures.from_labels(labels, str(path))

def _check_grid(array: np.ndarray, shape, path: Path, what: str) -> None:
    if tuple(array.shape) != tuple(shape):
        raise EvaluationError(
            f"{what} is {array.shape[0]}x{array.shape[1]} (rows x cols) but its film is {shape[0]}x{shape[1]}",
            path, f"Give the {what} on the film's native grid.")

def _metrics(pred: Structures, truth: Structures, spacing) -> dict:
    values = {f"{m}": v for m, v in compare_masks(pred.both, truth.both, spacing).items() if m in METRICS}
    if pred.per_lung and truth.per_lung:
        for suffix, attribute in (("_right", "right"), ("_left", "left")):
            result = compare_masks(getattr(pred, attribute), getattr(truth, attribute), spacing)
            values.update({f"{m}{suffix}": result[m] for m in METRICS})
    return values

def _score_entry(entry: dict, stem: str, folder_index: dict | None, folder, segmenter) -> tuple[dict, dict | None]:
    from medlung.io import load_film

    started = time.perf_counter()
    row: dict = {k: math.nan for k in FIELDS}
    row.update(film=stem, status="error", image=entry["image"], truth=entry.get("label") or "", prediction="",
               spacing_source="", unit="", per_lung=False, note="", error="", segment_seconds=math.nan)
    pictures = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            film = load_film(entry["image"])
        spacing = tuple(film.spacing) if film.spacing is not None else None
        row.update(rows=film.rows, cols=film.cols, spacing_source=film.spacing_source, unit=distance_unit(spacing))
        if spacing is not None:
            row.update(spacing_row_mm=spacing[0], spacing_col_mm=spacing[1])
        if not entry.get("label"):
            raise EvaluationError("has no ground-truth mask in DATA", entry["image"], "Add its mask to DATA.")
        truth = load_truth(entry["label"], film.shape)
        if folder_index is not None:
            found = find_prediction(folder_index, stem)
            if found is None:
                raise EvaluationError(
                    f"no prediction for film {stem}", folder,
                    f"Expected {stem}_labels.nii.gz, {stem}_seg.dcm, {stem}_lungs.png or {stem}.png "
                    "(medlung predict writes them).")
            row["prediction"] = str(found[0])
            pred = load_prediction(found[0], found[1], film)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                masks = segmenter(film)
            row["prediction"] = f"model {segmenter.model_version}"
            row["segment_seconds"] = round(masks.seconds, 4)
            pred = Structures.from_labels(masks.labels, row["prediction"], per_lung=True)
        row.update(_metrics(pred, truth, spacing))
        row["per_lung"] = truth.per_lung and pred.per_lung
        row["note"] = "; ".join(n for n in (truth.note, pred.note) if n)
        row["status"] = "ok"
        pictures = {"film": stem, "dice": row["dice"], "unit": row["unit"], "hd95": row["hd95"],
                    **_thumbnails(film.pixels, truth.labels(), pred.labels())}
    except MedlungError as exc:
        row["error"] = str(exc)
    except Exception as exc:  # one bad film never stops the evaluation
        row["error"] = f"{entry['image']}: unexpected {type(exc).__name__}: {exc}"
    row["seconds"] = round(time.perf_counter() - started, 4)
    return row, pictures

def build_summary(rows: list[dict], header: dict) -> dict:
    """The content of ``summary.json`` from the per-film rows.

    Statistics (see :func:`medlung.metrics.summarize`) are over the films
    scored (``status`` ok) with a finite value; distance metrics carry their
    unit, and are given per unit when films have different units.
    """
    ok = [r for r in rows if r["status"] == "ok"]
    units = sorted({r["unit"] for r in ok})
    metrics: dict = {}
    for suffix, _ in STRUCTURES:
        for metric in METRICS:
            name = f"{metric}{suffix}"
            if metric not in DISTANCE_METRICS:
                metrics[name] = summarize([r[name] for r in ok])
            elif len(units) <= 1:
                metrics[name] = {"unit": units[0] if units else None, **summarize([r[name] for r in ok])}
            else:
                metrics[name] = {"unit": "mixed", "by_unit": {
                    u: summarize([r[name] for r in ok if r["unit"] == u]) for u in units}}
    ranked = sorted(ok, key=lambda r: (r["dice"], r["film"]))
    worst = [{"film": r["film"], "image": r["image"], **{m: _json_number(r[m]) for m in METRICS},
              "dice_right": _json_number(r["dice_right"]), "dice_left": _json_number(r["dice_left"]),
              "unit": r["unit"]} for r in ranked[:N_WORST_LISTED]]
    return {
        **header,
        "films": len(rows), "ok": len(ok), "failed": len(rows) - len(ok),
        "unit": units[0] if len(units) == 1 else ("mixed" if units else None),
        "per_lung_films": sum(1 for r in ok if r["per_lung"]),
        "empty_mask_rule": EMPTY_MASK_RULE,
        "statistics": "over the scored films with a finite value; p5/p95 are the 5th/95th percentiles; "
                      "null = no value",
        "metrics": _json_clean(metrics),
        "worst_by_dice": worst,
        "errors": [{"film": r["film"], "image": r["image"], "error": r["error"]} for r in rows if r["status"] != "ok"],
    }

def _json_number(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

def _json_clean(value):
    if isinstance(value, dict):
        return {k: _json_clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_clean(v) for v in value]
    return _json_number(value)


def _thumbnails(pixels: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> dict:
    from PIL import Image

    rows, cols = pixels.shape
    scale = min(1.0, THUMBNAIL_SIDE / max(rows, cols))
    size = (max(1, round(cols * scale)), max(1, round(rows * scale)))
    low, high = np.percentile(pixels, (1, 99))
    grey = np.clip((pixels - low) / max(high - low, 1e-6) * 255, 0, 255).astype(np.uint8)
    return {"image": np.asarray(Image.fromarray(grey).resize(size, Image.BILINEAR)),
            "truth": np.asarray(Image.fromarray(truth).resize(size, Image.NEAREST)),
            "pred": np.asarray(Image.fromarray(pred).resize(size, Image.NEAREST))}
