"""The Film: one radiograph's pixels with its physical spacing and provenance."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from medlung.spacing import Spacing, format_spacing

#: Physical extent assumed for the longer side of a film without spacing, mm (a 43 cm / 17 inch detector).
NOMINAL_FIELD_MM = 430.0


def nominal_spacing(shape: Sequence[int]) -> tuple[float, float]:
    """Spacing (mm) the nominal rule assumes for a film of ``shape`` (rows, cols) without spacing."""
    side = NOMINAL_FIELD_MM / max(int(shape[0]), int(shape[1]))
    return side, side


def working_shape(
    shape: Sequence[int], spacing: Sequence[float] | None, working_spacing: float
) -> tuple[tuple[int, int], tuple[float, float]]:
    """Shape of a film on the working grid.

    Parameters
    ----------
    shape : sequence of int
        Native ``(rows, cols)``.
    spacing : sequence of float or None
        Native ``(row_mm, col_mm)``; ``None`` applies the nominal rule.
    working_spacing : float
        Working pixel size, mm.

    Returns
    -------
    shape : tuple of int
        ``(rows, cols)`` on the working grid (at least 1 each).
    spacing_used : tuple of float
        The native spacing used (given or nominal), mm.
    """
    used = tuple(float(s) for s in spacing) if spacing is not None else nominal_spacing(shape)
    target = tuple(max(1, round(n * s / working_spacing)) for n, s in zip(shape, used))
    return target, used  # type: ignore[return-value]


def preview_shape(shape: Sequence[int], max_side: int) -> tuple[int, int]:
    """``(rows, cols)`` of a picture of a film of ``shape`` shrunk (never enlarged) to at most ``max_side``."""
    scale = min(1.0, max_side / max(int(shape[0]), int(shape[1])))
    return max(1, round(int(shape[0]) * scale)), max(1, round(int(shape[1]) * scale))


@runtime_checkable
class PixelSource(Protocol):
    """Where a film's pixels come from when they are decoded only on demand (see :class:`Film`).

    ``shape`` is the native ``(rows, cols)``; ``native()`` decodes the whole
    film (float32, the same values a full decode gives); ``at_least(shape)``
    gives a float32 image with at least ``shape`` pixels on each axis (up to
    the native size): a reduced-resolution decode or an area average.
    """

    shape: tuple[int, int]

    def native(self) -> np.ndarray: ...

    def at_least(self, shape: Sequence[int], detail: str = "grid") -> np.ndarray: ...


class _Pixels:
    """The ``pixels`` field of a Film: an array, or a :class:`PixelSource` decoded on first access (then kept)."""

    def __set_name__(self, owner, name: str) -> None:
        self.name = "_" + name

    def __get__(self, film, owner=None):
        if film is None:
            raise AttributeError("pixels")  # no class-level default: the field stays required
        value = film.__dict__[self.name]
        if isinstance(value, np.ndarray):
            return value
        with film.__dict__["_lock"]:
            value = film.__dict__[self.name]
            if not isinstance(value, np.ndarray):
                film.__dict__[self.name + "_source"] = value
                value = film.__dict__[self.name] = value.native()
        return value

    def __set__(self, film, value) -> None:
        film.__dict__.setdefault("_lock", threading.Lock())
        film.__dict__[self.name] = value


class DerivedPixels:
    """A :class:`PixelSource` computed from another film's pixels by an exact array operation (a flip, a turn).

    Parameters
    ----------
    film : Film
        The film whose pixels are transformed.
    shape : (int, int)
        The shape of the result.
    apply : callable
        Array of ``film`` -> array of the result (works on any resolution).
    request : callable
        A shape wanted of the result -> the shape to ask of ``film``.
    """

    def __init__(
        self,
        film: Film,
        shape: Sequence[int],
        apply: Callable[[np.ndarray], np.ndarray],
        request: Callable[[Sequence[int]], Sequence[int]],
    ) -> None:
        self.film, self.apply, self.request = film, apply, request
        self.shape = (int(shape[0]), int(shape[1]))

    def native(self) -> np.ndarray:
        return np.ascontiguousarray(self.apply(self.film.pixels))

    def at_least(self, shape: Sequence[int], detail: str = "grid") -> np.ndarray:
        return np.ascontiguousarray(self.apply(self.film.pixels_at_least(self.request(shape), detail)))


@dataclass(frozen=True, eq=False)
class Film:
    """A chest radiograph ready for segmentation.

    Attributes
    ----------
    pixels : numpy.ndarray
        float32 array of shape ``(rows, cols)`` exactly as stored (never
        transposed), after the modality LUT and, when the file has one, the
        VOI LUT or first window, in MONOCHROME2 polarity (dense = bright).
        A reader may give a :class:`PixelSource` instead (``load_film(...,
        decode="reduced")``): the film then knows its :attr:`shape`, spacing
        and header without its native pixels, which are decoded on the first
        access to ``pixels`` (and kept); :meth:`pixels_at_least` gives a
        reduced-resolution image without decoding them.
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

    pixels: np.ndarray = _Pixels()  # type: ignore[assignment]
    spacing: Spacing | None  # type: ignore[misc]  # (pixels' descriptor reads as a default to mypy; it is none)
    spacing_source: str  # type: ignore[misc]
    photometric: str = "MONOCHROME2"
    orientation: tuple[str, str] | None = None
    path: Path | None = None
    dataset: Any = None
    value_range: tuple[float, float] = (0.0, 255.0)
    facts: dict = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        given = self.__dict__["_pixels"]
        if isinstance(given, PixelSource) and not isinstance(given, np.ndarray):
            if len(given.shape) != 2 or min(given.shape) < 1:
                raise ValueError(f"Film pixel source must have a 2-D (rows, cols) shape; got {given.shape}.")
        elif not isinstance(given, np.ndarray) or given.ndim != 2:
            raise ValueError(
                "Film.pixels must be a 2-D numpy array of shape (rows, cols) or a PixelSource; "
                f"got {type(given).__name__} with shape {getattr(given, 'shape', None)}."
            )
        if self.spacing is None and self.spacing_source != "unknown":
            raise ValueError("Film.spacing_source must be 'unknown' when Film.spacing is None.")
        if self.spacing is not None and self.spacing_source == "unknown":
            raise ValueError("Film.spacing_source must name the source of a known Film.spacing.")

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` in pixels (known without decoding the pixels)."""
        given = self.__dict__["_pixels"]
        return (int(given.shape[0]), int(given.shape[1]))

    @property
    def rows(self) -> int:
        """Number of rows (the image height) in pixels."""
        return self.shape[0]

    @property
    def cols(self) -> int:
        """Number of columns (the image width) in pixels."""
        return self.shape[1]

    @property
    def pixels_decoded(self) -> bool:
        """Whether the native pixels are in memory (always, unless the film was read with ``decode="reduced"``)."""
        return isinstance(self.__dict__["_pixels"], np.ndarray)

    @property
    def source(self) -> PixelSource | None:
        """The :class:`PixelSource` the pixels come (or came) from; ``None`` for a film built from an array."""
        given = self.__dict__["_pixels"]
        return self.__dict__.get("_pixels_source") if isinstance(given, np.ndarray) else given

    def pixels_at_least(self, shape: Sequence[int], detail: str = "grid") -> np.ndarray:
        """The film with at least ``shape`` ``(rows, cols)`` pixels on each axis (up to its native size), float32.

        The native :attr:`pixels` when they are decoded (a film read with ``decode="full"``, or after
        ``pixels`` was read); otherwise what the source gives without decoding them: a JPEG 2000 resolution
        level, a DCT-scaled JPEG, or an area average of the stored values (see :mod:`medlung.io.reduce`).
        Same grey values as :attr:`pixels` (LUTs, window, polarity), at a coarser grid; a film with a source
        always answers from it, so the answer does not depend on whether :attr:`pixels` was read before.
        ``detail="picture"`` (for a preview drawn at ``shape``, such as the overlay) accepts an image down to
        half of ``shape``: the cheaper resolution level of a JPEG 2000 film.
        """
        source = self.source
        return self.pixels if source is None else source.at_least(shape, detail)

    def prefetch(self, shapes: Sequence[Sequence[int]], detail: Sequence[str] | None = None) -> None:
        """Decode now what :meth:`pixels_at_least` will be asked for ``shapes`` (with ``detail`` each; default
        ``"grid"``), decoding the full film at most once."""
        source = self.source
        if source is not None and hasattr(source, "prefetch"):
            source.prefetch(shapes, detail)

    def replace(self, **changes) -> Film:
        """A copy with ``changes`` (as :func:`dataclasses.replace`), without decoding pixels that are not yet."""
        changes.setdefault("pixels", self.__dict__["_pixels"])
        return dataclasses.replace(self, **changes)

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
