"""The Film: one radiograph's pixels with its physical spacing and provenance."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medlung.spacing import Spacing, format_spacing


@dataclass(frozen=True, eq=False)
class Film:
    """A chest radiograph ready for segmentation.

    Attributes
    ----------
    pixels : numpy.ndarray
        float32 array of shape ``(rows, cols)`` exactly as stored (never
        transposed), after the modality LUT and, when the file has one, the
        VOI LUT or first window, in MONOCHROME2 polarity (dense = bright).
    spacing : tuple of float or None
        ``(row_mm, col_mm)`` in millimetres, DICOM PixelSpacing order;
        ``None`` when unknown.
    spacing_source : str
        One of :data:`medlung.spacing.SPACING_SOURCES`.
    photometric : str
        The stored photometric interpretation (``MONOCHROME1``,
        ``MONOCHROME2``); PNG/JPEG films are ``MONOCHROME2``.
    orientation : tuple of str or None
        DICOM PatientOrientation (direction of the rows, direction of the
        columns), e.g. ``("L", "F")`` for a standard PA film; ``None`` when
        the file does not say.
    path : pathlib.Path or None
        The file the film was read from.
    dataset : pydicom.Dataset or None
        The DICOM header, without its pixel data (``None`` for PNG/JPEG).
    value_range : tuple of float
        The nominal range ``(low, high)`` of :attr:`pixels` (e.g. 0-1023 for
        a 10-bit film), used for inversion and intensity scaling.
    facts : dict
        Facts for ``medlung info``: format, bits stored, transfer syntax,
        modality, view, laterality, the LUTs applied, inversion.
    warnings : tuple of str
        Problems found while reading that did not stop it.
    """

    pixels: np.ndarray
    spacing: Spacing | None
    spacing_source: str
    photometric: str = "MONOCHROME2"
    orientation: tuple[str, str] | None = None
    path: Path | None = None
    dataset: Any = None
    value_range: tuple[float, float] = (0.0, 255.0)
    facts: dict = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.pixels, np.ndarray) or self.pixels.ndim != 2:
            raise ValueError(
                "Film.pixels must be a 2-D numpy array of shape (rows, cols); "
                f"got {type(self.pixels).__name__} with shape {getattr(self.pixels, 'shape', None)}."
            )
        if self.spacing is None and self.spacing_source != "unknown":
            raise ValueError("Film.spacing_source must be 'unknown' when Film.spacing is None.")
        if self.spacing is not None and self.spacing_source == "unknown":
            raise ValueError("Film.spacing_source must name the source of a known Film.spacing.")

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` in pixels."""
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])

    @property
    def rows(self) -> int:
        """Number of rows (the image height) in pixels."""
        return int(self.pixels.shape[0])

    @property
    def cols(self) -> int:
        """Number of columns (the image width) in pixels."""
        return int(self.pixels.shape[1])

    @property
    def calibrated(self) -> bool:
        """True when the spacing is known, so areas can be given in cm²."""
        return self.spacing is not None

    def _repr_png_(self) -> bytes:
        """A thumbnail for Jupyter (:func:`medlung.notebook.film_png`)."""
        from medlung.notebook import film_png

        return film_png(self)

    def _repr_html_(self) -> str:
        """The thumbnail and the film's facts for Jupyter (:func:`medlung.notebook.film_html`)."""
        from medlung.notebook import film_html

        return film_html(self)

    def describe(self) -> dict:
        """Facts about the film as a JSON-ready dict (used by ``medlung info``)."""
        return {
            "file": str(self.path) if self.path else None,
            "rows": self.rows,
            "cols": self.cols,
            "spacing_mm": list(self.spacing) if self.spacing else None,
            "spacing": format_spacing(self.spacing),
            "spacing_source": self.spacing_source,
            "photometric": self.photometric,
            "orientation": list(self.orientation) if self.orientation else None,
            "value_range": list(self.value_range),
            **self.facts,
            "warnings": list(self.warnings),
        }
