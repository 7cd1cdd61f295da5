"""Scoring one film against its ground truth, and the tables of ``medlung evaluate``.

This module owns what is measured and how it is written down:

* reading the truth (:func:`load_truth`) and a prediction file
  (:func:`load_prediction`) into :class:`Structures` (both lungs, and each
  lung when the source knows the sides);
* scoring one DATA entry (:func:`score_film`): film, truth, prediction from a
  folder or a model, ignore mask left out, Dice / IoU / HD95 / ASSD per
  structure (:data:`STRUCTURES`) into one ``metrics.csv`` row (:data:`FIELDS`);
* the content of ``summary.json`` (:func:`build_summary`) and the formatting
  of values in ``metrics.csv`` (:func:`csv_value`) and JSON (:func:`json_clean`).

Per-lung ground truth
---------------------
The truth of a film is the ``label`` of its DATA entry. Per-lung truth comes
from the first rule that applies:

1. Sibling files: a truth named ``<base>_lungs.<ext>`` with
   ``<base>_lung_R.<ext>`` and ``<base>_lung_L.<ext>`` beside it (the
   Shenzhen layout) gives the patient's right and left lung from those files
   (non-zero = lung); "both lungs" stays the ``_lungs`` mask itself.
2. A label map whose non-zero values are 1 and 2 only (with 2 present):
   1 right, 2 left.
3. Otherwise only "both lungs" is scored; the per-lung columns are empty
   and the row's note says why.

Films are scored on the film's native grid, distances in mm with the film's
spacing ``(row_mm, col_mm)`` or in pixels without one (column ``unit``). A
prediction, truth or ignore mask on another grid than its film gives an error
row, not a crash. Empty masks follow :mod:`medlung.metrics` (both empty:
Dice 1, distances 0; one empty: Dice 0, distances ``inf``).
"""

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
from medlung.metrics import DISTANCE_METRICS, METRICS, STRUCTURES, compare_masks, distance_unit, summarize
from medlung.writers.report import DICE_COLUMNS

__all__ = [
    "EMPTY_MASK_RULE",
    "FIELDS",
    "N_WORST_LISTED",
    "STRUCTURES",
    "Structures",
    "build_summary",
    "check_grid",
    "csv_value",
    "estimate_summary",
    "film_metrics",
    "json_clean",
    "json_number",
    "load_prediction",
    "load_truth",
    "report_estimates",
    "score_film",
]

#: Films listed in summary.json's ``worst_by_dice``.
N_WORST_LISTED = 10
EMPTY_MASK_RULE = (
    "both masks empty: Dice 1, IoU 1, HD95 0, ASSD 0; exactly one empty: Dice 0, IoU 0, "
    "HD95 and ASSD inf (metrics.csv 'inf'; excluded from the statistics and counted in n_inf)"
)
#: Columns of metrics.csv (keys of a row); distances (hd95, assd) in the row's ``unit``, mm or px;
#: ``ignored_px`` in pixels, ``seconds`` / ``segment_seconds`` in seconds.
FIELDS = (
    [
        "film",
        "status",
        "image",
        "truth",
        "prediction",
        "lungs",
        "rows",
        "cols",
        "spacing_mm",
        "spacing_source",
        "unit",
        "ignored_px",
    ]
    + [f"{m}{s}" for s, _ in STRUCTURES for m in METRICS]
    + ["per_lung", *DICE_COLUMNS, "low_dice_estimate", "seconds", "segment_seconds", "note", "error"]
)


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

    def without(self, ignore: np.ndarray) -> Structures:
        """The same structures with the pixels of ``ignore`` (bool) left out."""
        keep = ~ignore

        def side(m):
            return None if m is None else m & keep

        return Structures(self.both & keep, side(self.right), side(self.left), self.source, self.note)

    @classmethod
    def from_labels(cls, labels: np.ndarray, source: str, per_lung: bool | None = None, note: str = "") -> Structures:
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
    check_grid(labels, shape, path, "truth")
    match = re.match(r"^(.*)_lungs(\.png|\.nii\.gz|\.nii)$", path.name, flags=re.IGNORECASE)
    if match:
        right_path = path.with_name(f"{match.group(1)}_lung_R{match.group(2)}")
        left_path = path.with_name(f"{match.group(1)}_lung_L{match.group(2)}")
        if right_path.is_file() and left_path.is_file():
            right = load_label_map(right_path, shape)
            left = load_label_map(left_path, shape)
            check_grid(right, shape, right_path, "truth")
            check_grid(left, shape, left_path, "truth")
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
    check_grid(labels, film.shape, path, "prediction")
    if kind == "labels":
        extra = sorted(set(np.unique(labels).tolist()) - {0, 1, 2})
        if extra:
            raise EvaluationError(
                f"label map holds values {extra[:5]}; expected 0, 1 (right lung), 2 (left lung)",
                path,
                "Give a medlung label map or a 0/255 lung mask.",
            )
        return Structures.from_labels(labels, str(path), per_lung=True)
    if kind == "seg":
        return Structures.from_labels(labels, str(path))
    if kind == "union":
        return Structures.from_labels(
            labels, str(path), per_lung=False, note=f"prediction {path.name} is a union mask (no right/left)"
        )
    return Structures.from_labels(labels, str(path))


def score_film(
    entry: dict, stem: str, folder_index: dict | None, folder, segmenter, estimates: dict | None = None
) -> tuple[dict, dict | None]:
    """Score one DATA entry: its ``metrics.csv`` row, and its thumbnails for ``worst.png``.

    Parameters
    ----------
    entry : dict
        A DATA entry: ``image``, ``label`` (the truth), optional ``lungs``
        and ``ignore`` (a mask of pixels left out of every metric).
    stem : str
        The film's output stem, as ``medlung predict`` names its outputs.
    folder_index : dict or None
        :func:`medlung.evaluation.discovery.index_folder` of the predictions
        folder, or ``None`` to run ``segmenter``.
    folder : str or Path
        The predictions folder (named in the error of a missing prediction).
    segmenter : medlung.inference.Segmenter or None
        The model, when ``folder_index`` is ``None``.
    estimates : dict, optional
        For a folder: film stem -> its Dice estimate columns (:data:`~medlung.writers.report.DICE_COLUMNS`)
        from the folder's ``report.json`` (:func:`report_estimates`). A model gives its own.

    Returns
    -------
    row : dict
        Keys :data:`FIELDS`; ``status`` ``"ok"`` or ``"error"`` (with
        ``error`` saying why). A failure of this film never raises.
    pictures : dict or None
        ``film``, ``dice``, ``unit``, ``hd95`` and the thumbnails of
        :func:`medlung.evaluation.figures.thumbnails`; ``None`` when the film
        was not scored.
    """
    from medlung.evaluation.figures import thumbnails
    from medlung.io import load_film

    started = time.perf_counter()
    row: dict = {k: math.nan for k in FIELDS}
    row.update(
        film=stem,
        status="error",
        image=entry["image"],
        truth=entry.get("label") or "",
        prediction="",
        lungs=entry.get("lungs") or "",
        spacing_source="",
        unit="",
        per_lung=False,
        note="",
        error="",
        segment_seconds=math.nan,
        ignored_px=0,
        **dict.fromkeys(DICE_COLUMNS, math.nan),
        low_dice_estimate=None,
    )
    pictures = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            film = load_film(entry["image"])
        spacing = tuple(film.spacing) if film.spacing is not None else None
        row.update(rows=film.rows, cols=film.cols, spacing_source=film.spacing_source, unit=distance_unit(spacing))
        if spacing is not None:
            row.update(spacing_mm=list(spacing))
        if not entry.get("label"):
            raise EvaluationError("has no ground-truth mask in DATA", entry["image"], "Add its mask to DATA.")
        truth = load_truth(entry["label"], film.shape)
        if folder_index is not None:
            found = find_prediction(folder_index, stem)
            if found is None:
                raise EvaluationError(
                    f"no prediction for film {stem}",
                    folder,
                    f"Expected {stem}_labels.nii.gz, {stem}_seg.dcm, {stem}_lungs.png or {stem}.png "
                    "(medlung predict writes them).",
                )
            row["prediction"] = str(found[0])
            pred = load_prediction(found[0], found[1], film)
            row.update((estimates or {}).get(stem, {}))
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                masks = segmenter(film)
            row["prediction"] = f"model {segmenter.model_version}"
            row["segment_seconds"] = round(masks.seconds, 4)
            if masks.dice_estimate is not None:
                row.update(masks.dice_estimate.report_fields())
                row["low_dice_estimate"] = any(r.code == "low_dice_estimate" for r in masks.qc_reasons)
            pred = Structures.from_labels(masks.labels, row["prediction"], per_lung=True)
        if entry.get("ignore"):
            from medlung.io.masks import load_label_map

            ignore = load_label_map(entry["ignore"], film.shape) > 0
            check_grid(ignore, film.shape, Path(entry["ignore"]), "ignore mask")
            truth, pred = truth.without(ignore), pred.without(ignore)
            row["ignored_px"] = int(ignore.sum())
        row.update(film_metrics(pred, truth, spacing))
        row["per_lung"] = truth.per_lung and pred.per_lung
        row["note"] = "; ".join(n for n in (truth.note, pred.note) if n)
        row["status"] = "ok"
        pictures = {
            "film": stem,
            "dice": row["dice"],
            "unit": row["unit"],
            "hd95": row["hd95"],
            **thumbnails(film.pixels, truth.labels(), pred.labels()),
        }
    except MedlungError as exc:
        row["error"] = str(exc)
    except Exception as exc:  # one bad film never stops the evaluation
        row["error"] = f"{entry['image']}: unexpected {type(exc).__name__}: {exc}"
    row["seconds"] = round(time.perf_counter() - started, 4)
    return row, pictures


def report_estimates(folder: str | Path) -> dict:
    """The Dice estimates ``medlung predict`` wrote in a folder's ``report.json``, by film stem.

    Parameters
    ----------
    folder : str or Path
        A folder of predictions; without a readable ``report.json`` (or without estimates in it) the result
        is empty.

    Returns
    -------
    dict
        Film stem (as predict names its outputs) -> ``{column: value}`` for :data:`DICE_COLUMNS`, and
        ``low_dice_estimate`` (whether the film was flagged so).
    """
    import json

    from medlung.writers.naming import output_stems

    try:
        rows = json.loads((Path(folder) / "report.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(rows, list):
        return {}
    rows = [r for r in rows if isinstance(r, dict) and r.get("file") and r.get("dice_estimate") is not None]
    stems = output_stems([Path(r["file"]) for r in rows])
    return {
        stems[Path(r["file"])]: {
            **{c: math.nan if r.get(c) is None else float(r[c]) for c in DICE_COLUMNS},
            "low_dice_estimate": any(
                str(reason).startswith("low_dice_estimate") for reason in r.get("qc_reasons") or []
            ),
        }
        for r in rows
    }


def estimate_summary(rows: list[dict], threshold: float) -> dict:
    """``summary.json``'s ``dice_estimate``: how the estimated Dice agreed with the true one, per structure.

    Parameters
    ----------
    rows : list of dict
        The rows of :func:`score_film`.
    threshold : float
        The ``low_dice_estimate`` flag's threshold.

    Returns
    -------
    dict
        ``both``, ``right``, ``left`` -> :func:`medlung.estimation.agreement.estimate_agreement` (``right`` and
        ``left`` only over films scored per lung).
    """
    from medlung.estimation.agreement import estimate_agreement

    ok = [r for r in rows if r["status"] == "ok"]
    out = {}
    for name, prefix, suffix in (("both", "", ""), ("right", "right_", "_right"), ("left", "left_", "_left")):
        chosen = [r for r in ok if not suffix or r["per_lung"]]
        out[name] = estimate_agreement(
            [r[f"{prefix}dice_estimate"] for r in chosen],
            [r[f"dice{suffix}"] for r in chosen],
            [r[f"{prefix}dice_estimate_low"] for r in chosen],
            [r[f"{prefix}dice_estimate_high"] for r in chosen],
            threshold,
            [r.get("low_dice_estimate") for r in chosen] if name == "both" else None,
        )
    return out


def film_metrics(pred: Structures, truth: Structures, spacing) -> dict:
    """Dice, IoU, HD95 and ASSD of both lungs, and of each lung when both sides know them.

    Parameters
    ----------
    pred, truth : Structures
        On the same grid.
    spacing : tuple of float or None
        ``(row_mm, col_mm)``; distances in mm, or in pixels when ``None``.

    Returns
    -------
    dict
        ``<metric><suffix>`` (see :data:`STRUCTURES`) -> value; the per-lung
        keys only when ``pred`` and ``truth`` are both per lung.
    """
    values = {f"{m}": v for m, v in compare_masks(pred.both, truth.both, spacing).items() if m in METRICS}
    if pred.per_lung and truth.per_lung:
        for suffix, attribute in (("_right", "right"), ("_left", "left")):
            result = compare_masks(getattr(pred, attribute), getattr(truth, attribute), spacing)
            values.update({f"{m}{suffix}": result[m] for m in METRICS})
    return values


def check_grid(array: np.ndarray, shape, path: Path, what: str) -> None:
    """Raise :class:`EvaluationError` unless ``array`` is ``shape`` ``(rows, cols)``, the film's grid."""
    if tuple(array.shape) != tuple(shape):
        raise EvaluationError(
            f"{what} is {array.shape[0]}x{array.shape[1]} (rows x cols) but its film is {shape[0]}x{shape[1]}",
            path,
            f"Give the {what} on the film's native grid.",
        )


def build_summary(rows: list[dict], header: dict) -> dict:
    """The content of ``summary.json`` from the per-film rows.

    Statistics (see :func:`medlung.metrics.summarize`) are over the films
    scored (``status`` ok) with a finite value; distance metrics carry their
    unit (mm or px), and are given per unit when films have different units.

    Parameters
    ----------
    rows : list of dict
        The rows of :func:`score_film`, in DATA order.
    header : dict
        What was evaluated (source, data, part, convention...): the first
        keys of the summary.

    Returns
    -------
    dict
        ``header``, then counts, the empty-mask rule, statistics per metric
        and structure, the :data:`N_WORST_LISTED` worst films by Dice and the
        errors; NaN and infinite values as ``None``.
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
                metrics[name] = {
                    "unit": "mixed",
                    "by_unit": {u: summarize([r[name] for r in ok if r["unit"] == u]) for u in units},
                }
    ranked = sorted(ok, key=lambda r: (r["dice"], r["film"]))
    worst = [
        {
            "film": r["film"],
            "image": r["image"],
            **{m: json_number(r[m]) for m in METRICS},
            "dice_right": json_number(r["dice_right"]),
            "dice_left": json_number(r["dice_left"]),
            "unit": r["unit"],
        }
        for r in ranked[:N_WORST_LISTED]
    ]
    return {
        **header,
        "films": len(rows),
        "ok": len(ok),
        "failed": len(rows) - len(ok),
        "unit": units[0] if len(units) == 1 else ("mixed" if units else None),
        "per_lung_films": sum(1 for r in ok if r["per_lung"]),
        "empty_mask_rule": EMPTY_MASK_RULE,
        "statistics": "over the scored films with a finite value; p5/p95 are the 5th/95th percentiles; null = no value",
        "metrics": json_clean(metrics),
        "worst_by_dice": worst,
        "errors": [{"film": r["film"], "image": r["image"], "error": r["error"]} for r in rows if r["status"] != "ok"],
    }


def csv_value(value):
    """A row value as written in ``metrics.csv``: yes/no, ``""`` for NaN and None, ``inf``, floats to 6 decimals."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(round(value, 6))
    if isinstance(value, (list, tuple)):  # a spacing (row_mm, col_mm): as in report.csv
        return ";".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in value)
    return "" if value is None else value


def json_number(value):
    """``None`` for a NaN or infinite float (JSON has neither), else ``value``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_clean(value):
    """``value`` with every NaN or infinite float, in nested dicts and lists, replaced by ``None``."""
    if isinstance(value, dict):
        return {k: json_clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_clean(v) for v in value]
    return json_number(value)
