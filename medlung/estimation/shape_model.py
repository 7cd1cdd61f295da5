"""A statistical shape model of lung masks: principal components of masks normalised to their bounding box.

Each mask (both lungs together, or one lung) is cut to its bounding box and
resampled to :data:`SIDE` x :data:`SIDE` pixels (area-weighted: values 0-1),
which removes position and size and keeps the outline. The principal
components of those images over the training masks of one lung convention
("eigen-lungs") say how a plausible lung looks; a mask is measured against
them by

``mahalanobis``
    the root-mean-square of its component scores over their standard
    deviations (about 1 for a typical training mask), and
``residual``
    the root-mean-square of what the components cannot explain, per pixel
    (0-1 scale).

Built from the training masks by ``scripts/fit_dice_estimate.py`` and stored
with the Dice estimate's calibration (``models/dice_estimate.json``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Side of the normalised mask image, pixels.
SIDE = 24
#: Most components kept; fewer when they explain :data:`EXPLAINED` of the variance.
MAX_COMPONENTS = 10
EXPLAINED = 0.9
#: Structures modelled: the two lungs together, and each lung (label 1 patient right, 2 patient left).
STRUCTURES = {"both": (1, 2), "right": (1,), "left": (2,)}


def normalised(mask: np.ndarray) -> np.ndarray | None:
    """A mask cut to its bounding box and resampled to ``SIDE x SIDE`` (float 0-1, flattened); None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    crop = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].astype(np.float32)
    return _resample(crop, SIDE).ravel()


@dataclass
class ShapeModel:
    """Principal components of normalised masks of one structure.

    Attributes
    ----------
    mean : numpy.ndarray
        ``(SIDE * SIDE,)`` mean normalised mask.
    components : numpy.ndarray
        ``(k, SIDE * SIDE)`` orthonormal principal directions.
    std : numpy.ndarray
        ``(k,)`` standard deviation of the training masks' scores along each.
    """

    mean: np.ndarray
    components: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, images: np.ndarray) -> ShapeModel:
        """The model of ``(n, SIDE * SIDE)`` normalised masks (:func:`normalised`)."""
        images = np.asarray(images, dtype=np.float64)
        mean = images.mean(axis=0)
        _, singular, vt = np.linalg.svd(images - mean, full_matrices=False)
        variance = singular**2 / max(1, len(images) - 1)
        share = np.cumsum(variance) / variance.sum()
        k = min(MAX_COMPONENTS, int(np.searchsorted(share, EXPLAINED)) + 1)
        return cls(mean, vt[:k], np.sqrt(variance[:k]))

    def measure(self, image: np.ndarray | None) -> tuple[float, float]:
        """``(mahalanobis, residual)`` of one normalised mask; an empty mask gets ``(10, 1)``, far from any lung."""
        if image is None:
            return 10.0, 1.0
        centred = image - self.mean
        scores = self.components @ centred
        residual = centred - scores @ self.components
        mahalanobis = float(np.sqrt(np.mean((scores / self.std) ** 2)))
        return mahalanobis, float(np.sqrt(np.mean(residual**2)))

    def to_dict(self) -> dict:
        """JSON-ready (values rounded to 5 decimals)."""
        return {
            "side": SIDE,
            "mean": np.round(self.mean, 5).tolist(),
            "components": np.round(self.components, 5).tolist(),
            "std": np.round(self.std, 6).tolist(),
        }

    @classmethod
    def from_dict(cls, values: dict) -> ShapeModel:
        if int(values["side"]) != SIDE:
            raise ValueError(f"shape model of side {values['side']} px; this medlung reads {SIDE} px.")
        return cls(
            np.asarray(values["mean"], dtype=np.float64),
            np.asarray(values["components"], dtype=np.float64),
            np.asarray(values["std"], dtype=np.float64),
        )


def structure_images(labels: np.ndarray) -> dict:
    """Normalised images (:func:`normalised`) of each structure of a 0/1/2 label map."""
    return {name: normalised(np.isin(labels, values)) for name, values in STRUCTURES.items()}


def _resample(image: np.ndarray, side: int) -> np.ndarray:
    """Area-weighted resampling of a 2-D image to ``side x side`` (each output pixel the mean of what it covers)."""
    out = image
    for axis in (0, 1):
        weights = _coverage(out.shape[axis], np.linspace(0.0, out.shape[axis], side + 1))
        out = np.moveaxis(np.tensordot(weights, np.moveaxis(out, axis, 0), axes=1), 0, axis)
    return out


def _coverage(n: int, edges: np.ndarray) -> np.ndarray:
    """``(len(edges) - 1, n)`` matrix: the share of each input pixel ``[i, i+1)`` in each output bin, normalised."""
    starts, stops = edges[:-1, None], edges[1:, None]
    pixels = np.arange(n)[None, :]
    overlap = np.clip(np.minimum(stops, pixels + 1) - np.maximum(starts, pixels), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)
