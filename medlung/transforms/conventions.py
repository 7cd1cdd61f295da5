"""Partial-label targets: one output channel per lung convention, each film supervising what its mask says.

A film's mask follows one convention (``entry["lungs"]``). For a model whose
channels are ``conventions`` (e.g. ``("field", "anatomical")``), the target
and the per-pixel weight of each channel are:

* the mask's own convention: target = mask, weight 1 everywhere;
* ``anatomical`` when the mask is a ``field`` mask: the lung field lies inside
  the whole lung, so target 1 with weight 1 **inside** the field mask only
  (outside it the film says nothing about the anatomical lung);
* ``field`` when the mask is an ``anatomical`` mask: target 0 with weight 1
  **outside** the anatomical mask only (no lung field outside the lung;
  inside it the film says nothing about where the field ends).

Pixels of the ignore mask get weight 0 in every channel. ``own`` marks the
channel(s) the film fully supervises (used for Dice terms and metrics).

A field film may also carry a **pseudo-label** of its anatomical lung (made
by a model, smoothed and checked by eye: ``scripts/anatomical_pseudo_labels.py``).
Then its ``anatomical`` channel is supervised everywhere: target 1 inside the
field mask (weight 1, as without it) and the pseudo-label elsewhere, with the
lower weight ``pseudo_weight``. It never becomes an ``own`` channel (no Dice
term, no metric).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform

from medlung.plans import CONVENTIONS


def partial_targets(
    mask: np.ndarray,
    lungs: str,
    conventions: Sequence[str],
    ignore: np.ndarray | None = None,
    pseudo: np.ndarray | None = None,
    pseudo_weight: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Targets, weights and own-channel flags of one film for a model with ``conventions``.

    Parameters
    ----------
    mask : numpy.ndarray
        ``(rows, cols)`` lung mask, non-zero = lung (either side).
    lungs : str
        Convention the mask follows.
    conventions : sequence of str
        The model's output channels, in order.
    ignore : numpy.ndarray, optional
        ``(rows, cols)``, non-zero = leave out of loss and metrics.
    pseudo : numpy.ndarray, optional
        ``(rows, cols)`` anatomical pseudo-label of a field mask (non-zero = lung); ignored otherwise.
    pseudo_weight : float
        Weight of the pseudo-label's pixels outside the field mask.

    Returns
    -------
    target, weight : numpy.ndarray of float32
        ``(channels, rows, cols)``.
    own : numpy.ndarray of float32
        ``(channels,)``, 1 for the channel the mask fully supervises.
    """
    if lungs not in CONVENTIONS:
        raise ValueError(f"lungs must be one of {', '.join(CONVENTIONS)}; got {lungs!r}.")
    lung = np.asarray(mask) > 0
    keep = np.ones(lung.shape, bool) if ignore is None else ~(np.asarray(ignore) > 0)
    target = np.zeros((len(conventions), *lung.shape), np.float32)
    weight = np.zeros_like(target)
    own = np.zeros(len(conventions), np.float32)
    for c, convention in enumerate(conventions):
        if convention == lungs:
            target[c], weight[c], own[c] = lung, keep, 1.0
        elif lungs == "field" and convention == "anatomical" and pseudo is not None:
            target[c] = lung | (np.asarray(pseudo) > 0)
            weight[c] = np.where(lung, 1.0, pseudo_weight) * keep
        elif lungs == "field" and convention == "anatomical":
            target[c], weight[c] = 1.0, lung & keep
        elif lungs == "anatomical" and convention == "field":
            target[c], weight[c] = 0.0, ~lung & keep
    return target, weight, own


class PartialLabelTargetd(MapTransform):
    """Replace ``label`` by per-convention targets and add ``weight`` and ``own`` (see module docstring).

    Runs on the native grid, after :class:`~medlung.transforms.loading.LoadMaskd`;
    reads the ignore mask named by ``ignore_key`` (``""`` = none) itself.

    Parameters
    ----------
    conventions : sequence of str
        The model's output channels.
    label_key, lungs_key, ignore_key : str
        Keys of the loaded mask, its convention name and the ignore mask path.
    pseudo_key : str
        Key of the pseudo-label path (``""`` = none).
    pseudo_weight : float
        Weight of pseudo-labelled pixels (see the module docstring).
    weight_key, own_key : str
        Keys written.
    """

    def __init__(
        self,
        conventions: Sequence[str],
        label_key: str = "label",
        lungs_key: str = "lungs",
        ignore_key: str = "ignore",
        weight_key: str = "weight",
        own_key: str = "own",
        pseudo_key: str = "pseudo",
        pseudo_weight: float = 0.5,
    ) -> None:
        super().__init__([label_key])
        self.conventions = tuple(conventions)
        self.label_key, self.lungs_key, self.ignore_key = label_key, lungs_key, ignore_key
        self.weight_key, self.own_key = weight_key, own_key
        self.pseudo_key, self.pseudo_weight = pseudo_key, float(pseudo_weight)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        from medlung.io.masks import load_label_map

        d = dict(data)
        label = d[self.label_key]
        mask = np.asarray(label[0])
        ignore_path = d.get(self.ignore_key) or ""
        ignore = load_label_map(ignore_path, mask.shape) if ignore_path else None
        pseudo_path = d.get(self.pseudo_key) or ""
        pseudo = load_label_map(pseudo_path, mask.shape) if pseudo_path else None
        lungs = str(d.get(self.lungs_key) or "field")
        target, weight, own = partial_targets(mask, lungs, self.conventions, ignore, pseudo, self.pseudo_weight)
        like = label if isinstance(label, MetaTensor) else None
        d[self.label_key] = _like(torch.from_numpy(target), like)
        d[self.weight_key] = _like(torch.from_numpy(weight), like)
        d[self.own_key] = torch.from_numpy(own)
        return d


def _like(tensor: torch.Tensor, reference: MetaTensor | None) -> torch.Tensor:
    if reference is None:
        return tensor
    return MetaTensor(tensor, affine=reference.affine.clone(), meta=dict(reference.meta))
