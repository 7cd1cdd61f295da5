"""The label table: what each label value of a lung label map means, in one place.

Every output that names a lung reads it from here: the post-processing (label
values), the DICOM-SEG writer and reader (segment labels, SNOMED CT codes and
laterality modifiers, recommended display colours), the overlay and the
evaluation figures (colours), and the report (side names).

====  =========  ================================  ==================  =============
value  side      segmented property (SNOMED CT)    laterality modifier  colour (RGB)
====  =========  ================================  ==================  =============
 0     -         background                        -                   -
 1     right     39607008 "Lung"                   24028007 "Right"    (255, 140, 0)
 2     left      39607008 "Lung"                   7771000 "Left"      (30, 144, 255)
====  =========  ================================  ==================  =============

Right and left are always the **patient's** right and left. The convention
(``field`` or ``anatomical``, see :mod:`medlung.plans`) is part of each
segment's label and description.
"""

from __future__ import annotations

from dataclasses import dataclass

from medlung.plans import CONVENTIONS

BACKGROUND = 0
RIGHT = 1
LEFT = 2

#: SNOMED CT code of the segmented property "Lung" and of the anatomic region "Thorax".
SCT_LUNG = ("39607008", "Lung")
SCT_THORAX = ("43799004", "Thorax")
#: Human words for each convention, as used in segment labels and descriptions.
CONVENTION_WORDS = {
    "field": ("lung field", "radiographic lung field, bounded by the heart and mediastinum edges"),
    "anatomical": ("lung (anatomical)", "whole lung, continuing behind the heart and into the posterior recesses"),
}


@dataclass(frozen=True)
class LungLabel:
    """One lung's entry in the label table.

    Attributes
    ----------
    value : int
        Value in medlung label maps, and segment number in its DICOM-SEGs.
    side : str
        ``"right"`` or ``"left"`` (the patient's).
    laterality_code : tuple of str
        SNOMED CT (code, meaning) of the laterality modifier.
    colour : tuple of int
        Display colour, sRGB 0-255.
    """

    value: int
    side: str
    laterality_code: tuple
    colour: tuple

    def segment_label(self, lungs: str = "field") -> str:
        """Segment label for convention ``lungs``, e.g. ``"Right lung field"`` or ``"Left lung (anatomical)"``."""
        return f"{self.side.capitalize()} {CONVENTION_WORDS[_checked(lungs)][0]}"

    def description(self, lungs: str = "field") -> str:
        """One-sentence description of what the segment covers under convention ``lungs``."""
        return f"Patient's {self.side} {CONVENTION_WORDS[_checked(lungs)][1]}; opacified lung included."


LUNGS = (
    LungLabel(RIGHT, "right", ("24028007", "Right"), (255, 140, 0)),
    LungLabel(LEFT, "left", ("7771000", "Left"), (30, 144, 255)),
)
BY_VALUE = {label.value: label for label in LUNGS}
BY_SIDE = {label.side: label for label in LUNGS}
#: value -> RGB colour (overlays, figures).
COLOURS = {label.value: label.colour for label in LUNGS}


def _checked(lungs: str) -> str:
    if lungs not in CONVENTIONS:
        raise ValueError(f"lungs must be one of {', '.join(CONVENTIONS)}; got {lungs!r}.")
    return lungs
