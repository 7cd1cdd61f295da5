"""Masks with spacing: PNG (0/255 union, pHYs), NIfTI and MetaImage label maps (spacing in the header).

NIfTI convention: array axis 0 is the film's row axis, axis 1 its column
axis, and the affine is ``diag(row_mm, col_mm, 1, 1)``; a third axis of
length 1 makes it a 3-D volume most viewers open. When the film's spacing is
unknown the affine is the identity and the spatial unit is left unknown
(``xyzt_units`` 0), so no reader takes the pixels for millimetres.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from medlung.io.png import save_png
from medlung.spacing import Spacing
from medlung.writers.atomic import write_atomically


def write_lungs_png(path: str | Path, labels: np.ndarray, spacing: Spacing | None, overwrite: bool = False) -> Path:
    """Write both lungs as an 8-bit 0/255 PNG on the native grid, spacing in pHYs.

    Parameters
    ----------
    path : str or Path
        Destination (``<stem>_lungs.png``).
    labels : numpy.ndarray
        ``(rows, cols)`` label map; every non-zero value is lung.
    spacing : tuple of float or None
        ``(row_mm, col_mm)``; ``None`` writes no pHYs chunk.
    overwrite : bool
        Replace an existing file.
    """
    mask = (labels > 0).view(np.uint8) * np.uint8(255)  # uint8 throughout: no 8-byte-per-pixel temporary
    return write_atomically(path, lambda tmp: save_png(tmp, mask, spacing), overwrite)


def write_labels_nifti(path: str | Path, labels: np.ndarray, spacing: Spacing | None,
                       overwrite: bool = False) -> Path:
    """Write a label map (0 background, 1 right lung, 2 left lung) as ``.nii.gz`` with its spacing.

    Parameters
    ----------
    path : str or Path
        Destination (``<stem>_labels.nii.gz``).
    labels : numpy.ndarray
        ``(rows, cols)`` uint8 label map.
    spacing : tuple of float or None
        ``(row_mm, col_mm)``; ``None`` leaves the unit unknown.
    overwrite : bool
        Replace an existing file.
    """
    import nibabel

    affine = np.eye(4)
    if spacing is not None:
        affine[0, 0], affine[1, 1] = spacing
    image = nibabel.Nifti1Image(np.asarray(labels, dtype=np.uint8)[:, :, None], affine)
    image.header.set_data_dtype(np.uint8)
    if spacing is not None:
        image.header.set_xyzt_units(xyz="mm")
    else:
        image.header.set_xyzt_units(xyz="unknown")
        image.header["descrip"] = b"medlung: spacing unknown"
    image.header["intent_name"] = b"labels"
    data = gzip.compress(image.to_bytes(), compresslevel=6, mtime=0)  # no timestamp: same bytes every run
    return write_atomically(path, lambda tmp: tmp.write_bytes(data), overwrite)


def read_nifti_spacing(path: str | Path) -> Spacing | None:
    """The ``(row_mm, col_mm)`` of a NIfTI written by :func:`write_labels_nifti` (None when unknown)."""
    import nibabel

    image = nibabel.load(str(path))
    if image.header.get_xyzt_units()[0] != "mm":
        return None
    zooms = image.header.get_zooms()
    return float(zooms[0]), float(zooms[1])


def write_labels_mha(path: str | Path, labels: np.ndarray, spacing: Spacing | None, overwrite: bool = False) -> Path:
    """Write a label map (0 background, 1 right lung, 2 left lung) as a compressed MetaImage with its spacing.

    The form grand-challenge.org pipelines exchange segmentations in: one
    ``.mha`` on the film's grid, ITK order (``DimSize`` = cols rows,
    ``ElementSpacing`` = col_mm row_mm), written by SimpleITK.

    Parameters
    ----------
    path : str or Path
        Destination (``<stem>_labels.mha``).
    labels : numpy.ndarray
        ``(rows, cols)`` uint8 label map.
    spacing : tuple of float or None
        ``(row_mm, col_mm)``; ``None`` leaves ITK's 1 x 1, which
        :func:`medlung.io.itk_formats.read_itk_film` reads back as unknown.
    overwrite : bool
        Replace an existing file.
    """
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(labels, dtype=np.uint8))
    if spacing is not None:
        image.SetSpacing((float(spacing[1]), float(spacing[0])))

    def write(temporary: Path) -> None:
        # ITK picks one file (.mha) or header + data (.mhd/.zraw) from the name: write as .mha, then take its place
        named = temporary.with_name(temporary.name + ".mha")
        try:
            sitk.WriteImage(image, str(named), useCompression=True)
            os.replace(named, temporary)
        finally:
            named.unlink(missing_ok=True)

    return write_atomically(path, write, overwrite)
