"""Reading DICOM radiographs (CR, DX, Secondary Capture) into a :class:`Film`.

The grey-scale pipeline follows DICOM PS3.3 C.11 and C.8.11.6:
stored values -> Modality LUT (rescale or LUT Sequence) -> VOI LUT Sequence
or the first window, when present -> polarity to MONOCHROME2 (MONOCHROME1 is
inverted; Presentation LUT Shape INVERSE inverts once more).
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut, apply_windowing
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

from medlung.errors import FilmWarning, PixelDecodeError, SpacingWarning, UnreadableFileError, UnsupportedImageError
from medlung.film import Film
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


def read_dicom_dataset(path: str | Path) -> Dataset:
    """Read a DICOM file, with or without File Meta, and make it decodable.

    Parameters
    ----------
    path : str or Path
        The file.

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
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True)
    except Exception as exc:  # pydicom raises many types on garbage input
        raise UnreadableFileError(
            f"not a readable DICOM file ({type(exc).__name__}: {exc})",
            path,
            "Check that the file is complete and is DICOM, PNG or JPEG.",
        ) from None
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
    return ds


def read_dicom_film(path: str | Path, dataset: Dataset | None = None, max_pixels: int | None = None) -> Film:
    """Read a DICOM radiograph into a :class:`Film`.

    Parameters
    ----------
    path : str or Path
        The file.
    dataset : pydicom.Dataset, optional
        The already-read dataset of ``path``.
    max_pixels : int, optional
        Refuse a declared Rows x Columns above this before decoding.

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
        multi-frame, CT ...).
    """
    path = Path(path)
    ds = read_dicom_dataset(path) if dataset is None else dataset
    notes: list[str] = []
    sop_name = _check_is_film(ds, path, notes)
    _check_declared_size(ds, path, max_pixels)
    stored = _decode_pixels(ds, path)

    pixels = apply_modality_lut(stored, ds)
    modality_lut = _describe_modality_lut(ds)
    value_range = _modality_range(ds)

    voi, voi_description = _apply_voi(pixels, ds, notes)
    if voi is not None:
        pixels, value_range = voi
    pixels = _as_float(pixels, value_range)
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    presentation_shape = str(ds.get("PresentationLUTShape", "") or "").strip().upper()
    # MONOCHROME1 is displayed inverted. Presentation LUT Shape INVERSE also asks
    # for an inverted display; DX (PS3.3 C.8.11.6.1.2) *requires* INVERSE with
    # MONOCHROME1, where both name the same single inversion: inverting twice
    # would show bone dark (checked on dx_image.dcm).
    inverted = photometric == "MONOCHROME1" or presentation_shape == "INVERSE"
    if inverted:
        pixels = (value_range[0] + value_range[1]) - pixels

    spacing_notes: list[str] = []
    spacing, source = dicom_spacing(ds, spacing_notes)
    orientation = _patient_orientation(ds)
    for note in notes:
        warnings.warn(f"{path}: {note}", FilmWarning, stacklevel=2)
    for note in spacing_notes:
        warnings.warn(f"{path}: {note}", SpacingWarning, stacklevel=2)
    notes += spacing_notes

    del ds.PixelData  # keep the header only; the pixels live in the Film
    return Film(
        pixels=np.ascontiguousarray(pixels, dtype=np.float32),
        spacing=spacing,
        spacing_source=source,
        photometric=photometric,
        orientation=orientation,
        path=path,
        dataset=ds,
        value_range=(float(value_range[0]), float(value_range[1])),
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
            "modality_lut": modality_lut,
            "voi": voi_description,
            "presentation_lut_shape": presentation_shape or None,
            "inverted": inverted,
        },
        warnings=tuple(notes),
    )


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


def _decode_pixels(ds: Dataset, path: Path) -> np.ndarray:
    _use_fastest_j2k_decoder()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = ds.pixel_array
    except Exception as exc:
        raise PixelDecodeError(
            f"pixel data could not be decoded ({_transfer_syntax_name(ds)}; {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})",
            path,
            "The file may be truncated; for compressed films check that pylibjpeg, "
            "pylibjpeg-libjpeg and pylibjpeg-openjpeg are installed.",
        ) from None
    if pixels.ndim != 2:
        raise UnsupportedImageError(f"pixel array has shape {pixels.shape}, expected (rows, cols)", path, _IMAGE_HINT)
    return pixels


@functools.cache
def _use_fastest_j2k_decoder() -> bool:
    """JPEG 2000 through imagecodecs' multi-threaded OpenJPEG when installed (bit-identical; see medlung.io.j2k)."""
    from medlung.io import j2k

    return j2k.register()


def _stored_range(ds: Dataset) -> tuple[float, float]:
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)) or 16)
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        return float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    return 0.0, float(2**bits - 1)


def _lut_range(item: Dataset) -> tuple[float, float]:
    return 0.0, float(2 ** int(item.LUTDescriptor[2]) - 1)


def _as_float(pixels: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """The pixels as floats for the film: float32 straight away when that is exact, else float64.

    Integers of at most 16 bits (no rescale, LUT or window applied) and an
    integer value range are exact in float32 (24-bit significand), and so is
    the MONOCHROME1 inversion ``low + high - value`` on them: converting
    once to float32 gives the same film as the float64 route, in a third of
    the time and memory for a 4020x4892 film.
    """
    if pixels.dtype.kind in "iu" and pixels.dtype.itemsize <= 2 and all(float(v).is_integer() for v in value_range):
        return pixels.astype(np.float32)
    return pixels.astype(np.float64, copy=False)


def _modality_range(ds: Dataset) -> tuple[float, float]:
    """Nominal output range of the Modality LUT."""
    if ds.get("ModalityLUTSequence"):
        return _lut_range(ds.ModalityLUTSequence[0])
    low, high = _stored_range(ds)
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    ends = sorted((low * slope + intercept, high * slope + intercept))
    return ends[0], ends[1]


def _describe_modality_lut(ds: Dataset) -> str | None:
    if ds.get("ModalityLUTSequence"):
        return "Modality LUT Sequence"
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and (float(slope) != 1.0 or float(intercept or 0) != 0.0):
        return f"rescale slope {float(slope):g} intercept {float(intercept or 0):g}"
    return None


def _apply_voi(pixels: np.ndarray, ds: Dataset, notes: list[str]):
    """Apply the VOI LUT Sequence or the first window; return ((pixels, range), description)."""
    if ds.get("VOILUTSequence"):
        try:
            if pixels.dtype.kind == "f":
                if not np.array_equal(pixels, np.round(pixels)):
                    raise ValueError("the Modality LUT output is not integer, so it cannot index a LUT")
                pixels = pixels.astype(np.int64)
            out = apply_voi_lut(pixels, ds, index=0, prefer_lut=True)
            return (out.astype(np.float64, copy=False), _lut_range(ds.VOILUTSequence[0])), "VOI LUT Sequence"
        except Exception as exc:
            notes.append(f"VOI LUT Sequence unusable ({exc}): ignored")
    if "WindowCenter" in ds and "WindowWidth" in ds:
        try:
            center = _first(ds.WindowCenter)
            width = _first(ds.WindowWidth)
            if not (np.isfinite(center) and np.isfinite(width) and width >= 1):
                raise ValueError(f"center {center:g}, width {width:g}")
            out = apply_windowing(pixels, ds, index=0)
            return (out.astype(np.float64, copy=False), _modality_range(ds)), f"window {center:g}/{width:g}"
        except Exception as exc:
            notes.append(f"window unusable ({exc}): ignored")
    return None, None


def _first(value) -> float:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0]
    return float(value)


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
