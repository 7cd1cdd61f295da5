"""Quality flags: should this film's lung masks be trusted?

Every segmented film gets ``qc`` (``"ok"`` or ``"flagged"``) and the
reasons for a flag, each a short code with a sentence (:class:`QcReason`).
A flagged film is still segmented and written; the flag says that the answer
is probably meaningless (not a chest, a lateral view, a wrong spacing ...).

Three kinds of evidence are used, all cheap next to the network:

* the DICOM header, when there is one (:func:`header_reasons`): Modality,
  BodyPartExamined, ViewPosition and the protocol/view descriptions;
* the film itself (:func:`film_reasons`, :func:`contrast_reasons`): its
  size in pixels and, when the spacing is known, its field of view in mm (a
  wrong ``--spacing`` shows there); whether it has any contrast at all;
* the model's result (:func:`lung_reasons`): lungs missing, lung area and
  shape implausible for a chest film, and the network's own confidence;
* the estimated Dice of the mask (:func:`estimate_reasons`), below the model
  plan's ``min_dice_estimate``.

Every threshold is a named constant below, with its unit and the
measurement it comes from (the shipped model over the 566 Shenzhen and 192
covid_v7 films and the shared DICOM files; ``scripts/quality_flags_survey.py``
repeats that measurement). This module imports no torch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

QC_OK = "ok"
QC_FLAGGED = "flagged"

#: Every reason code and what it means (docs/concepts.md shows the same list).
REASON_CODES = {
    "not_chest": "the header or the image says this is not a chest radiograph",
    "not_human": "the header says the patient is an animal",
    "lateral": "a lateral view: the model segments frontal (PA/AP) films only",
    "too_small": "the film has too few pixels to segment",
    "no_contrast": "the film is blank, constant or mostly one value (zero-filled: a damaged or empty file?)",
    "field_of_view": "the film's size in mm (pixels x spacing) is implausible for a chest film: the spacing is wrong "
    "or the film is not a chest",
    "lungs_missing": "the model found no lung on one side or both",
    "lungs_implausible": "the lungs found are implausible in size, position or shape for a frontal chest film",
    "low_confidence": "the network is unsure of most of what it called lung",
    "low_dice_estimate": "the mask's Dice is likely below the model plan's min_dice_estimate (its estimate "
    "is, or a 25 % chance by the calibration, medlung.estimation): check the mask by eye",
}

# --- header facts ---------------------------------------------------------------------------------------------------
#: Modalities of projection radiographs that can be chest films (DICOM PS3.3 C.7.3.1.1.1).
RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "DR", "RG"})
#: Modalities of secondary captures, accepted only when ConversionType says a film was digitised (DF, DV, DI).
CAPTURE_MODALITIES = frozenset({"OT", "SC"})
DIGITISED_CONVERSION_TYPES = frozenset({"DF", "DV", "DI"})
#: BodyPartExamined values (PS3.16 Annex L, and what vendors write) that mean a chest film.
CHEST_BODY_PARTS = frozenset(
    {
        "CHEST",
        "THORAX",
        "LUNG",
        "LUNGS",
        "CHEST_LAT",
        "CHESTABDOMEN",
        "CHEST_ABDOMEN",
        "CHESTABDPELVIS",
        "THORAXABDOMEN",
        "TORSO",
        "WHOLEBODY",
        "BODY",
        "TRUNK",
        "BRUST",
        "TORAX",
        "TORACE",
        "POUMON",
        "THORAX_PA",
        "CHEST_PA",
        "CHEST_AP",
    }
)
#: ViewPosition values of lateral films (PS3.3 C.8.11.5.1.1: LL left lateral, RL right lateral, ...).
LATERAL_VIEW_POSITIONS = frozenset({"LL", "RL", "LAT", "LATERAL", "LLD", "RLD", "XTABLE"})
#: Words in protocol, series or view descriptions that mean a lateral view.
LATERAL_WORDS = re.compile(r"\b(LAT|LATERAL|SEITLICH|LATERALE)\b")
#: Words in descriptions or species attributes that mean an animal patient.
ANIMAL_WORDS = re.compile(r"\b(CANINE|FELINE|EQUINE|BOVINE|PORCINE|OVINE|MURINE|DOG|CAT|HORSE|VETERINARY|VET)\b")
#: Words in study, series or protocol descriptions that name another body part; read only when BodyPartExamined
#: is absent and no description names the chest (CHEST_WORDS).
NON_CHEST_WORDS = re.compile(
    r"\b(TEETH|TOOTH|DENTAL|PANORAMIC|SKULL|HEAD|SINUS|SPINE|C-?SPINE|L-?SPINE|PELVIS|HIP|"
    r"KNEE|ANKLE|FOOT|FEET|HAND|WRIST|ELBOW|SHOULDER|FEMUR|TIBIA|HUMERUS|FOREARM|"
    r"ABDOMEN|MAMMO\w*|BREAST)\b"
)
CHEST_WORDS = re.compile(r"\b(CHEST|THORAX|THORACIC|LUNGS?|PULMONARY|CXR|TORAX|THORAX\w*)\b")
#: Header text attributes read for lateral / animal words (top level, and CodeMeaning of the code sequences below).
_DESCRIPTION_KEYWORDS = (
    "StudyDescription",
    "SeriesDescription",
    "ProtocolName",
    "RequestedProcedureDescription",
    "AcquisitionDeviceProcessingDescription",
    "PerformedProcedureStepDescription",
    "PatientSpeciesDescription",
)
_CODE_SEQUENCES = ("ViewCodeSequence", "PerformedProtocolCodeSequence", "PatientSpeciesCodeSequence")

# --- the film -------------------------------------------------------------------------------------------------------
#: Fewest pixels on either side of a film worth segmenting. The network works on a 2 mm grid and a chest film is at
#: least 100 mm wide, so any real chest film has far more; 16x16 (CR1_6154.dcm) is a test stub.
MIN_SIDE_PX = 64
#: Plausible width and height of a chest film, mm (rows x row spacing, columns x column spacing). Adult chest
#: detectors are 35x43 cm (14x17 in) or 43x43 cm, a child's film is smaller (18x24 cm cassettes; a newborn's chest
#: is about 10 cm wide), so both limits leave a wide margin. The shared films with spacing measure 352x428 mm (hip),
#: 296x236 mm (dental) and 253x203 mm (dog); ``--spacing 0.143`` makes CR-MONO1-10-chest.dcm 63x63 mm.
MIN_FIELD_MM = 100.0
MAX_FIELD_MM = 600.0

#: Largest fraction of a film's pixels that may share one value. A film that is blank, constant, or whose pixel data
#: stops early and is zero-filled (a PNG whose zlib stream holds 4 of its 1000 rows) is mostly one value; real chest
#: films with black borders are not (measured for #28 on the 566 Shenzhen, 192 covid_v7, 69 Montgomery films and the
#: shared DICOMs, sampled to 512 px: at most 0.59, MCUCXR_0060_0).
MAX_ONE_VALUE_FRACTION = 0.8
#: Longest side of the sample the contrast is measured on, pixels.
_CONTRAST_SIDE = 512

# --- the lungs ------------------------------------------------------------------------------------------------------
# Measured with the shipped model on all 566 Shenzhen and 192 covid_v7 films (scripts/quality_flags_survey.py);
# the ranges quoted are the minimum and maximum over those 758 chest films.
#: Plausible total lung area, fraction of the film (measured 0.086-0.515, the most on tightly cropped covid_v7
#: films; Shenzhen masks: 8-43 %).
MIN_LUNG_FRACTION = 0.04
MAX_LUNG_FRACTION = 0.70
#: Plausible area of one lung on a calibrated film, cm². An adult lung field is about 100-300 cm² on a PA film
#: (magnified about 1.1x), a newborn's about 15 cm²; the hip film's "right lung" is 441 cm².
MIN_LUNG_CM2 = 10.0
MAX_LUNG_CM2 = 400.0
#: Smallest area of the smaller lung over the larger one's. Disease can shrink a lung a lot: the ground truth of
#: CHNCXR_0603_1 (a destroyed left lung) has 0.10, the model 0.10; under 0.05 one "lung" is a speck.
MIN_LUNG_RATIO = 0.05
#: Plausible height of the lungs' centre (mean of the two lungs' centre rows), fraction of the film height from the
#: top (measured 0.25-0.58; the dental film's "lungs" are at 0.75, the dog's at 0.69).
MIN_LUNG_CENTRE = 0.20
MAX_LUNG_CENTRE = 0.65
#: Largest vertical distance between the two lungs' centres, fraction of the film height: the lungs lie side by
#: side (measured at most 0.19; the hip's two "lungs" are 0.34 apart).
MAX_CENTRE_OFFSET = 0.25
#: Plausible height/width of one lung's bounding box, mm/mm (square pixels assumed when uncalibrated): a lung on a
#: frontal film is taller than wide (measured 0.92-3.08).
MIN_LUNG_ASPECT = 0.7
MAX_LUNG_ASPECT = 4.5
#: Smallest solidity (area over convex-hull area) of one lung: a lung is compact and nearly convex (measured at
#: least 0.64); a scatter of blobs is not.
MIN_LUNG_SOLIDITY = 0.5
#: Logit margin (lung minus background) under which a pixel is called uncertain: |margin| < 2.2 is a lung
#: probability between 0.1 and 0.9.
UNCERTAIN_MARGIN = 2.2
#: Largest fraction of uncertain pixels among those the network gives any chance of lung (probability > 0.1)
#: (measured 0.10-0.35, mostly the lungs' edges; the OT test image vlut_04.dcm has 0.43).
MAX_UNCERTAIN_FRACTION = 0.5
#: Chance that the true Dice is below the plan's ``min_dice_estimate`` at which a film is flagged
#: ``low_dice_estimate``. Chosen on the calibration films of model 2.0.0 (scripts/fit_dice_estimate.py), where it
#: caught about 90 % of the films below 0.90 and flagged about 5 % of those at 0.95 or more; 0.5 (the estimate
#: itself below 0.90) caught about 75 %.
LOW_DICE_CHANCE = 0.25
#: Longest side of the label map the shape measures are taken on, pixels (larger films are sampled).
_MEASURE_SIDE = 1024


class QcReason(NamedTuple):
    """One reason to distrust a film's result.

    Attributes
    ----------
    code : str
        A key of :data:`REASON_CODES`.
    message : str
        A sentence with the measured value.
    """

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass
class QualityCheck:
    """The quality verdict on one film.

    Attributes
    ----------
    reasons : list of QcReason
        Empty when the film is ``ok``.
    measures : dict
        What was measured (fractions, cm², aspect, solidity, confidence).
    """

    reasons: list = field(default_factory=list)
    measures: dict = field(default_factory=dict)

    @property
    def qc(self) -> str:
        """``"ok"`` or ``"flagged"``."""
        return QC_FLAGGED if self.reasons else QC_OK

    @property
    def codes(self) -> list[str]:
        """The reason codes, without repeats, in order."""
        return list(dict.fromkeys(r.code for r in self.reasons))


def check_quality(film, labels: np.ndarray, margin: np.ndarray | None = None) -> QualityCheck:
    """All quality checks of one segmented film.

    Parameters
    ----------
    film : medlung.film.Film
        The film (its header, size and spacing are read).
    labels : numpy.ndarray
        ``(rows, cols)`` 0 background, 1 patient right lung, 2 patient left lung, on the native grid.
    margin : numpy.ndarray, optional
        The network's lung-minus-background logit margin on any grid (the working grid is enough); without it
        the confidence is not checked.

    Returns
    -------
    QualityCheck
    """
    reasons = (
        header_reasons(film.dataset)
        + film_reasons(film.shape, film.spacing)
        + contrast_reasons(film.pixels_at_least((_CONTRAST_SIDE, _CONTRAST_SIDE)))
    )
    measures = measure_lungs(labels, film.spacing, margin)
    if not any(r.code == "too_small" for r in reasons):
        reasons += lung_reasons(measures)
    return QualityCheck(reasons, measures)


def header_reasons(dataset: Any) -> list[QcReason]:
    """Reasons found in a DICOM header (none for ``None``: PNG films have no header).

    Parameters
    ----------
    dataset : pydicom.Dataset or None
        The film's header.

    Returns
    -------
    list of QcReason
    """
    if dataset is None:
        return []
    reasons = []
    modality = _text(dataset, "Modality")
    conversion = _text(dataset, "ConversionType")
    if (
        modality
        and modality not in RADIOGRAPH_MODALITIES
        and not (modality in CAPTURE_MODALITIES and conversion in DIGITISED_CONVERSION_TYPES)
    ):
        reasons.append(QcReason("not_chest", f"Modality is {modality}, not a radiograph (CR, DX)"))
    body_part = _text(dataset, "BodyPartExamined").replace(" ", "")
    descriptions = _descriptions(dataset)
    if body_part and body_part not in CHEST_BODY_PARTS:
        reasons.append(QcReason("not_chest", f"BodyPartExamined is {body_part}, not CHEST"))
    elif not body_part and not any(CHEST_WORDS.search(d) for d in descriptions):
        other = [d for d in descriptions if NON_CHEST_WORDS.search(d)]
        if other:
            reasons.append(QcReason("not_chest", f"the header describes another body part ({other[0][:48]})"))
    view = _text(dataset, "ViewPosition")
    if view in LATERAL_VIEW_POSITIONS:
        reasons.append(QcReason("lateral", f"ViewPosition is {view} (lateral)"))
    else:
        words = [d for d in descriptions if LATERAL_WORDS.search(d)]
        if words:
            reasons.append(QcReason("lateral", f"the header describes a lateral view ({words[0][:48]})"))
    animal = [d for d in descriptions if ANIMAL_WORDS.search(d)]
    if animal:
        reasons.append(QcReason("not_human", f"the header describes an animal ({animal[0][:48]})"))
    return reasons


def film_reasons(shape: Sequence[int], spacing: Sequence[float] | None) -> list[QcReason]:
    """Reasons found in the film's size and field of view.

    Parameters
    ----------
    shape : sequence of int
        ``(rows, cols)``, pixels.
    spacing : sequence of float or None
        ``(row_mm, col_mm)``; ``None`` when unknown (the field of view is then not checked).

    Returns
    -------
    list of QcReason
    """
    rows, cols = int(shape[0]), int(shape[1])
    if min(rows, cols) < MIN_SIDE_PX:
        return [QcReason("too_small", f"{cols}x{rows} px, fewer than {MIN_SIDE_PX} px on a side")]
    if spacing is None:
        return []
    height, width = rows * float(spacing[0]), cols * float(spacing[1])
    if min(height, width) < MIN_FIELD_MM or max(height, width) > MAX_FIELD_MM:
        return [
            QcReason(
                "field_of_view",
                f"the film measures {width:.0f}x{height:.0f} mm (a chest film is "
                f"{MIN_FIELD_MM:.0f}-{MAX_FIELD_MM:.0f} mm a side): check the spacing",
            )
        ]
    return []


def contrast_reasons(pixels: np.ndarray) -> list[QcReason]:
    """A reason when the film has no contrast: blank, constant, or mostly one value (zero-filled).

    Parameters
    ----------
    pixels : numpy.ndarray
        ``(rows, cols)``, the film's pixels (sampled to at most 512 px a side).

    Returns
    -------
    list of QcReason
    """
    pixels = np.asarray(pixels)
    if pixels.size == 0:
        return []
    step = max(1, math.ceil(max(pixels.shape) / _CONTRAST_SIDE))
    sample = pixels[::step, ::step]
    values, counts = np.unique(sample, return_counts=True)
    if values.size == 1:
        return [QcReason("no_contrast", f"every pixel has the value {float(values[0]):g}: the film is blank")]
    share = float(counts.max()) / sample.size
    if share > MAX_ONE_VALUE_FRACTION:
        value = float(values[counts.argmax()])
        return [
            QcReason(
                "no_contrast",
                f"{share:.0%} of the film has the one value {value:g} (expected at most "
                f"{MAX_ONE_VALUE_FRACTION:.0%}): blank, or its pixel data stops early and is filled",
            )
        ]
    return []


def measure_lungs(labels: np.ndarray, spacing: Sequence[float] | None, margin: np.ndarray | None = None) -> dict:
    """Size, position, shape and confidence of the two lungs.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(rows, cols)`` 0/1 (patient right)/2 (patient left).
    spacing : sequence of float or None
        ``(row_mm, col_mm)``; ``None`` measures shapes with square pixels and gives no cm².
    margin : numpy.ndarray, optional
        Lung-minus-background logit margin (any grid).

    Returns
    -------
    dict
        ``fraction`` (total lung area / film area), ``calibrated``, and per lung (``right``, ``left``):
        ``fraction``, ``cm2`` (or None), ``centre_row`` (fraction of the height), ``aspect`` (bounding-box
        height / width in mm), ``solidity``; ``ratio`` (smaller / larger lung area), ``centre`` (mean of the
        two centre rows) and ``centre_offset`` (their vertical distance), fractions of the height;
        ``uncertain_fraction`` and ``mean_probability`` (inside the network's own lung pixels) when ``margin``
        is given.
    """
    rows, cols = labels.shape
    step = max(1, math.ceil(max(rows, cols) / _MEASURE_SIDE))
    sampled = labels[::step, ::step]
    row_mm, col_mm = (float(spacing[0]), float(spacing[1])) if spacing is not None else (1.0, 1.0)
    pixel_cm2 = row_mm * col_mm / 100.0
    measures: dict = {"calibrated": spacing is not None}
    counts = {}
    for name, value in (("right", 1), ("left", 2)):
        counts[name] = int(np.count_nonzero(labels == value))
        measures[name] = _lung_shape(sampled == value, step * row_mm, step * col_mm)
        measures[name]["fraction"] = counts[name] / float(rows * cols)
        measures[name]["cm2"] = counts[name] * pixel_cm2 if spacing is not None else None
    measures["fraction"] = (counts["right"] + counts["left"]) / float(rows * cols)
    small, large = sorted(counts.values())
    measures["ratio"] = small / large if large else 0.0
    centres = [measures[side]["centre_row"] for side in ("right", "left")]
    measures["centre_offset"] = abs(centres[0] - centres[1]) if None not in centres else None
    measures["centre"] = (centres[0] + centres[1]) / 2 if None not in centres else None
    if margin is not None:
        margin = np.asarray(margin, dtype=np.float32)
        possible = margin > -UNCERTAIN_MARGIN
        uncertain = np.abs(margin) < UNCERTAIN_MARGIN
        lung = margin > 0
        measures["uncertain_fraction"] = float(uncertain.sum() / possible.sum()) if possible.any() else None
        measures["mean_probability"] = float((1.0 / (1.0 + np.exp(-margin[lung]))).mean()) if lung.any() else None
    return measures


def lung_reasons(measures: dict) -> list[QcReason]:
    """Reasons found in the measured lungs (see :func:`measure_lungs`).

    Returns
    -------
    list of QcReason
    """
    missing = [side for side in ("right", "left") if measures[side]["fraction"] == 0]
    if missing:
        which = "both lungs" if len(missing) == 2 else f"the {missing[0]} lung"
        return [QcReason("lungs_missing", f"{which} not found")]
    problems = []
    fraction = measures["fraction"]
    if not MIN_LUNG_FRACTION <= fraction <= MAX_LUNG_FRACTION:
        problems.append(
            f"lungs cover {fraction:.0%} of the film (expected {MIN_LUNG_FRACTION:.0%}-{MAX_LUNG_FRACTION:.0%})"
        )
    for side in ("right", "left"):
        lung = measures[side]
        if lung["cm2"] is not None and not MIN_LUNG_CM2 <= lung["cm2"] <= MAX_LUNG_CM2:
            problems.append(f"{side} lung {lung['cm2']:.0f} cm² (expected {MIN_LUNG_CM2:.0f}-{MAX_LUNG_CM2:.0f})")
        if lung["aspect"] is not None and not MIN_LUNG_ASPECT <= lung["aspect"] <= MAX_LUNG_ASPECT:
            problems.append(
                f"{side} lung height/width {lung['aspect']:.2f} (expected {MIN_LUNG_ASPECT}-{MAX_LUNG_ASPECT})"
            )
        if lung["solidity"] is not None and lung["solidity"] < MIN_LUNG_SOLIDITY:
            problems.append(f"{side} lung solidity {lung['solidity']:.2f} (expected at least {MIN_LUNG_SOLIDITY})")
    if measures["ratio"] < MIN_LUNG_RATIO:
        problems.append(
            f"one lung is {measures['ratio']:.0%} of the other's area (expected at least {MIN_LUNG_RATIO:.0%})"
        )
    centre = measures.get("centre")
    if centre is not None and not MIN_LUNG_CENTRE <= centre <= MAX_LUNG_CENTRE:
        problems.append(
            f"the lungs' centre is at {centre:.0%} of the film height (expected {MIN_LUNG_CENTRE:.0%}-"
            f"{MAX_LUNG_CENTRE:.0%})"
        )
    if measures["centre_offset"] is not None and measures["centre_offset"] > MAX_CENTRE_OFFSET:
        problems.append(
            f"the lungs' centres are {measures['centre_offset']:.0%} of the film height apart "
            f"vertically (expected at most {MAX_CENTRE_OFFSET:.0%})"
        )
    reasons = [QcReason("lungs_implausible", text) for text in problems]
    uncertain = measures.get("uncertain_fraction")
    if uncertain is not None and uncertain > MAX_UNCERTAIN_FRACTION:
        reasons.append(
            QcReason(
                "low_confidence",
                f"{uncertain:.0%} of the possible lung pixels are uncertain "
                f"(expected at most {MAX_UNCERTAIN_FRACTION:.0%})",
            )
        )
    return reasons


def estimate_reasons(dice: float | None, chance: float, threshold: float) -> list[QcReason]:
    """The ``low_dice_estimate`` reason when a mask's Dice is likely enough to be below ``threshold``.

    A film is flagged when its estimated Dice is below the threshold, or when the calibration's error
    distribution gives at least :data:`LOW_DICE_CHANCE` that the true Dice is (an estimate of 0.92 with a
    wide interval is a mask worth a look).

    Parameters
    ----------
    dice : float or None
        The estimated Dice of both lungs, 0-1 (:class:`medlung.estimation.calibration.DiceEstimate`); None gives
        no reason.
    chance : float
        The chance, 0-1, that the true Dice is below ``threshold``
        (:meth:`~medlung.estimation.calibration.DiceEstimate.probability_below`).
    threshold : float
        The model plan's ``min_dice_estimate``, 0-1.

    Returns
    -------
    list of QcReason
    """
    if dice is None or (dice >= threshold and chance < LOW_DICE_CHANCE):
        return []
    return [
        QcReason(
            "low_dice_estimate",
            f"estimated Dice {dice:.3f}, a {chance:.0%} chance it is below {threshold:.2f}",
        )
    ]


def qc_fields(check: QualityCheck) -> dict:
    """The report columns of a check: ``qc`` and ``qc_reasons`` (``"code: sentence"`` strings)."""
    return {"qc": check.qc, "qc_reasons": [str(r) for r in check.reasons]}


def series_description(base: str, reasons: Sequence[QcReason], limit: int = 64) -> str:
    """A SEG SeriesDescription that names the quality flags: ``"Lungs (medlung) [QC: not_chest,lateral]"``.

    Parameters
    ----------
    base : str
        The description of an unflagged result.
    reasons : sequence of QcReason
        The film's flags.
    limit : int
        Longest text (SeriesDescription is LO: 64 characters); codes that do not fit become ``...``.

    Returns
    -------
    str
    """
    codes = list(dict.fromkeys(r.code for r in reasons))
    if not codes:
        return base
    text = f"{base} [QC: {','.join(codes)}]"
    while len(text) > limit and codes:
        codes.pop()
        text = f"{base} [QC: {','.join([*codes, '...'])}]"
    return text[:limit]


def _lung_shape(mask: np.ndarray, row_mm: float, col_mm: float) -> dict:
    """Centre row (fraction of the height), bounding-box aspect (mm/mm) and solidity of one lung mask."""
    rows_any = np.flatnonzero(mask.any(axis=1))
    if rows_any.size == 0:
        return {"centre_row": None, "aspect": None, "solidity": None}
    band = mask[rows_any]
    first = band.argmax(axis=1)
    last = band.shape[1] - 1 - band[:, ::-1].argmax(axis=1)
    count = int(np.count_nonzero(band))
    centre = float((band.sum(axis=1) * (rows_any + 0.5)).sum() / count) / mask.shape[0]
    height = (rows_any[-1] - rows_any[0] + 1) * row_mm
    width = (last.max() - first.min() + 1) * col_mm
    return {"centre_row": centre, "aspect": float(height / width), "solidity": _solidity(rows_any, first, last, count)}


def _solidity(rows: np.ndarray, first: np.ndarray, last: np.ndarray, count: int) -> float | None:
    """Pixel count over the area of the convex hull of the pixel squares (None for a degenerate shape).

    The hull of a shape is the hull of each row's first and last pixel, so only those corners are used.
    """
    from scipy.spatial import ConvexHull, QhullError

    points = np.concatenate(
        [np.stack([rows + dr, cols + dc], axis=1) for dr in (0, 1) for cols, dc in ((first, 0), (last, 1))]
    ).astype(np.float64)
    try:
        hull = ConvexHull(points)
    except (QhullError, ValueError):
        return None
    return float(min(1.0, count / hull.volume))


def _text(dataset, keyword: str) -> str:
    value = dataset.get(keyword, "")
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = "\\".join(str(v) for v in value)
    return str(value or "").strip().upper()


def _descriptions(dataset) -> list[str]:
    """Upper-case header descriptions read for view and species words."""
    texts = [_text(dataset, k) for k in _DESCRIPTION_KEYWORDS]
    for keyword in _CODE_SEQUENCES:
        for item in dataset.get(keyword, None) or []:
            texts.append(_text(item, "CodeMeaning"))
    return [t for t in texts if t]
