"""Orientation: from a film as it is stored to the standard display, and back.

The network sees every film in the **standard display** of a frontal chest
film: the patient's right on the image's left and the head up, which is DICOM
PatientOrientation ``L\\F`` (along a row, to higher column numbers, is towards
the patient's left; down a column is towards the feet). A film stored
otherwise -- mirrored (``R\\F``), upside down (``L\\H``), turned a quarter
(``F\\R``, ``H\\L``) or transposed (``F\\L``, ``H\\R``) -- is put in the standard
display by at most one transpose and two flips, all exact (no resampling),
and its masks are brought back to the stored grid by the inverse.

A frontal (PA or AP) film's rows and columns run along the patient's
right-left and head-feet axes, so each value of its PatientOrientation is
``L`` or ``R`` for one axis and ``H`` or ``F`` for the other. ``A`` (anterior)
or ``P`` (posterior) cannot describe the rows or columns of a frontal film:
it is a lateral (or oblique) film, which this module does not turn.

Torch-free: numpy only, so the command line and readers can use it cheaply.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: PatientOrientation of the standard display: patient right on image left, head up.
STANDARD_DISPLAY = ("L", "F")

_OPPOSITE = {"L": "R", "R": "L", "H": "F", "F": "H", "A": "P", "P": "A"}
_LATERAL_AXIS = {"L", "R"}
_LONG_AXIS = {"H", "F"}


@dataclass(frozen=True)
class DisplayTransform:
    """The exact operations that put a stored film in the standard display.

    Applied in this order: ``transpose`` (swap rows and columns), then
    ``flip_rows`` (reverse the row order: top to bottom), then ``flip_cols``
    (reverse the column order: left to right). :meth:`to_stored` undoes them
    in the reverse order.

    Attributes
    ----------
    transpose : bool
        Swap rows and columns (a film stored a quarter turn or transposed).
    flip_rows : bool
        Reverse the rows (head at the bottom once transposed).
    flip_cols : bool
        Reverse the columns (patient right on the image right once transposed).
    """

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False

    @classmethod
    def from_orientation(cls, orientation: Sequence[str]) -> DisplayTransform:
        """The transform of a film stored with this PatientOrientation.

        Parameters
        ----------
        orientation : sequence of two str
            DICOM PatientOrientation (direction of the rows, direction of the
            columns), e.g. ``("R", "F")``. Only the first letter of each value
            counts (DICOM puts the principal direction first).

        Raises
        ------
        ValueError
            If it is not two values, or is not a frontal orientation (a value
            is ``A``/``P``, or both lie on one axis).
        """
        row, col = _principal(orientation)
        transpose = row in _LONG_AXIS
        if transpose:
            row, col = col, row
        return cls(transpose=transpose, flip_rows=col == "H", flip_cols=row == "R")

    @property
    def identity(self) -> bool:
        """True for a film already in the standard display."""
        return not (self.transpose or self.flip_rows or self.flip_cols)

    @property
    def stored_orientation(self) -> tuple[str, str]:
        """PatientOrientation of a film stored this way (the inverse of :meth:`from_orientation`)."""
        row = "R" if self.flip_cols else "L"
        col = "H" if self.flip_rows else "F"
        return (col, row) if self.transpose else (row, col)

    @property
    def description(self) -> str:
        """How the stored film differs from the standard display, in words."""
        return _DESCRIPTIONS[self.stored_orientation]

    @property
    def quarter_turn(self) -> bool:
        """True when the stored film's rows run along the patient's head-feet axis."""
        return self.transpose

    def to_display(self, array: np.ndarray) -> np.ndarray:
        """A stored-grid array ``(rows, cols, ...)`` in the standard display (a view, no copy)."""
        out = np.swapaxes(array, 0, 1) if self.transpose else array
        if self.flip_rows:
            out = out[::-1]
        if self.flip_cols:
            out = out[:, ::-1]
        return out

    def to_stored(self, array: np.ndarray) -> np.ndarray:
        """A standard-display array (labels, margins, probabilities) back on the stored grid (a view)."""
        out = array[:, ::-1] if self.flip_cols else array
        if self.flip_rows:
            out = out[::-1]
        return np.swapaxes(out, 0, 1) if self.transpose else out

    def display_shape(self, shape: Sequence[int]) -> tuple[int, int]:
        """``(rows, cols)`` of the standard display of a stored film of ``shape``."""
        rows, cols = int(shape[0]), int(shape[1])
        return (cols, rows) if self.transpose else (rows, cols)

    def display_spacing(self, spacing: Sequence[float] | None) -> tuple[float, float] | None:
        """``(row_mm, col_mm)`` in the standard display: swapped on a quarter turn; ``None`` stays ``None``."""
        if spacing is None:
            return None
        row_mm, col_mm = float(spacing[0]), float(spacing[1])
        return (col_mm, row_mm) if self.transpose else (row_mm, col_mm)

    def then(self, other: DisplayTransform) -> DisplayTransform:
        """The single transform doing ``self`` first and ``other`` after it."""
        probe = np.arange(6).reshape(2, 3)
        target = other.to_display(self.to_display(probe))
        for candidate in ALL_TRANSFORMS:
            result = candidate.to_display(probe)
            if result.shape == target.shape and (result == target).all():
                return candidate
        raise AssertionError("the eight display transforms are closed under composition")  # pragma: no cover

    def inverse(self) -> DisplayTransform:
        """The transform undoing this one (as a transform *to* the display)."""
        return next(t for t in ALL_TRANSFORMS if self.then(t).identity)

    def film(self, film):
        """The :class:`~medlung.film.Film` in the standard display: pixels turned, spacing swapped if needed.

        An identity transform returns ``film`` itself. The orientation of the
        result is :data:`STANDARD_DISPLAY` when ``film`` had one, else ``None``
        (still unknown); everything else (path, header, facts) is kept.
        """
        if self.identity:
            return film
        return dataclasses.replace(film, pixels=self.to_display(film.pixels),
                                   spacing=self.display_spacing(film.spacing),
                                   orientation=STANDARD_DISPLAY if film.orientation else None)


#: The eight ways a frontal film can be stored, as transforms to the standard display.
ALL_TRANSFORMS = tuple(DisplayTransform(t, r, c) for t in (False, True) for r in (False, True) for c in (False, True))
#: The eight frontal PatientOrientation values, standard display first.
ALL_ORIENTATIONS = tuple(t.stored_orientation for t in ALL_TRANSFORMS)
IDENTITY = DisplayTransform()

_DESCRIPTIONS = {
    ("L", "F"): "standard display",
    ("R", "F"): "mirrored left-right",
    ("L", "H"): "upside down (mirrored top-bottom)",
    ("R", "H"): "rotated 180 degrees",
    ("F", "R"): "rotated 90 degrees counter-clockwise",
    ("H", "L"): "rotated 90 degrees clockwise",
    ("F", "L"): "transposed (rotated 90 degrees and mirrored)",
    ("H", "R"): "anti-transposed (rotated 90 degrees and mirrored)",
}


def is_frontal(orientation: Sequence[str] | None) -> bool:
    """True when ``orientation`` is a usable frontal PatientOrientation (see :meth:`DisplayTransform.from_orientation`)."""
    if orientation is None:
        return False
    try:
        _principal(orientation)
    except ValueError:
        return False
    return True


def display_transform(orientation: Sequence[str] | None) -> DisplayTransform:
    """The transform to the standard display, lenient: identity when the orientation is absent or not frontal.

    A film without PatientOrientation is taken as stored in the standard
    display (the DICOM default for chest films and every PNG); a lateral or
    malformed value is left alone (the right/left split then says it assumed
    the standard display).
    """
    return DisplayTransform.from_orientation(orientation) if is_frontal(orientation) else IDENTITY


def _principal(orientation: Sequence[str]) -> tuple[str, str]:
    """The principal letters of a PatientOrientation, checked to be frontal."""
    if isinstance(orientation, str):
        orientation = orientation.split("\\")
    values = [str(v).strip().upper() for v in orientation]
    if len(values) != 2 or not all(values):
        raise ValueError(f"PatientOrientation must be two values (rows, columns) such as L\\F; got {orientation!r}.")
    row, col = values[0][0], values[1][0]
    for letter in (row, col):
        if letter not in _OPPOSITE:
            raise ValueError(f"PatientOrientation letters are L, R, H, F, A and P; got {orientation!r}.")
    if row in "AP" or col in "AP":
        raise ValueError(f"PatientOrientation {row}\\{col} has an anterior/posterior axis: not a frontal film "
                         "(a lateral or oblique view); only L/R with H/F can be put in the standard display.")
    if (row in _LATERAL_AXIS) == (col in _LATERAL_AXIS):
        raise ValueError(f"PatientOrientation {row}\\{col} puts rows and columns on one axis; "
                         "one value must be L or R and the other H or F.")
    return row, col
