"""Reading films from disk: :func:`load_film` picks the reader from the file's content."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

from medlung.defaults import DEFAULT_MAX_PIXELS  # refused before decoding (re-exported here)
from medlung.errors import MedlungError, SpacingWarning, UnreadableFileError
from medlung.film import Film
from medlung.spacing import format_spacing, parse_user_spacing

__all__ = ["DECODE_MODES", "DEFAULT_MAX_PIXELS", "load_film", "sniff_format"]

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
        If the path does not exist, is a folder, a FIFO, a device or a socket (only regular files are
        read, and opening never blocks: :func:`medlung.io.files.open_regular`), or is empty.
    """
    from medlung.io.files import open_regular

    path = Path(path)
    if path.is_dir():
        raise UnreadableFileError("is a folder, not a file", path, "Give the films inside it.")
    with open_regular(path) as handle:
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


#: How :func:`load_film` decodes DICOM pixels.
DECODE_MODES = ("full", "reduced", "header")


def load_film(
    path: str | Path,
    spacing: str | float | Sequence[float] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    decode: str = "full",
    working_spacing: float | None = None,
    preview_side: int | None = None,
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
        Refuse films whose declared rows x cols (or whose compressed frame's own header) exceed this,
        before decoding.
    decode : str
        ``"full"`` (default): the native pixels are decoded now. ``"reduced"``: a DICOM film's native
        pixels are not decoded; what the network and the overlay need is decoded now, at reduced
        resolution (:meth:`Film.pixels_at_least`, :mod:`medlung.io.reduce`), and ``film.pixels`` decodes
        the native pixels on first access. ``"header"``: nothing is decoded yet (the checks run).
        PNG, JPEG, TIFF and ITK films are always decoded in full.
    working_spacing : float, optional
        With ``decode="reduced"``: the working grid the film will be segmented on, mm (default: the
        shipped model's, :data:`medlung.plans.DEFAULT_WORKING_SPACING`); what it needs is decoded now.
    preview_side : int, optional
        With ``decode="reduced"``: also decode now what a picture of at most this many pixels on its
        longest side needs (the overlay's).

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

    if decode not in DECODE_MODES:
        raise ValueError(f"decode must be one of {', '.join(DECODE_MODES)}, got {decode!r}.")
    user_spacing = None if spacing is None else parse_user_spacing(spacing)
    fmt = sniff_format(path)
    try:
        if fmt == "DICOM":
            film = read_dicom_film(path, max_pixels=max_pixels, decode="full" if decode == "full" else "reduced")
        else:
            film = {"ITK": read_itk_film}.get(fmt, read_raster_film)(path, max_pixels=max_pixels)
        if user_spacing is not None:
            film = _with_spacing(film, user_spacing, path)
        if decode == "reduced" and not film.pixels_decoded:
            shapes = _needed(film, working_spacing, preview_side)
            film.prefetch(shapes, ["grid", "picture"][: len(shapes)])
    except MedlungError:
        raise
    except Exception as exc:  # a broken file must never escape as a crash (incl. MemoryError, RecursionError)
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise UnreadableFileError(
            f"could not be read ({type(exc).__name__}: {first})",
            path,
            "The file is damaged or not a film; export it again.",
        ) from None
    return film


def _needed(film: Film, working_spacing: float | None, preview_side: int | None) -> list[tuple[int, int]]:
    """The reduced shapes a segmentation (and its overlay) will ask of ``film``."""
    from medlung.film import preview_shape, working_shape
    from medlung.plans import DEFAULT_WORKING_SPACING

    target, _ = working_shape(film.shape, film.spacing, working_spacing or DEFAULT_WORKING_SPACING)
    shapes = [target]
    if preview_side:
        shapes.append(preview_shape(film.shape, preview_side))
    return shapes


def _with_spacing(film: Film, user_spacing: tuple[float, float], path: str | Path) -> Film:
    notes = list(film.warnings)
    if film.spacing is not None and not _close(film.spacing, user_spacing):
        note = (
            f"the file's spacing {format_spacing(film.spacing)} from {film.spacing_source} "
            f"is replaced by the given {format_spacing(user_spacing)}"
        )
        warnings.warn(f"{path}: {note}", SpacingWarning, stacklevel=3)
        notes.append(note)
    return film.replace(spacing=user_spacing, spacing_source="user", warnings=tuple(notes))


def _close(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return all(abs(x - y) <= 1e-6 * max(abs(x), abs(y)) for x, y in zip(a, b))
