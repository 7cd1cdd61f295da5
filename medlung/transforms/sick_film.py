"""Augmentation that makes a healthy PA training film look like a sick or portable one.

The lesson it teaches: dense (bright) tissue **inside the chest is still
lung**, and lines, leads and text on top of the film are not anatomy. On the
working grid, after intensity scaling to [0, 1] (MONOCHROME2: dense = bright),
it may add

* consolidation-like opacities: smooth blobs centred on lung pixels, blending
  the film towards bright, textured by smoothed noise;
* an effusion-like haze at one lung base: brightness growing towards the
  lower edge of that lung, blurred beyond it;
* lines and tubes: thin bright curves across the film;
* ECG leads: small bright rings;
* burnt-in text: a block of bright character-like marks near a corner;
* a pacemaker: a bright rounded box below a clavicle with its lead curving towards the heart;
* burnt-in markers: a bright (or dark) square holding a letter-like glyph (the R/L markers), near the edges.

Each of these is a *part* (:data:`PARTS`); ``parts`` chooses which ones a
transform may draw, so the named augmentations of a training run
(:mod:`medlung.transforms.domain`) can switch them on and off one by one.
The masks are never changed (the lung under an opacity is still lung), and
the film is never mirrored (right and left would swap).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import convert_to_dst_type
from scipy import ndimage

#: Every part the transform can draw, and (``LEGACY_PARTS``) those of models up to 2.0.0.
PARTS = ("opacities", "haze", "lines", "leads", "text", "pacemaker", "markers")
LEGACY_PARTS = ("opacities", "haze", "lines", "leads", "text")
#: Probability of each part on a film the transform alters.
PART_PROBABILITIES = {
    "opacities": 0.7,
    "haze": 0.35,
    "lines": 0.4,
    "leads": 0.25,
    "text": 0.3,
    "pacemaker": 0.3,
    "markers": 0.5,
}


class RandSickFilmd(RandomizableTransform, MapTransform):
    """Random opacities, base haze, lines, leads and text on the film (see module docstring).

    Parameters
    ----------
    image_key : str
        Film on the working grid, ``(1, rows, cols)`` in [0, 1].
    label_key, weight_key : str
        Per-convention targets and weights ``(C, rows, cols)``; lung pixels are
        those with target 1 and weight > 0 in any channel.
    prob : float
        Probability that the film is altered at all.
    working_spacing : float
        mm per working pixel (sizes below are in mm).
    parts : sequence of str
        Which of :data:`PARTS` may be drawn (default: those of models up to 2.0.0).
    """

    def __init__(
        self,
        image_key: str = "image",
        label_key: str = "label",
        weight_key: str = "weight",
        prob: float = 0.5,
        working_spacing: float = 2.0,
        parts=LEGACY_PARTS,
    ) -> None:
        MapTransform.__init__(self, [image_key])
        RandomizableTransform.__init__(self, prob)
        self.image_key, self.label_key, self.weight_key = image_key, label_key, weight_key
        self.mm = float(working_spacing)
        unknown = [p for p in parts if p not in PARTS]
        if unknown:
            raise ValueError(f"unknown sick-film part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}.")
        self.parts = tuple(parts)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        image = d[self.image_key]
        film = _numpy(image[0]).astype(np.float32, copy=True)
        target, weight = _numpy(d[self.label_key]), _numpy(d[self.weight_key])
        lung = np.asarray(((target > 0.5) & (weight > 0)).any(axis=0))
        has_lung = lung.sum() > 50
        for part in PARTS:  # in this order, one draw per part (the draws of models up to 2.0.0 for their parts)
            if part not in self.parts or (part in ("opacities", "haze", "pacemaker") and not has_lung):
                continue
            if self.R.rand() < PART_PROBABILITIES[part]:
                film = self._draw(part, film, lung)
        altered = torch.as_tensor(np.clip(film, 0.0, 1.0), dtype=torch.float32)[None]
        d[self.image_key] = convert_to_dst_type(altered, image)[0]  # same type (MetaTensor or not) as the others
        return d

    # ------------------------------------------------------------- pieces
    def _draw(self, part: str, film: np.ndarray, lung: np.ndarray) -> np.ndarray:
        if part == "opacities":
            return self._opacities(film, lung)
        if part == "haze":
            return self._base_haze(film, lung)
        if part == "lines":
            return self._lines(film)
        if part == "leads":
            return self._leads(film)
        if part == "text":
            return self._text(film)
        if part == "pacemaker":
            return self._pacemaker(film, lung)
        return self._markers(film)

    def _smooth_noise(self, shape, sigma_px: float) -> np.ndarray:
        noise = ndimage.gaussian_filter(self.R.standard_normal(shape).astype(np.float32), sigma_px)
        return (noise - noise.min()) / max(float(np.ptp(noise)), 1e-6)

    def _opacities(self, film: np.ndarray, lung: np.ndarray) -> np.ndarray:
        r = self.R
        rows, cols = np.nonzero(lung)
        yy, xx = np.mgrid[: film.shape[0], : film.shape[1]]
        bright = float(np.percentile(film, 97))
        for _ in range(r.randint(1, 4)):
            i = r.randint(len(rows))
            sigma = r.uniform(12, 50) / self.mm  # 12-50 mm
            blob = np.exp(
                -(((yy - rows[i]) / (sigma * r.uniform(0.6, 1.4))) ** 2 + ((xx - cols[i]) / sigma) ** 2) / 2
            ).astype(np.float32)
            texture = 0.6 + 0.4 * self._smooth_noise(film.shape, r.uniform(1.5, 4))
            alpha = r.uniform(0.3, 0.85) * blob * texture
            film = film + alpha * (bright * r.uniform(0.85, 1.05) - film)
        return film

    def _base_haze(self, film: np.ndarray, lung: np.ndarray) -> np.ndarray:
        r = self.R
        labelled, count = ndimage.label(lung)
        if count == 0:
            return film
        sizes = ndimage.sum(lung, labelled, range(1, count + 1))
        side = labelled == (1 + int(np.argsort(sizes)[-min(2, count) :][r.randint(min(2, count))]))
        rows = np.nonzero(side.any(axis=1))[0]
        top, bottom = rows[0], rows[-1]
        start = bottom - r.uniform(0.2, 0.5) * (bottom - top)
        ramp = np.clip((np.arange(film.shape[0], dtype=np.float32) - start) / max(bottom - start, 1), 0, 1)[:, None]
        region = ndimage.gaussian_filter(
            ndimage.binary_dilation(side, iterations=3).astype(np.float32), 4 / self.mm * 3
        )
        alpha = r.uniform(0.4, 0.9) * ramp * region
        bright = float(np.percentile(film, 95))
        return film + alpha * (bright - film)

    def _lines(self, film: np.ndarray) -> np.ndarray:
        r = self.R
        h, w = film.shape
        for _ in range(r.randint(1, 4)):
            p0, p1, p2 = (np.array([r.uniform(0, h), r.uniform(0, w)]) for _ in range(3))
            t = np.linspace(0, 1, 4 * (h + w))[:, None]
            curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
            canvas = np.zeros_like(film)
            ri, ci = np.clip(curve[:, 0].astype(int), 0, h - 1), np.clip(curve[:, 1].astype(int), 0, w - 1)
            canvas[ri, ci] = 1.0
            width = r.uniform(1.5, 5) / self.mm
            canvas = np.clip(ndimage.gaussian_filter(canvas, max(width / 2, 0.5)) * 3 * max(width, 1), 0, 1)
            film = np.maximum(film, canvas * r.uniform(0.7, 1.0))
        return film

    def _leads(self, film: np.ndarray) -> np.ndarray:
        r = self.R
        h, w = film.shape
        yy, xx = np.mgrid[:h, :w]
        for _ in range(r.randint(2, 6)):
            cy, cx, radius = r.uniform(0, h), r.uniform(0, w), r.uniform(5, 12) / self.mm
            distance = np.hypot(yy - cy, xx - cx)
            ring = np.exp(-((distance - radius) ** 2) / 2.0) + (distance < radius * 0.5)
            film = np.maximum(film, np.clip(ring, 0, 1) * r.uniform(0.8, 1.0))
        return film

    def _text(self, film: np.ndarray) -> np.ndarray:
        r = self.R
        h, w = film.shape
        char = max(2, round(r.uniform(4, 9) / self.mm))
        n = r.randint(3, 10)
        top = r.choice([r.randint(0, max(1, h // 8)), r.randint(h - h // 8 - char, h - char)])
        left = r.choice([r.randint(0, max(1, w // 8)), r.randint(max(1, w - w // 3), max(2, w - n * char))])
        for k in range(n):
            glyph = r.rand(char, char) < 0.45
            y, x = int(top), int(left) + k * (char + 1)
            if 0 <= y and y + char <= h and 0 <= x and x + char <= w:
                patch = film[y : y + char, x : x + char]
                film[y : y + char, x : x + char] = np.where(glyph, 1.0, patch)
        return film

    def _pacemaker(self, film: np.ndarray, lung: np.ndarray) -> np.ndarray:
        """A pacemaker can (about 45 x 40 mm, rounded, very dense) below a clavicle and its lead to the heart."""
        r = self.R
        h, w = film.shape
        rows, cols = np.nonzero(lung)
        top, middle = rows.min(), (cols.min() + cols.max()) / 2
        side = r.choice([-1, 1])
        cy = top + r.uniform(-0.05, 0.15) * (rows.max() - top)
        cx = middle + side * r.uniform(0.25, 0.45) * (cols.max() - cols.min())
        half_h, half_w = r.uniform(17, 25) / self.mm, r.uniform(20, 28) / self.mm
        yy, xx = np.mgrid[:h, :w]
        box = (np.abs((yy - cy) / half_h) ** 4 + np.abs((xx - cx) / half_w) ** 4) <= 1
        edge = ndimage.gaussian_filter(box.astype(np.float32), 0.6)
        film = np.maximum(film, edge * r.uniform(0.9, 1.0))
        # the lead: from the can towards the heart, below and across the midline
        end = np.array([rows.max() - r.uniform(0.1, 0.35) * (rows.max() - top), middle - side * r.uniform(0, 0.15) * w])
        bend = np.array([cy + r.uniform(0.1, 0.3) * h, (cx + end[1]) / 2])
        t = np.linspace(0, 1, 4 * (h + w))[:, None]
        curve = (1 - t) ** 2 * np.array([cy, cx]) + 2 * (1 - t) * t * bend + t**2 * end
        canvas = np.zeros_like(film)
        canvas[np.clip(curve[:, 0].astype(int), 0, h - 1), np.clip(curve[:, 1].astype(int), 0, w - 1)] = 1.0
        canvas = np.clip(ndimage.gaussian_filter(canvas, 0.7) * 4, 0, 1)
        return np.maximum(film, canvas * r.uniform(0.8, 1.0))

    def _markers(self, film: np.ndarray) -> np.ndarray:
        """One or two burnt-in markers: a bright or dark square (12-25 mm) holding a letter-like glyph."""
        r = self.R
        h, w = film.shape
        for _ in range(r.randint(1, 3)):
            size = max(4, round(r.uniform(12, 25) / self.mm))
            if size >= min(h, w):
                continue
            y = r.choice([r.randint(0, max(1, h // 5)), r.randint(max(0, h - h // 5 - size), h - size)])
            x = r.randint(0, w - size)
            glyph = np.zeros((size, size), bool)
            stroke = max(1, size // 5)
            glyph[size // 5 : -size // 5, size // 4 : size // 4 + stroke] = True  # the upright of an L or R
            if r.rand() < 0.5:
                glyph[-size // 5 - stroke : -size // 5, size // 4 : -size // 4] = True  # L foot
            else:
                glyph[size // 5 : size // 5 + stroke, size // 4 : -size // 4] = True  # R bowl, roughly
                glyph[size // 2 : size // 2 + stroke, size // 4 : -size // 4] = True
            dark = r.rand() < 0.3
            background, ink = (0.0, 1.0) if dark else (1.0, 0.0)
            film[y : y + size, x : x + size] = np.where(glyph, ink, background)
        return film


def _numpy(value) -> np.ndarray:
    """A tensor or array as a numpy array (no copy when possible)."""
    if isinstance(value, torch.Tensor):
        tensor = value.as_tensor() if isinstance(value, MetaTensor) else value  # its metadata is not needed
        return tensor.detach().cpu().numpy()
    return np.asarray(value)
