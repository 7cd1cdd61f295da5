"""What a bundle's model is and what goes in and out of it, in words, from its plan and metadata.

The model card's ``## Model`` and ``## Inputs and outputs`` sections, and the
metadata's words for the output head (``channel_def``, ``pred_classes``, the
margin that is thresholded), are written here and nowhere else.
:func:`medlung.bundle.model_card.readme` puts the sections into the card at
export (from the run's plan and the metadata just built); :func:`refresh_card`
rewrites them in an existing card from the bundle's own
``configs/inference.json`` (the plan) and ``configs/metadata.json``, without
retraining or exporting again (``python scripts/refresh_model_card.py BUNDLE``).

Each generated section lies between ``<!-- medlung:generated:NAME:begin -->``
and ``<!-- medlung:generated:NAME:end -->``; the rest of the card (training,
evaluation, how to run) is left as it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from medlung.plans import DEFAULT_CONVENTION, ModelPlan, plan_from_bundle_config

NETWORK_NAMES = {"basicunet": "MONAI BasicUNet", "unetpp": "MONAI BasicUNetPlusPlus (UNet++)"}
#: Generated sections, in card order, with the heading each had before the markers existed.
SECTIONS = {"model": "## Model", "inputs-outputs": "## Metadata"}


@dataclass(frozen=True)
class HeadDescription:
    """The output head of a plan, in the words of the metadata and the card.

    Attributes
    ----------
    channels : dict of str to str
        ``channel_def`` of the output: channel index (as text) -> what it holds.
    pred_classes : str
        The metadata's ``pred_classes``.
    margin : str
        What is brought back to the native grid and thresholded at 0.
    """

    channels: dict[str, str]
    pred_classes: str
    margin: str


def head_description(plan: ModelPlan) -> HeadDescription:
    """Describe the output head of ``plan`` (see :mod:`medlung.plans`, "Output heads")."""
    if plan.head == "softmax":
        lung = plan.conventions[0]
        return HeadDescription(
            channels={"0": "background", "1": f"lung ({lung})"},
            pred_classes=f"2 channels of logits: channel 0 background, channel 1 lung ({lung})",
            margin="lung-minus-background logit",
        )
    both = "field" in plan.conventions and "anatomical" in plan.conventions
    return HeadDescription(
        channels={str(i): f"lung, {c} convention" for i, c in enumerate(plan.conventions)},
        pred_classes=(
            f"{plan.out_channels} channels of independent sigmoid logits, one per lung convention: "
            + ", ".join(f"channel {i} {c}" for i, c in enumerate(plan.conventions))
        ),
        margin="the chosen convention's logit" + _margin_notes(plan, both),
    )


def _margin_notes(plan: ModelPlan, both: bool) -> str:
    """How a convention's margin differs from its own logit: the field's minimum, the anatomical shape prior."""
    notes = ["field: the smaller of field and anatomical"] if both else []
    if "anatomical" in plan.conventions and plan.anatomical_closing_mm > 0:
        notes.append(
            f"anatomical: each lung closed with a {plan.anatomical_closing_mm:g} mm disk on the working grid, "
            "the shape prior that fills the ragged bays along the heart"
        )
    return f" ({'; '.join(notes)})" if notes else ""


def default_convention(plan: ModelPlan) -> str:
    """The convention the model draws unless asked otherwise: ``field`` when it has it."""
    return DEFAULT_CONVENTION if DEFAULT_CONVENTION in plan.conventions else plan.conventions[0]


def ordinal(number: float) -> str:
    """``0.5th``, ``1st``, ``2nd``, ``3rd``, ``99th``, ``99.5th``: a percentile's name."""
    text = f"{number:g}"
    if "." in text or text.endswith(("11", "12", "13")):
        return text + "th"
    return text + {"1": "st", "2": "nd", "3": "rd"}.get(text[-1], "th")


def model_section(plan: ModelPlan, meta: dict) -> list[str]:
    """The card's ``## Model`` section (Markdown lines): the network and the steps from film to labels.

    Parameters
    ----------
    plan : medlung.plans.ModelPlan
        The model's plan.
    meta : dict
        The bundle's ``configs/metadata.json`` (for the parameter count).
    """
    parameters = (meta.get("training") or {}).get("parameters")
    head = head_description(plan)
    low, high = plan.intensity_percentiles
    features = ",".join(str(f) for f in plan.features)
    conventions = ", ".join(f"`{c}`" for c in plan.conventions)
    if plan.head == "softmax":
        outputs = f"one output, the {conventions} lung convention"
    else:
        outputs = (
            f"one output per lung convention ({conventions}; `--lungs` chooses, default `{default_convention(plan)}`)"
        )
    return [
        "## Model",
        "",
        f"A 2-D {NETWORK_NAMES.get(plan.network, plan.network)} (`{plan.network}`, features `{features}`"
        + (f", {parameters:,} parameters" if isinstance(parameters, int) else "")
        + f") segments both lungs on frontal chest radiographs, with {outputs}. It is part of medlung and runs "
        "through medlung's `Segmenter`:",
        "",
        "1. the film is read with its pixel spacing (DICOM PixelSpacing/ImagerPixelSpacing, PNG pHYs; films "
        "without spacing get a nominal rule and uncalibrated areas), in MONOCHROME2 polarity, and turned to the "
        "standard display (patient right on the image left, head up) as its PatientOrientation says;",
        f"2. it is resampled to a **{plan.working_spacing:g} mm working grid** and scaled per film from its "
        f"{ordinal(low)}-{ordinal(high)} percentiles to [0, 1] (clipped);",
        f"3. the network runs as a sliding window of {plan.roi_size}x{plan.roi_size} pixels (overlap "
        f"{plan.overlap:g}, gaussian blending) and gives {head.pred_classes};",
        f"4. {head.margin} is resized back to the film's **native grid** and thresholded at 0; lung components "
        f"under {plan.min_lung_mm2:g} mm² are removed, the largest component on each side of the film is kept "
        "(one lung a side), the lungs are split into the patient's right (label 1) and left (label 2) using "
        "PatientOrientation (standard PA display assumed when absent), and the labels are turned back to the "
        "film's stored orientation.",
        "",
        "Every output keeps the film's native size and spacing: DICOM-SEG (for DICOM films), `_lungs.png` "
        "(spacing in pHYs), `_labels.nii.gz` (spacing in the affine), an overlay, and `report.csv`/`report.json` "
        "with areas in cm².",
    ]


def inputs_outputs_section(meta: dict) -> list[str]:
    """The card's ``## Inputs and outputs`` section: the metadata's ``network_data_format``, as a table."""
    formats = meta["network_data_format"]
    lines = [
        "## Inputs and outputs",
        "",
        "The network's tensors, as `configs/metadata.json` records them (`network_data_format`):",
        "",
        "| tensor | channels | dtype | values | pixel spacing | spatial shape |",
        "|---|---|---|---|---|---|",
    ]
    described = []
    for role, key, steps in (("input", "inputs", "preprocessing"), ("output", "outputs", "postprocessing")):
        for name, spec in formats[key].items():
            channels = "; ".join(f"{index}: {what}" for index, what in spec.get("channel_def", {}).items())
            values = " to ".join(f"{v:g}" for v in spec.get("value_range") or []) or "not bounded (logits)"
            spacing = " x ".join(f"{v:g}" for v in spec.get("pixel_spacing_mm") or []) or "?"
            shape = " x ".join(f"`{v}`" for v in spec.get("spatial_shape") or [])
            if spec.get("patch_size"):
                shape += ", patches of " + "x".join(str(v) for v in spec["patch_size"])
            lines.append(
                f"| {role} `{name}` | {spec.get('num_channels', '?')} ({channels}) | {spec.get('dtype', '?')} | "
                f"{values} | {spacing} mm | {shape} |"
            )
            if spec.get(steps):
                described.append(f"* `{name}`, {steps}: {spec[steps]}.")
    lines += ["", *described]
    for key, name in (("image_classes", "input"), ("pred_classes", "output")):
        if meta.get(key):
            lines.append(f"* The {name} (`{key}`): {meta[key]}.")
    lines += [
        "",
        "`configs/metadata.json` also records the version and changelog, the MONAI/PyTorch/NumPy versions used, "
        "required and optional package versions (medlung included), data source, licence, intended use, "
        "references and `eval_metrics`.",
    ]
    return lines


def generated_sections(plan: ModelPlan, meta: dict) -> dict[str, str]:
    """Every generated section, by name (:data:`SECTIONS`), as the marked block the card holds."""
    bodies = {"model": model_section(plan, meta), "inputs-outputs": inputs_outputs_section(meta)}
    return {name: "\n".join([_begin(name), "", *bodies[name], "", _end(name)]) for name in SECTIONS}


def refresh_card(card: str, plan: ModelPlan, meta: dict) -> str:
    """``card`` with its generated sections written again from ``plan`` and ``meta``; the rest unchanged.

    A card exported before the sections were marked has them under their old
    headings (:data:`SECTIONS`); each is replaced up to the next ``## `` heading.

    Raises
    ------
    ValueError
        When a section is neither marked nor found under its old heading.
    """
    for name, block in generated_sections(plan, meta).items():
        begin, end = _begin(name), _end(name)
        if begin in card and end in card:
            start, stop = card.index(begin), card.index(end) + len(end)
        else:
            heading = SECTIONS[name] + "\n"
            if not card.startswith(heading) and "\n" + heading not in card:
                raise ValueError(f"the model card has no {name} section (markers {begin} or heading {heading!r})")
            start = 0 if card.startswith(heading) else card.index("\n" + heading) + 1
            following = card.find("\n## ", start + len(heading))
            stop = len(card.rstrip("\n")) if following < 0 else following + 1
            block += "\n\n" if following >= 0 else ""
        card = card[:start] + block + card[stop:]
    return card


def bundle_plan_and_metadata(bundle: str | Path) -> tuple[ModelPlan, dict]:
    """The plan (``configs/inference.json``) and metadata (``configs/metadata.json``) of a bundle folder."""
    configs = Path(bundle) / "configs"
    inference = json.loads((configs / "inference.json").read_text(encoding="utf-8"))
    meta = json.loads((configs / "metadata.json").read_text(encoding="utf-8"))
    return plan_from_bundle_config(inference), meta


def refresh_bundle_card(bundle: str | Path) -> Path:
    """Rewrite the generated sections of ``BUNDLE/docs/README.md`` from the bundle's configs (atomically)."""
    from medlung.atomic import write_text_atomically

    path = Path(bundle) / "docs" / "README.md"
    plan, meta = bundle_plan_and_metadata(bundle)
    return write_text_atomically(path, refresh_card(path.read_text(encoding="utf-8"), plan, meta), overwrite=True)


def _begin(name: str) -> str:
    return f"<!-- medlung:generated:{name}:begin -->"


def _end(name: str) -> str:
    return f"<!-- medlung:generated:{name}:end -->"
