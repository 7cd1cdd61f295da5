"""Training run -> MONAI Bundle: the work behind ``medlung export RUN -o BUNDLE_DIR``.

The bundle is built in a hidden folder beside ``BUNDLE_DIR`` and moved into
place at the end, so a failed export leaves no half bundle and an existing
bundle is replaced only when ``overwrite`` is given.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path

from medlung.atomic import current_umask, write_atomically, write_text_atomically
from medlung.bundle import configs, model_card
from medlung.bundle.model_description import NETWORK_NAMES, head_description, ordinal
from medlung.bundle.schema import METADATA_SCHEMA, MONAI_SCHEMA_URL, schema_text
from medlung.errors import BundleError, BundleExistsError
from medlung.plans import ModelPlan, plan_from_checkpoint
from medlung.version import __version__

#: Runtime packages whose installed versions are recorded in metadata.json (besides medlung, MONAI, torch, numpy).
REQUIRED_PACKAGES = (
    "pydicom",
    "highdicom",
    "pylibjpeg",
    "pylibjpeg-libjpeg",
    "pylibjpeg-openjpeg",
    "nibabel",
    "SimpleITK",
    "scikit-image",
    "Pillow",
    "click",
    "fire",
)
#: Packages used only by some features (PACS sending, ``verify_metadata``).
OPTIONAL_PACKAGES = ("pynetdicom", "dicomweb-client", "jsonschema")
#: Largest |eager - TorchScript| difference accepted, relative to the largest |logit| (at least 1).
TORCHSCRIPT_TOLERANCE = 1e-4
DEFAULT_VERSION = "0.1.0"
_VERSION = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")


@dataclass
class RunRecord:
    """What a training run folder tells about its best model.

    Attributes
    ----------
    run_dir : Path
        The run folder.
    state : dict
        ``state_dict`` of the best model.
    settings : dict
        TrainConfig fields plus ``network``/``features``/``working_spacing``/``roi_size``.
    config : dict
        ``config.json`` (empty when absent).
    summary : dict or None
        ``summary.json``; None while the run is still training.
    epoch : int
        Epoch of ``best.pt``.
    best : dict
        ``{"val_dice", "epoch"}`` of ``best.pt``.
    history : list of dict
        Per-epoch metrics up to ``best.pt``.
    medlung_version : str
        medlung that trained it.
    """

    run_dir: Path
    state: dict
    settings: dict
    config: dict
    summary: dict | None
    epoch: int
    best: dict
    history: list = field(default_factory=list)
    medlung_version: str = __version__

    @property
    def provisional(self) -> bool:
        """True while training has not finished (no ``summary.json``)."""
        return self.summary is None

    @property
    def epochs_done(self) -> int:
        """Epochs finished by the run (``metrics.csv`` rows; ``best.pt``'s history stops at its epoch)."""
        metrics = self.run_dir / "metrics.csv"
        if metrics.is_file():
            rows = [line for line in metrics.read_text().splitlines()[1:] if line.strip()]
            if rows:
                return len(rows)
        return len(self.history)

    @property
    def plan(self) -> ModelPlan:
        """The model's plan (:mod:`medlung.plans`), from the settings (:func:`read_run` puts the checkpoint's in)."""
        return ModelPlan.from_dict(self.settings)

    @property
    def planned_epochs(self) -> int:
        return int(self.settings.get("epochs", 0) or 0)


def read_run(run_dir: str | Path) -> RunRecord:
    """Read ``best.pt``, ``config.json`` and ``summary.json`` (when present) of a training run.

    Raises
    ------
    BundleError
        When ``best.pt`` is missing or is not a medlung checkpoint.
    """
    import torch

    run = Path(run_dir)
    checkpoint = run / "best.pt"
    if not checkpoint.is_file():
        raise BundleError(
            "no best.pt in the run folder", run, "Give a medlung training run folder (medlung train DATA -o RUN)."
        )
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        weights = state["model"]
        plan_from_checkpoint(state)
    except (KeyError, TypeError, RuntimeError, EOFError, OSError, pickle.UnpicklingError) as exc:
        raise BundleError(
            f"not a medlung checkpoint ({type(exc).__name__}: {exc})",
            checkpoint,
            "Give the folder of a run made by medlung train.",
        ) from None
    config = _read_json(run / "config.json") or {}
    summary = _read_json(run / "summary.json")
    settings = {
        **state.get("config", {}),
        **{k: v for k, v in config.items() if not isinstance(v, dict) or k == "extra"},
    }
    settings.update(plan_from_checkpoint(state).to_dict())
    weights = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
    return RunRecord(
        run_dir=run,
        state=weights,
        settings=settings,
        config=config,
        summary=summary,
        epoch=int(state.get("epoch", 0)),
        best=dict(state.get("best", {})),
        history=list(state.get("history", [])),
        medlung_version=state.get("medlung_version", __version__),
    )


def export_bundle(
    run_dir: str | Path, bundle_dir: str | Path, overwrite: bool = False, version: str | None = None
) -> Path:
    """Turn a training run into a complete MONAI Bundle.

    Writes ``configs/`` (metadata.json, schema.json, inference.json,
    evaluate.json, train.json, multi_gpu_train.json, logging.conf),
    ``models/model.pt`` (state dict) and ``models/model.ts`` (TorchScript,
    checked against the eager network), ``docs/README.md`` (model card) and
    ``LICENSE``.

    Parameters
    ----------
    run_dir : str or Path
        A ``medlung train`` run folder (``best.pt``, ``config.json``, and
        ``summary.json`` once training has finished; without it the bundle
        is marked provisional).
    bundle_dir : str or Path
        The bundle folder to create.
    overwrite : bool
        Replace an existing bundle there.
    version : str, optional
        Bundle version ``X.Y.Z``. Default: ``0.1.0`` for a new bundle, the
        replaced bundle's version with its patch number raised otherwise.
        The replaced bundle's changelog is kept.

    Returns
    -------
    Path
        ``bundle_dir``.

    Raises
    ------
    BundleExistsError
        When ``bundle_dir`` exists (and is not empty) and ``overwrite`` is false.
    BundleError
        When the run cannot be read, the version is malformed or a check fails.
    """
    bundle = Path(bundle_dir)
    if bundle.exists() and not bundle.is_dir():
        raise BundleExistsError("exists and is not a folder", bundle, "Choose another -o.")
    exists = bundle.is_dir() and any(bundle.iterdir())
    if exists and not overwrite:
        raise BundleExistsError(
            "bundle folder already exists", bundle, "Use --overwrite to replace it, or choose another -o."
        )
    previous = _read_json(bundle / "configs" / "metadata.json") if exists else None
    version = _choose_version(version, previous)
    record = read_run(run_dir)

    bundle.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{bundle.name}.", suffix=".export", dir=bundle.parent))
    try:
        os.chmod(staging, 0o777 & ~current_umask())
        _write_bundle(staging, record, version, previous)
        _move_into_place(staging, bundle, exists)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return bundle


# --------------------------------------------------------------------------- building
def _write_bundle(root: Path, record: RunRecord, version: str, previous: dict | None) -> None:
    import torch

    for sub in ("configs", "models", "docs"):
        (root / sub).mkdir()
    settings = record.settings
    inference = configs.inference_config(settings)
    meta = build_metadata(record, version, previous)
    _check_metadata(meta)
    texts = {
        "configs/metadata.json": _json(meta),
        "configs/schema.json": schema_text(),
        "configs/inference.json": _json(inference),
        "configs/evaluate.json": _json(configs.evaluate_config(settings)),
        "configs/train.json": _json(configs.train_config(settings)),
        "configs/multi_gpu_train.json": _json(configs.multi_gpu_train_config()),
        "configs/logging.conf": configs.LOGGING_CONF,
    }
    for name, text in texts.items():
        write_text_atomically(root / name, text)
    weights = _saved_bytes(lambda stream: torch.save(record.state, stream))
    write_atomically(root / "models" / "model.pt", lambda tmp: tmp.write_bytes(weights))
    difference = write_torchscript(
        root / "models" / "model.ts", settings, record.state, meta, {"inference.json": json.dumps(inference).encode()}
    )
    card = model_card.readme(record, meta, difference)
    write_text_atomically(root / "docs" / "README.md", card)
    licence = model_card.licence_text(meta)
    write_text_atomically(root / "LICENSE", licence)


#: Training settings a bundle's ``train.json`` carries (besides the plan's) and ``metadata.json`` records.
TRAINING_KEYS = (
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "val_fraction",
    "seed",
    "overlap",
    "augmentations",
    "sampling",
    "samples_per_epoch",
    "consistency_weight",
    "deep_supervision",
    "sick_film_prob",
)


def refresh_configs(bundle_dir: str | Path) -> list[Path]:
    """Rewrite a bundle's configs with this medlung's builders; weights, metadata, card and licence stay.

    For a medlung whose config builders changed (a new key, a renamed
    component) while the trained model did not: ``inference.json``,
    ``evaluate.json``, ``train.json`` and ``multi_gpu_train.json`` are written
    again from the bundle's own plan (``inference.json``) and training
    settings (those ``metadata.json`` records the weights were trained with,
    else ``train.json``'s), and ``models/model.ts`` is scripted again from
    ``models/model.pt`` so that the ``inference.json`` it carries is the new
    one. A re-export of the training run does the same and more; this is for
    bundles whose run folder is not at hand.

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    BundleError
        When the folder is not a medlung bundle.
    """
    from medlung.plans import plan_from_bundle_config

    root = Path(bundle_dir)
    inference, train = _read_json(root / "configs" / "inference.json"), _read_json(root / "configs" / "train.json")
    if not isinstance(inference, dict) or not isinstance(train, dict):
        raise BundleError("not a medlung bundle (configs/inference.json or train.json missing)", root)
    # the training settings: those the weights were trained with (metadata.json's record of the run) first, then
    # the train.json's own for keys the record lacks; the plan always from inference.json
    recorded = (_read_json(root / "configs" / "metadata.json") or {}).get("training", {}).get("settings", {})
    training = {k: v for k, v in train.items() if k in TRAINING_KEYS}
    training.update({k: v for k, v in recorded.items() if k in TRAINING_KEYS})
    settings = {**training, **plan_from_bundle_config(inference).to_dict()}
    texts = {
        "inference.json": _json(configs.inference_config(settings)),
        "evaluate.json": _json(configs.evaluate_config(settings)),
        "train.json": _json(configs.train_config(settings)),
        "multi_gpu_train.json": _json(configs.multi_gpu_train_config()),
    }
    written = []
    for name, text in texts.items():
        path = root / "configs" / name
        write_text_atomically(path, text, overwrite=True)
        written.append(path)
    import torch

    state = torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True)
    meta = _read_json(root / "configs" / "metadata.json")
    extra = {"inference.json": json.dumps(configs.inference_config(settings)).encode()}
    write_torchscript(root / "models" / "model.ts", settings, state, meta, extra, overwrite=True)
    return [*written, root / "models" / "model.ts"]


def write_torchscript(
    path: Path, settings: dict, state: dict, meta: dict, extra_files: dict, overwrite: bool = False
) -> float:
    """Script the network, save it as ``ckpt_export`` does, reload it and compare with the eager network.

    The file holds ``metadata.json`` (the bundle metadata) and the given
    extra files (``inference.json``), like MONAI's ``ckpt_export``.

    Returns
    -------
    float
        Largest absolute difference between eager and TorchScript logits.

    Raises
    ------
    BundleError
        When the outputs differ by more than :data:`TORCHSCRIPT_TOLERANCE`.
    """
    import torch
    from monai.data import save_net_with_metadata

    from medlung.networks import build_network

    net = build_network(**ModelPlan.from_dict(settings).network_def())
    net.load_state_dict(state)
    net.eval()
    with torch.no_grad():
        scripted = torch.jit.script(net)
    content = _saved_bytes(
        lambda stream: save_net_with_metadata(
            scripted,
            stream,
            include_config_vals=False,
            append_timestamp=False,
            meta_values=meta,
            more_extra_files=extra_files,
        )
    )
    write_atomically(path, lambda tmp: tmp.write_bytes(content), overwrite=overwrite)
    return compare_torchscript(net, path, int(settings["roi_size"]))


def compare_torchscript(net, ts_path: str | Path, roi_size: int) -> float:
    """Largest |eager - TorchScript| over seeded inputs (one sliding window, and an odd-sized film).

    Raises
    ------
    BundleError
        When they differ by more than :data:`TORCHSCRIPT_TOLERANCE` (relative to the largest logit).
    """
    import torch

    loaded = torch.jit.load(str(ts_path), map_location="cpu").eval()
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    with torch.no_grad():
        for shape in ((1, 1, roi_size, roi_size), (2, 1, 72, 100)):
            image = torch.rand(shape, generator=generator)
            eager, scripted = net(image), loaded(image)
            if eager.shape != scripted.shape:
                raise BundleError(
                    f"TorchScript output shape {tuple(scripted.shape)} differs from the network's {tuple(eager.shape)}",
                    ts_path,
                    "Report this as a medlung bug.",
                )
            difference = float((eager - scripted).abs().max())
            scale = max(1.0, float(eager.abs().max()))
            if difference > TORCHSCRIPT_TOLERANCE * scale:
                raise BundleError(
                    f"TorchScript and eager outputs differ by {difference:.3g} on input {shape}",
                    ts_path,
                    "Report this as a medlung bug.",
                )
            worst = max(worst, difference)
    return worst


def build_metadata(record: RunRecord, version: str, previous: dict | None = None) -> dict:
    """``configs/metadata.json``: MONAI's mandatory keys plus data source, licence, metrics and I/O format."""
    s = record.settings
    versions = record.config.get("versions", {})
    changelog = dict(previous.get("changelog", {})) if previous else {}
    changelog[version] = _changelog_line(record)
    changelog = dict(sorted(changelog.items(), key=lambda kv: _version_key(kv[0]), reverse=True))
    plan = record.plan
    roi, spacing = plan.roi_size, plan.working_spacing
    low, high = plan.intensity_percentiles
    head = head_description(plan)
    source = record.config.get("data_summary", {}).get("source", s.get("data", "?"))
    shenzhen = model_card.trained_on_shenzhen(record)
    sources = sorted(model_card.training_sources(record))
    covid = "covid_v7" in sources
    montgomery = "montgomery" in sources
    if shenzhen:
        trained_on = (
            "Trained on the Shenzhen Hospital X-ray Set with manual lung masks"
            + (", the Montgomery County X-ray Set with its lung-field masks" if montgomery else "")
            + (" and COVID-19 films with V7 Labs' whole-lung masks." if covid else ".")
        )
        copyright_ = (
            "Copyright (c) medlung contributors. Weights derived from the Shenzhen Hospital X-ray Set "
            "(U.S. National Library of Medicine) and lung masks by Stirenko et al."
            + (", the Montgomery County X-ray Set (U.S. National Library of Medicine)" if montgomery else "")
            + (" and the COVID-19 image data collection (Cohen et al.) with V7 Labs' masks" if covid else "")
        )
        data_source = (
            "Shenzhen Hospital X-ray Set (U.S. National Library of Medicine with Shenzhen No.3 People's Hospital, "
            "Guangdong Medical College; released by NLM for research), 566 PA films, resized upstream to 512x512 "
            "without known pixel spacing; lung masks 'Lung Masks for Shenzhen Hospital Chest X-ray Set' (Kaggle "
            "yoctoman/shcxr-lung-mask, Stirenko et al. 2018), CC BY-NC-SA 4.0, thresholded at 128. Training data "
            f"of this version: {source}."
            + (" " + model_card.MONTGOMERY_ATTRIBUTION if montgomery else "")
            + (" " + model_card.COVID_V7_ATTRIBUTION if covid else "")
        )
        data_type = "png (training: 8-bit 512x512 films); DICOM CR/DX and PNG/JPEG/TIFF at inference"
        licence = "CC-BY-NC-SA-4.0 (weights); medlung code Apache-2.0"
        validated = (
            "the "
            + ", ".join(model_card.SOURCE_NAMES[n] for n in model_card.KNOWN_SOURCES if n in sources)
            + " data it was trained on. Non-commercial use only (CC BY-NC-SA 4.0)."
        )
    else:  # describe what was used; claim no provenance or licence medlung does not know
        trained_on = f"Trained on {source} ({_data_counts(record)})."
        copyright_ = "Copyright (c) medlung contributors (weights); the training data's owners keep their rights."
        data_source = f"{source} ({_data_counts(record)}). {model_card.UNKNOWN_PROVENANCE}"
        data_type = "the training data's films; DICOM CR/DX and PNG/JPEG/TIFF at inference"
        licence = "weights: not recorded, set by the training data's licence (see data_source); medlung code Apache-2.0"
        validated = "the data it was trained on."
    return {
        "schema": MONAI_SCHEMA_URL,
        "version": version,
        "changelog": changelog,
        "monai_version": versions.get("monai") or _installed("monai"),
        "pytorch_version": versions.get("torch") or _installed("torch"),
        "numpy_version": versions.get("numpy") or _installed("numpy"),
        "required_packages_version": {
            "medlung": record.medlung_version,
            **{p: v for p in REQUIRED_PACKAGES if (v := _installed(p))},
        },
        "optional_packages": {p: v for p in OPTIONAL_PACKAGES if (v := _installed(p))},
        "name": "medlung chest radiograph lung segmentation",
        "task": "Segmentation of both lungs on frontal (PA/AP) chest radiographs, CR/DX DICOM or PNG",
        "description": (
            f"A 2-D {NETWORK_NAMES.get(plan.network, plan.network)} ({_features(s)}) that segments the "
            f"lungs on chest radiographs resampled to a {spacing:g} mm working grid. medlung brings the lung logit "
            "back to each film's native grid, thresholds it, removes small components and splits the patient's "
            "right and left lung, keeping the film's pixel spacing in every output (DICOM-SEG, PNG, NIfTI, areas "
            f"in cm2). {trained_on}"
        ),
        "authors": "medlung contributors",
        "copyright": copyright_,
        "data_source": data_source,
        "data_type": data_type,
        "license": licence,
        "image_classes": (
            f"one channel, the film resampled to {spacing:g} mm pixels, intensity scaled per film "
            f"from its {ordinal(low)}-{ordinal(high)} percentiles to [0, 1] (clipped), MONOCHROME2 polarity"
        ),
        "label_classes": (
            "one channel per film, 1 lung (either side), 0 everything else, following the lung "
            "convention the film's mask is drawn in (" + ", ".join(plan.conventions) + ")"
        ),
        "pred_classes": head.pred_classes,
        "eval_metrics": _eval_metrics(record),
        "intended_use": (
            "Research only. Not a medical device: not for diagnosis, treatment or any clinical decision, and not "
            f"validated outside {validated}"
        ),
        "references": list(model_card.REFERENCES),
        "training": {
            "provisional": record.provisional,
            "sources": sources,
            "best_epoch": record.best.get("epoch", record.epoch),
            "epochs_trained": record.epochs_done,
            "epochs_planned": record.planned_epochs,
            "data_summary": record.config.get("data_summary"),
            "settings": {k: s.get(k) for k in ("network", "features", "working_spacing", "roi_size", *TRAINING_KEYS)},
            "precision_used": record.config.get("precision_used"),
            "device_used": record.config.get("device_used"),
            "parameters": record.config.get("parameters"),
        },
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "magnitude",
                    "modality": "CR/DX (chest radiograph)",
                    "num_channels": 1,
                    "spatial_shape": ["32*n", "32*n"],
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "is_patch_data": True,
                    "channel_def": {"0": "image"},
                    "pixel_spacing_mm": [spacing, spacing],
                    "patch_size": [roi, roi],
                    "preprocessing": (
                        "film on the native grid, turned to the standard display (patient right on "
                        "the image left, head up) as its PatientOrientation says -> working grid of "
                        f"{spacing:g} mm pixels (linear) -> {ordinal(low)}-{ordinal(high)} percentile scaling to "
                        "[0, 1]; "
                        f"sliding window of {roi}x{roi} with gaussian blending"
                    ),
                }
            },
            "outputs": {
                "pred": {
                    "type": "image",
                    "format": "labels",
                    "modality": "n/a",
                    "num_channels": plan.out_channels,
                    "spatial_shape": ["32*n", "32*n"],
                    "dtype": "float32",
                    "value_range": [],
                    "is_patch_data": True,
                    "channel_def": head.channels,
                    "pixel_spacing_mm": [spacing, spacing],
                    "postprocessing": (
                        f"{head.margin} resized to the native grid (bilinear), threshold 0, small "
                        "components removed, patient right/left split, back to the film's "
                        "stored orientation"
                    ),
                }
            },
        },
    }


def _check_metadata(meta: dict) -> None:
    """Validate against the shipped schema (when jsonschema is installed) and the changelog rule."""
    if meta["version"] not in meta["changelog"]:
        raise BundleError(f"the changelog has no entry for version {meta['version']}", hint="Report this as a bug.")
    try:
        import jsonschema
    except ImportError:
        return
    try:
        jsonschema.validate(instance=json.loads(_json(meta)), schema=METADATA_SCHEMA)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise BundleError(
            f"metadata does not match the bundle schema at {where}: {exc.message}", hint="Report this as a medlung bug."
        ) from None


# --------------------------------------------------------------------------- helpers
def _move_into_place(staging: Path, bundle: Path, exists: bool) -> None:
    if not bundle.exists():
        os.replace(staging, bundle)
        return
    if not exists:  # an empty folder
        bundle.rmdir()
        os.replace(staging, bundle)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{bundle.name}.", suffix=".old", dir=bundle.parent))
    retired.rmdir()
    os.replace(bundle, retired)
    try:
        os.replace(staging, bundle)
    except OSError:
        os.replace(retired, bundle)  # put the old bundle back
        raise
    shutil.rmtree(retired, ignore_errors=True)


def _choose_version(version: str | None, previous: dict | None) -> str:
    if version is not None:
        if not _VERSION.match(str(version)):
            raise BundleError(
                f"version must look like X.Y.Z (three numbers), got {version!r}",
                hint="Give for example --version 0.2.0.",
            )
        return str(version)
    old = (previous or {}).get("version")
    if old and _VERSION.match(str(old)):
        major, minor, patch = (int(p) for p in str(old).split("."))
        return f"{major}.{minor}.{patch + 1}"
    return DEFAULT_VERSION


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in re.split(r"[.+-]", version))


def _changelog_line(record: RunRecord) -> str:
    s = record.settings
    val = record.best.get("val_dice")
    text = (
        f"{s['network']} {_features(s)} trained by medlung {record.medlung_version} on "
        f"{_data_counts(record)}; best validation Dice {val:.4f} at epoch {record.best.get('epoch', record.epoch)}"
        if isinstance(val, (int, float))
        else f"{s['network']} {_features(s)}"
    )
    if record.summary and isinstance(record.summary.get("test"), dict):
        text += f"; test Dice {record.summary['test']['dice']:.4f}"
    if record.provisional:
        text += (
            f" (provisional: exported while training ran, {record.epochs_done} of {record.planned_epochs} epochs done)"
        )
    return text


def _data_counts(record: RunRecord) -> str:
    d = record.config.get("data_summary") or {}
    if not d:
        return "its data"
    return (
        f"{d.get('training', '?')} training / {d.get('validation', '?')} validation / {d.get('test', '?')} test films"
    )


def _eval_metrics(record: RunRecord) -> dict:
    metrics = {}
    if isinstance(record.best.get("val_dice"), (int, float)):
        metrics["val_mean_dice"] = round(float(record.best["val_dice"]), 4)
    test = (record.summary or {}).get("test")
    if isinstance(test, dict):
        for key in ("dice", "iou"):
            if isinstance(test.get(key), (int, float)):
                metrics[f"test_mean_{key}"] = round(float(test[key]), 4)
    return metrics


def _features(settings: dict) -> str:
    return "features " + ",".join(str(int(f)) for f in settings["features"])


def _installed(package: str) -> str | None:
    try:
        return importlib_metadata.version(package)
    except importlib_metadata.PackageNotFoundError:
        return None


def _read_json(path: Path):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"not valid JSON ({exc})", path, "Fix or remove the file.") from None


def _json(content) -> str:
    return json.dumps(content, indent=4) + "\n"


def _saved_bytes(save) -> bytes:
    """What ``save(stream)`` writes, as bytes: saved to a stream, torch names the archive the same way every time
    (saved to a temporary file, the archive would be named after that file), so equal weights give equal files."""
    import io

    stream = io.BytesIO()
    save(stream)
    return stream.getvalue()
