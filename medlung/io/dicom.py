"""Reading DICOM radiographs (CR, DX, Secondary Capture) into a :class:`Film`.

The grey-scale pipeline follows DICOM PS3.3 C.11 and C.8.11.6:
stored values -> Modality LUT (rescale or LUT Sequence) -> VOI LUT Sequence
or the first window, when present -> polarity to MONOCHROME2 (MONOCHROME1 is
inverted; Presentation LUT Shape INVERSE inverts once more).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, cast

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    SecondaryCaptureImageStorage,
)

from medlung.errors import FilmWarning, MedlungError, SpacingWarning, UnreadableFileError, UnsupportedImageError
from medlung.film import Film
from medlung.io.dicom_file import DicomFile, drop_large_elements, read_dicom_file
from medlung.io.dicom_pixels import DicomPixels
from medlung.spacing import check_spacing, positive_number

#: SOP classes medlung reads as films, with the short name used in reports.
FILM_SOP_CLASSES: dict[str, str] = {
    ComputedRadiographyImageStorage: "CR",
    DigitalXRayImageStorageForPresentation: "DX for presentation",
    DigitalXRayImageStorageForProcessing: "DX for processing",
    SecondaryCaptureImageStorage: "Secondary Capture",
    MultiFrameGrayscaleByteSecondaryCaptureImageStorage: "Multi-frame Grayscale Byte Secondary Capture",
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage: "Multi-frame Grayscale Word Secondary Capture",
}

_IMAGE_HINT = "Give a single-frame greyscale CR, DX or Secondary Capture chest film."


def read_dicom_dataset(path: str | Path, max_bytes: int | None = None) -> Dataset:
    """Read a DICOM file, with or without File Meta, and make it decodable.

    The file must be a regular file; a deflated data set is inflated to at
    most ``max_bytes`` (see :mod:`medlung.io.dicom_file`). Elements larger
    than 1 MiB are read from the file only when accessed.

    Parameters
    ----------
    path : str or Path
        The file.
    max_bytes : int, optional
        Refuse a larger file, or a deflated data set inflating to more.

    Returns
    -------
    pydicom.Dataset
        The dataset; when the file had no File Meta, one is added with the
        Transfer Syntax the data set was encoded in.

    Raises
    ------
    UnreadableFileError
        If the file is not DICOM, is empty or is truncated inside its header.
    """
    return _read(Path(path), max_bytes).dataset


def _read(path: Path, max_bytes: int | None, film: bool = False) -> DicomFile:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            source = read_dicom_file(path, max_bytes, film=film)
    except MedlungError:
        raise
    except Exception as exc:  # pydicom raises many types on garbage input
        raise UnreadableFileError(
            f"not a readable DICOM file ({type(exc).__name__}: {exc})",
            path,
            "Check that the file is complete and is DICOM, PNG or JPEG.",
        ) from None
    ds = source.dataset
    if "SOPClassUID" not in ds and "PixelData" not in ds:
        raise UnreadableFileError(
            "not a DICOM file (no SOP Class UID and no pixel data)",
            path,
            "Check that the file is complete and is DICOM, PNG or JPEG.",
        )
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    if "TransferSyntaxUID" not in meta:
        implicit, little = ds.original_encoding
        if implicit is None:
            implicit, little = True, True
        meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        )
    return source


def read_dicom_film(
    path: str | Path, dataset: Dataset | None = None, max_pixels: int | None = None, decode: str = "full"
) -> Film:
    """Read a DICOM radiograph into a :class:`Film`.

    Parameters
    ----------
    path : str or Path
        The file.
    dataset : pydicom.Dataset, optional
        The already-read dataset of ``path`` (with its pixel data).
    max_pixels : int, optional
        Refuse a declared Rows x Columns, or a frame whose own header declares more, above this, before decoding.
    decode : str
        ``"full"``: the native pixels are decoded now. ``"reduced"``: nothing is decoded yet; the film's
        pixels come from a :class:`~medlung.io.dicom_pixels.DicomPixels` source (native pixels on first
        access, reduced resolutions through :meth:`Film.pixels_at_least`).

    Returns
    -------
    Film
        Pixels in MONOCHROME2 polarity, spacing with its source.

    Raises
    ------
    UnreadableFileError
        Not DICOM, truncated, or pixel data that cannot be decoded.
    UnsupportedImageError
        Not a single-frame greyscale radiograph (SEG, SR, PR, colour,
        multi-frame, CT ...), or a frame whose own header disagrees with the DICOM header.
    """
    from medlung.io.dicom_file import max_dataset_bytes

    path = Path(path)
    if dataset is None:
        limit = max_dataset_bytes(max_pixels) if max_pixels is not None else None
        source = _read(path, limit, film=True)
    else:
        source = DicomFile(dataset, path, None, ())
    ds = source.dataset
    notes: list[str] = []
    sop_name = _check_is_film(ds, path, notes)
    _check_declared_size(ds, path, max_pixels)
    notes += drop_large_elements(ds)
    pixels = DicomPixels(source, max_pixels)
    chain = pixels.chain
    notes += chain.notes
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    presentation_shape = str(ds.get("PresentationLUTShape", "") or "").strip().upper()

    spacing_notes: list[str] = []
    spacing, spacing_source = dicom_spacing(ds, spacing_notes)
    orientation = _patient_orientation(ds)
    for note in notes:
        warnings.warn(f"{path}: {note}", FilmWarning, stacklevel=2)
    for note in spacing_notes:
        warnings.warn(f"{path}: {note}", SpacingWarning, stacklevel=2)
    notes += spacing_notes

    film = Film(
        pixels=pixels.native() if decode == "full" else cast(Any, pixels),
        spacing=spacing,
        spacing_source=spacing_source,
        photometric=photometric,
        orientation=orientation,
        path=path,
        dataset=ds,
        value_range=(float(chain.value_range[0]), float(chain.value_range[1])),
        facts={
            "format": "DICOM",
            "sop_class": sop_name,
            "modality": str(ds.get("Modality", "") or "") or None,
            "transfer_syntax": _transfer_syntax_name(ds),
            "has_file_meta": bool(getattr(ds, "preamble", None) is not None),
            "bits_allocated": int(ds.get("BitsAllocated", 0) or 0) or None,
            "bits_stored": int(ds.get("BitsStored", 0) or 0) or None,
            "view_position": str(ds.get("ViewPosition", "") or "") or None,
            "laterality": str(ds.get("ImageLaterality", "") or ds.get("Laterality", "") or "") or None,
            "body_part": str(ds.get("BodyPartExamined", "") or "") or None,
            "modality_lut": chain.modality_lut,
            "voi": chain.voi,
            "presentation_lut_shape": presentation_shape or None,
            "inverted": chain.inverted,
        },
        warnings=tuple(notes),
    )
    if "PixelData" in ds:
        del ds.PixelData  # keep the header only; the pixels live in the Film (or its source)
    return film


def dicom_spacing(ds: Dataset, notes: list[str] | None = None) -> tuple[tuple[float, float] | None, str]:
    """Find a DICOM film's pixel spacing, in the order docs/design.md ("Spacing") gives.

    PixelSpacing, then ImagerPixelSpacing (divided by
    EstimatedRadiographicMagnificationFactor when that is valid), then
    NominalScannedPixelSpacing. Present but unusable values (zero, negative,
    NaN, one value, text) are reported in ``notes`` and skipped.

    Parameters
    ----------
    ds : pydicom.Dataset
        The header.
    notes : list of str, optional
        Receives one line per skipped attribute.

    Returns
    -------
    spacing : tuple of float or None
        ``(row_mm, col_mm)``.
    source : str
        The attribute used, or ``"unknown"``.
    """
    notes = [] if notes is None else notes
    for keyword in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        if keyword not in ds:
            continue
        spacing, problem = check_spacing(_raw_value(ds, keyword))
        if spacing is None:
            notes.append(f"{keyword} {problem}: ignored, spacing taken from the next source")
            continue
        if keyword == "ImagerPixelSpacing" and "EstimatedRadiographicMagnificationFactor" in ds:
            raw = _raw_value(ds, "EstimatedRadiographicMagnificationFactor")
            factor = positive_number(raw)
            if factor is None:
                notes.append(
                    f"EstimatedRadiographicMagnificationFactor {raw!r} is not a positive number: "
                    "ImagerPixelSpacing used without magnification correction"
                )
            else:
                spacing = (spacing[0] / factor, spacing[1] / factor)
        return spacing, keyword
    return None, "unknown"


def _raw_value(ds: Dataset, keyword: str):
    """The value of ``keyword``, or its raw text when pydicom cannot convert it."""
    try:
        value = ds[keyword].value
    except Exception:
        raw = ds.get_item(keyword)
        value = getattr(raw, "value", None)
        if isinstance(value, bytes):
            value = value.decode("latin-1", "replace").strip().split("\\")
    if hasattr(value, "__iter__") and not isinstance(value, (str, bytes)):
        return list(value)
    return value


def _check_is_film(ds: Dataset, path: Path, notes: list[str]) -> str:
    sop = str(ds.get("SOPClassUID", "") or "")
    if sop and sop not in FILM_SOP_CLASSES:
        name = UID(sop).name if UID(sop).is_valid else sop
        raise UnsupportedImageError(f"is a {name} object, not a radiograph", path, _IMAGE_HINT)
    if "PixelData" not in ds:
        raise UnreadableFileError(
            "has no pixel data (the file may be truncated)", path, "Export the film again from the PACS."
        )
    if not sop:
        notes.append("no SOP Class UID: read as a radiograph")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise UnsupportedImageError(f"multi-frame image ({frames} frames)", path, _IMAGE_HINT)
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise UnsupportedImageError(
            f"colour image (PhotometricInterpretation {photometric or 'absent'}, {samples} samples per pixel)",
            path,
            _IMAGE_HINT,
        )
    return FILM_SOP_CLASSES.get(sop, "unknown SOP class")


def _check_declared_size(ds: Dataset, path: Path, max_pixels: int | None) -> None:
    """Rows, Columns and bit depth must be sane, and the film not larger than ``max_pixels``."""
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        allocated = int(ds.BitsAllocated)
        stored = int(ds.get("BitsStored", allocated))
    except (AttributeError, TypeError, ValueError):
        raise UnreadableFileError(
            "Rows, Columns or BitsAllocated missing or not a number",
            path,
            "The header is damaged; export the film again.",
        ) from None
    if rows < 1 or cols < 1:
        raise UnsupportedImageError(f"declares an empty image ({rows} rows x {cols} columns)", path, _IMAGE_HINT)
    if allocated not in (8, 16, 32) or not 1 <= stored <= allocated:
        raise UnsupportedImageError(
            f"BitsAllocated {allocated} / BitsStored {stored} is not a greyscale film", path, _IMAGE_HINT
        )
    if max_pixels is not None and rows * cols > max_pixels:
        raise UnsupportedImageError(
            f"declares {rows} x {cols} pixels, more than the limit of {max_pixels:,}",
            path,
            "Raise --max-pixels if the film is real.",
        )


def _patient_orientation(ds: Dataset) -> tuple[str, str] | None:
    value = ds.get("PatientOrientation")
    if not value:
        return None
    parts = [str(v).strip().upper() for v in (value if not isinstance(value, str) else value.split("\\"))]
    if len(parts) != 2 or not all(parts):
        return None
    return parts[0], parts[1]


def _transfer_syntax_name(ds: Dataset) -> str:
    uid = UID(str(ds.file_meta.TransferSyntaxUID))
    return f"{uid.name} ({uid})" if uid.name != str(uid) else str(uid)
