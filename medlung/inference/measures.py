"""Per-lung shape measures from a label map, for research scripts and the report (numpy/scikit-image, no torch).

For each lung (label 1 patient right, 2 patient left), on the film's native grid:

height, width
    Extent of the lung's bounding box along the columns (height: number of
    rows it spans x row_mm) and along the rows (width: columns x col_mm).
perimeter
    Length of the lung's outline (outer and hole boundaries), traced by
    marching squares (:func:`skimage.measure.find_contours` at level 0.5)
    with each step scaled by the row and column spacing, so anisotropic
    pixels are measured exactly.
convex_area
    Area of the convex hull of the lung's pixel squares (the corners of its
    boundary pixels, :class:`scipy.spatial.ConvexHull`).
solidity
    Lung area (pixel count x pixel area) / convex_area, 0-1.

Lengths are in mm and areas in mm² when the spacing is known, in pixels
otherwise (``unit`` says which). Bounding boxes and pixel counts come from
:func:`skimage.measure.regionprops`; its own ``perimeter`` supports isotropic
spacing only and its ``area_convex`` rasterises the hull over the bounding box
(about 30 s for a 4020x4892 film), hence the contour and hull above, which
take well under a second at that size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Measures per lung, in report order.
MEASURES = ("height", "width", "perimeter", "convex_area", "solidity")
#: Label of each lung in a label map.
LUNG_LABELS = {"right": 1, "left": 2}


def lung_measures(labels: np.ndarray, spacing: Sequence[float] | None = None) -> dict:
    """Shape measures of each lung of a label map.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(rows, cols)`` label map: 0 background, 1 patient right lung, 2 patient left lung.
    spacing : sequence of float, optional
        ``(row_mm, col_mm)``; ``None`` gives pixels.

    Returns
    -------
    dict
        ``{"unit": "mm" or "px", "right": {...}, "left": {...}}``; each lung
        holds :data:`MEASURES` (lengths in ``unit``, ``convex_area`` in
        ``unit``², ``solidity`` 0-1), or is ``None`` when the lung is absent.
    """
    from skimage.measure import regionprops

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D (rows, cols) label map, got shape {labels.shape}.")
    row_mm, col_mm = (float(spacing[0]), float(spacing[1])) if spacing is not None else (1.0, 1.0)
    result: dict = {"unit": "mm" if spacing is not None else "px"}
    if not np.issubdtype(labels.dtype, np.integer):
        labels = labels.astype(np.uint8)
    regions = {region.label: region for region in regionprops(labels)}
    for side, value in LUNG_LABELS.items():
        region = regions.get(value)
        if region is None:
            result[side] = None
            continue
        top, left, bottom, right = region.bbox
        mask = np.pad(region.image, 1)  # the lung in its bounding box, with a background margin
        convex = _convex_area(mask, row_mm, col_mm)
        area = float(region.area) * row_mm * col_mm
        result[side] = {
            "height": (bottom - top) * row_mm,
            "width": (right - left) * col_mm,
            "perimeter": _perimeter(mask, row_mm, col_mm),
            "convex_area": convex,
            "solidity": min(1.0, area / convex) if convex > 0 else 1.0,
        }
    return result


def union_extent(labels: np.ndarray, spacing: Sequence[float] | None = None) -> dict | None:
    """Height and width of the bounding box of both lungs together (the ``height`` / ``width`` of :data:`MEASURES`).

    Parameters
    ----------
    labels : numpy.ndarray
        ``(rows, cols)`` label map; every non-zero pixel is lung.
    spacing : sequence of float, optional
        ``(row_mm, col_mm)``; ``None`` gives pixels.

    Returns
    -------
    dict or None
        ``{"height": ..., "width": ...}`` in mm (pixels without spacing); ``None`` when there is no lung.
    """
    lungs = np.asarray(labels) > 0
    rows, cols = np.flatnonzero(lungs.any(axis=1)), np.flatnonzero(lungs.any(axis=0))
    if rows.size == 0:
        return None
    row_mm, col_mm = (float(spacing[0]), float(spacing[1])) if spacing is not None else (1.0, 1.0)
    return {
        "height": float(rows[-1] - rows[0] + 1) * row_mm,
        "width": float(cols[-1] - cols[0] + 1) * col_mm,
    }


def report_fields(measures: dict) -> dict:
    """Report columns of a :func:`lung_measures` result: ``shape_unit``, ``right_height`` ... ``left_solidity``."""
    fields = {"shape_unit": measures["unit"]}
    for side in LUNG_LABELS:
        values = measures.get(side) or {}
        for name in MEASURES:
            value = values.get(name)
            fields[f"{side}_{name}"] = None if value is None else round(float(value), 4)
    return fields


def _perimeter(mask: np.ndarray, row_mm: float, col_mm: float) -> float:
    from skimage.measure import find_contours

    total = 0.0
    for contour in find_contours(mask.astype(np.uint8), 0.5):
        steps = np.diff(contour, axis=0) * (row_mm, col_mm)
        total += float(np.hypot(steps[:, 0], steps[:, 1]).sum())
    return total


def _convex_area(mask: np.ndarray, row_mm: float, col_mm: float) -> float:
    from scipy import ndimage
    from scipy.spatial import ConvexHull

    boundary = mask & ~ndimage.binary_erosion(mask)
    rows, cols = np.nonzero(boundary)
    corners = np.concatenate(
        [np.stack([rows + dr, cols + dc], axis=1) for dr in (-0.5, 0.5) for dc in (-0.5, 0.5)]
    ).astype(float)
    corners *= (row_mm, col_mm)
    return float(ConvexHull(corners).volume)  # in 2-D, "volume" is the area
