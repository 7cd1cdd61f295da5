"""Reading lung masks and label maps (PNG, NIfTI) on a film's grid."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np

from medlung.errors import UnreadableFileError


def load_label_map(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a mask or label map as uint8 ``(rows, cols)``.

    Parameters
    ----------
    path : str or Path
        A DICOM-SEG (read with :func:`medlung.io.seg.read_dicom_seg`: 1 right
        lung, 2 left lung), a PNG (any bit depth; 0/255 masks stay 0/255,
        label maps keep their values) or NIfTI (``.nii``/``.nii.gz``; medlung writes axis 0 = rows).
    shape : tuple of int, optional
        The film's ``(rows, cols)``. A NIfTI whose first two axes are
        ``(cols, rows)`` (written by tools using x = column) is transposed.

    Returns
    -------
    numpy.ndarray
        uint8 values as stored.

    Raises
    ------
    UnreadableFileError
        If the file cannot be read or is not 2-D.
    """
    path = Path(path)
    name = path.name.lower()
    if _is_dicom(path):
        from medlung.io.seg import read_dicom_seg

        return read_dicom_seg(path)[0]
    try:
        if name.endswith((".nii", ".nii.gz")):
            import nibabel

            # a .nii(.gz) loads as a Nifti1Image (or its subclass Nifti2Image); load() is typed for any image
            array = np.asanyarray(cast("nibabel.Nifti1Image", nibabel.load(str(path))).dataobj)
            array = array.reshape(array.shape[:2]) if array.ndim > 2 and np.prod(array.shape[2:]) == 1 else array
            if shape is not None and tuple(array.shape) != tuple(shape) and tuple(array.shape[::-1]) == tuple(shape):
                array = array.T
        else:
            from PIL import Image

            with Image.open(path) as image:
                array = np.asarray(image.convert("L") if image.mode not in ("L", "I;16", "I", "1") else image)
    except FileNotFoundError:
        raise UnreadableFileError("mask not found", path, "Check the path.") from None
    except Exception as exc:
        raise UnreadableFileError(
            f"mask could not be read ({type(exc).__name__}: {exc})", path, "Give a PNG or NIfTI mask."
        ) from None
    if array.ndim != 2:
        raise UnreadableFileError(f"mask has shape {array.shape}, expected (rows, cols)", path, "Give a 2-D mask.")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.max(initial=0) > 255:
        array = (array > 0).astype(np.uint8)
    return np.ascontiguousarray(array.astype(np.uint8))


def _is_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError:
        return False
