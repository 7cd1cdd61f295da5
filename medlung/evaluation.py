"""Score lung segmentations against ground truth: the work behind ``medlung evaluate``.

What is compared
----------------
The predictions are either a **folder of predicted masks** or a **model**
(a medlung bundle folder, a training run folder with ``best.pt``, or a
``.pt`` checkpoint) that :class:`medlung.inference.Segmenter` runs on each
film. A folder is searched (recursively) for, per film stem (the film's file
name without its last extension, as ``medlung predict`` names its outputs),
in this order of preference:

1. ``<stem>_labels.nii.gz`` (or ``.nii``): label map, 0 background, 1 patient
   right lung, 2 patient left lung: per-lung metrics.
2. ``<stem>_seg.dcm``: DICOM-SEG, read by :func:`medlung.io.seg.read_dicom_seg`
   (its laterality rules); per-lung when it holds a left lung (label 2).
3. ``<stem>_lungs.png``: union mask (any non-zero = lung): both lungs only.
4. ``<stem>.png``: a label map when its non-zero values are 1 and 2 only
   (with 2 present), else a union mask.

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
prediction or truth on another grid than its film gives an error row, not a
crash. Empty masks follow :mod:`medlung.metrics` (both empty: Dice 1,
distances 0; one empty: Dice 0, distances ``inf``).

Outputs in OUT: ``metrics.csv`` (one row per film), ``summary.json``,
``boxplot.png`` and ``worst.png``; each written atomically.
"""

from __future__ import annotations

import csv
import datetime
import heapq
import io
import json
import math
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from medlung import __version__
from medlung.errors import EvaluationError, MedlungError, OutputExistsError, UsageError
from medlung.metrics import DISTANCE_METRICS, METRICS, compare_masks, distance_unit, summarize

__all__ = ["OUTPUTS", "PARTS", "EvaluationResult", "evaluate", "find_prediction", "is_model_source",
           "load_prediction", "load_truth"]

#: Files written into OUT.
OUTPUTS = ("metrics.csv", "summary.json", "boxplot.png", "worst.png")
#: Values of ``part``.
PARTS = ("test", "validation", "training", "all")
#: Structures scored: both lungs together, then each lung ("" suffix = both).
STRUCTURES = (("", "both lungs"), ("_right", "patient right lung"), ("_left", "patient left lung"))
#: Prediction file endings in order of preference, and their kind.
PREDICTION_SUFFIXES = (("_labels.nii.gz", "labels"), ("_labels.nii", "labels"), ("_seg.dcm", "seg"),
                       ("_lungs.png", "union"), (".png", "auto"))
#: Films shown in worst.png, and listed in summary.json.
N_WORST_PICTURE, N_WORST_LISTED = 5, 10
#: Longest side of the pictures kept for worst.png, pixels.
THUMBNAIL_SIDE = 320
EMPTY_MASK_RULE = ("both masks empty: Dice 1, IoU 1, HD95 0, ASSD 0; exactly one empty: Dice 0, IoU 0, "
                   "HD95 and ASSD inf (metrics.csv 'inf'; excluded from the statistics and counted in n_inf)")
FIELDS = (["film", "status", "image", "truth", "prediction", "lungs", "rows", "cols", "spacing_row_mm",
           "spacing_col_mm", "spacing_source", "unit", "ignored_px"]
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

    def without(self, ignore: np.ndarray) -> "Structures":
        """The same structures with the pixels of ``ignore`` (bool) left out."""
        keep = ~ignore
        side = (lambda m: None if m is None else m & keep)
        return Structures(self.both & keep, side(self.right), side(self.left), self.source, self.note)

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


@dataclass
class EvaluationResult:
    """What :func:`evaluate` produced.

    Attributes
    ----------
    rows : list of dict
        One per film, keys :data:`FIELDS` (floats, ``inf``, NaN for missing).
    summary : dict
        The content of ``summary.json``.
    outputs : dict
        Output name -> path.
    """

    rows: list
    summary: dict
    outputs: dict = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.rows if r["status"] != "ok")


def is_model_source(path: str | Path) -> bool:
    """Whether ``path`` is a model (bundle, run folder, checkpoint) rather than a folder of predictions."""
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() in (".pt", ".pth", ".ckpt")
    return path.is_dir() and ((path / "best.pt").is_file() or (path / "configs" / "inference.json").is_file()
                              or (path / "models" / "model.pt").is_file())


class EvaluationUsageError(EvaluationError, UsageError):
    """The evaluation cannot start (unknown part, nothing to evaluate, no such predictions): exit status 2."""


def evaluate(pred_or_model: str | Path | None, data: str | Path, out: str | Path, part: str = "test",
             device: str = "auto", tta: bool = False, limit: int | None = None, overwrite: bool = False,
             segmenter=None, progress: Callable[[dict], None] | None = None,
             only_predicted: bool = False, lungs: str = "field") -> EvaluationResult:
    """Score predictions (a folder) or a model against the ground truth of DATA.

    Parameters
    ----------
    pred_or_model : str or Path or None
        A folder of predicted masks (see the module notes for names), or a
        bundle folder, run folder or ``.pt`` checkpoint to run. ``None`` runs
        the shipped bundle.
    data : str or Path
        As for ``medlung train``: a folder with ``images/`` and ``masks/``, a
        CSV ``image,mask[,split]`` or a MONAI datalist JSON.
    out : str or Path
        Output folder (created) for :data:`OUTPUTS`.
    part : str
        ``"test"`` (default), ``"validation"``, ``"training"`` or ``"all"``.
        When DATA has no split, every film is evaluated whatever the part.
    device : str
        For a model: ``"cpu"``, ``"cuda"`` or ``"auto"``.
    tta : bool
        For a model: mirrored test-time augmentation.
    limit : int, optional
        Evaluate at most this many films (the first ones of the part).
    overwrite : bool
        Replace results already in ``out``; otherwise they are refused
        before any work is done.
    segmenter : medlung.inference.Segmenter, optional
        An already loaded model (then ``pred_or_model`` only names it).
    progress : callable, optional
        Called with each finished row.
    lungs : str
        The lung convention scored, ``"field"`` or ``"anatomical"``: the model
        draws it, and only films whose masks follow it are scored (films
        whose DATA entry names the other convention are left out and
        counted in the notes; entries that name none are taken to follow it).
        Ignore masks of DATA are left out of every metric.
    only_predicted : bool
        For a folder of predictions: score only the films of the part that
        have a prediction there (``limit`` counts those); the others are
        counted in the summary's ``skipped_without_prediction``. Otherwise
        a film without prediction is an error row.

    Returns
    -------
    EvaluationResult

    Raises
    ------
    OutputExistsError
        ``out`` already holds results and ``overwrite`` is False.
    EvaluationError
        Unknown part, nothing to evaluate, or ``pred_or_model`` does not exist.
    medlung.io.datasets.DatasetError
        DATA is not a data layout.
    medlung.networks.loading.ModelError
        The model cannot be loaded.
    """
    from medlung.writers.naming import output_stems
    from medlung.io.datasets import find_datalist

    out = Path(out)
    if part not in PARTS:
        raise EvaluationUsageError(f"unknown part {part!r}", hint=f"Choose one of {', '.join(PARTS)}.")
    if limit is not None and limit < 1:
        raise EvaluationUsageError(f"limit must be at least 1, got {limit}")
    check_outputs(out, overwrite)
    if segmenter is not None:
        lungs = segmenter.lungs
    datalist = find_datalist(data)
    entries, notes = _select(datalist, part)
    other = [e for e in entries if e.get("lungs") and e["lungs"] != lungs]
    if other:
        entries = [e for e in entries if e not in other]
        notes.append(f"{len(other)} film(s) whose masks follow another lung convention than {lungs!r} left out")
    scope = f"{part} part" if datalist.has_split or part == "all" else "every film: DATA has no split"

    source_kind, folder_index, model_version = "model", None, None
    if segmenter is None and pred_or_model is not None and not is_model_source(pred_or_model):
        folder = Path(pred_or_model)
        if not folder.is_dir():
            raise EvaluationUsageError("is neither a folder of predictions nor a model", folder,
                                  "Give a folder of <stem>_labels.nii.gz / _lungs.png / _seg.dcm files, a bundle, "
                                  "a run folder or a .pt checkpoint.")
        source_kind, folder_index = "predictions", _index_folder(folder)
    elif only_predicted:
        raise EvaluationUsageError("only_predicted is for a folder of predictions, not a model", pred_or_model,
                              "Drop --only-predicted: a model predicts every film.")
    skipped = 0
    stems = output_stems([Path(e["image"]) for e in entries])  # of the whole part: names as predict gave them
    if only_predicted:
        kept = [e for e in entries if stems[Path(e["image"])] in folder_index]
        skipped, entries = len(entries) - len(kept), kept
    if limit is not None:
        entries = entries[:limit]
    if not entries:
        raise EvaluationUsageError(f"no films to evaluate in part {part!r}"
                              + (f" ({skipped} without a prediction)" if skipped else ""), data,
                              "Check DATA and the predictions, or choose another --part.")
    if segmenter is None and source_kind == "model":
        from medlung.inference import Segmenter

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            segmenter = Segmenter(pred_or_model, device=device, tta=tta, lungs=lungs)
    model = None
    if segmenter is not None:
        model_version = segmenter.model_version
        model = describe_model(segmenter)

    rows: list[dict] = []
    worst: list = []  # heap of (-dice, order, pictures): the N_WORST_PICTURE lowest Dice
    for order, entry in enumerate(entries):
        row, pictures = _score_entry(entry, stems[Path(entry["image"])], folder_index, pred_or_model, segmenter)
        rows.append(row)
        if pictures is not None:
            item = (-row["dice"], order, pictures)
            if len(worst) < N_WORST_PICTURE:
                heapq.heappush(worst, item)
            elif item > worst[0]:
                heapq.heapreplace(worst, item)
        if progress:
            progress(row)

    summary = build_summary(rows, {
        "medlung_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "pred_or_model": None if pred_or_model is None else str(pred_or_model),
        "source": source_kind, "model_version": model_version, "tta": bool(tta) if source_kind == "model" else None,
        "model": model,
        "data": str(data), "data_source": datalist.source, "part": part, "scope": scope, "limit": limit,
        "lungs": lungs, "notes": notes, "only_predicted": bool(only_predicted), "skipped_without_prediction": skipped,
    })
    out.mkdir(parents=True, exist_ok=True)
    pictures = [p for _, _, p in sorted(worst, key=lambda item: (-item[0], item[1]))]
    outputs = write_outputs(out, rows, summary, pictures, overwrite)
    return EvaluationResult(rows, summary, outputs)


def describe_model(segmenter) -> dict:
    """What was evaluated: network, widths, parameters, working spacing (mm) and window (px)."""
    from medlung.networks import count_parameters

    spec = segmenter.spec
    return {"network": spec.network, "features": [int(f) for f in spec.features],
            "parameters": count_parameters(segmenter.model), "working_spacing_mm": spec.working_spacing,
            "roi_size": segmenter.roi_size}


def check_outputs(out: Path, overwrite: bool) -> None:
    """Raise :class:`OutputExistsError` if ``out`` holds any of :data:`OUTPUTS` and ``overwrite`` is False."""
    if overwrite:
        return
    for name in OUTPUTS:
        if (Path(out) / name).exists():
            raise OutputExistsError("already holds results of an earlier evaluation", Path(out) / name,
                                    "Use --overwrite to replace them, or choose another -o.")


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


def find_prediction(index: dict, stem: str) -> tuple[Path, str] | None:
    """The preferred prediction file of a film stem in a folder index (see :func:`_index_folder`)."""
    candidates = index.get(stem, {})
    for suffix, _ in PREDICTION_SUFFIXES:
        if suffix in candidates:
            return candidates[suffix]
    return None


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


def write_outputs(out: Path, rows: list[dict], summary: dict, pictures: list, overwrite: bool) -> dict:
    """Write :data:`OUTPUTS` into ``out`` atomically; return name -> path."""
    from medlung.writers.atomic import write_atomically

    def write_csv(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=FIELDS, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _csv_value(row.get(k)) for k in FIELDS})

    def write_json(tmp: Path) -> None:
        tmp.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")

    outputs = {
        "metrics.csv": write_atomically(out / "metrics.csv", write_csv, overwrite),
        "summary.json": write_atomically(out / "summary.json", write_json, overwrite),
    }
    boxplot, montage = _boxplot_png(rows), _worst_png(pictures)
    outputs["boxplot.png"] = write_atomically(out / "boxplot.png", lambda tmp: tmp.write_bytes(boxplot), overwrite)
    outputs["worst.png"] = write_atomically(out / "worst.png", lambda tmp: tmp.write_bytes(montage), overwrite)
    return outputs


# --------------------------------------------------------------------------- one film

def _score_entry(entry: dict, stem: str, folder_index: dict | None, folder, segmenter) -> tuple[dict, dict | None]:
    from medlung.io import load_film

    started = time.perf_counter()
    row: dict = {k: math.nan for k in FIELDS}
    row.update(film=stem, status="error", image=entry["image"], truth=entry.get("label") or "", prediction="",
               lungs=entry.get("lungs") or "", spacing_source="", unit="", per_lung=False, note="", error="",
               segment_seconds=math.nan, ignored_px=0)
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
        if entry.get("ignore"):
            from medlung.io.masks import load_label_map

            ignore = load_label_map(entry["ignore"], film.shape) > 0
            _check_grid(ignore, film.shape, Path(entry["ignore"]), "ignore mask")
            truth, pred = truth.without(ignore), pred.without(ignore)
            row["ignored_px"] = int(ignore.sum())
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


def _metrics(pred: Structures, truth: Structures, spacing) -> dict:
    values = {f"{m}": v for m, v in compare_masks(pred.both, truth.both, spacing).items() if m in METRICS}
    if pred.per_lung and truth.per_lung:
        for suffix, attribute in (("_right", "right"), ("_left", "left")):
            result = compare_masks(getattr(pred, attribute), getattr(truth, attribute), spacing)
            values.update({f"{m}{suffix}": result[m] for m in METRICS})
    return values


def _check_grid(array: np.ndarray, shape, path: Path, what: str) -> None:
    if tuple(array.shape) != tuple(shape):
        raise EvaluationError(
            f"{what} is {array.shape[0]}x{array.shape[1]} (rows x cols) but its film is {shape[0]}x{shape[1]}",
            path, f"Give the {what} on the film's native grid.")


def _select(datalist, part: str) -> tuple[list[dict], list[str]]:
    notes = list(datalist.problems)
    if part == "all":
        entries = datalist.all_entries()
    elif datalist.has_split:
        entries = list(datalist.parts[part])
    else:
        entries = datalist.all_entries()
        notes.append(f"DATA has no split: every film is evaluated (part {part!r} ignored)")
    unique = list({e["image"]: e for e in entries}.values())
    return unique, notes


def _index_folder(folder: Path) -> dict:
    """stem -> {suffix: (path, kind)} for every prediction-like file under ``folder`` (shallowest first)."""
    index: dict = {}
    files = sorted((p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")),
                   key=lambda p: (len(p.relative_to(folder).parts), str(p)))
    for path in files:
        lower = path.name.lower()
        for suffix, kind in PREDICTION_SUFFIXES:
            if lower.endswith(suffix):
                stem = path.name[: -len(suffix)]
                index.setdefault(stem, {}).setdefault(suffix, (path, kind))
                break
    return index


# --------------------------------------------------------------------------- pictures

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


def _figure_bytes(figure) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _boxplot_png(rows: list[dict]) -> bytes:
    plt = _pyplot()
    ok = [r for r in rows if r["status"] == "ok"]
    units = [r["unit"] for r in ok]
    unit = max(set(units), key=units.count) if units else "px"
    figure, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 4.2))
    for axis, metric in zip(axes, METRICS):
        data, names = [], []
        for suffix, label in STRUCTURES:
            chosen = ok if metric not in DISTANCE_METRICS else [r for r in ok if r["unit"] == unit]
            values = [r[f"{metric}{suffix}"] for r in chosen]
            values = [v for v in values if v is not None and math.isfinite(v)]
            if values:
                data.append(values)
                names.append({"": "both", "_right": "right", "_left": "left"}[suffix])
        if data:
            axis.boxplot(data, showfliers=True)
            axis.set_xticks(range(1, len(names) + 1), names)
        else:
            axis.text(0.5, 0.5, "no values", ha="center", va="center", transform=axis.transAxes)
        title = {"dice": "Dice", "iou": "IoU"}.get(metric, metric.upper())
        if metric in DISTANCE_METRICS:
            title += f" ({unit})" + (" [films in other units left out]" if len(set(units)) > 1 else "")
        axis.set_title(title)
        axis.grid(axis="y", alpha=0.3)
    figure.suptitle(f"{len(ok)} films scored" + (f", {len(rows) - len(ok)} failed" if len(rows) > len(ok) else ""))
    figure.tight_layout()
    return _figure_bytes(figure)


def _worst_png(pictures: list[dict]) -> bytes:
    from matplotlib.colors import ListedColormap

    plt = _pyplot()
    if not pictures:
        figure = plt.figure(figsize=(6, 2))
        figure.text(0.5, 0.5, "no film was scored", ha="center", va="center")
        return _figure_bytes(figure)
    # 0 background (transparent), 1 right lung, 2 left lung, 3 lung without side
    colours = ListedColormap([(0, 0, 0, 0), (0.95, 0.45, 0.1, 1), (0.15, 0.55, 0.95, 1), (0.85, 0.8, 0.1, 1)])
    figure, axes = plt.subplots(len(pictures), 4, figsize=(13, 3.3 * len(pictures)), squeeze=False)
    for line, picture in zip(axes, pictures):
        image, truth, pred = picture["image"], picture["truth"], picture["pred"]
        line[0].imshow(image, cmap="gray")
        hd95 = picture["hd95"]
        line[0].set_title(f"{picture['film']}\nDice {picture['dice']:.3f}, HD95 "
                          f"{hd95:.1f} {picture['unit']}" if math.isfinite(hd95) else
                          f"{picture['film']}\nDice {picture['dice']:.3f}, HD95 inf", fontsize=9)
        for axis, labels, name in ((line[1], truth, "truth"), (line[2], pred, "prediction")):
            axis.imshow(image, cmap="gray")
            axis.imshow(labels, cmap=colours, vmin=0, vmax=3, alpha=0.55, interpolation="nearest")
            sides = "orange right, blue left" + (", yellow no side" if (labels == 3).any() else "")
            axis.set_title(f"{name} ({sides})", fontsize=9)
        t, p = truth > 0, pred > 0
        grey = np.repeat((image.astype(np.float32) / 255.0)[..., None], 3, axis=2)
        overlay = grey.copy()
        for mask, colour in ((t & p, (0.1, 0.8, 0.1)), (t & ~p, (0.2, 0.4, 1.0)), (p & ~t, (1.0, 0.15, 0.15))):
            overlay[mask] = 0.45 * grey[mask] + 0.55 * np.asarray(colour)
        line[3].imshow(overlay)
        line[3].set_title(f"overlay Dice {picture['dice']:.3f}\ngreen agree, blue missed, red extra", fontsize=9)
        for axis in line:
            axis.axis("off")
    figure.tight_layout()
    return _figure_bytes(figure)


# --------------------------------------------------------------------------- formatting

def _csv_value(value):
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(round(value, 6))
    return "" if value is None else value


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
