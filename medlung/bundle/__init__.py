"""MONAI Bundle support: export a training run as a bundle, and the pieces its configs call.

``export_bundle(run_dir, bundle_dir)`` writes ``models/model.pt`` and
``model.ts``, ``configs/`` (metadata with its schema, inference, evaluate,
train, multi-GPU train, logging) and the model card. The configs it writes
call :func:`bundle_segmenter`, :func:`log_evaluation` and the other
helpers here, around medlung's Segmenter, ``predict_files``,
:func:`medlung.evaluation.evaluate` and Trainer.
"""

from medlung.bundle.components import (
    ProgressLogger,
    as_bool,
    as_optional,
    as_spacing,
    bundle_segmenter,
    bundle_settings,
    check_inputs,
    export_after_training,
    finish_predict,
    log_evaluation,
    log_json,
    one_line_errors,
    parse_formats,
    require_distributed,
    train_config,
    trainer,
)
from medlung.bundle.export import export_bundle, read_run

__all__ = [
    "PredictEvaluator",
    "ProgressLogger",
    "as_bool",
    "as_optional",
    "as_spacing",
    "bundle_segmenter",
    "bundle_settings",
    "check_inputs",
    "export_after_training",
    "export_bundle",
    "finish_predict",
    "inference_preprocessing",
    "log_evaluation",
    "log_json",
    "lung_postprocessing",
    "one_line_errors",
    "parse_formats",
    "read_run",
    "require_distributed",
    "train_config",
    "trainer",
]

#: The standard MONAI inference properties (medlung.bundle.workflow) import torch and MONAI: loaded when first used.
_WORKFLOW = ("PredictEvaluator", "inference_preprocessing", "lung_postprocessing")


def __getattr__(name: str):
    if name in _WORKFLOW:
        from medlung.bundle import workflow

        return getattr(workflow, name)
    raise AttributeError(f"module 'medlung.bundle' has no attribute {name!r}")
