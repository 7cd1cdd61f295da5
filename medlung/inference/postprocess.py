"""From a lung mask on the native grid to right/left lung labels.

Clean-up: drop components smaller than a physical area, fill holes, keep
the largest component on each side of the film (one lung a side).
Right/left: PatientOrientation's first value is the patient direction of
increasing column index; ``L`` (the standard PA display) puts the patient's
right lung on the image left.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medlung.labels import LEFT, RIGHT
from medlung.plans import DEFAULT_MIN_LUNG_MM2

#: Orientation assumed when a film does not say: standard PA display.
STANDARD_PA = ("L", "F")


def clean_lung_mask(mask: np.ndarray, pixel_area_mm2: float, min_area_mm2: float = DEFAULT_MIN_LUNG_MM2) -> np.ndarray:
    """Keep one lung component on each side of the film, without holes or specks.

    Parameters
    ----------
    mask : numpy.ndarray of bool
        ``(rows, cols)`` lung pixels.
    pixel_area_mm2 : float
        Area of one pixel, mm² (nominal for uncalibrated films).
    min_area_mm2 : float
        Components smaller than this are specks (an adult lung is well over
        10,000 mm² on a PA film).

    Returns
    -------
    numpy.ndarray of bool

    Notes
    -----
    The largest component whose centre lies in the image's left half and the
    largest in its right half are kept. Gas in the stomach or bowel that the
    network takes for lung is then dropped whenever a larger lung lies on its
    side; ranking all components by size alone drops the smaller lung instead
    when the gas is larger (seen on a child's film). Works by labelling, never
    by iterated morphology, so a 4020x4892 film costs two labelling passes.
    """
    components, count = ndimage.label(mask)
    if count == 0:
        return np.zeros(mask.shape, bool)
    step = _sampling_step(mask.shape)
    samples, centres = _sampled_components(components, count, step)
    sizes = samples * float(step * step)
    large = sizes * pixel_area_mm2 >= min_area_mm2
    large[0] = False
    keep = np.zeros(count + 1, bool)
    for side in (centres < mask.shape[1] / 2, centres >= mask.shape[1] / 2):
        candidates = np.nonzero(large & side)[0]
        if candidates.size:
            keep[candidates[np.argmax(sizes[candidates])]] = True
    return fill_holes(keep[components])


def _sampling_step(shape: tuple[int, int], pixels: float = 4e6) -> int:
    """Every n-th row/column still gives ``pixels`` samples: enough to rank components and place them."""
    return max(1, int((shape[0] * shape[1] / pixels) ** 0.5))


def _sampled_components(components: np.ndarray, count: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Samples of each labelled component on every ``step``-th row/column, and its mean image column.

    Returns
    -------
    samples : numpy.ndarray of float
        ``(count + 1,)`` samples per label (label 0 is the background).
    centres : numpy.ndarray of float
        ``(count + 1,)`` mean column, in native-grid pixels; NaN for a
        component too small to be sampled.
    """
    sampled = components[::step, ::step]
    columns = np.broadcast_to(np.arange(sampled.shape[1]) * step, sampled.shape)  # image column of each sample
    samples = np.bincount(sampled.ravel(), minlength=count + 1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        centres = np.bincount(sampled.ravel(), weights=columns.ravel(), minlength=count + 1) / samples
    return samples, centres


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions that do not touch the image border (one labelling pass)."""
    background, count = ndimage.label(~mask)
    if count == 0:
        return mask
    border = np.unique(np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]]))
    outside = np.zeros(count + 1, bool)
    outside[border] = True
    outside[0] = False
    return ~outside[background]


def split_lungs(mask: np.ndarray, orientation: tuple[str, str] | None) -> tuple[np.ndarray, bool, list[str]]:
    """Label the patient's right (1) and left (2) lung.

    Parameters
    ----------
    mask : numpy.ndarray of bool
        ``(rows, cols)`` cleaned lung mask.
    orientation : tuple of str or None
        DICOM PatientOrientation; ``None`` assumes :data:`STANDARD_PA`.

    Returns
    -------
    labels : numpy.ndarray of uint8
        0 background, 1 right lung, 2 left lung.
    assumed : bool
        True when the orientation was assumed.
    notes : list of str
        What was assumed or could not be decided.
    """
    notes: list[str] = []
    assumed = orientation is None
    row_direction = (orientation or STANDARD_PA)[0][:1]
    if row_direction not in ("L", "R"):
        notes.append(f"PatientOrientation {orientation} is not a frontal view: standard PA assumed for right/left")
        row_direction, assumed = "L", True
    elif assumed:
        notes.append("PatientOrientation absent: standard PA display assumed (patient right on image left)")
    image_left_label = RIGHT if row_direction == "L" else LEFT
    image_right_label = LEFT if image_left_label == RIGHT else RIGHT

    labels = np.zeros(mask.shape, np.uint8)
    components, count = ndimage.label(mask)
    cols = mask.shape[1]
    if count >= 2:
        samples, centres = _sampled_components(components, count, _sampling_step(mask.shape))
        for index in np.nonzero(samples[1:] == 0)[0] + 1:  # too small to be sampled: place it exactly
            centres[index] = np.nonzero(components == index)[1].mean()
        side = np.where(centres < cols / 2, image_left_label, image_right_label).astype(np.uint8)
        side[0] = 0
        labels = side[components]
        if len(np.unique(side[1:])) == 1:
            notes.append("both lung components lie on one side of the film")
    elif count == 1:
        divide = _midline(mask)
        labels[:, :divide][mask[:, :divide]] = image_left_label
        labels[:, divide:][mask[:, divide:]] = image_right_label
        notes.append(f"lungs touch: divided at column {divide}")
    return labels, assumed, notes


def _midline(mask: np.ndarray) -> int:
    """Column in the central third with the fewest lung pixels (the mediastinum)."""
    cols = mask.shape[1]
    start, stop = cols // 3, max(cols // 3 + 1, 2 * cols // 3)
    counts = mask[:, start:stop].sum(axis=0)
    return int(start + np.argmin(counts))
