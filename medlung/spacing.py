"""Pixel spacing: validation, parsing and the names of where it came from.

Spacing is always ``(row_mm, col_mm)``: the distance between the centres of
adjacent rows, then adjacent columns, in millimetres -- the order of DICOM
PixelSpacing (0028,0030). It is never swapped, never guessed and never zero.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from medlung.errors import InvalidSpacingError

#: Where a film's spacing came from, in the order DICOM sources are tried.
SPACING_SOURCES = (
    "PixelSpacing",
    "ImagerPixelSpacing",
    "NominalScannedPixelSpacing",
    "png-pHYs",
    "itk-header",
    "user",
    "unknown",
)

Spacing = tuple[float, float]


def check_spacing(value: object) -> tuple[Spacing | None, str | None]:
    """Check that ``value`` is a usable spacing.

    Parameters
    ----------
    value : object
        Anything a header may hold: a sequence of two numbers, numeric
        strings, a single number, text, ``None``.

    Returns
    -------
    spacing : tuple of float or None
        ``(row_mm, col_mm)`` when valid, else ``None``.
    problem : str or None
        Why the value is not a spacing, else ``None``.
    """
    if value is None:
        return None, "absent"
    values: list[Any]  # header values of any type: float() below decides what is numeric
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        values = [value]
    else:
        values = list(value)
    if len(values) != 2:
        return None, f"has {len(values)} value(s) {_show(values)}, expected 2 (row, column)"
    try:
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return None, f"is not numeric {_show(values)}"
    if any(positive_number(n) is None for n in numbers):
        return None, f"is not positive and finite {_show(values)}"
    return (numbers[0], numbers[1]), None


def positive_number(value: object) -> float | None:
    """``value`` as a positive finite float (a spacing, a magnification factor), else ``None``."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def parse_user_spacing(text: str | float | Iterable[float]) -> Spacing:
    """Parse a spacing given by a user: ``0.143``, ``"0.143"`` or ``"0.14,0.15"``.

    Parameters
    ----------
    text : str, float or sequence of float
        One value (isotropic) or two values, row then column, in mm.

    Returns
    -------
    tuple of float
        ``(row_mm, col_mm)``.

    Raises
    ------
    InvalidSpacingError
        If the value is not one or two positive finite numbers.
    """
    parts: list[str | float]
    if isinstance(text, str):
        parts = [p.strip() for p in re.split(r"[,xX\\]", text.strip())] if text.strip() else []
    elif isinstance(text, (int, float)):
        parts = [text]
    else:
        parts = list(text)
    given = parts
    if len(parts) == 1:
        parts = parts * 2
    spacing, problem = check_spacing(parts)
    if spacing is None:
        raise InvalidSpacingError(
            f"spacing {text!r} {_user_problem(given) or problem}",
            hint="Give one value in mm (e.g. 0.5) or row,col in mm (e.g. 0.14,0.15).",
        )
    return spacing


def _user_problem(parts: list) -> str | None:
    """What is wrong with the values a user typed, in their words (``'abc' is not a number``), or None."""
    for part in parts:
        try:
            number = float(part)
        except (TypeError, ValueError):
            if not str(part).strip():
                return "has an empty value; write one number in mm, or two separated by a comma (row,col)"
            return f"is not a number of mm ({str(part).strip()!r} is not a number)"
        if not math.isfinite(number) or number <= 0:
            return f"is not a spacing ({str(part).strip()!r} mm: a spacing is a positive number of mm)"
    if len(parts) > 2:
        return f"has {len(parts)} values; a spacing has one (square pixels) or two (row,col)"
    return None


def format_spacing(spacing: Spacing | None) -> str:
    """Format a spacing for people: ``'0.0875 x 0.0875 mm (row x col)'`` or ``'unknown'``."""
    if spacing is None:
        return "unknown"
    return f"{spacing[0]:g} x {spacing[1]:g} mm (row x col)"


def _show(values: list) -> str:
    return "(" + "\\".join(str(v) for v in values) + ")"
