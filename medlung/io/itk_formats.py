"""Films and label maps in ITK formats (MetaImage ``.mha``/``.mhd``, NRRD, NIfTI) through SimpleITK.

Challenge data for chest radiographs (NODE21, grand-challenge.org pipelines)
ships as MetaImage. ITK orders everything x first: ``GetSpacing()`` is
``(x, y)`` = ``(col_mm, row_mm)`` and ``GetSize()`` is ``(cols, rows)``, while
the pixel array (``GetArrayFromImage``) is ``(rows, cols)``, as a Film's is.
medlung's spacing is ``(row_mm, col_mm)``, so the order is swapped here and
nowhere else.

Spacing: the header's, source ``"itk-header"``. ITK writers put
``1 1`` in every header that was given no spacing, so exactly 1 mm x 1 mm is
read as "not said" (like a PNG's 72/96 dpi software default): the spacing is
unknown, with a warning; give ``--spacing`` when it is real.

Direction: ITK's identity (also its default) says nothing about the patient;
any other direction gives the film's PatientOrientation (LPS: +x left,
+y posterior, +z head), so a mirrored film keeps the patient's right and
left.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from medlung.errors import SpacingWarning, UnreadableFileError, UnsupportedImageError
from medlung.film import Film
from medlung.spacing import Spacing, check_spacing

#: File name endings read and written through SimpleITK.
ITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr", ".nii", ".nii.gz")

#: What ITK writes when no spacing was set, (x, y) mm: not a spacing.
_ITK_DEFAULT_SPACING = (1.0, 1.0)

#: LPS letters of each physical axis, for the positive and negative direction.
_LPS_LETTERS = (("L", "R"), ("P", "A"), ("H", "F"))


def is_itk_file(path: str | Path) -> bool:
    """True when the file name ends in one of :data:`ITK_SUFFIXES` (case-insensitive)."""
    return Path(path).name.lower().endswith(ITK_SUFFIXES)


def read_itk_film(path: str | Path, max_pixels: int | None = None) -> Film:
    """Read a 2-D film (or a 3-D image of one slice) from an ITK format, with its spacing and direction.

    Parameters
    ----------
    path : str or Path
        ``.mha``, ``.mhd``, ``.nrrd``, ``.nhdr``, ``.nii`` or ``.nii.gz``.
    max_pixels : int, optional
        Refuse a declared size above this before reading the pixels.

    Returns
    -------
    Film
        Pixels float32 ``(rows, cols)``; spacing ``(row_mm, col_mm)`` from the
        header (source ``"itk-header"``), or unknown; orientation from the
        direction cosines when they are not the identity.

    Raises
    ------
    UnreadableFileError
        If SimpleITK cannot read the file.
    UnsupportedImageError
        For a volume of several slices, a colour or vector image, or too many pixels.
    """
    import SimpleITK as sitk

    path = Path(path)
    check_data_files(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else ""
        raise UnreadableFileError(
            f"could not be read as an ITK image ({first})",
            path,
            "Check that the file is complete and is a MetaImage, NRRD or NIfTI film.",
        ) from None
    size = tuple(int(n) for n in reader.GetSize())
    if len(size) not in (2, 3) or (len(size) == 3 and size[2] != 1):
        raise UnsupportedImageError(
            f"holds a {len(size)}-D image of size {' x '.join(map(str, size))}, not one film",
            path,
            "Give a 2-D film (or a 3-D image of a single slice).",
        )
    if reader.GetNumberOfComponents() != 1:
        raise UnsupportedImageError(
            f"has {reader.GetNumberOfComponents()} components per pixel, not a grey film",
            path,
            "Convert it to one grey channel first.",
        )
    cols, rows = size[0], size[1]
    if max_pixels is not None and rows * cols > max_pixels:
        raise UnsupportedImageError(
            f"declares {rows} x {cols} pixels, more than the limit of {max_pixels:,}",
            path,
            "Raise --max-pixels if the film is real.",
        )
    return film_from_itk(reader.Execute(), path, facts={"format": _io_name(reader)})


#: How much of a header is read to find the data files it names, bytes.
_HEADER_BYTES = 1 << 16


def data_files(path: Path) -> list[str]:
    """The detached data files a MetaImage (``ElementDataFile``) or NRRD (``data file``) header names.

    ``LOCAL`` (MetaImage data after the header) and a NRRD without the field name none. A ``LIST`` names the
    files on the lines after it; a pattern (``%d`` in the name) counts as that name.
    """
    from medlung.io.files import open_regular

    with open_regular(path) as handle:
        text = handle.read(_HEADER_BYTES).decode("latin-1")
    lines = text.splitlines()
    for index, line in enumerate(lines):
        key, sep, value = line.partition("=" if not line.lower().startswith(("data file:", "datafile:")) else ":")
        name = key.strip().lower().replace(" ", "")
        if not sep or name not in ("elementdatafile", "datafile"):
            continue
        value = value.strip()
        if name == "elementdatafile" and value.upper() == "LOCAL":
            return []
        words = value.split()
        if words and words[0].upper() == "LIST":
            return [item.strip() for item in lines[index + 1 :] if item.strip()]
        if name == "datafile" and len(words) > 1 and "%" in words[0]:  # NRRD: "data file: pattern min max step"
            return [words[0]]
        return [value]
    return []


def check_data_files(path: Path) -> None:
    """Refuse a header whose data files lie outside its folder or are not regular files (no ``/etc/passwd``).

    Raises
    ------
    UnreadableFileError
        Naming the data file and why.
    """
    from medlung.io.files import detached_file

    if not path.name.lower().endswith((".mha", ".mhd", ".nhdr", ".nrrd")):
        return
    for name in data_files(path):
        detached_file(path, name, regular="%" not in name)  # a pattern names files: its folder is checked


def film_from_itk(image, path: str | Path | None = None, facts: dict | None = None) -> Film:
    """A :class:`~medlung.film.Film` from an image of SimpleITK or of the ``itk`` package.

    Parameters
    ----------
    image : SimpleITK.Image or itk.Image
        A 2-D grey image, or 3-D with one slice.
    path : str or Path, optional
        The file it came from.
    facts : dict, optional
        Extra facts for ``medlung info``.

    Returns
    -------
    Film
        Spacing ``(row_mm, col_mm)`` from the image's ``(x, y)`` spacing (source
        ``"itk-header"``), orientation from its direction cosines.

    Raises
    ------
    UnsupportedImageError
        For several slices or several components per pixel.
    """
    if type(image).__module__.startswith("SimpleITK"):
        import SimpleITK as sitk

        raw = sitk.GetArrayFromImage(image)
        components = image.GetNumberOfComponentsPerPixel()
        pixel_type = image.GetPixelIDTypeAsString()
    else:  # the itk package (extra [itk])
        import itk

        raw = itk.array_from_image(image)
        components = image.GetNumberOfComponentsPerPixel()
        pixel_type = str(raw.dtype)
    size = tuple(int(n) for n in reversed(raw.shape))  # x first, as ITK gives sizes
    dimension = len(np.asarray(image.GetSpacing()))
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(dimension, dimension)
    spacing_xy = tuple(float(v) for v in np.asarray(image.GetSpacing())[:2])
    if components != 1:
        raise UnsupportedImageError(
            f"has {components} components per pixel, not a grey film", path, "Convert it to one grey channel first."
        )
    if raw.ndim == 3 and raw.shape[0] == 1:
        raw = raw[0]
    if raw.ndim != 2:
        raise UnsupportedImageError(
            f"holds an image of size {' x '.join(map(str, size))}, not one film",
            path,
            "Give a 2-D film (or a 3-D image of a single slice).",
        )
    pixels = raw.astype(np.float32)
    value_range = (
        (0.0, 255.0) if raw.dtype == np.uint8 else (float(pixels.min(initial=0)), float(pixels.max(initial=0)))
    )
    notes: list[str] = []
    spacing = _spacing(spacing_xy, notes)
    for note in notes:
        warnings.warn(f"{path or 'ITK image'}: {note}", SpacingWarning, stacklevel=3)
    return Film(
        pixels=pixels,
        spacing=spacing,
        spacing_source="itk-header" if spacing else "unknown",
        photometric="MONOCHROME2",
        orientation=_orientation(direction),
        path=Path(path) if path is not None else None,
        dataset=None,
        value_range=value_range,
        facts={
            "format": "ITK",
            **(facts or {}),
            "pixel_type": pixel_type,
            "dimension": dimension,
            "direction": [round(float(v), 6) for v in direction.ravel()],
            "bits_stored": 8 * raw.dtype.itemsize,
        },
        warnings=tuple(notes),
    )


def _io_name(reader) -> str:
    """``"MetaImage"``, ``"Nrrd"``, ``"Nifti"``: the ImageIO SimpleITK chose."""
    name = reader.GetImageIO() if hasattr(reader, "GetImageIO") else ""
    return name.replace("ImageIO", "") or "ITK"


def _spacing(xy: tuple, notes: list[str]) -> Spacing | None:
    """``(row_mm, col_mm)`` from ITK's ``(x, y)`` spacing, or None (with a note) when it is not one."""
    if tuple(float(v) for v in xy) == _ITK_DEFAULT_SPACING:
        notes.append(
            "header spacing is 1 x 1 mm, what ITK writes when no spacing is set: spacing unknown; "
            "give --spacing if it is real"
        )
        return None
    spacing, problem = check_spacing((xy[1], xy[0]))
    if problem:
        notes.append(f"header spacing {problem}: spacing unknown")
    return spacing


def _orientation(direction: np.ndarray) -> tuple[str, str] | None:
    """PatientOrientation (along a row, down a column) from ITK direction cosines; None for the identity."""
    if np.allclose(direction, np.eye(len(direction))):
        return None
    letters = []
    for axis in (0, 1):  # index x (along a row), index y (down a column)
        column = direction[:, axis]
        dominant = int(np.argmax(np.abs(column)))
        letters.append(_LPS_LETTERS[dominant][0 if column[dominant] > 0 else 1])
    return letters[0], letters[1]


def labels_to_itk(labels: np.ndarray, spacing: Spacing | None):
    """A label map as an ``itk.Image`` (the ``itk`` package, extra ``[itk]``) on the film's grid.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(rows, cols)`` label map (0 background, 1 patient right lung, 2 patient left lung).
    spacing : tuple of float or None
        ``(row_mm, col_mm)``; becomes ITK's ``(x, y)`` = ``(col_mm, row_mm)``. ``None`` leaves ITK's 1 x 1.

    Returns
    -------
    itk.Image
        2-D, unsigned char, identity direction.

    Raises
    ------
    ImportError
        With how to install the extra, when ``itk`` is not installed.
    """
    try:
        import itk
    except ImportError:
        raise ImportError("LungMasks.to_itk needs the itk package: pip install 'medlung[itk]'.") from None
    image = itk.image_from_array(np.ascontiguousarray(labels, dtype=np.uint8))
    if spacing is not None:
        image.SetSpacing((float(spacing[1]), float(spacing[0])))
    return image
