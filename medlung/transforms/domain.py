"""Augmentation for hospitals the model has not seen: exposure and tone, histograms, resolution, collimation.

Films from another hospital differ from the training films less in anatomy
than in how they were made: the detector's exposure and tone curve (and the
vendor's contrast processing), the resolution the film was stored at (a 512 px
screen copy or a 2048 px detector image), the collimator's edges and black
borders around the exposed field. These transforms imitate those differences
on the working grid, after intensity scaling to [0, 1] (MONOCHROME2: dense =
bright):

* :class:`RandToneCurved` (``tone``): a random monotone tone curve (gamma,
  S-shaped contrast, exposure shift with clipping at either end);
* :class:`RandHistogramMatchd` (``histogram``): the film's grey levels mapped
  onto the histogram of another training film (most often of another source);
* :class:`RandResolutiond` (``resolution``): the film stored coarser (down
  to a third of the working resolution, then back) and blurred, or edge-enhanced
  as detector software does (unsharp masking);
* :class:`RandCollimationd` (``collimation``): bright collimator shadows or
  black borders along the film's edges, outside the lungs.

None of them moves anything: the masks, targets and weights are never changed
(tested). Lung pixels are those with target 1 and weight > 0 in any channel.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import convert_to_dst_type
from scipy import ndimage

from medlung.transforms.sick_film import _numpy

#: Grey-level quantiles (percent) kept per film for histogram matching.
QUANTILES = np.linspace(0.0, 100.0, 65)


class _FilmTransform(RandomizableTransform, MapTransform):
    """A random change of the film only (``image_key``), applied with probability ``prob``."""

    def __init__(self, image_key: str = "image", prob: float = 0.5) -> None:
        MapTransform.__init__(self, [image_key])
        RandomizableTransform.__init__(self, prob)
        self.image_key = image_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        image = d[self.image_key]
        film = _numpy(image[0]).astype(np.float32, copy=True)
        changed = np.clip(self.change(film, d), 0.0, 1.0)
        d[self.image_key] = convert_to_dst_type(torch.as_tensor(changed, dtype=torch.float32)[None], image)[0]
        return d

    def change(self, film: np.ndarray, data: dict) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class RandToneCurved(_FilmTransform):
    """A random monotone tone curve: gamma, an S-shaped contrast curve, an exposure shift (see module docstring).

    Parameters
    ----------
    image_key : str
        Film ``(1, rows, cols)`` in [0, 1].
    prob : float
        Probability that the film is changed.
    gamma : tuple of float
        Range of the gamma exponent (log-uniform).
    contrast : tuple of float
        Range of the S-curve's slope (0: none).
    exposure : float
        Largest shift of the grey levels before clipping, fraction of [0, 1].
    """

    def __init__(
        self,
        image_key: str = "image",
        prob: float = 0.5,
        gamma: tuple = (0.6, 1.7),
        contrast: tuple = (0.0, 8.0),
        exposure: float = 0.15,
    ) -> None:
        super().__init__(image_key, prob)
        self.gamma, self.contrast, self.exposure = gamma, contrast, exposure

    def change(self, film: np.ndarray, data: dict) -> np.ndarray:
        r = self.R
        film = np.clip(film, 0.0, 1.0) ** np.exp(r.uniform(np.log(self.gamma[0]), np.log(self.gamma[1])))
        slope = r.uniform(*self.contrast)
        if slope > 0.5:
            centre = r.uniform(0.35, 0.65)
            low, high = (1 / (1 + np.exp(-slope * (v - centre))) for v in (0.0, 1.0))
            film = (1 / (1 + np.exp(-slope * (film - centre))) - low) / (high - low)
        shift, scale = r.uniform(-self.exposure, self.exposure), r.uniform(0.85, 1.2)
        return (film - 0.5) * scale + 0.5 + shift


def film_quantiles(film, lung=None) -> np.ndarray:
    """Grey-level quantiles (:data:`QUANTILES`) of a film on the working grid, for :class:`RandHistogramMatchd`."""
    values = _numpy(film).reshape(-1)
    return np.percentile(values, QUANTILES).astype(np.float32)


class RandHistogramMatchd(_FilmTransform):
    """Map the film's grey levels onto the histogram of another training film.

    Parameters
    ----------
    references : sequence of numpy.ndarray
        Quantile curves (:func:`film_quantiles`) of the training films; one is drawn at random.
    image_key : str
        Film ``(1, rows, cols)`` in [0, 1].
    prob : float
        Probability that the film is changed.
    strength : tuple of float
        Range of the blend between the film (0) and its matched version (1).
    """

    def __init__(
        self,
        references: Sequence[np.ndarray],
        image_key: str = "image",
        prob: float = 0.25,
        strength: tuple = (0.5, 1.0),
    ) -> None:
        super().__init__(image_key, prob)
        self.references = [np.asarray(q, np.float32) for q in references]
        self.strength = strength

    def change(self, film: np.ndarray, data: dict) -> np.ndarray:
        if not self.references:
            return film
        r = self.R
        reference = np.maximum.accumulate(self.references[r.randint(len(self.references))])
        own = np.percentile(film, QUANTILES)
        keep = np.concatenate([[True], np.diff(own) > 1e-6])  # interp needs increasing x
        matched = np.interp(film, own[keep], reference[keep]).astype(np.float32)
        alpha = r.uniform(*self.strength)
        return (1 - alpha) * film + alpha * matched


class RandResolutiond(_FilmTransform):
    """The film stored coarser and blurred, or sharpened by unsharp masking (see module docstring).

    Parameters
    ----------
    image_key : str
        Film ``(1, rows, cols)`` in [0, 1].
    prob : float
        Probability that the film is changed.
    factor : tuple of float
        Range of the down-sampling factor (1: none).
    blur : tuple of float
        Range of the Gaussian blur sigma, working pixels.
    sharpen : float
        Probability of unsharp masking instead of blur.
    """

    def __init__(
        self,
        image_key: str = "image",
        prob: float = 0.3,
        factor: tuple = (1.0, 3.0),
        blur: tuple = (0.0, 1.5),
        sharpen: float = 0.3,
    ) -> None:
        super().__init__(image_key, prob)
        self.factor, self.blur, self.sharpen = factor, blur, sharpen

    def change(self, film: np.ndarray, data: dict) -> np.ndarray:
        r = self.R
        factor = r.uniform(*self.factor)
        if factor > 1.05:
            small = ndimage.zoom(film, 1 / factor, order=1, grid_mode=True, mode="nearest")
            film = ndimage.zoom(small, np.divide(film.shape, small.shape), order=1, grid_mode=True, mode="nearest")[
                : film.shape[0], : film.shape[1]
            ]
        if r.rand() < self.sharpen:
            sigma = r.uniform(2.0, 8.0)
            return film + r.uniform(0.3, 1.2) * (film - ndimage.gaussian_filter(film, sigma))
        sigma = r.uniform(*self.blur)
        return ndimage.gaussian_filter(film, sigma) if sigma > 0.2 else film


class RandCollimationd(_FilmTransform):
    """Collimator shadows (bright) or black borders along the film's edges, never over a lung.

    Parameters
    ----------
    image_key : str
        Film ``(1, rows, cols)`` in [0, 1].
    label_key, weight_key : str
        Per-convention targets and weights ``(C, rows, cols)``.
    prob : float
        Probability that the film is changed.
    margin_mm : float
        Distance kept from the lungs' bounding box, mm.
    working_spacing : float
        mm per working pixel.
    """

    def __init__(
        self,
        image_key: str = "image",
        label_key: str = "label",
        weight_key: str = "weight",
        prob: float = 0.3,
        margin_mm: float = 6.0,
        working_spacing: float = 2.0,
    ) -> None:
        super().__init__(image_key, prob)
        self.label_key, self.weight_key = label_key, weight_key
        self.margin = max(1, round(margin_mm / working_spacing))

    def change(self, film: np.ndarray, data: dict) -> np.ndarray:
        r = self.R
        target, weight = _numpy(data[self.label_key]), _numpy(data[self.weight_key])
        lung = ((target > 0.5) & (weight > 0)).any(axis=0)
        h, w = film.shape
        if lung.any():
            rows, cols = np.nonzero(lung)
            room = {
                "top": rows.min() - self.margin,
                "bottom": h - 1 - rows.max() - self.margin,
                "left": cols.min() - self.margin,
                "right": w - 1 - cols.max() - self.margin,
            }
        else:
            room = dict.fromkeys(("top", "bottom", "left", "right"), min(h, w) // 4)
        covered = np.zeros(film.shape, bool)
        yy, xx = np.mgrid[:h, :w]
        for side, space in room.items():
            if space < 2 or r.rand() < 0.4:
                continue
            depth = r.uniform(0.3, 1.0) * space
            tilt = r.uniform(-0.04, 0.04)  # a slightly rotated collimator blade
            if side == "top":
                band = yy < depth + tilt * (xx - w / 2)
            elif side == "bottom":
                band = yy > h - 1 - depth + tilt * (xx - w / 2)
            elif side == "left":
                band = xx < depth + tilt * (yy - h / 2)
            else:
                band = xx > w - 1 - depth + tilt * (yy - h / 2)
            covered |= band
        covered &= ~ndimage.binary_dilation(lung, iterations=self.margin) if lung.any() else covered
        if not covered.any():
            return film
        value = 0.0 if r.rand() < 0.4 else r.uniform(0.8, 1.0)  # black border, or the bright unexposed shadow
        edge = ndimage.gaussian_filter(covered.astype(np.float32), r.uniform(0.3, 1.5))
        edge = np.where(covered, np.maximum(edge, 0.5), edge)
        noise = r.normal(0, 0.02, film.shape).astype(np.float32)
        return film + edge * (value + noise - film)
