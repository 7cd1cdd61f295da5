"""Overlap and surface-distance metrics for binary lung masks, in mm when the spacing is known.

All functions take two 2-D masks on the same grid, ``(rows, cols)``; any
non-zero value is foreground. Distances use the film's pixel spacing
``(row_mm, col_mm)`` (DICOM PixelSpacing order, so row distances are
multiplied by ``row_mm`` and column distances by ``col_mm``: anisotropic
pixels are handled exactly). Without a spacing, distances are in pixels and
:func:`distance_unit` says ``"px"``.

The computations are MONAI's: Dice and IoU through
:func:`monai.metrics.compute_dice` / :func:`monai.metrics.compute_iou`, the
surface distances through :func:`monai.metrics.utils.get_edge_surface_distance`
(the routine behind :func:`monai.metrics.compute_hausdorff_distance` and
:func:`monai.metrics.compute_average_surface_distance`; it is called once per
pair of masks and both distances are derived from its result with MONAI's
formulas, so the values equal those functions' values).

Definitions
-----------
Dice
    ``2 |P ∩ T| / (|P| + |T|)``, 0-1.
IoU
    ``|P ∩ T| / |P ∪ T|`` (Jaccard), 0-1.
HD95
    95th percentile Hausdorff distance: the larger of the two directed 95th
    percentiles of the distances from each boundary pixel of one mask to the
    nearest boundary pixel of the other (MONAI's ``percentile=95``).
ASSD
    Average symmetric surface distance: the mean of the boundary-to-boundary
    distances of both directions pooled together (MONAI's
    ``compute_average_surface_distance(symmetric=True)``).

Empty masks
-----------
* Both masks empty: the structure is absent and correctly found absent:
  Dice 1, IoU 1, HD95 0, ASSD 0.
* Exactly one mask empty: Dice 0, IoU 0, and the distances are ``inf`` (the
  distance to an empty set is infinite; it is not a number that can be
  averaged). :func:`summarize` therefore computes its statistics over the
  finite values only and counts the infinite ones in ``n_inf``; such films
  still appear among the worst by Dice.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import cast

import numpy as np

from medlung.errors import InvalidSpacingError, MaskMismatchError

__all__ = [
    "DISTANCE_METRICS",
    "METRICS",
    "STRUCTURES",
    "assd",
    "compare_masks",
    "dice",
    "dice_iou_pooled",
    "distance_unit",
    "hd95",
    "iou",
    "summarize",
    "surface_distances",
]

#: Metric names, in report order; the last two are distances (unit: mm or px).
METRICS = ("dice", "iou", "hd95", "assd")
DISTANCE_METRICS = ("hd95", "assd")
#: Structures scored: both lungs together, then each lung (the suffix of their metric names; "" = both).
STRUCTURES = (("", "both lungs"), ("_right", "patient right lung"), ("_left", "patient left lung"))


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice coefficient of two binary masks.

    Parameters
    ----------
    pred, truth : numpy.ndarray
        ``(rows, cols)`` masks on the same grid; non-zero is foreground.

    Returns
    -------
    float
        0-1 (dimensionless). 1.0 when both masks are empty, 0.0 when exactly
        one is.
    """
    p, t = _pair(pred, truth)
    empty = _empty_rule(p, t)
    if empty is not None:
        return empty
    from monai.metrics import compute_dice

    value = compute_dice(_tensor(p), _tensor(t), include_background=True, ignore_empty=False)
    return float(value.item())


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union (Jaccard index) of two binary masks.

    Parameters
    ----------
    pred, truth : numpy.ndarray
        ``(rows, cols)`` masks on the same grid; non-zero is foreground.

    Returns
    -------
    float
        0-1 (dimensionless). 1.0 when both masks are empty, 0.0 when exactly
        one is.
    """
    p, t = _pair(pred, truth)
    empty = _empty_rule(p, t)
    if empty is not None:
        return empty
    from monai.metrics import compute_iou

    value = compute_iou(_tensor(p), _tensor(t), include_background=True, ignore_empty=False)
    return float(value.item())


def dice_iou_pooled(prediction, target, where=None) -> tuple[float, float]:
    """Dice and IoU of two binary tensors of any shape, pooled over all their pixels (training's running metric).

    Training and validation call this on a whole batch on the working grid
    (on the GPU when there is one), so the counts are pooled over the batch
    rather than averaged per film as :func:`dice` and :func:`iou` are.

    Parameters
    ----------
    prediction, target : torch.Tensor
        Same shape; non-zero is foreground.
    where : torch.Tensor, optional
        Same shape; only these pixels count (supervised, not ignored).

    Returns
    -------
    dice, iou : float
        0-1 each; 1.0 when both are empty.
    """
    p, t = prediction.bool(), target.bool()
    if where is not None:
        p, t = p & where.bool(), t & where.bool()
    inter = (p & t).sum().item()
    total = p.sum().item() + t.sum().item()
    union = (p | t).sum().item()
    return (2 * inter / total if total else 1.0), (inter / union if union else 1.0)


def surface_distances(
    pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Boundary-to-boundary distances in both directions.

    Parameters
    ----------
    pred, truth : numpy.ndarray
        ``(rows, cols)`` masks on the same grid; non-zero is foreground.
    spacing : sequence of two float, optional
        ``(row_mm, col_mm)``. ``None``: distances in pixels.

    Returns
    -------
    pred_to_truth : numpy.ndarray
        For each boundary pixel of ``pred``, the distance to the nearest
        boundary pixel of ``truth`` (mm, or px without spacing); ``inf`` when
        ``truth`` is empty.
    truth_to_pred : numpy.ndarray
        The same from ``truth`` to ``pred``.
        Both are empty arrays when both masks are empty.
    """
    p, t = _pair(pred, truth)
    checked = _check_spacing(spacing)
    if not p.any() and not t.any():
        return np.zeros(0), np.zeros(0)
    if not p.any() or not t.any():
        return (np.full(int(p.any()), np.inf), np.full(int(t.any()), np.inf))
    import torch
    from monai.metrics.utils import get_edge_surface_distance

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, distances, _ = get_edge_surface_distance(
            torch.from_numpy(p),
            torch.from_numpy(t),
            distance_metric="euclidean",
            spacing=None if checked is None else list(checked),
            symmetric=True,
            warn_empty=False,
        )
    forward, backward = cast("tuple[torch.Tensor, torch.Tensor]", distances)  # symmetric=True: both directions
    return (
        np.asarray(forward.cpu().numpy(), dtype=np.float64),
        np.asarray(backward.cpu().numpy(), dtype=np.float64),
    )


def hd95(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """95th percentile symmetric Hausdorff distance.

    Parameters
    ----------
    pred, truth : numpy.ndarray
        ``(rows, cols)`` masks on the same grid; non-zero is foreground.
    spacing : sequence of two float, optional
        ``(row_mm, col_mm)``. ``None``: the result is in pixels.

    Returns
    -------
    float
        mm (px without spacing). 0.0 when both masks are empty, ``inf`` when
        exactly one is.
    """
    return _hd95(*surface_distances(pred, truth, spacing))


def assd(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """Average symmetric surface distance.

    Parameters
    ----------
    pred, truth : numpy.ndarray
        ``(rows, cols)`` masks on the same grid; non-zero is foreground.
    spacing : sequence of two float, optional
        ``(row_mm, col_mm)``. ``None``: the result is in pixels.

    Returns
    -------
    float
        mm (px without spacing). 0.0 when both masks are empty, ``inf`` when
        exactly one is.
    """
    return _assd(*surface_distances(pred, truth, spacing))


def compare_masks(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float] | None = None) -> dict:
    """All metrics of one pair of masks (the surface distances are computed once).

    Parameters
    ----------
    pred, truth : numpy.ndarray
        ``(rows, cols)`` masks on the same grid; non-zero is foreground.
    spacing : sequence of two float, optional
        ``(row_mm, col_mm)``. ``None``: distances in pixels.

    Returns
    -------
    dict
        ``dice``, ``iou`` (0-1), ``hd95``, ``assd`` (in ``unit``) and
        ``unit`` (``"mm"`` or ``"px"``); see the module notes for empty masks.
    """
    p, t = _pair(pred, truth)
    forward, backward = surface_distances(p, t, spacing)
    return {
        "dice": dice(p, t),
        "iou": iou(p, t),
        "hd95": _hd95(forward, backward),
        "assd": _assd(forward, backward),
        "unit": distance_unit(spacing),
    }


def distance_unit(spacing: Sequence[float] | None) -> str:
    """``"mm"`` when a spacing is given, else ``"px"``."""
    return "px" if spacing is None else "mm"


def summarize(values: Sequence[float]) -> dict:
    """Robust summary of one metric over many films.

    Parameters
    ----------
    values : sequence of float
        One value per film; NaN (not computed) and ``inf`` (one mask empty)
        are allowed.

    Returns
    -------
    dict
        ``n`` (finite values used), ``n_inf``, ``n_nan``, and over the finite
        values ``mean``, ``median``, ``p5``, ``p95`` (5th and 95th
        percentiles, linear interpolation), ``std`` (population), ``min`` and
        ``max``; these are ``None`` when no value is finite.
    """
    array = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    finite = array[np.isfinite(array)]
    summary: dict[str, float | None] = {
        "n": int(finite.size),
        "n_inf": int(np.isinf(array).sum()),
        "n_nan": int(np.isnan(array).sum()),
    }
    if finite.size:
        summary.update(
            mean=float(finite.mean()),
            median=float(np.median(finite)),
            p5=float(np.percentile(finite, 5)),
            p95=float(np.percentile(finite, 95)),
            std=float(finite.std()),
            min=float(finite.min()),
            max=float(finite.max()),
        )
    else:
        summary.update(mean=None, median=None, p5=None, p95=None, std=None, min=None, max=None)
    return summary


def _hd95(forward: np.ndarray, backward: np.ndarray) -> float:
    if forward.size == 0 and backward.size == 0:
        return 0.0
    if np.isinf(forward).any() or np.isinf(backward).any() or forward.size == 0 or backward.size == 0:
        return math.inf
    import torch

    # MONAI: torch.quantile (linear) of each direction, then the larger one.
    return float(max(torch.quantile(torch.from_numpy(d), 0.95).item() for d in (forward, backward)))


def _assd(forward: np.ndarray, backward: np.ndarray) -> float:
    if forward.size == 0 and backward.size == 0:
        return 0.0
    pooled = np.concatenate([forward, backward])
    if forward.size == 0 or backward.size == 0 or np.isinf(pooled).any():
        return math.inf
    return float(pooled.mean())


def _empty_rule(p: np.ndarray, t: np.ndarray) -> float | None:
    has_p, has_t = bool(p.any()), bool(t.any())
    if not has_p and not has_t:
        return 1.0
    if has_p != has_t:
        return 0.0
    return None


def _pair(pred, truth) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred), np.asarray(truth)
    if p.ndim != 2 or t.ndim != 2:
        raise MaskMismatchError(
            f"masks must be 2-D (rows, cols); got shapes {p.shape} and {t.shape}", hint="Give one 2-D mask per film."
        )
    if p.shape != t.shape:
        raise MaskMismatchError(
            f"prediction is {p.shape[0]}x{p.shape[1]} (rows x cols) but the truth is {t.shape[0]}x{t.shape[1]}",
            hint="Compare masks on the same grid (the film's native grid).",
        )
    return p != 0, t != 0


def _tensor(mask: np.ndarray):
    import torch

    return torch.from_numpy(mask.astype(np.float64))[None, None]


def _check_spacing(spacing) -> tuple[float, float] | None:
    if spacing is None:
        return None
    try:
        values = tuple(float(v) for v in spacing)
    except (TypeError, ValueError):
        raise InvalidSpacingError(
            f"spacing {spacing!r} is not two numbers", hint="Give (row_mm, col_mm) or None for pixels."
        ) from None
    if len(values) != 2 or not all(math.isfinite(v) and v > 0 for v in values):
        raise InvalidSpacingError(
            f"spacing {spacing!r} is not two positive finite numbers in mm",
            hint="Give (row_mm, col_mm) or None for pixels.",
        )
    return values
