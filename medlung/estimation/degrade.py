"""Degraded copies of a film: low-quality examples for the Dice estimate's calibration, without new labels.

Each degradation imitates a way a film goes wrong in an archive (a noisy
detector, a blurred or low-resolution copy, a wrong window, a film whose
polarity was read backwards, a crop that cuts the lungs, a large label over a
lung). Geometry changes (crops) come with the box to cut the truth mask by, so
the degraded film keeps a ground truth.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

#: The degradations and what they do to the film's pixels (MONOCHROME2, after the modality/VOI LUT).
DEGRADATIONS = {
    "noise": "Gaussian noise, sigma 8 % of the film's 0.5-99.5 percentile range",
    "heavy_noise": "Gaussian noise, sigma 25 % of the range",
    "blur": "Gaussian blur, sigma 1 % of the film's longer side",
    "heavy_blur": "Gaussian blur, sigma 3 % of the longer side",
    "low_resolution": "averaged over blocks of 1/32 of the longer side and shown blocky",
    "dark_window": "gamma 4 within the range (the lungs go black)",
    "narrow_window": "clipped to the 45th-60th percentiles (a window far too narrow)",
    "inverted": "polarity reversed (MONOCHROME1 read as MONOCHROME2)",
    "crop_bottom": "lower 35 % of the rows cut off (the bases and diaphragm gone)",
    "crop_side": "image-left 30 % of the columns cut off (most of one lung gone)",
    "occluded": "a bright box (a burnt-in label or device) over a third of the image-left lung region",
}


def degrade(film, kind: str, seed: int = 0):
    """A degraded copy of ``film`` and the box its truth mask is cut by.

    Parameters
    ----------
    film : medlung.film.Film
        The film (not changed).
    kind : str
        A key of :data:`DEGRADATIONS`.
    seed : int
        Seed of the noise.

    Returns
    -------
    film : medlung.film.Film
        The degraded copy (same spacing, orientation and header).
    box : tuple of slice
        ``(rows, cols)`` slices of the original grid the copy covers (the whole film unless cropped).
    """
    if kind not in DEGRADATIONS:
        raise ValueError(f"kind must be one of {', '.join(DEGRADATIONS)}; got {kind!r}.")
    pixels = np.asarray(film.pixels, dtype=np.float32)
    rows, cols = pixels.shape
    box = (slice(0, rows), slice(0, cols))
    low, high = (float(v) for v in np.percentile(pixels, (0.5, 99.5)))
    span = max(high - low, 1e-6)
    side = max(rows, cols)
    if kind in ("noise", "heavy_noise"):
        sigma = (0.08 if kind == "noise" else 0.25) * span
        out = pixels + np.random.default_rng(seed).normal(0.0, sigma, pixels.shape).astype(np.float32)
    elif kind in ("blur", "heavy_blur"):
        from scipy import ndimage

        out = ndimage.gaussian_filter(pixels, (0.01 if kind == "blur" else 0.03) * side)
    elif kind == "low_resolution":
        block = max(2, side // 32)
        padded = np.pad(pixels, ((0, -rows % block), (0, -cols % block)), mode="edge")
        means = padded.reshape(padded.shape[0] // block, block, -1, block).mean(axis=(1, 3))
        out = np.repeat(np.repeat(means, block, axis=0), block, axis=1)[:rows, :cols]
    elif kind == "dark_window":
        out = low + span * np.clip((pixels - low) / span, 0, 1) ** 4
    elif kind == "narrow_window":
        out = np.clip(pixels, *np.percentile(pixels, (45, 60)))
    elif kind == "inverted":
        out = pixels.max() + pixels.min() - pixels
    elif kind == "crop_bottom":
        box = (slice(0, round(rows * 0.65)), slice(0, cols))
        out = pixels[box]
    elif kind == "crop_side":
        box = (slice(0, rows), slice(round(cols * 0.30), cols))
        out = pixels[box]
    else:  # occluded
        out = pixels.copy()
        top, left = round(rows * 0.30), round(cols * 0.12)
        out[top : top + round(rows * 0.30), left : left + round(cols * 0.25)] = high
    return replace(film, pixels=np.ascontiguousarray(out, dtype=np.float32)), box
