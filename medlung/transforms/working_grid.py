"""The working grid: the fixed physical spacing the network runs at.

A film with known spacing is resampled so that one working pixel is
``working_spacing`` mm. A film without spacing follows the *nominal rule*:
its longer side is taken to span :data:`NOMINAL_FIELD_MM` (a 43 cm / 17 inch
detector, the common chest size), so a 512x512 Shenzhen PNG is treated as
0.84 mm pixels -- only to choose the working grid; no area computed from it
is called calibrated.

Downsampling is anti-aliased area averaging (``torch.nn.functional.interpolate``
mode ``"area"``); upsampling is bilinear. Label maps use nearest neighbour.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from medlung.film import NOMINAL_FIELD_MM, nominal_spacing, working_shape

__all__ = [
    "NOMINAL_FIELD_MM",
    "ToWorkingGrid",
    "ToWorkingGridd",
    "nominal_spacing",
    "resample",
    "working_shape",
]


def resample(image: torch.Tensor, shape: Sequence[int], mode: str = "linear") -> torch.Tensor:
    """Resample a channel-first 2-D tensor ``(C, rows, cols)`` to ``shape``.

    ``mode="linear"`` averages areas when shrinking an axis and interpolates
    bilinearly when enlarging; ``mode="nearest"`` is for label maps.
    """
    target = tuple(int(s) for s in shape)
    if tuple(image.shape[-2:]) == target:
        return image
    x = image.as_tensor() if isinstance(image, MetaTensor) else image
    dtype = x.dtype
    x = x[None].float()
    if mode == "nearest":
        out = F.interpolate(x, size=target, mode="nearest-exact")
    else:
        # area-average the shrinking axes, then interpolate the growing ones
        shrink = tuple(min(t, s) for t, s in zip(target, x.shape[-2:]))
        if shrink != tuple(x.shape[-2:]):
            x = F.interpolate(x, size=shrink, mode="area")
        if shrink != target:
            x = F.interpolate(x, size=target, mode="bilinear", align_corners=False)
        out = x
    return out[0].to(dtype) if dtype.is_floating_point else out[0].round().to(dtype)


class ToWorkingGrid(Transform):
    """Resample a film ``MetaTensor`` (from :class:`~medlung.transforms.LoadFilm`) to the working grid.

    Parameters
    ----------
    working_spacing : float
        Working pixel size, mm.
    mode : str
        ``"linear"`` for films and probabilities, ``"nearest"`` for label maps.

    Notes
    -----
    The output's meta keeps ``native_shape`` and ``native_spacing`` (the
    given or nominal spacing) so results can be brought back, and its affine
    is the working spacing.
    """

    def __init__(self, working_spacing: float, mode: str = "linear") -> None:
        if not (isinstance(working_spacing, (int, float)) and math.isfinite(working_spacing) and working_spacing > 0):
            raise ValueError(f"working_spacing must be a positive number of mm, got {working_spacing!r}.")
        self.working_spacing = float(working_spacing)
        self.mode = mode

    def __call__(self, image: MetaTensor, reference: MetaTensor | None = None) -> MetaTensor:
        meta = {k: v for k, v in (reference if reference is not None else image).meta.items() if k != "affine"}
        # the film's native size: a film loaded at reduced resolution says it in its meta (film_shape)
        native = tuple(int(n) for n in meta.get("film_shape", image.shape[-2:]))
        spacing = meta.get("spacing_mm") if meta.get("spacing_known") else None
        target, used = working_shape(native, spacing, self.working_spacing)
        out = resample(image, target, self.mode)
        meta.update(
            native_shape=native,
            native_spacing=used,
            working_spacing=self.working_spacing,
            working_shape=target,
        )
        affine = torch.diag(torch.tensor([self.working_spacing, self.working_spacing, 1.0], dtype=torch.float64))
        return MetaTensor(out, affine=affine, meta=meta)


class ToWorkingGridd(MapTransform):
    """Dictionary wrapper of :class:`ToWorkingGrid`.

    Parameters
    ----------
    keys : str or sequence of str
        Keys to resample.
    working_spacing : float
        Working pixel size, mm.
    mode : str or sequence of str
        One mode for all keys or one per key (``"nearest"`` for label maps).
    reference_key : str, optional
        Key whose spacing decides the grid (the film); default: each key's own.
    """

    def __init__(
        self,
        keys: KeysCollection,
        working_spacing: float,
        mode: str | Sequence[str] = "linear",
        reference_key: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        modes = [mode] * len(self.keys) if isinstance(mode, str) else list(mode)
        self.resamplers = {k: ToWorkingGrid(working_spacing, m) for k, m in zip(self.keys, modes)}
        self.reference_key = reference_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        reference = d.get(self.reference_key) if self.reference_key else None
        for key in self.key_iterator(d):
            d[key] = self.resamplers[key](d[key], reference)
        return d
