"""Build small, valid DICOM radiographs for tests (pydicom only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (  # noqa: F401
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

CR = ComputedRadiographyImageStorage
DX_PRESENTATION = DigitalXRayImageStorageForPresentation
DX_PROCESSING = DigitalXRayImageStorageForProcessing
SECONDARY_CAPTURE = SecondaryCaptureImageStorage


def radiograph(
    pixels: np.ndarray,
    sop_class: str = CR,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    **attributes,
) -> Dataset:
    """A single-frame greyscale radiograph dataset with File Meta.

    Parameters
    ----------
    pixels : numpy.ndarray
        ``(rows, cols)`` uint8 or uint16 stored values.
    sop_class : str
        SOP Class UID.
    photometric : str
        MONOCHROME1 or MONOCHROME2.
    bits_stored : int, optional
        Defaults to the bits of ``pixels``' dtype.
    **attributes
        Extra attributes by keyword (PixelSpacing="0.1\\\\0.2", ...).
    """
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "TEST"
    ds.PatientName = "Test^Film"
    ds.Modality = {CR: "CR", SECONDARY_CAPTURE: "OT"}.get(sop_class, "DX")
    rows, cols = pixels.shape[:2]
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    bits_allocated = pixels.dtype.itemsize * 8
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored or bits_allocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds


def write(ds: Dataset, path: Path, transfer_syntax: str | None = None, file_meta: bool = True) -> Path:
    """Save ``ds`` to ``path``, compressed with ``transfer_syntax`` if given, optionally without File Meta."""
    if transfer_syntax is not None:
        ds.compress(transfer_syntax, ds.pixel_array if "PixelData" in ds else None)
    if file_meta:
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.file_meta = FileMetaDataset()
        ds.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=False)
    return path


def chest_pixels(rows: int = 512, cols: int = 512, seed: int = 0) -> np.ndarray:
    """A seeded 8-bit chest-like film ``(rows, cols)``: bright body, two dark lung fields, noise.

    For tests that need *a* film (loading, transforms, PNG, post-processing)
    rather than a real one; grey levels span about 40-245, and
    rows and columns differ, so a transposition shows.
    """
    rng = np.random.default_rng(seed)
    r, c = np.mgrid[0:rows, 0:cols] / np.array([rows, cols])[:, None, None]
    body = 170 + 60 * np.exp(-(((c - 0.5) / 0.12) ** 2))  # mediastinum brighter
    lungs = (((r - 0.45) / 0.3) ** 2 + ((c - 0.28) / 0.14) ** 2 < 1) | (
        ((r - 0.45) / 0.3) ** 2 + ((c - 0.72) / 0.14) ** 2 < 1
    )
    image = np.where(lungs, 60 + 40 * r, body) * (0.6 + 0.4 * (1 - r)) + rng.normal(0, 6, (rows, cols))
    return np.clip(image, 0, 255).astype(np.uint8)
