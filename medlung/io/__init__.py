"""Reading films from disk: :func:`load_film` picks the reader from the file's content."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from medlung.defaults import DEFAULT_MAX_PIXELS  # refused before decoding (re-exported here)
from medlung.errors import MedlungError, SpacingWarning, UnreadableFileError
from medlung.film import Film
from medlung.spacing import format_spacing, parse_user_spacing

__all__ = ["DEFAULT_MAX_PIXELS", "load_film", "sniff_format"]

_RASTER_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def sniff_format(path: str | Path) -> str:
    """Tell a file's format: ``"DICOM"``, ``"PNG"``, ``"JPEG"``, ``"TIFF"`` or ``"ITK"``.

    The first bytes decide, except for the ITK formats (MetaImage, NRRD,
    NIfTI; see :mod:`medlung.io.itk_formats`), which go by their name
    (``.mha``, ``.mhd``, ``.nrrd``, ``.nhdr``, ``.nii``, ``.nii.gz``).
    Files that are none of these are treated as DICOM, which may lack its
    128-byte preamble and File Meta (ACR-NEMA style).

    Raises
    ------
    UnreadableFileError
        If the path does not exist, is a folder, or is empty.
    """
    path = Path(path)
    if not path.exists():
        raise UnreadableFileError("file not found", path, "Check the path.")
    if path.is_dir():
        raise UnreadableFileError("is a folder, not a file", path, "Give the films inside it.")
    with open(path, "rb") as handle:
        head = handle.read(132)
    if not head:
        raise UnreadableFileError("file is empty", path, "Export the film again.")
    if head[128:132] == b"DICM":  # DICOM wins even when its preamble is also a TIFF or PNG header
        return "DICOM"
    for signature, name in _RASTER_SIGNATURES:
        if head.startswith(signature):
            return name
    from medlung.io.itk_formats import is_itk_file

    if is_itk_file(path) or head.startswith(b"NRRD000"):
        return "ITK"
    return "DICOM"


def load_film(
    path: str | Path,
    spacing: str | float | Sequence[float] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Film:
    """Read a chest film (DICOM, PNG, JPEG, TIFF, or MetaImage/NRRD/NIfTI) with its pixel spacing.

    Parameters
    ----------
    path : str or Path
        The film.
    spacing : float, str or tuple of float, optional
        Spacing in mm given by the user, ``(row_mm, col_mm)`` or one
        isotropic value. It replaces the file's spacing (with a warning if
        the file has a different one) and its source becomes ``"user"``.
    max_pixels : int
        Refuse films whose declared rows x cols exceed this, before decoding.

    Returns
    -------
    Film
        Pixels ``(rows, cols)`` as stored, float32, MONOCHROME2 polarity.

    Raises
    ------
    medlung.errors.MedlungError
        With a one-line message naming the file when it cannot be used.
    """
    from medlung.io.dicom import read_dicom_film
    from medlung.io.itk_formats import read_itk_film
    from medlung.io.png import read_raster_film

    user_spacing = None if spacing is None else parse_user_spacing(spacing)
    fmt = sniff_format(path)
    try:
        readers: dict[str, Callable[..., Film]] = {"DICOM": read_dicom_film, "ITK": read_itk_film}
        reader = readers.get(fmt, read_raster_film)
        film = reader(path, max_pixels=max_pixels)
    except MedlungError:
        raise
    except Exception as exc:  # a broken file must never escape as a crash (incl. MemoryError, RecursionError)
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise UnreadableFileError(
            f"could not be read ({type(exc).__name__}: {first})",
            path,
            "The file is damaged or not a film; export it again.",
        ) from None
    if user_spacing is None:
        return film
    notes = list(film.warnings)
    if film.spacing is not None and not _close(film.spacing, user_spacing):
        note = (
            f"the file's spacing {format_spacing(film.spacing)} from {film.spacing_source} "
            f"is replaced by the given {format_spacing(user_spacing)}"
        )
        warnings.warn(f"{path}: {note}", SpacingWarning, stacklevel=2)
        notes.append(note)
    return replace(film, spacing=user_spacing, spacing_source="user", warnings=tuple(notes))


def _close(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return all(abs(x - y) <= 1e-6 * max(abs(x), abs(y)) for x, y in zip(a, b))
