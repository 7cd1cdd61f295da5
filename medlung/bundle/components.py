"""Small pieces the bundle configs call around medlung's own components.

The configs in ``bundles/*/configs`` build a :class:`~medlung.inference.Segmenter`,
call :func:`~medlung.pipeline.batch.collect_inputs` and
:func:`~medlung.pipeline.batch.predict_files` (inference), the
:class:`~medlung.training.loop.Trainer` (training) and
:func:`medlung.evaluation.evaluate` (evaluation). What is here
only adapts command-line overrides (``--tta true`` arrives as the string
``"true"``), checks them, and logs progress through :mod:`logging`, which the
bundle's ``configs/logging.conf`` sets up.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from medlung import defaults, environment
from medlung.errors import BundleError

logger = logging.getLogger("medlung.bundle")

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", "none", "null", ""}


def one_line_errors() -> None:
    """Make ``python -m monai.bundle run`` print a medlung error as one ``error: ...`` line.

    MONAI wraps an exception raised inside a config expression in a
    ``RuntimeError("Failed to evaluate ...")``, so a :class:`BundleError`
    (``output_dir already holds report.csv``) would surface in the middle of
    a 50-line traceback. The configs call this first in ``initialize``: it
    installs a :data:`sys.excepthook` that, for an uncaught exception whose
    chain holds a :class:`~medlung.errors.MedlungError`, prints that error's
    one-line message (exit status 1, as before). Other exceptions keep their
    traceback, and ``MEDLUNG_TRACEBACK=1`` shows it for medlung's errors too.
    Python code that runs a config itself still receives the exceptions.
    """
    import sys

    from medlung.errors import MedlungError

    previous = sys.excepthook
    if getattr(previous, "_medlung_one_line", False):
        return

    def hook(kind, value, tb):
        error, seen = value, set()
        while error is not None and not isinstance(error, MedlungError) and id(error) not in seen:
            seen.add(id(error))
            error = error.__cause__ or error.__context__
        if isinstance(error, MedlungError) and not environment.traceback_wanted():
            sys.stderr.write(f"error: {error}\n")
        else:
            previous(kind, value, tb)

    hook._medlung_one_line = True  # type: ignore[attr-defined]  # a mark on the function: installed once
    sys.excepthook = hook


def as_bool(value, name: str = "value") -> bool:
    """Read a boolean given in a config or on the ``monai.bundle`` command line.

    ``python -m monai.bundle run ... --tta true`` passes the *string*
    ``"true"`` (only ``True``/``False`` become booleans), so strings are read
    by their meaning instead of their truthiness.

    Parameters
    ----------
    value : bool, int, str or None
        ``True``/``False``, 0/1, or one of ``true/false, yes/no, on/off, 1/0``
        in any case; ``None`` is False.
    name : str
        The config key, for the error message.

    Returns
    -------
    bool

    Raises
    ------
    BundleError
        For any other value.
    """
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise BundleError(f"{name} must be true or false, got {value!r}", hint=f"Give --{name} true or --{name} false.")


def as_optional(value):
    """``None`` for ``None``, ``"none"``, ``"null"`` or ``""`` (how an unset value arrives from the command line)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return None
    return value


def as_spacing(value) -> str | None:
    """A ``--spacing`` override as ``medlung predict`` receives it: ``None`` or the text ``"MM"`` / ``"ROW,COL"``.

    The command line turns ``0.2`` into a float and ``0.2,0.3`` into a tuple;
    both go back to the text form, which is what enters the DICOM-SEG's
    deterministic UIDs, so the bundle and ``medlung predict`` agree.
    """
    value = as_optional(value)
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def parse_formats(value) -> tuple[str, ...]:
    """Output formats from ``"seg,png"`` or ``["seg", "png"]``; same choices as ``medlung predict --format``.

    Raises
    ------
    BundleError
        When a format is unknown or none is given.
    """
    items = value.split(",") if isinstance(value, str) else list(value or ())
    chosen = tuple(dict.fromkeys(str(v).strip().lower() for v in items if str(v).strip()))
    unknown = [f for f in chosen if f not in defaults.OUTPUT_FORMATS]
    if unknown or not chosen:
        raise BundleError(
            f"formats must be a comma-separated subset of {','.join(defaults.OUTPUT_FORMATS)}, got {value!r}",
            hint="Give for example --formats seg,png.",
        )
    return chosen


def bundle_settings(
    bundle_root,
    device: str = defaults.DEFAULT_DEVICE,
    roi_size=None,
    overlap=None,
    sw_batch_size=defaults.DEFAULT_SW_BATCH_SIZE,
    tta=False,
    precision: str = defaults.DEFAULT_PRECISION,
    min_lung_mm2=None,
    lungs: str = defaults.DEFAULT_CONVENTION,
    orientation_fix=False,
    dice_estimate: str = defaults.DEFAULT_DICE_ESTIMATE,
    formats=defaults.DEFAULT_FORMATS,
    overwrite=False,
    spacing=None,
    seg_syntax: str = defaults.DEFAULT_SEG_SYNTAX,
    workers=defaults.DEFAULT_WORKERS,
    send=None,
    stow=None,
    send_source=False,
    qc_fail=False,
    max_pixels=defaults.DEFAULT_MAX_PIXELS,
    include_identifiers=False,
    decode: str = defaults.DEFAULT_DECODE,
):
    """The run's :class:`~medlung.pipeline.settings.PredictSettings`, from the config's keys and their overrides.

    The keys are those of ``medlung predict`` (``--tta`` ... ``--include-identifiers``,
    ``orientation_fix`` for ``--orientation-fix``); values given on the
    ``monai.bundle`` command line arrive as text (``"true"``, ``"none"``,
    ``"0.2,0.3"``) and are read by their meaning. The model is the bundle's own
    (``bundle_root``).

    Raises
    ------
    BundleError
        When the folder is not a bundle or a value is not valid (one line, naming the key).
    """
    from medlung.pipeline.settings import PredictSettings, SettingError

    root = Path(bundle_root)
    if not (root / "models" / "model.pt").is_file() or not (root / "configs" / "inference.json").is_file():
        raise BundleError(
            "not a medlung bundle (models/model.pt or configs/inference.json missing)",
            root,
            "Give --bundle_root BUNDLE_DIR, or run from inside the bundle folder.",
        )

    def number(value, kind):
        value = as_optional(value)
        return None if value is None else kind(value)

    try:
        return PredictSettings(
            bundle=str(root),
            device=str(device),
            roi_size=number(roi_size, int),
            overlap=number(overlap, float),
            sw_batch_size=int(sw_batch_size),
            tta=as_bool(tta, "tta"),
            precision=str(precision),
            min_lung_mm2=number(min_lung_mm2, float),
            lungs=str(lungs),
            fix_orientation=as_bool(orientation_fix, "orientation_fix"),
            dice_estimate=str(dice_estimate),
            formats=parse_formats(formats),
            overwrite=as_bool(overwrite, "overwrite"),
            spacing=as_spacing(spacing),
            seg_syntax=str(seg_syntax),
            workers=int(workers),
            send=as_optional(send),
            stow=as_optional(stow),
            send_source=as_bool(send_source, "send_source"),
            qc_fail=as_bool(qc_fail, "qc_fail"),
            max_pixels=int(max_pixels),
            include_identifiers=as_bool(include_identifiers, "include_identifiers"),
            decode=str(decode),
        )
    except SettingError as exc:
        key = {"fix_orientation": "orientation_fix"}.get(exc.setting, exc.setting)
        raise BundleError(str(exc).rstrip("."), root, f"Change the --{key} override.") from None
    except (TypeError, ValueError) as exc:
        raise BundleError(f"a setting is not a number ({exc})", root, "Check the overrides given.") from None


def bundle_segmenter(settings, network_name: str | None = None, features=None, working_spacing=None):
    """The :class:`~medlung.inference.Segmenter` of a bundle's settings, checked against its weights.

    The network and working spacing belong to the trained weights in
    ``models/model.pt``: the Segmenter reads them from the bundle's own
    ``configs/inference.json``. When the running config says otherwise
    (an override such as ``--working_spacing 2``), the run stops with a
    one-line error instead of silently ignoring it.

    Parameters
    ----------
    settings : medlung.pipeline.settings.PredictSettings
        What :func:`bundle_settings` built (the config's ``settings``).
    network_name, features, working_spacing : optional
        The running config's ``network_def#name``, ``network_def#features``
        and ``working_spacing``, checked against the weights.

    Returns
    -------
    medlung.inference.Segmenter

    Raises
    ------
    BundleError
        When the bundle has no model or an override contradicts the weights.
    """
    from medlung.pipeline.settings import load_segmenter

    try:
        segmenter = load_segmenter(settings)
    except ValueError as exc:
        raise BundleError(str(exc).rstrip("."), settings.bundle, "Change the override (e.g. --lungs field).") from None
    spec = segmenter.spec
    if network_name is not None and network_name != spec.network:
        _fixed("network_def#name", network_name, spec.network)
    if features is not None and tuple(int(f) for f in features) != tuple(spec.features):
        _fixed("network_def#features", list(features), list(spec.features))
    if working_spacing is not None and abs(float(working_spacing) - spec.working_spacing) > 1e-9:
        _fixed("working_spacing", working_spacing, spec.working_spacing)
    return segmenter


def _fixed(key: str, given, trained) -> None:
    raise BundleError(
        f"{key} is {given!r} in the running config but the weights in models/model.pt were trained with {trained!r}",
        hint=f"Drop the --{key} override; to change it, retrain (configs/train.json) and export a new bundle.",
    )


def check_inputs(inputs: list, dataset_dir, output_dir, overwrite=False) -> None:
    """Stop before any work when there is nothing to segment or a report would be overwritten.

    Parameters
    ----------
    inputs : list of Path
        What :func:`~medlung.pipeline.batch.collect_inputs` found.
    dataset_dir : str or Path
        The ``--dataset_dir`` it searched.
    output_dir : str or Path
        The ``--output_dir``.
    overwrite : bool or str
        Replace an earlier run's outputs.

    Raises
    ------
    BundleError
        When ``dataset_dir`` is missing, holds no films, or ``output_dir``
        already holds a report and ``overwrite`` is false.
    """
    dataset = Path(dataset_dir)
    if not dataset.exists():
        raise BundleError("dataset_dir not found", dataset, "Give --dataset_dir FOLDER with DICOM or PNG films.")
    if not inputs:
        raise BundleError(
            "no DICOM or PNG films found in dataset_dir",
            dataset,
            "Give --dataset_dir FOLDER with DICOM or PNG films (searched recursively).",
        )
    report = Path(output_dir) / "report.csv"
    if report.exists() and not as_bool(overwrite, "overwrite"):
        raise BundleError(
            "output_dir already holds report.csv from an earlier run",
            Path(output_dir),
            "Give --overwrite true to replace it, or another --output_dir.",
        )


class ProgressLogger:
    """Logs one line per finished film (the ``progress`` callback of ``predict_files``), and a warning per film the
    quality check flags.

    Parameters
    ----------
    total : int
        Number of films.
    """

    def __init__(self, total: int) -> None:
        self.total = int(total)
        self.done = 0
        self.failed = 0
        self.flagged = 0

    def __call__(self, row: dict) -> None:
        self.done += 1
        if row.get("status") == "ok":
            area = row.get("total_cm2")
            size = f"{area:.1f} cm2" if isinstance(area, (int, float)) else "area not calibrated"
            logger.info(f"[{self.done}/{self.total}] {row['file']}: ok, lungs {size}, {row.get('seconds', 0):.1f} s")
            if row.get("qc") == "flagged":
                self.flagged += 1
                logger.warning(
                    f"[{self.done}/{self.total}] {row['file']}: quality flagged: "
                    f"{'; '.join(row.get('qc_reasons') or [])}"
                )
        else:
            self.failed += 1
            logger.error(f"[{self.done}/{self.total}] {row.get('error')}")


def finish_predict(report, output_dir, fail_on_error=True) -> dict:
    """Log the outcome of a bundle inference run; fail it when a film failed (like ``medlung predict``'s exit 1).

    Parameters
    ----------
    report : medlung.writers.report.Report
        What :func:`~medlung.pipeline.batch.predict_files` returned.
    output_dir : str or Path
        Where it was written.
    fail_on_error : bool or str
        Raise when any film failed (after all others were written).

    Returns
    -------
    dict
        ``{"done": int, "failed": int, "report": str}``.

    Raises
    ------
    BundleError
        When ``fail_on_error`` and a film failed.
    """
    failed = [row for row in report.rows if row.get("status") == "error"]
    outcome = {
        "done": len(report.rows) - len(failed),
        "failed": len(failed),
        "report": str(Path(output_dir) / "report.csv"),
    }
    logger.info(f"done {outcome['done']}, failed {outcome['failed']}; report: {outcome['report']}")
    flagged = sum(row.get("qc") == "flagged" for row in report.rows)
    if flagged:
        logger.warning(
            f"{flagged} of {len(report.rows)} film(s) flagged by the quality check: see the qc_reasons "
            "column of the report"
        )
    if failed and as_bool(fail_on_error, "fail_on_error"):
        raise BundleError(
            f"{len(failed)} of {len(report.rows)} film(s) failed (the others were written)",
            Path(output_dir) / "report.csv",
            "See the error column of the report.",
        )
    return outcome


def require_distributed() -> int:
    """The world size under ``torchrun``; a one-line error when the multi-GPU config is run without it.

    Raises
    ------
    BundleError
        When ``WORLD_SIZE`` is not set above 1.
    """
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world < 2:
        raise BundleError(
            "configs/multi_gpu_train.json needs several processes but WORLD_SIZE is not above 1",
            hint="Launch it with torchrun --standalone --nproc_per_node N -m monai.bundle run ...",
        )
    return world


def train_config(**values):
    """A :class:`~medlung.training.TrainConfig` from config values (booleans and nulls read as on the command line).

    Parameters
    ----------
    **values
        TrainConfig fields; the plan's (``network``, ``features``, ``working_spacing``, ``roi_size``,
        ``overlap``) flat, as in ``configs/train.json``.

    Returns
    -------
    medlung.training.TrainConfig
    """
    from medlung.training import TrainConfig

    for flag in ("strict", "deep_supervision"):
        if flag in values:
            values[flag] = as_bool(values[flag], flag)
    if "limit" in values:
        limit = as_optional(values["limit"])
        values["limit"] = None if limit is None else int(limit)
    if "features" in values:
        values["features"] = tuple(int(f) for f in values["features"])
    if "samples_per_epoch" in values:
        count = as_optional(values["samples_per_epoch"])
        values["samples_per_epoch"] = None if count is None else int(count)
    if "augmentations" in values and isinstance(values["augmentations"], str):  # --augmentations a,b on the CLI
        values["augmentations"] = [n.strip() for n in values["augmentations"].split(",") if n.strip()]
    for key in ("data", "output"):
        if key in values:
            values[key] = str(values[key])
    return TrainConfig.from_dict(values)


def trainer(config, resume=False, overwrite=False):
    """The :class:`~medlung.training.loop.Trainer` of ``medlung train``, logging through :mod:`logging`."""
    from medlung.training.loop import Trainer

    os.environ.setdefault("MEDLUNG_NO_PROGRESS", "1")  # one log line per epoch, no progress bars in logs
    train_log = logging.getLogger("medlung.train")
    return Trainer(
        config, resume=as_bool(resume, "resume"), overwrite=as_bool(overwrite, "overwrite"), log=train_log.info
    )


def export_after_training(run_dir, export_dir=None, overwrite=False, version=None):
    """Export the finished run as a bundle when ``export_dir`` is set (rank 0 only under torchrun).

    Returns
    -------
    Path or None
        The bundle folder, or None when nothing was exported.
    """
    export_dir = as_optional(export_dir)
    if export_dir is None or int(os.environ.get("RANK", 0)) != 0:
        return None
    from medlung.bundle.export import export_bundle

    path = export_bundle(
        run_dir, export_dir, overwrite=as_bool(overwrite, "export_overwrite"), version=as_optional(version)
    )
    logger.info(f"exported the run to {path}")
    return path


def log_json(title: str, content) -> None:
    """Log a result as one JSON line (nothing for an empty result, such as a non-zero rank's training summary)."""
    if not content:
        return
    logger.info(f"{title}: {json.dumps(content, default=str)}")


def log_evaluation(result) -> dict:
    """Log the summary of :func:`medlung.evaluation.evaluate` (bundle ``evaluate.json``) and return it.

    Parameters
    ----------
    result : medlung.evaluation.EvaluationResult
        What the evaluation returned; its files are already written.

    Returns
    -------
    dict
        The summary (the content of ``summary.json``).
    """
    summary = result.summary
    dice = summary["metrics"].get("dice", {})
    mean, median = dice.get("mean"), dice.get("median")
    scope = summary.get("scope", summary["part"])
    logger.info(
        f"{summary['ok']}/{summary['films']} films scored ({scope}): mean Dice "
        f"{'n/a' if mean is None else f'{mean:.4f}'}, median {'n/a' if median is None else f'{median:.4f}'}; "
        f"outputs in {Path(result.outputs.get('summary.json', '.')).parent}"
    )
    return summary
