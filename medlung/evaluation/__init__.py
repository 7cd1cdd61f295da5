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
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from medlung import __version__
from medlung.errors import EvaluationError, OutputExistsError
from medlung.evaluation.discovery import (  # noqa: F401  (re-exported: medlung.evaluation keeps its names)
    PARTS,
    PREDICTION_SUFFIXES,
    _index_folder,
    _select,
    find_prediction,
    is_model_source,
)
from medlung.evaluation.figures import _boxplot_png, _worst_png
from medlung.evaluation.scoring import (  # noqa: F401
    EMPTY_MASK_RULE,
    FIELDS,
    N_WORST_LISTED,
    N_WORST_PICTURE,
    STRUCTURES,
    THUMBNAIL_SIDE,
    Structures,
    _score_entry,
    build_summary,
    load_prediction,
    load_truth,
)

__all__ = ["OUTPUTS", "PARTS", "EvaluationResult", "evaluate", "find_prediction", "is_model_source",
           "load_prediction", "load_truth"]

#: Files written into OUT.
OUTPUTS = ("metrics.csv", "summary.json", "boxplot.png", "worst.png")

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

def evaluate(pred_or_model: str | Path | None, data: str | Path, out: str | Path, part: str = "test",
             device: str = "auto", tta: bool = False, limit: int | None = None, overwrite: bool = False,
             segmenter=None, progress: Callable[[dict], None] | None = None) -> EvaluationResult:
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
    medlung.inference.segmenter.ModelError
        The model cannot be loaded.
    """
    from medlung.inference.predict import output_stems
    from medlung.io.datasets import find_datalist

    out = Path(out)
    if part not in PARTS:
        raise EvaluationError(f"unknown part {part!r}", hint=f"Choose one of {', '.join(PARTS)}.")
    if limit is not None and limit < 1:
        raise EvaluationError(f"limit must be at least 1, got {limit}")
    check_outputs(out, overwrite)
    datalist = find_datalist(data)
    entries, notes = _select(datalist, part)
    if limit is not None:
        entries = entries[:limit]
    if not entries:
        raise EvaluationError(f"no films to evaluate in part {part!r}", data,
                              "Check DATA, or choose another --part.")

    source_kind, folder_index, model_version = "model", None, None
    if segmenter is None and pred_or_model is not None and not is_model_source(pred_or_model):
        folder = Path(pred_or_model)
        if not folder.is_dir():
            raise EvaluationError("is neither a folder of predictions nor a model", folder,
                                  "Give a folder of <stem>_labels.nii.gz / _lungs.png / _seg.dcm files, a bundle, "
                                  "a run folder or a .pt checkpoint.")
        source_kind, folder_index = "predictions", _index_folder(folder)
    elif segmenter is None:
        from medlung.inference import Segmenter

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            segmenter = Segmenter(pred_or_model, device=device, tta=tta)
    model = None
    if segmenter is not None:
        model_version = segmenter.model_version
        model = describe_model(segmenter)

    stems = output_stems([Path(e["image"]) for e in entries])
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
        "data": str(data), "data_source": datalist.source, "part": part, "limit": limit, "notes": notes,
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
