"""Masks with spacing: PNG (0/255 union, pHYs), NIfTI and MetaImage label maps (spacing in the header).

NIfTI convention: array axis 0 is the film's row axis, axis 1 its column
axis, and the affine is ``diag(row_mm, col_mm, 1, 1)``; a third axis of
length 1 makes it a 3-D volume most viewers open. When the film's spacing is
unknown the affine is the identity and the spatial unit is left unknown
(``xyzt_units`` 0), so no reader takes the pixels for millimetres.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import cast

import numpy as np

from medlung.atomic import write_atomically
from medlung.io.png import save_png
from medlung.spacing import Spacing

#: zlib settings of the mask PNG and the NIfTI's gzip. A mask is long runs of 0 and 255 (or 0, 1, 2): zlib's
#: run-length strategy is faster and smaller than the default one there (4020x4892 film, benchmarks/fullres.py
#: --parts: PNG 0.06 against 0.09 CPU s, 27 against 30 kB; gzip 0.04 against 0.08 CPU s, 29 against 39 kB),
#: and the level barely matters with it (the same size from 1 to 9).
MASK_ZLIB_LEVEL = 6
MASK_ZLIB_STRATEGY = zlib.Z_RLE
#: Bytes before a single-file NIfTI-1's voxels: the 348-byte header and 4 bytes saying "no extensions".
_NIFTI_VOX_OFFSET = 352
#: Side of the square tiles the NIfTI's column-major copy is made in, pixels (a whole-array transpose of a
#: 4020x4892 uint8 map costs 0.12 CPU s, tile by tile 0.02: the tiles stay in the cache).
_TILE = 512


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
    return write_atomically(
        path, lambda tmp: save_png(tmp, mask, spacing, MASK_ZLIB_LEVEL, MASK_ZLIB_STRATEGY), overwrite
    )


def write_labels_nifti(path: str | Path, labels: np.ndarray, spacing: Spacing | None, overwrite: bool = False) -> Path:
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

    labels = np.asarray(labels, dtype=np.uint8)
    affine = np.eye(4)
    if spacing is not None:
        affine[0, 0], affine[1, 1] = spacing
    image = nibabel.Nifti1Image(labels[:, :, None], affine)
    image.header.set_data_dtype(np.uint8)
    if spacing is not None:
        image.header.set_xyzt_units(xyz="mm")
    else:
        image.header.set_xyzt_units(xyz="unknown")
        image.header["descrip"] = b"medlung: spacing unknown"
    image.header["intent_name"] = b"labels"
    # the bytes nibabel's to_bytes() gives (tested), without its 0.14 CPU s whole-array column-major copy
    image.update_header()
    header = image.header
    header.set_data_offset(_NIFTI_VOX_OFFSET)
    header.set_slope_inter(1.0, 0.0)
    # gzip container, no file name and mtime 0 (zlib's header): the same bytes every run
    compressor = zlib.compressobj(MASK_ZLIB_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS, 8, MASK_ZLIB_STRATEGY)
    chunks = [compressor.compress(header.binaryblock + bytes(_NIFTI_VOX_OFFSET - header.sizeof_hdr))]
    chunks += [compressor.compress(block) for block in _column_major_blocks(labels)]
    chunks.append(compressor.flush())
    data = b"".join(chunks)
    return write_atomically(path, lambda tmp: tmp.write_bytes(data), overwrite)


def _column_major_blocks(array: np.ndarray, tile: int = _TILE):
    """The bytes of a 2-D array in column-major (NIfTI) order, a band of ``tile`` columns at a time."""
    rows, cols = array.shape
    for left in range(0, cols, tile):
        band = np.empty((min(tile, cols - left), rows), array.dtype)
        for top in range(0, rows, tile):
            band[:, top : top + tile] = array[top : top + tile, left : left + tile].T
        yield band


def read_nifti_spacing(path: str | Path) -> Spacing | None:
    """The ``(row_mm, col_mm)`` of a NIfTI written by :func:`write_labels_nifti` (None when unknown)."""
    import nibabel

    # a .nii(.gz) loads as a Nifti1Image (or its subclass Nifti2Image); load() is typed for any image
    header = cast("nibabel.Nifti1Image", nibabel.load(str(path))).header
    if header.get_xyzt_units()[0] != "mm":
        return None
    zooms = header.get_zooms()
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
