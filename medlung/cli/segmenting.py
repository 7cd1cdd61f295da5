"""Options shared by ``predict`` and ``serve`` (the model and how it runs), and the one place settings are built.

Both commands take the same model options from :func:`model_options`, and
both turn their options into one
:class:`~medlung.pipeline.settings.PredictSettings` with :func:`build_settings`,
which every later step receives whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from medlung import defaults
from medlung.cli.common import spacing_option


def _formats(ctx, param, value: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(v.strip().lower() for v in value.split(",") if v.strip()))
    unknown = [f for f in chosen if f not in defaults.OUTPUT_FORMATS]
    if unknown:
        raise click.BadParameter(
            f"{', '.join(repr(f) for f in unknown)} {'is' if len(unknown) == 1 else 'are'} not an output format; "
            f"choose from {','.join(defaults.OUTPUT_FORMATS)} (got {value!r})"
        )
    if not chosen:
        raise click.BadParameter(f"choose from {','.join(defaults.OUTPUT_FORMATS)} (got {value!r})")
    return chosen


#: ``--format``: what predict writes.
format_option = click.option(
    "--format",
    "formats",
    default=",".join(defaults.DEFAULT_FORMATS),
    show_default=True,
    callback=_formats,
    help=f"Outputs to write, any of {','.join(defaults.OUTPUT_FORMATS)} (seg and sr only for DICOM films; sr: the "
    "measurements as a DICOM SR, TID 1500, referencing the SEG; mha: the label map as MetaImage).",
)
#: ``--spacing``: the user's spacing for every film.
user_spacing_option = click.option(
    "--spacing",
    default=None,
    callback=spacing_option,
    help="Spacing in mm for every film (MM or ROW,COL); replaces the files'.",
)


def model_options(command):
    """Add the model options (``--bundle`` ... ``--qc-fail``) shared by ``predict`` and ``serve``."""
    options = [
        click.option(
            "--bundle",
            type=click.Path(path_type=Path, exists=True),
            help="Model: a medlung bundle, a training run folder or a .pt checkpoint (default: the shipped bundle).",
        ),
        click.option(
            "--device",
            default=defaults.DEFAULT_DEVICE,
            show_default=True,
            help=f"{', '.join(d for d in defaults.DEVICES if d != 'auto')} or auto.",
        ),
        click.option(
            "--roi-size", type=click.IntRange(32), default=None, help="Sliding-window size on the working grid."
        ),
        click.option(
            "--overlap",
            type=click.FloatRange(0, 0.95),
            default=None,
            help="Sliding-window overlap, 0-0.95 [default: the model's].",
        ),
        click.option(
            "--lungs",
            type=click.Choice(list(defaults.CONVENTIONS)),
            default=defaults.DEFAULT_CONVENTION,
            show_default=True,
            help="Lung convention: field (the radiographic lung field, bounded by heart and mediastinum) or "
            "anatomical (the whole lung, behind the heart too). Opacified lung is lung in both.",
        ),
        click.option("--tta", is_flag=True, help="Average with the mirrored film (about 2x network time)."),
        click.option(
            "--orientation-fix",
            is_flag=True,
            help="Films without PatientOrientation (PNG, no tag) that look mirrored or turned are segmented as "
            "detected (up to 3x network time on those films); the report's orientation_check says what was seen.",
        ),
        click.option(
            "--dice-estimate",
            type=click.Choice(list(defaults.DICE_ESTIMATES)),
            default=defaults.DEFAULT_DICE_ESTIMATE,
            show_default=True,
            help="Estimated Dice of each mask, with an 80 % interval (report dice_estimate*, flag low_dice_estimate): "
            "fast (from the one network pass, a few ms), perturbed (also the film flipped, shifted and zoomed out: "
            "about 2.5x network time) or off.",
        ),
        click.option(
            "--max-pixels",
            type=click.IntRange(1),
            default=defaults.DEFAULT_MAX_PIXELS,
            show_default=True,
            help="Refuse films declaring more pixels (rows x cols) than this, before decoding.",
        ),
        click.option(
            "--decode",
            type=click.Choice(defaults.DECODE_MODES),
            default=defaults.DEFAULT_DECODE,
            show_default=True,
            help="reduced: decode DICOM films only at the resolution the network and the overlay need (JPEG "
            "2000 levels, scaled JPEG, area averages); full: decode every native pixel first.",
        ),
        click.option(
            "--qc-fail",
            is_flag=True,
            help="Films the quality check flags (not a chest, lateral, implausible lungs ...) become errors and "
            "write nothing (default: written, flagged in the report, the SEG and the log).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


#: The parameters of :func:`model_options` and their settings names.
MODEL_PARAMETERS = {
    "bundle": "bundle",
    "device": "device",
    "roi_size": "roi_size",
    "overlap": "overlap",
    "lungs": "lungs",
    "tta": "tta",
    "orientation_fix": "fix_orientation",
    "dice_estimate": "dice_estimate",
    "max_pixels": "max_pixels",
    "decode": "decode",
    "qc_fail": "qc_fail",
}


#: The command-line option of each setting whose name differs (for error messages).
OPTION_OF = {
    **{setting: f"--{param.replace('_', '-')}" for param, setting in MODEL_PARAMETERS.items()},
    "formats": "--format",
    "send_tls": "--tls-cert",
    "seg_syntax": "--seg-syntax",
    "send": "--send",
    "stow": "--stow",
    "workers": "--workers",
    "spacing": "--spacing",
    "max_memory": "--max-memory",
}


def build_settings(params: dict[str, Any], **fixed: Any):
    """The command's :class:`~medlung.pipeline.settings.PredictSettings`, from its click parameters.

    Parameters
    ----------
    params : dict
        The command's parameters (``click.get_current_context().params``):
        the model options, and whichever settings the command has under their
        settings names (``formats``, ``overwrite``, ``spacing`` ...).
    **fixed
        Settings the command decides itself (``serve`` writes SEGs only).

    Raises
    ------
    click.BadParameter
        When a setting is not valid (one line, naming it).
    """
    from medlung.pipeline.settings import PredictSettings, SettingError

    names = {f for f in PredictSettings.__dataclass_fields__}
    values = {MODEL_PARAMETERS.get(key, key): value for key, value in params.items()}
    values = {key: value for key, value in values.items() if key in names}
    values.update(fixed)
    try:
        return PredictSettings(**values)
    except SettingError as exc:
        raise click.BadParameter(str(exc), param_hint=OPTION_OF.get(exc.setting, exc.setting)) from None
