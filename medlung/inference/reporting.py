"""What medlung's DICOM SR says about a film: its measurements and evaluations as data items.

:func:`report_items` turns one segmentation result (:class:`~medlung.inference.segmenter.LungMasks`)
into the items of :func:`medlung.writers.dicom_sr.write_dicom_sr`, per group (right lung, left lung,
both lungs):

==================  =========================================================  ============================
item                value                                                      groups
==================  =========================================================  ============================
Area                cm² when the film is calibrated, else pixels (``{pixels}``)  right, left, both
Height, Width       mm (pixels without spacing): the lung's bounding box        right, left, both
Lung convention     ``field`` or ``anatomical`` (99MEDLUNG codes)               right, left, both
Estimated Dice      0-1 (unit ``1``), with its 80 % interval's low and high      right, left, both
Quality check       ``ok`` or ``flagged``                                       both
Quality flag        one item per reason code (``not_chest``, ``lateral`` ...)   both
==================  =========================================================  ============================

The numbers are those of the report row (``report.csv``/``report.json``), rounded alike: areas in cm²
to 3 decimals, pixel counts whole, lengths and estimated Dice to 4 decimals. A lung that was not found
has no measurements (its group keeps its convention); a result without an estimated Dice (a model
without a Dice calibration, ``--dice-estimate off``) has none. Another measurement is one more
:class:`~medlung.writers.dicom_sr.SrMeasurement` appended to the list.
"""

from __future__ import annotations

from medlung.inference.measures import LUNG_LABELS, union_extent
from medlung.writers.dicom_sr import (
    AREA,
    DICE_ESTIMATE,
    DICE_ESTIMATE_HIGH,
    DICE_ESTIMATE_LOW,
    HEIGHT,
    LUNG_CONVENTION,
    QUALITY_CHECK,
    QUALITY_FLAG,
    UNITS,
    WIDTH,
    SrEvaluation,
    SrMeasurement,
    local_code,
)

__all__ = ["CONVENTION_CODES", "QC_CODES", "QC_FLAG_CODES", "report_items"]

#: Lung convention -> its code (the convention's name is the code value).
CONVENTION_CODES = {
    "field": local_code("field", "Radiographic lung field"),
    "anatomical": local_code("anatomical", "Whole lung (anatomical)"),
}
#: The film's quality verdict -> its code.
QC_CODES = {"ok": local_code("ok", "Passed"), "flagged": local_code("flagged", "Flagged")}
#: Quality reason code (every key of :data:`medlung.quality.REASON_CODES`) -> its code: the reason code is the
#: code value (``lungs_implausible``, 17 characters, is written as a Long Code Value).
QC_FLAG_CODES = {
    "not_chest": local_code("not_chest", "Not a chest radiograph"),
    "not_human": local_code("not_human", "Not a human patient"),
    "lateral": local_code("lateral", "Lateral view"),
    "too_small": local_code("too_small", "Film too small"),
    "field_of_view": local_code("field_of_view", "Field of view implausible for a chest"),
    "lungs_missing": local_code("lungs_missing", "Lung not found"),
    "lungs_implausible": local_code("lungs_implausible", "Lungs implausible in size, position or shape"),
    "low_confidence": local_code("low_confidence", "Low network confidence"),
    "low_dice_estimate": local_code("low_dice_estimate", "Low estimated Dice coefficient"),
}

#: Decimals of each kind of number (as in the report row).
AREA_CM2_DECIMALS, LENGTH_DECIMALS = 3, 4


def report_items(masks) -> list[SrMeasurement | SrEvaluation]:
    """The SR items of one segmentation result (see the module's table).

    Parameters
    ----------
    masks : medlung.inference.segmenter.LungMasks
        The result: areas (cm² when calibrated, pixels always), label map and spacing, convention, quality flags.

    Returns
    -------
    list of SrMeasurement and SrEvaluation
        Right lung, left lung, then both lungs.
    """
    items: list[SrMeasurement | SrEvaluation] = []
    measures = masks.measures
    length_unit = UNITS["mm"] if measures["unit"] == "mm" else UNITS["px"]
    extents = {side: measures.get(side) for side in LUNG_LABELS}
    extents["both"] = union_extent(masks.labels, masks.spacing)
    areas = {"right": "right", "left": "left", "both": "total"}
    convention = CONVENTION_CODES[masks.convention]
    for group, area_key in areas.items():
        extent = extents[group]
        if extent is not None:  # a lung not found has no measurements
            if masks.areas_cm2:
                area = round(float(masks.areas_cm2[area_key]), AREA_CM2_DECIMALS)
                items.append(SrMeasurement(AREA, area, UNITS["cm2"], group))
            else:
                items.append(SrMeasurement(AREA, int(masks.areas_px[area_key]), UNITS["px"], group))
            for name, key in ((HEIGHT, "height"), (WIDTH, "width")):
                items.append(SrMeasurement(name, round(float(extent[key]), LENGTH_DECIMALS), length_unit, group))
            items += _estimate_items(masks, group)
        items.append(SrEvaluation(LUNG_CONVENTION, convention, group))
    items.append(SrEvaluation(QUALITY_CHECK, QC_CODES[masks.qc], "both"))
    for code in dict.fromkeys(reason.code for reason in masks.qc_reasons):
        items.append(SrEvaluation(QUALITY_FLAG, QC_FLAG_CODES[code], "both"))
    return items


def _estimate_items(masks, group: str) -> list[SrMeasurement]:
    """The estimated Dice of one group and its interval (none when the result has no estimate)."""
    estimate = getattr(masks, "dice_estimate", None)
    if estimate is None:
        return []
    values = (estimate.dice, estimate.low, estimate.high) if group == "both" else estimate.lungs.get(group)
    if values is None:
        return []
    names = (DICE_ESTIMATE, DICE_ESTIMATE_LOW, DICE_ESTIMATE_HIGH)
    return [
        SrMeasurement(name, round(float(value), LENGTH_DECIMALS), UNITS["1"], group)
        for name, value in zip(names, values, strict=True)
    ]
