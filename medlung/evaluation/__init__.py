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

The truth of a film is the ``label`` of its DATA entry, per lung when
``_lung_R`` / ``_lung_L`` files lie beside it or it is a 1/2 label map (the
rules are in :mod:`medlung.evaluation.scoring`); pixels of the entry's
``ignore`` mask are left out of every metric. Films are scored on the film's
native grid, distances in mm with the film's spacing ``(row_mm, col_mm)`` or
in pixels without one (column ``unit``); a prediction, truth or ignore mask on
another grid than its film gives an error row, not a crash. Empty masks follow
:mod:`medlung.metrics` (both empty: Dice 1, distances 0; one empty: Dice 0,
distances ``inf``).

Outputs in OUT: ``metrics.csv`` (one row per film), ``summary.json``,
``boxplot.png``, ``worst.png`` and ``calibration.png``; each written atomically.

Estimated Dice
--------------
When the films carry an estimated Dice (:mod:`medlung.estimation`: a model
with a Dice calibration gives it; for a folder, the ``report.json`` that
``medlung predict`` wrote there), ``metrics.csv`` has it beside the true Dice
(``dice_estimate``, its interval, and per lung), ``summary.json``'s
``dice_estimate`` says how well it agreed (MAE, Pearson and Spearman r, the
interval's coverage, and how many films below the flag's threshold the
``low_dice_estimate`` flag caught and how many good films it flagged), and
``calibration.png`` plots estimated against true Dice.

Modules
-------
This package owns the run of an evaluation (:func:`evaluate`: check the
outputs, choose the films, load the model, score, summarise, write); the parts
are in three modules, whose public names are also importable from here:

* :mod:`medlung.evaluation.discovery`: which films are scored (part, lung
  convention) and where each film's prediction file is;
* :mod:`medlung.evaluation.scoring`: truth and prediction loading, the
  metrics of one film (a ``metrics.csv`` row), ``summary.json``;
* :mod:`medlung.evaluation.figures`: thumbnails, ``boxplot.png`` and
  ``worst.png``.
"""

from __future__ import annotations

import datetime
import heapq
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from medlung.errors import EvaluationError, OutputExistsError, UsageError
from medlung.evaluation.discovery import (
    PARTS,
    PREDICTION_SUFFIXES,
    find_prediction,
    index_folder,
    is_model_source,
    select_films,
)
from medlung.evaluation.figures import (
    N_WORST_PICTURE,
    THUMBNAIL_SIDE,
    boxplot_png,
    calibration_png,
    thumbnails,
    worst_png,
)
from medlung.evaluation.scoring import (
    EMPTY_MASK_RULE,
    FIELDS,
    N_WORST_LISTED,
    STRUCTURES,
    Structures,
    build_summary,
    check_grid,
    csv_value,
    estimate_summary,
    film_metrics,
    json_clean,
    json_number,
    load_prediction,
    load_truth,
    report_estimates,
    score_film,
)
from medlung.plans import DEFAULT_MIN_DICE_ESTIMATE
from medlung.version import __version__

__all__ = [
    "EMPTY_MASK_RULE",
    "FIELDS",
    "N_WORST_LISTED",
    "N_WORST_PICTURE",
    "OUTPUTS",
    "PARTS",
    "PREDICTION_SUFFIXES",
    "STRUCTURES",
    "THUMBNAIL_SIDE",
    "EvaluationResult",
    "EvaluationUsageError",
    "Structures",
    "boxplot_png",
    "build_summary",
    "calibration_png",
    "check_grid",
    "check_outputs",
    "csv_value",
    "describe_model",
    "estimate_summary",
    "evaluate",
    "film_metrics",
    "find_prediction",
    "index_folder",
    "is_model_source",
    "json_clean",
    "json_number",
    "load_prediction",
    "load_truth",
    "report_estimates",
    "score_film",
    "select_films",
    "thumbnails",
    "worst_png",
    "write_outputs",
]

#: Files written into OUT.
OUTPUTS = ("metrics.csv", "summary.json", "boxplot.png", "worst.png", "calibration.png")


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
        """Number of films not scored (``status`` other than ok)."""
        return sum(1 for r in self.rows if r["status"] != "ok")


class EvaluationUsageError(EvaluationError, UsageError):
    """The evaluation cannot start (unknown part, nothing to evaluate, no such predictions): exit status 2."""


def evaluate(
    pred_or_model: str | Path | None,
    data: str | Path,
    out: str | Path,
    part: str = "test",
    device: str = "auto",
    tta: bool = False,
    limit: int | None = None,
    overwrite: bool = False,
    segmenter=None,
    progress: Callable[[dict], None] | None = None,
    only_predicted: bool = False,
    lungs: str = "field",
) -> EvaluationResult:
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
    from medlung.io.datasets import find_datalist
    from medlung.writers.naming import output_stems

    out = Path(out)
    if part not in PARTS:
        raise EvaluationUsageError(f"unknown part {part!r}", hint=f"Choose one of {', '.join(PARTS)}.")
    if limit is not None and limit < 1:
        raise EvaluationUsageError(f"limit must be at least 1, got {limit}")
    check_outputs(out, overwrite)
    if segmenter is not None:
        lungs = segmenter.lungs
    datalist = find_datalist(data)
    entries, notes, scope = select_films(datalist, part, lungs)

    source_kind, model_version = "model", None
    folder_index: dict | None = None  # prediction files by film stem, when predictions are scored
    if segmenter is None and pred_or_model is not None and not is_model_source(pred_or_model):
        folder = Path(pred_or_model)
        if not folder.is_dir():
            raise EvaluationUsageError(
                "is neither a folder of predictions nor a model",
                folder,
                "Give a folder of <stem>_labels.nii.gz / _lungs.png / _seg.dcm files, a "
                "bundle, a run folder or a .pt checkpoint.",
            )
        source_kind, folder_index = "predictions", index_folder(folder)
    elif only_predicted:
        raise EvaluationUsageError(
            "only_predicted is for a folder of predictions, not a model",
            pred_or_model,
            "Drop --only-predicted: a model predicts every film.",
        )
    skipped = 0
    estimates = report_estimates(pred_or_model) if folder_index is not None and pred_or_model is not None else None
    stems = output_stems([Path(e["image"]) for e in entries])  # of the whole part: names as predict gave them
    if only_predicted and folder_index is not None:  # only_predicted with a model was refused above
        kept = [e for e in entries if stems[Path(e["image"])] in folder_index]
        skipped, entries = len(entries) - len(kept), kept
    if limit is not None:
        entries = entries[:limit]
    if not entries:
        raise EvaluationUsageError(
            f"no films to evaluate in part {part!r}" + (f" ({skipped} without a prediction)" if skipped else ""),
            data,
            "Check DATA and the predictions, or choose another --part.",
        )
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
        row, pictures = score_film(
            entry, stems[Path(entry["image"])], folder_index, pred_or_model, segmenter, estimates
        )
        rows.append(row)
        if pictures is not None:
            item = (-row["dice"], order, pictures)
            if len(worst) < N_WORST_PICTURE:
                heapq.heappush(worst, item)
            elif item > worst[0]:
                heapq.heapreplace(worst, item)
        if progress:
            progress(row)

    summary = build_summary(
        rows,
        {
            "medlung_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "pred_or_model": None if pred_or_model is None else str(pred_or_model),
            "source": source_kind,
            "model_version": model_version,
            "tta": bool(tta) if source_kind == "model" else None,
            "model": model,
            "data": str(data),
            "data_source": datalist.source,
            "part": part,
            "scope": scope,
            "limit": limit,
            "lungs": lungs,
            "notes": notes,
            "only_predicted": bool(only_predicted),
            "skipped_without_prediction": skipped,
        },
    )
    threshold = segmenter.spec.plan.min_dice_estimate if segmenter is not None else DEFAULT_MIN_DICE_ESTIMATE
    summary["dice_estimate"] = estimate_summary(rows, threshold)
    out.mkdir(parents=True, exist_ok=True)
    worst_pictures = [p for _, _, p in sorted(worst, key=lambda item: (-item[0], item[1]))]
    outputs = write_outputs(out, rows, summary, worst_pictures, overwrite)
    return EvaluationResult(rows, summary, outputs)


def describe_model(segmenter) -> dict:
    """What was evaluated, for summary.json's ``model``.

    Parameters
    ----------
    segmenter : medlung.inference.Segmenter
        The loaded model.

    Returns
    -------
    dict
        ``network``, ``features`` (widths), ``parameters`` (count),
        ``working_spacing_mm`` (mm) and ``roi_size`` (the sliding window, px).
    """
    from medlung.networks import count_parameters

    spec = segmenter.spec
    return {
        "network": spec.network,
        "features": [int(f) for f in spec.features],
        "parameters": count_parameters(segmenter.model),
        "working_spacing_mm": spec.working_spacing,
        "roi_size": segmenter.roi_size,
    }


def check_outputs(out: Path, overwrite: bool) -> None:
    """Refuse to overwrite an earlier evaluation, before any work is done.

    Parameters
    ----------
    out : Path
        The output folder (it need not exist).
    overwrite : bool
        When True, nothing is checked.

    Raises
    ------
    OutputExistsError
        ``out`` holds any of :data:`OUTPUTS` and ``overwrite`` is False.
    """
    if overwrite:
        return
    for name in OUTPUTS:
        if (Path(out) / name).exists():
            raise OutputExistsError(
                "already holds results of an earlier evaluation",
                Path(out) / name,
                "Use --overwrite to replace them, or choose another -o.",
            )


def write_outputs(out: Path, rows: list[dict], summary: dict, pictures: list, overwrite: bool) -> dict:
    """Write :data:`OUTPUTS` into ``out``, each file atomically.

    Parameters
    ----------
    out : Path
        An existing folder.
    rows : list of dict
        The ``metrics.csv`` rows (:func:`medlung.evaluation.scoring.score_film`), in :data:`FIELDS` order.
    summary : dict
        The content of ``summary.json`` (:func:`medlung.evaluation.scoring.build_summary`).
    pictures : list of dict
        The worst films' pictures for ``worst.png``, lowest Dice first.
    overwrite : bool
        Replace files already there.

    Returns
    -------
    dict
        Output name -> path written.
    """
    from medlung.atomic import write_atomically
    from medlung.tables import csv_text

    table = csv_text(FIELDS, rows, csv_value)

    def write_csv(tmp: Path) -> None:
        tmp.write_text(table, encoding="utf-8")

    def write_json(tmp: Path) -> None:
        tmp.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")

    outputs = {
        "metrics.csv": write_atomically(out / "metrics.csv", write_csv, overwrite),
        "summary.json": write_atomically(out / "summary.json", write_json, overwrite),
    }
    boxplot, montage = boxplot_png(rows), worst_png(pictures)
    threshold = (summary.get("dice_estimate") or {}).get("both", {}).get("threshold", DEFAULT_MIN_DICE_ESTIMATE)
    calibration = calibration_png(rows, threshold)
    outputs["boxplot.png"] = write_atomically(out / "boxplot.png", lambda tmp: tmp.write_bytes(boxplot), overwrite)
    outputs["worst.png"] = write_atomically(out / "worst.png", lambda tmp: tmp.write_bytes(montage), overwrite)

    def write_calibration(tmp: Path) -> None:
        tmp.write_bytes(calibration)

    outputs["calibration.png"] = write_atomically(out / "calibration.png", write_calibration, overwrite)
    return outputs
