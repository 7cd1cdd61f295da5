"""Test-time perturbations for the Dice estimate's agreement evidence (opt-in: three more network passes).

The film on the working grid is flipped left-right, shifted and zoomed out,
and the network's logits of each perturbed copy are brought back onto the
plain pass' grid, so that :mod:`medlung.estimation.evidence` can measure how
much the mask moves when the film does. All three copies go through the
network in one batch with the plain film (:meth:`medlung.inference.Segmenter.lung_logits`).

Pixels a perturbation cannot say anything about (the border a shift pushes out
of the film) are NaN in the restored logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: The perturbations, in batch order.
PERTURBATIONS = ("flip", "shift", "zoom")
#: Shift down and to the right, working-grid pixels (12 mm on the 2 mm grid: about a rib's width).
SHIFT_PX = 6
#: Zoom-out factor: the film shrunk to this fraction of its size, centred on a black canvas of the same size.
ZOOM = 0.85


def perturbed(batch: torch.Tensor) -> torch.Tensor:
    """The perturbed copies of one scaled film, ``(1, 1, rows, cols)`` -> ``(3, 1, rows, cols)``.

    Parameters
    ----------
    batch : torch.Tensor
        The film on the working grid, intensity-scaled (0 = black).

    Returns
    -------
    torch.Tensor
        Flipped, shifted (:data:`SHIFT_PX` down and right, black fill) and zoomed out (:data:`ZOOM`, black
        canvas), in :data:`PERTURBATIONS` order.
    """
    rows, cols = batch.shape[-2:]
    flipped = batch.flip(-1)
    shifted = torch.zeros_like(batch)
    shifted[..., SHIFT_PX:, SHIFT_PX:] = batch[..., : rows - SHIFT_PX, : cols - SHIFT_PX]
    zoomed = torch.zeros_like(batch)
    (top, left), (height, width) = _zoom_box(rows, cols)
    zoomed[..., top : top + height, left : left + width] = F.interpolate(
        batch, size=(height, width), mode="bilinear", align_corners=False
    )
    return torch.cat([flipped, shifted, zoomed])


def restored(logits: torch.Tensor) -> torch.Tensor:
    """The logits of the perturbed copies back on the plain film's grid, ``(3, C, rows, cols)``.

    Parameters
    ----------
    logits : torch.Tensor
        ``(3, C, rows, cols)`` float32 logits of :func:`perturbed`'s copies.

    Returns
    -------
    torch.Tensor
        Each copy's logits where the plain film's pixels are; NaN where a copy did not see them.
    """
    rows, cols = logits.shape[-2:]
    out = torch.full_like(logits, float("nan"))
    out[0] = logits[0].flip(-1)
    out[1, :, : rows - SHIFT_PX, : cols - SHIFT_PX] = logits[1, :, SHIFT_PX:, SHIFT_PX:]
    (top, left), (height, width) = _zoom_box(rows, cols)
    crop = logits[2:3, :, top : top + height, left : left + width]
    out[2] = F.interpolate(crop, size=(rows, cols), mode="bilinear", align_corners=False)[0]
    return out


def _zoom_box(rows: int, cols: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Top-left corner and size of the zoomed-out film on its canvas, pixels."""
    height, width = max(1, round(rows * ZOOM)), max(1, round(cols * ZOOM))
    return ((rows - height) // 2, (cols - width) // 2), (height, width)
