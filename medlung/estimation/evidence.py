"""What one film's network output says about the quality of its mask: the evidence of the Dice estimate.

Everything is measured on the working grid (about 215 x 215 pixels for a
chest film at 2 mm), from arrays the Segmenter has anyway, so the cheap
evidence costs milliseconds whatever the film's size:

``margin`` evidence (the network's own certainty)
    ``soft_error``: 1 - the soft Dice between the lung probability and the
    mask (the Dice the network expects if its probabilities were right), and
    the same with probabilities tempered by 2 (``soft_error_t2``);
    ``band``: pixels with a margin below 2 (probability 0.12-0.88) per mask
    pixel, the width of the uncertain boundary relative to the lung's size;
    ``edge``: the mean gradient of the margin along the mask's boundary, per
    pixel (a sharp edge is a confident one); ``cleanup``: the pixels the
    clean-up removed or filled (specks, holes, a third component) per mask
    pixel.
``convention`` evidence (models with a field and an anatomical channel, one forward pass)
    ``conv_dice``: Dice of the raw field and anatomical masks;
    ``field_outside``: raw field pixels outside the anatomical lung, per field
    pixel (a lung field lies inside the whole lung: any is a contradiction).
``shape`` evidence (:mod:`medlung.estimation.shape_model`)
    ``shape_mahalanobis``, ``shape_residual`` of the mask against the
    eigen-lungs of the training masks of its convention.
``quality`` evidence (:func:`medlung.quality.measure_lungs`)
    lung fraction of the film, smaller/larger lung area, centre height and
    vertical offset, aspect and solidity of each lung, uncertain fraction and
    mean probability.
``image`` evidence (the film as the network saw it)
    ``saturated``: the share of pixels clipped to black or white (a wrong
    window); ``lung_mean``, ``contrast`` (outside minus inside the mask),
    ``edge_contrast`` (just outside minus just inside the boundary) and
    ``lung_std`` (texture inside): lungs are dark, their surround bright.
``perturbation`` evidence (opt-in: three more network passes, :mod:`medlung.inference.perturbations`)
    ``tta_dice_mean``, ``tta_dice_min``: Dice of the raw mask with the raw
    masks of the flipped, shifted and zoomed-out film.

Each per-lung structure (``right``, ``left``) has its own margin, shape and
perturbation evidence, measured in the pixels nearer that lung than the
other. :func:`film_evidence` returns one flat dictionary,
``<structure>.<name>`` -> float.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

#: The structures estimated: both lungs (the union mask), then each lung (labels 1 patient right, 2 left).
STRUCTURES = {"both": (1, 2), "right": (1,), "left": (2,)}
#: Margin under which a pixel is in the uncertain band (probability 0.12-0.88).
BAND_MARGIN = 2.0
#: Evidence groups and the names each brings (without the structure prefix), for selection and reports.
GROUPS = {
    "margin": ("soft_error", "soft_error_t2", "band", "edge", "cleanup"),
    "convention": ("conv_dice", "field_outside"),
    "shape": ("shape_mahalanobis", "shape_residual"),
    "quality": (
        "fraction",
        "ratio",
        "centre",
        "centre_offset",
        "aspect",
        "solidity",
        "uncertain_fraction",
        "mean_probability",
    ),
    "perturbation": ("tta_dice_mean", "tta_dice_min"),
    "image": ("saturated", "lung_mean", "contrast", "edge_contrast", "lung_std"),
}


def film_evidence(
    margin: np.ndarray,
    labels: np.ndarray,
    channels: Mapping[str, np.ndarray] | None = None,
    measures: Mapping | None = None,
    shapes: Mapping | None = None,
    perturbed: np.ndarray | None = None,
    image: np.ndarray | None = None,
) -> dict[str, float]:
    """The evidence of one film (see the module notes).

    Parameters
    ----------
    margin : numpy.ndarray
        ``(rows, cols)`` lung margin (logit, > 0 = lung) of the drawn convention on the working grid, in the
        standard display.
    labels : numpy.ndarray
        ``(rows, cols)`` the final labels (0/1/2) on the same grid.
    channels : mapping, optional
        ``{"field": logit, "anatomical": logit}`` of a two-convention model, same grid.
    measures : mapping, optional
        The quality check's measures (:func:`medlung.quality.measure_lungs`).
    shapes : mapping, optional
        ``structure -> ShapeModel`` of the drawn convention.
    perturbed : numpy.ndarray, optional
        ``(k, rows, cols)`` margins of perturbed passes back on this grid (NaN where unseen).
    image : numpy.ndarray, optional
        ``(rows, cols)`` the film as the network saw it (scaled 0-1), same grid.

    Returns
    -------
    dict
        ``"<structure>.<name>"`` -> float, for the structures of :data:`STRUCTURES`.
    """
    from scipy import ndimage

    from medlung.estimation.shape_model import normalised

    margin = np.clip(np.asarray(margin, dtype=np.float32), -50.0, 50.0)  # exp() of a larger logit overflows
    labels = np.asarray(labels)
    raw = margin > 0
    probability = 1.0 / (1.0 + np.exp(-margin))
    tempered = 1.0 / (1.0 + np.exp(-margin / 2.0))
    band = np.abs(margin) < BAND_MARGIN
    # a film of a few pixels (a 16x16 stub) has no gradient to take: its edges count as flat
    gradient = np.hypot(*np.gradient(margin)) if min(margin.shape) >= 2 else np.zeros_like(margin)
    regions = _regions(labels)
    out: dict[str, float] = {}
    for name, values in STRUCTURES.items():
        mask = np.isin(labels, values)
        region = regions[name]
        area = float(mask.sum())
        key = f"{name}."
        if area == 0:
            out.update({key + n: v for n, v in _EMPTY.items()})
            continue
        boundary = mask & ~ndimage.binary_erosion(mask)
        out[key + "soft_error"] = _soft_error(probability, mask, region)
        out[key + "soft_error_t2"] = _soft_error(tempered, mask, region)
        out[key + "band"] = float((band & region).sum()) / area
        out[key + "edge"] = float(gradient[boundary].mean())
        out[key + "cleanup"] = float(((raw != mask) & region).sum()) / area
        if shapes is not None and name in shapes:
            mahalanobis, residual = shapes[name].measure(normalised(mask))
            out[key + "shape_mahalanobis"], out[key + "shape_residual"] = mahalanobis, residual
        if perturbed is not None:
            agreement = [_dice_where(raw, p > 0, region & ~np.isnan(p)) for p in perturbed]
            out[key + "tta_dice_mean"], out[key + "tta_dice_min"] = float(np.mean(agreement)), float(min(agreement))
    if channels is not None and {"field", "anatomical"} <= set(channels):
        field, anatomical = channels["field"] > 0, channels["anatomical"] > 0
        out["both.conv_dice"] = _dice_where(field, anatomical, np.ones(field.shape, bool))
        out["both.field_outside"] = float((field & ~anatomical).sum()) / max(1.0, float(field.sum()))
    if measures is not None:
        out.update(_quality_evidence(measures))
    if image is not None:
        out.update(_image_evidence(np.asarray(image, dtype=np.float32), labels > 0))
    return out


def _image_evidence(image: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """The film as the network saw it: clipped share, lung and surround brightness, the lungs' texture."""
    from scipy import ndimage

    out = {"both.saturated": float(np.mean((image <= 1e-3) | (image >= 1 - 1e-3)))}
    if not mask.any() or mask.all():
        return {**out, "both.lung_mean": 1.0, "both.contrast": 0.0, "both.edge_contrast": 0.0, "both.lung_std": 0.0}
    ring_out = ndimage.binary_dilation(mask, iterations=3) & ~mask
    ring_in = mask & ~ndimage.binary_erosion(mask, iterations=3)
    out["both.lung_mean"] = float(image[mask].mean())
    out["both.contrast"] = float(image[~mask].mean() - image[mask].mean())
    out["both.edge_contrast"] = float(image[ring_out].mean() - image[ring_in].mean()) if ring_out.any() else 0.0
    out["both.lung_std"] = float(image[mask].std())
    return out


def _regions(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Pixels belonging to each structure's neighbourhood: everywhere for both, the nearer lung's for each lung."""
    from scipy import ndimage

    everywhere = np.ones(labels.shape, bool)
    regions = {"both": everywhere}
    if not (labels > 0).any():
        return {**regions, "right": everywhere, "left": everywhere}
    _, (rows, cols) = ndimage.distance_transform_edt(labels == 0, return_indices=True)
    nearest = labels[rows, cols]
    regions["right"], regions["left"] = nearest == 1, nearest == 2
    return regions


def _soft_error(probability: np.ndarray, mask: np.ndarray, region: np.ndarray) -> float:
    """1 - soft Dice of a probability map (inside ``region``) and a mask."""
    p = probability[region]
    inside = float(p[mask[region]].sum())
    return 1.0 - 2.0 * inside / max(1e-6, float(p.sum()) + float(mask.sum()))


def _dice_where(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    a, b = a & where, b & where
    total = float(a.sum() + b.sum())
    return 1.0 if total == 0 else 2.0 * float((a & b).sum()) / total


def _quality_evidence(measures: Mapping) -> dict[str, float]:
    """The quality check's measures as evidence (missing values as NaN)."""

    def number(value) -> float:
        return float("nan") if value is None else float(value)

    out = {
        "both.fraction": number(measures.get("fraction")),
        "both.ratio": number(measures.get("ratio")),
        "both.centre": number(measures.get("centre")),
        "both.centre_offset": number(measures.get("centre_offset")),
        "both.uncertain_fraction": number(measures.get("uncertain_fraction")),
        "both.mean_probability": number(measures.get("mean_probability")),
    }
    for side in ("right", "left"):
        lung = measures.get(side) or {}
        out[f"{side}.fraction"] = number(lung.get("fraction"))
        out[f"{side}.aspect"] = number(lung.get("aspect"))
        out[f"{side}.solidity"] = number(lung.get("solidity"))
    out["both.solidity"] = float(np.nanmin([out["right.solidity"], out["left.solidity"], np.inf]))
    return out


#: The evidence of a structure the mask does not have (worst values: the regressor sees a failure).
_EMPTY = {
    "soft_error": 1.0,
    "soft_error_t2": 1.0,
    "band": 10.0,
    "edge": 0.0,
    "cleanup": 10.0,
    "shape_mahalanobis": 10.0,
    "shape_residual": 1.0,
    "tta_dice_mean": 0.0,
    "tta_dice_min": 0.0,
}
