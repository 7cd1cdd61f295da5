"""The bundle's config files, built from a training run's settings.

Every config names medlung components (``_target_`` or ``$`` expressions);
none re-implements them. The keys are documented in the bundle's
``docs/README.md`` (JSON has no comments); :data:`KEY_DOCS` is that table.

``configs/inference.json`` holds the model's plan (:mod:`medlung.plans`) as
top-level keys that :func:`medlung.plans.plan_from_bundle_config` reads back:
``network_def`` (``_target_`` ``medlung.networks.build_network`` with
``name``, ``features`` and ``out_channels``), ``working_spacing`` (mm),
``roi_size`` (pixels), ``intensity_percentiles``, ``head`` and
``conventions`` (one per output channel of a sigmoid head), plus the
post-processing defaults ``overlap`` and ``min_lung_mm2``, the anatomical
lungs' shape prior ``anatomical_closing_mm`` (mm) and the quality flag's
``min_dice_estimate``; ``lungs`` chooses the convention drawn.
"""

from __future__ import annotations

from medlung import defaults
from medlung.plans import DEFAULT_CONVENTION, ModelPlan

#: MONAI Bundle convention: logging for ``python -m monai.bundle run`` (INFO to stdout; chatty libraries at WARNING).
LOGGING_CONF = """\
[loggers]
keys=root,highdicom,openjpeg,pynetdicom

[handlers]
keys=consoleHandler

[formatters]
keys=fullFormatter

[logger_root]
level=INFO
handlers=consoleHandler

[logger_highdicom]
level=WARNING
handlers=
qualname=highdicom

[logger_openjpeg]
level=WARNING
handlers=
qualname=openjpeg

[logger_pynetdicom]
level=WARNING
handlers=
qualname=pynetdicom

[handler_consoleHandler]
class=StreamHandler
level=INFO
formatter=fullFormatter
args=(sys.stdout,)

[formatter_fullFormatter]
format=%(asctime)s - %(name)s - %(levelname)s - %(message)s
"""

IMPORTS = [
    "$import logging",
    "$import os",
    "$import torch",
    "$import medlung",
    "$import medlung.bundle",
    "$import medlung.evaluation",
    "$import medlung.pipeline.batch",
    "$import medlung.samples",
]


def network_def(settings: dict) -> dict:
    """The ``network_def`` item: ``medlung.networks.build_network`` with the run's architecture."""
    return {"_target_": "medlung.networks.build_network", **ModelPlan.from_dict(settings).network_def()}


#: Keys of the configs that :func:`medlung.bundle.bundle_settings` turns into the run's PredictSettings: the model's
#: (every config) and what ``medlung predict`` writes (the inference config).
_MODEL_SETTINGS = (
    "bundle_root",
    "device",
    "roi_size",
    "overlap",
    "sw_batch_size",
    "tta",
    "precision",
    "min_lung_mm2",
    "lungs",
    "orientation_fix",
    "dice_estimate",
    "max_pixels",
    "decode",
)
_OUTPUT_SETTINGS = (
    "formats",
    "overwrite",
    "spacing",
    "seg_syntax",
    "workers",
    "send",
    "stow",
    "send_source",
    "qc_fail",
    "include_identifiers",
)


def _model_keys(settings: dict) -> dict:
    plan = ModelPlan.from_dict(settings)
    return {
        "bundle_root": ".",
        "device": defaults.DEFAULT_DEVICE,
        "network_def": network_def(settings),
        "working_spacing": plan.working_spacing,
        "roi_size": plan.roi_size,
        "intensity_percentiles": list(plan.intensity_percentiles),
        "head": plan.head,
        "conventions": list(plan.conventions),
        "lungs": DEFAULT_CONVENTION if DEFAULT_CONVENTION in plan.conventions else plan.conventions[0],
        "overlap": plan.overlap,
        "sw_batch_size": defaults.DEFAULT_SW_BATCH_SIZE,
        "tta": False,
        "precision": defaults.DEFAULT_PRECISION,
        "min_lung_mm2": plan.min_lung_mm2,
        "min_dice_estimate": plan.min_dice_estimate,
        "anatomical_closing_mm": plan.anatomical_closing_mm,
        "orientation_fix": False,
        "dice_estimate": defaults.DEFAULT_DICE_ESTIMATE,
        "max_pixels": defaults.DEFAULT_MAX_PIXELS,
        "decode": defaults.DEFAULT_DECODE,
        "settings": {"_target_": "medlung.bundle.bundle_settings", **{key: f"@{key}" for key in _MODEL_SETTINGS}},
        "segmenter": {
            "_target_": "medlung.bundle.bundle_segmenter",
            "settings": "@settings",
            "network_name": "@network_def#name",
            "features": "@network_def#features",
            "working_spacing": "@working_spacing",
        },
    }


def inference_config(settings: dict) -> dict:
    """``configs/inference.json``: every film in ``dataset_dir`` -> ``medlung predict``'s outputs in ``output_dir``."""
    return {
        "imports": IMPORTS,
        **_model_keys(settings),
        "dataset_dir": "$str(medlung.samples.SAMPLES_DIR)",
        "output_dir": "$os.path.abspath('eval')",
        "formats": ",".join(defaults.DEFAULT_FORMATS),
        "spacing": None,
        "seg_syntax": defaults.DEFAULT_SEG_SYNTAX,
        "overwrite": False,
        "workers": defaults.DEFAULT_WORKERS,
        "send": None,
        "stow": None,
        "send_source": False,
        "fail_on_error": True,
        "qc_fail": False,
        "include_identifiers": False,
        "inputs": "$medlung.pipeline.batch.collect_inputs([@dataset_dir])",
        # the one settings object of the run (medlung.pipeline.settings.PredictSettings), as medlung predict builds it
        "settings": {
            "_target_": "medlung.bundle.bundle_settings",
            **{key: f"@{key}" for key in _MODEL_SETTINGS + _OUTPUT_SETTINGS},
        },
        "progress": {"_target_": "medlung.bundle.ProgressLogger", "total": "$len(@inputs)"},
        # the standard MONAI inference properties (monai.bundle.properties.InferProperties), as medlung components
        # (see medlung.bundle.workflow): preprocessing -> network_def + inferer -> postprocessing is the Segmenter
        "preprocessing": {
            "_target_": "medlung.bundle.inference_preprocessing",
            "working_spacing": "$float(@working_spacing)",
            "spacing": "$@settings.spacing",
            "intensity_percentiles": "@intensity_percentiles",
        },
        "dataset": {
            "_target_": "monai.data.Dataset",
            "data": "$[{'image': path} for path in @inputs]",
            "transform": "@preprocessing",
        },
        "inferer": {
            "_target_": "medlung.networks.running.LungInferer",
            "roi_size": "$@segmenter.roi_size",
            "overlap": "$@segmenter.overlap",
            "tta": "$@settings.tta",
            "precision": "$@settings.precision",
        },
        "postprocessing": {
            "_target_": "medlung.bundle.lung_postprocessing",
            "min_lung_mm2": "$@segmenter.min_lung_mm2",
            "head": "@head",
            "conventions": "@conventions",
            "lungs": "$@settings.lungs",
            "working_spacing": "$float(@working_spacing)",
            "anatomical_closing_mm": "$float(@anatomical_closing_mm)",
        },
        "handlers": ["@progress"],
        "evaluator": {
            "_target_": "medlung.bundle.PredictEvaluator",
            "dataset": "@dataset",
            "output_dir": "@output_dir",
            "segmenter": "@segmenter",
            "settings": "@settings",
            "val_handlers": "@handlers",
        },
        "report": "$@evaluator.run()",
        "initialize": [
            "$medlung.bundle.one_line_errors()",
            "$medlung.bundle.check_inputs(@inputs, @dataset_dir, @output_dir, @overwrite)",
        ],
        "run": ["$@report"],
        "finalize": ["$medlung.bundle.finish_predict(@report, @output_dir, @fail_on_error)"],
    }


def evaluate_config(settings: dict) -> dict:
    """``configs/evaluate.json``: ``medlung evaluate`` with the bundle's Segmenter on a datalist, native grid."""
    return {
        "imports": IMPORTS,
        **_model_keys(settings),
        "dataset_dir": "$os.path.join(@bundle_root, 'data')",
        "output_dir": "$os.path.abspath('eval')",
        "part": "test",
        "limit": None,
        "overwrite": False,
        "evaluation": (
            "$medlung.evaluation.evaluate(@bundle_root, @dataset_dir, @output_dir, part=@part, "
            "limit=@limit, overwrite=medlung.bundle.as_bool(@overwrite, 'overwrite'), "
            "segmenter=@segmenter)"
        ),
        "initialize": ["$medlung.bundle.one_line_errors()"],
        "run": ["$medlung.bundle.log_evaluation(@evaluation)"],
    }


def train_config(settings: dict) -> dict:
    """``configs/train.json``: ``medlung train`` (the Trainer) on a folder, CSV or datalist JSON."""
    from medlung.training.config import TrainConfig

    default = TrainConfig()
    return {
        "imports": IMPORTS,
        "bundle_root": ".",
        "dataset_dir": "$os.path.join(@bundle_root, 'data')",
        "output_dir": "$os.path.abspath(os.path.join('runs', 'train'))",
        "device": "auto",
        "network_def": network_def(settings),
        "working_spacing": float(settings["working_spacing"]),
        "roi_size": int(settings["roi_size"]),
        "epochs": int(settings.get("epochs", default.epochs)),
        "batch_size": int(settings.get("batch_size", default.batch_size)),
        "lr": float(settings.get("lr", default.lr)),
        "weight_decay": float(settings.get("weight_decay", default.weight_decay)),
        "val_fraction": float(settings.get("val_fraction", default.val_fraction)),
        "seed": int(settings.get("seed", default.seed)),
        "precision": "auto",
        "overlap": float(settings.get("overlap", default.plan.overlap)),
        "augmentations": _optional_list(settings.get("augmentations", default.augmentations)),
        "sampling": dict(settings.get("sampling") or {}),
        "samples_per_epoch": settings.get("samples_per_epoch"),
        "consistency_weight": float(settings.get("consistency_weight", default.consistency_weight)),
        "deep_supervision": bool(settings.get("deep_supervision", default.deep_supervision)),
        "sick_film_prob": float(settings.get("sick_film_prob", default.sick_film_prob)),
        "strict": False,
        "limit": None,
        "num_workers": 0,
        "resume": False,
        "overwrite": False,
        "export_dir": None,
        "export_overwrite": False,
        "export_version": None,
        "train_config": {
            "_target_": "medlung.bundle.train_config",
            "data": "@dataset_dir",
            "output": "@output_dir",
            "network": "@network_def#name",
            "features": "@network_def#features",
            "epochs": "$int(@epochs)",
            "batch_size": "$int(@batch_size)",
            "roi_size": "$int(@roi_size)",
            "working_spacing": "$float(@working_spacing)",
            "lr": "$float(@lr)",
            "weight_decay": "$float(@weight_decay)",
            "val_fraction": "$float(@val_fraction)",
            "seed": "$int(@seed)",
            "device": "@device",
            "precision": "@precision",
            "overlap": "$float(@overlap)",
            "augmentations": "@augmentations",
            "sampling": "@sampling",
            "samples_per_epoch": "@samples_per_epoch",
            "consistency_weight": "$float(@consistency_weight)",
            "deep_supervision": "@deep_supervision",
            "sick_film_prob": "$float(@sick_film_prob)",
            "strict": "@strict",
            "limit": "@limit",
            "num_workers": "$int(@num_workers)",
        },
        "trainer": {
            "_target_": "medlung.bundle.trainer",
            "config": "@train_config",
            "resume": "@resume",
            "overwrite": "@overwrite",
        },
        "summary": "$@trainer.fit()",
        "initialize": ["$medlung.bundle.one_line_errors()"],
        "run": ["$medlung.bundle.log_json('training summary', @summary)"],
        "finalize": [
            "$medlung.bundle.export_after_training(@output_dir, @export_dir, @export_overwrite, @export_version)"
        ],
    }


def _optional_list(values) -> list | None:
    return None if values is None else list(values)


def multi_gpu_train_config() -> dict:
    """``configs/multi_gpu_train.json``: merged after train.json and run under ``torchrun``.

    The Trainer reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` from torchrun,
    starts the process group (nccl on CUDA, gloo on CPU), shards the
    training films with a DistributedSampler and saves from rank 0 only.
    """
    return {
        "device": "$'cuda' if torch.cuda.is_available() else 'cpu'",
        "world_size": "$medlung.bundle.require_distributed()",
        "initialize": ["$medlung.bundle.one_line_errors()", "$@world_size"],
    }


#: Config keys a user may override (``--KEY VALUE``), for the README's table: (key, configs, meaning).
KEY_DOCS = (
    ("bundle_root", "all", "The bundle folder (default `.`: run from inside it)."),
    ("dataset_dir", "inference", "Folder searched recursively for DICOM/PNG films (default: medlung's sample films)."),
    (
        "dataset_dir",
        "train, evaluate",
        "Folder with images/ + masks/, CSV `image,mask[,split]` or MONAI datalist JSON (default `BUNDLE/data`).",
    ),
    (
        "output_dir",
        "all",
        "Where outputs go (inference/evaluate default `./eval`, train `./runs/train`, "
        "relative to the folder you run from; never inside the bundle unless you run there).",
    ),
    ("device", "all", "`auto` (CUDA when present), `cpu` or `cuda`."),
    ("roi_size", "inference, evaluate", "Sliding-window size on the working grid, pixels (training: crop size)."),
    ("overlap", "inference, evaluate", "Sliding-window overlap, 0-1."),
    ("sw_batch_size", "inference, evaluate", "Windows per forward pass."),
    ("tta", "inference, evaluate", "`true`: also segment the mirrored film and average (about 2x network time)."),
    ("precision", "all", "`auto` (bf16 where the CPU/GPU has it), `bf16` or `fp32`."),
    ("min_lung_mm2", "inference, evaluate", "Lung components smaller than this (mm²) are dropped."),
    ("lungs", "inference, evaluate", "Lung convention: `field` (default) or `anatomical` (`--lungs`)."),
    (
        "orientation_fix",
        "inference, evaluate",
        "`true`: films without PatientOrientation that look mirrored or turned are segmented as detected.",
    ),
    (
        "dice_estimate",
        "inference, evaluate",
        "Estimated Dice of each mask (`models/dice_estimate.json`): `fast`, `perturbed` (3 more network passes) "
        "or `off`.",
    ),
    (
        "min_dice_estimate",
        "inference, evaluate",
        "Plan: films whose estimated Dice is below this are flagged `low_dice_estimate` (default 0.90).",
    ),
    (
        "anatomical_closing_mm",
        "inference, evaluate",
        "Plan: the anatomical lungs' shape prior, each lung closed with a disk of this radius in mm (0: none).",
    ),
    ("max_pixels", "inference, evaluate", "Films declaring more pixels (rows x cols) are refused before decoding."),
    (
        "decode",
        "inference, evaluate",
        "`reduced` (default): DICOM films decoded only at the resolution the network needs; `full`: every pixel.",
    ),
    (
        "formats",
        "inference",
        f"Comma-separated subset of `{','.join(defaults.OUTPUT_FORMATS)}` (seg and sr, the DICOM SR of the "
        "measurements, for DICOM films only).",
    ),
    ("spacing", "inference", "Spacing in mm for every film (`MM` or `ROW,COL`), replacing the files'."),
    (
        "seg_syntax",
        "inference",
        "`uncompressed` (default: opened by OHIF via Orthanc, dcmqi, highdicom) or `jpeg2000` "
        "(JPEG 2000 lossless, older name `lossless`; highdicom/pydicom only, not for a PACS) DICOM-SEG.",
    ),
    ("overwrite", "inference, evaluate, train", "`true`: replace earlier outputs (train: an earlier run)."),
    ("workers", "inference", "Films processed at once (threads)."),
    (
        "send / stow / send_source",
        "inference",
        "C-STORE (`AE@HOST:PORT`) / STOW-RS (URL) each SEG and SR; also the film.",
    ),
    ("fail_on_error", "inference", "`true`: the run fails (after writing the rest) when any film failed."),
    ("qc_fail", "inference", "`true`: films the quality check flags are errors and write nothing (`--qc-fail`)."),
    ("include_identifiers", "inference", "`true`: the report also has the patient ID and study UID of DICOM films."),
    ("part / limit", "evaluate", "`test`, `validation`, `training` or `all`; at most `limit` films."),
    ("epochs, batch_size, lr, weight_decay, val_fraction, seed", "train", "As `medlung train`."),
    (
        "augmentations, sampling, samples_per_epoch, consistency_weight, sick_film_prob",
        "train",
        'As `medlung train` (`sampling`: a mapping `{"source/convention": share}`; `augmentations`: a list or null).',
    ),
    ("deep_supervision", "train", "`true`: train every nested output of a UNet++ (`--deep-supervision`)."),
    ("strict / limit / num_workers", "train", "Stop on unusable films / films per part / DataLoader workers."),
    ("resume", "train", "`true`: continue `output_dir` from last.pt."),
    ("export_dir / export_overwrite / export_version", "train", "Export the finished run as a bundle there."),
    (
        "network_def, working_spacing",
        "all",
        "Properties of the trained weights: read by the Segmenter from "
        "this file; overriding them at inference is refused.",
    ),
)
