"""The chain after the network: logits on the working grid -> labels 0/1/2 on the film's stored grid.

Two functions, :func:`convention_margin` and :func:`native_labels`, shared by
the :class:`~medlung.inference.Segmenter` and the bundle's ``postprocessing``
property (:class:`medlung.bundle.workflow.LungLabelsd`):

0. the convention's lung margin is taken from the logits
   (:func:`medlung.networks.running.lung_margin_of`) and, for the anatomical
   convention of a plan with a shape prior (``anatomical_closing_mm``), each
   lung is closed on the working grid
   (:func:`~medlung.inference.postprocess.close_lungs`);
1. the margin (one channel, > 0 = lung) is resized bilinearly to the film's
   native grid in the standard display and thresholded at 0 there, so the mask
   follows the film's own pixels;
2. :func:`~medlung.inference.postprocess.clean_lung_mask` keeps one lung a
   side without holes or specks, and
   :func:`~medlung.inference.postprocess.split_lungs` labels patient right (1)
   and left (2), both in one :func:`~medlung.inference.postprocess.clean_and_split`;
3. the labels (and the margin) go back to the grid the film is stored on, by
   the inverse of the display transform that turned it
   (:class:`~medlung.transforms.display.ToStandardDisplay`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from medlung.inference.postprocess import clean_and_split, close_lungs
from medlung.networks.running import lung_margin_of
from medlung.orientation import IDENTITY, DisplayTransform
from medlung.plans import DEFAULT_MIN_LUNG_MM2, ModelPlan


@dataclass
class NativeLabels:
    """Labels of one film on its native grid.

    Attributes
    ----------
    labels : numpy.ndarray of uint8
        ``(rows, cols)`` on the stored grid (C-contiguous): 0 background,
        1 patient right lung, 2 patient left lung.
    margin : numpy.ndarray of float32 or None
        The bilinear margin on the stored grid (a view; > 0 = lung before clean-up); ``None`` unless asked
        for (``keep_margin``): it is four bytes a native pixel.
    display_labels : numpy.ndarray of uint8
        The labels in the standard display (what quality measures read with the displayed film).
    orientation_assumed : bool
        True when the standard display was assumed for right/left.
    notes : list of str
        What was assumed or could not be decided.
    timings : dict
        Seconds: ``native_grid`` (resize and threshold), ``cleanup`` (clean-up, split, back to the stored grid).
    """

    labels: np.ndarray
    margin: np.ndarray | None
    display_labels: np.ndarray
    orientation_assumed: bool
    notes: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)


def convention_margin(logits: torch.Tensor, plan: ModelPlan, lungs: str = "field") -> torch.Tensor:
    """The lung margin of convention ``lungs`` on the working grid, with the plan's shape prior.

    Parameters
    ----------
    logits : torch.Tensor
        ``(channels, rows, cols)`` float32 logits of one film on the working grid.
    plan : medlung.plans.ModelPlan
        The model's plan: its head, conventions, working spacing (mm) and ``anatomical_closing_mm``.
    lungs : str
        ``"field"`` or ``"anatomical"``.

    Returns
    -------
    torch.Tensor
        ``(rows, cols)`` float32 margin (> 0 = lung): :func:`~medlung.networks.running.lung_margin_of`, and for
        the anatomical convention each lung closed with a disk of ``plan.anatomical_closing_mm`` (when > 0).
    """
    margin = lung_margin_of(logits, plan, lungs)
    if lungs != "anatomical" or plan.anatomical_closing_mm <= 0:
        return margin
    closed = close_lungs(
        np.ascontiguousarray(margin.numpy(), np.float32),
        plan.anatomical_closing_mm,
        plan.working_spacing,
        plan.min_lung_mm2,
    )
    return torch.from_numpy(closed)


def upsample_margin(margin: torch.Tensor, shape: Sequence[int]) -> np.ndarray:
    """Bilinear resize of a ``(rows, cols)`` map to ``shape`` (pixel centres aligned), float32 numpy."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = F.interpolate(margin[None, None], size=tuple(int(n) for n in shape), mode="bilinear", align_corners=False)
    return out[0, 0].numpy()


def native_labels(
    margin: torch.Tensor,
    shape: Sequence[int],
    spacing: Sequence[float],
    orientation: Sequence[str] | None = None,
    min_lung_mm2: float = DEFAULT_MIN_LUNG_MM2,
    display: DisplayTransform = IDENTITY,
    keep_margin: bool = True,
) -> NativeLabels:
    """Labels 0/1/2 on the film's stored grid from the lung margin on the working grid.

    Parameters
    ----------
    margin : torch.Tensor
        ``(rows, cols)`` float32 lung margin (a logit, > 0 = lung) on the working grid, in the standard display
        (:func:`convention_margin`).
    shape : sequence of int
        ``(rows, cols)`` of the film in the standard display, pixels (meta ``native_shape`` of
        :func:`medlung.transforms.presets.inference_transforms`).
    spacing : sequence of float
        ``(row_mm, col_mm)`` of that grid, given or nominal (meta ``native_spacing``): components smaller than
        ``min_lung_mm2`` are dropped.
    orientation : sequence of str, optional
        PatientOrientation of the film in the standard display (meta ``orientation``), for right/left;
        ``None`` assumes the standard display.
    min_lung_mm2 : float
        Smallest lung component kept, mm².
    display : medlung.orientation.DisplayTransform
        The transform that put the stored film in the standard display (meta ``display``, read by
        :func:`medlung.transforms.display.display_of`); its inverse brings the labels back.
    keep_margin : bool
        Return the native-grid margin too (for probabilities); otherwise it is freed before the clean-up.

    Returns
    -------
    NativeLabels
    """
    started = time.perf_counter()
    upsampled = upsample_margin(margin, shape)
    lungs = upsampled > 0
    native = upsampled if keep_margin else None
    del upsampled  # the float margin is the largest native-grid array: not held through the clean-up unless asked
    timings = {"native_grid": time.perf_counter() - started}
    started = time.perf_counter()
    labels, assumed, notes = clean_and_split(lungs, float(np.prod(spacing)), orientation, min_lung_mm2)
    stored = np.ascontiguousarray(display.to_stored(labels))
    timings["cleanup"] = time.perf_counter() - started
    return NativeLabels(
        labels=stored,
        margin=display.to_stored(native) if native is not None else None,
        display_labels=labels,
        orientation_assumed=assumed,
        notes=notes,
        timings=timings,
    )
