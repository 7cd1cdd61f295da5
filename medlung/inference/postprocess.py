"""From a lung mask on the native grid to right/left lung labels, and the anatomical lungs' shape prior.

Clean-up: drop components smaller than a physical area, fill holes, keep
the largest component on each side of the film (one lung a side).
Right/left: PatientOrientation's first value is the patient direction of
increasing column index; ``L`` (the standard PA display) puts the patient's
right lung on the image left.
Shape prior (:func:`close_lungs`, anatomical convention only): each whole
lung is closed on the working grid, before the margin goes to the native grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from medlung.labels import LEFT, RIGHT
from medlung.plans import DEFAULT_MIN_LUNG_MM2

#: Orientation assumed when a film does not say: standard PA display.
STANDARD_PA = ("L", "F")
#: Margin (a logit) the shape prior gives the middle of a pixel it adds: clearly lung, as the network's own lung.
CLOSED_MARGIN = 4.0
#: Width of the blur that gives the added pixels' margin a smooth edge, working-grid pixels (Gaussian sigma).
CLOSED_EDGE_SIGMA = 0.7


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
    by iterated morphology, and only inside the bounding box of the lung
    pixels (see :func:`_bounding_box`): a 4020x4892 film costs two labelling
    passes over about half its pixels.
    """
    out = np.zeros(mask.shape, bool)
    box = _bounding_box(mask)
    if box is None:
        return out
    components, keep, _ = _kept_components(mask, box, pixel_area_mm2, min_area_mm2)
    out[box] = fill_holes(keep[components])
    return out


def clean_and_split(
    mask: np.ndarray,
    pixel_area_mm2: float,
    orientation: Sequence[str] | None,
    min_area_mm2: float = DEFAULT_MIN_LUNG_MM2,
) -> tuple[np.ndarray, bool, list[str]]:
    """``split_lungs(clean_lung_mask(mask, pixel_area_mm2, min_area_mm2), orientation)``, in fewer passes.

    Parameters and returns as :func:`clean_lung_mask` and :func:`split_lungs`.

    Notes
    -----
    When the clean-up fills no hole (the usual case), the cleaned mask's
    components are the kept components themselves: the same pixels, in the
    same raster order, with the sizes and centres already sampled. The right/
    left labels then come from one look-up of the first labelling, without
    labelling and sampling the cleaned mask again. When a hole was filled, the
    cleaned mask is split as :func:`split_lungs` does.
    """
    box = _bounding_box(mask)
    if box is None:
        return split_lungs(np.zeros(mask.shape, bool), orientation)
    components, keep, centres = _kept_components(mask, box, pixel_area_mm2, min_area_mm2)
    kept = keep[components]
    filled, holes = _fill_holes(kept)
    if holes:
        cleaned = np.zeros(mask.shape, bool)
        cleaned[box] = filled
        return split_lungs(cleaned, orientation)
    image_left_label, image_right_label, assumed, notes = _sides(orientation)
    labels = np.zeros(mask.shape, np.uint8)
    chosen = np.flatnonzero(keep)  # at most one a side, each sampled (an unsampled centre is NaN: never kept)
    if chosen.size == 2:
        side = np.zeros(keep.size, np.uint8)
        side[chosen] = np.where(centres[chosen] < mask.shape[1] / 2, image_left_label, image_right_label)
        labels[box] = side[components]
        if side[chosen[0]] == side[chosen[1]]:
            notes.append("both lung components lie on one side of the film")
    elif chosen.size == 1:
        notes.append(_divide(labels, box, kept, image_left_label, image_right_label))
    return labels, assumed, notes


def close_lungs(
    margin: np.ndarray, radius_mm: float, spacing_mm: float, min_area_mm2: float = DEFAULT_MIN_LUNG_MM2
) -> np.ndarray:
    """The lung margin with each lung morphologically closed: the anatomical convention's shape prior.

    Parameters
    ----------
    margin : numpy.ndarray of float32
        ``(rows, cols)`` lung margin (a logit, > 0 = lung) on the working grid.
    radius_mm : float
        Radius of the closing disk, mm: notches and bays narrower than about twice this are filled.
    spacing_mm : float
        Working-grid pixel size, mm.
    min_area_mm2 : float
        Components smaller than this are specks, not lungs (:func:`clean_lung_mask`), mm².

    Returns
    -------
    numpy.ndarray of float32
        The margin, raised on the pixels the closing adds (to :data:`CLOSED_MARGIN` in their middle, falling to
        0 at their outer edge) and, mostly below 0, on their next neighbours (the smooth edge); every other
        pixel keeps its value.

    Notes
    -----
    Each lung (the largest component on each side of the film) is closed on its own, so that the two lungs are
    never bridged across the mediastinum; what the closing encloses is filled too. A whole lung runs behind the
    heart and down to the diaphragm's dome; where the network is unsure there, its margin dips below 0 in
    narrow, ragged bays along the heart's edge (a ragged, stepped lower inner edge on healthy PA films). The
    closing fills those bays and leaves the lung's outline elsewhere as it is (a closing never removes a pixel).
    It works on the working grid (about 200 x 250 pixels at 2 mm), so it costs the same on every film.
    """
    lungs = margin > 0
    labels, _, _ = clean_and_split(lungs, spacing_mm * spacing_mm, None, min_area_mm2)
    radius = radius_mm / spacing_mm
    reach = int(np.ceil(radius))
    rows, cols = np.ogrid[-reach : reach + 1, -reach : reach + 1]
    disk = rows * rows + cols * cols <= radius * radius
    added = np.zeros(lungs.shape, bool)
    for side in (RIGHT, LEFT):
        lung = labels == side
        box = _bounding_box(lung)
        if box is None:
            continue
        padded = np.pad(lung[box], reach + 1)  # room for the dilation: the closing stays inside the lung's box
        inside = slice(reach + 1, -reach - 1)
        added[box] |= ndimage.binary_fill_holes(ndimage.binary_closing(padded, disk))[inside, inside]
    added &= ~lungs
    if not added.any():
        return margin
    soft = ndimage.gaussian_filter(added.astype(np.float32), CLOSED_EDGE_SIGMA)
    near = soft > 0.01
    out = margin.copy()
    out[near] = np.maximum(margin[near], 2 * CLOSED_MARGIN * (soft[near] - 0.5))
    return out


def _kept_components(
    mask: np.ndarray, box: tuple[slice, slice], pixel_area_mm2: float, min_area_mm2: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The components of ``mask`` inside ``box`` (its lungs' box), which to keep, and their centres (image columns)."""
    components, count = ndimage.label(mask[box])
    step = _sampling_step(mask.shape)
    samples, centres = _sampled_components(components, count, step, _origin(box), mask.shape)
    sizes = samples * float(step * step)
    large = sizes * pixel_area_mm2 >= min_area_mm2
    large[0] = False
    keep = np.zeros(count + 1, bool)
    for side in (centres < mask.shape[1] / 2, centres >= mask.shape[1] / 2):
        candidates = np.nonzero(large & side)[0]
        if candidates.size:
            keep[candidates[np.argmax(sizes[candidates])]] = True
    return components, keep, centres


def _bounding_box(mask: np.ndarray) -> tuple[slice, slice] | None:
    """The smallest ``(rows, cols)`` slices holding every ``True`` pixel; ``None`` when there is none.

    Labelling the foreground inside the box gives the components of the whole
    mask, numbered in the same (raster) order. Filling holes inside it gives
    the whole mask's holes too: a background region touching the box's edge
    continues, through background outside the box, straight to the image's
    border; one that does not is enclosed by lung pixels in the whole mask.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0] : rows[-1] + 1].any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def _origin(box: tuple[slice, slice]) -> tuple[int, int]:
    return box[0].start, box[1].start


def _sampling_step(shape: tuple[int, int], pixels: float = 4e6) -> int:
    """Every n-th row/column still gives ``pixels`` samples: enough to rank components and place them."""
    return max(1, int((shape[0] * shape[1] / pixels) ** 0.5))


def _sampled_components(
    components: np.ndarray,
    count: int,
    step: int,
    origin: tuple[int, int] = (0, 0),
    shape: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Samples of each labelled component on every ``step``-th image row/column, and its mean image column.

    Parameters
    ----------
    components : numpy.ndarray of int
        Labels of a window of the image (all of it by default).
    count : int
        Highest label.
    step : int
        Sampling step, pixels: image rows and columns ``0, step, 2 step, ...`` are sampled.
    origin : tuple of int
        Image ``(row, col)`` of the window's first pixel.
    shape : tuple of int, optional
        Image ``(rows, cols)``, for label 0 (background), which also covers the image outside the window;
        default: the window is the image.

    Returns
    -------
    samples : numpy.ndarray of float
        ``(count + 1,)`` samples per label (label 0 is the background).
    centres : numpy.ndarray of float
        ``(count + 1,)`` mean column, in image pixels; NaN for a
        component too small to be sampled.

    Notes
    -----
    Only the sampled lung pixels are visited; column sums are sums of whole
    numbers (exact in float64), so the result does not depend on the window.
    """
    rows, cols = components.shape if shape is None else shape
    row0, col0 = ((-origin[0]) % step, (-origin[1]) % step)  # first sampled row/column inside the window
    sampled = np.ascontiguousarray(components[row0::step, col0::step]).ravel()
    width = -(-(components.shape[1] - col0) // step) if components.shape[1] > col0 else 0
    found = np.flatnonzero(sampled)
    labels = sampled[found]
    columns = (origin[1] + col0 + step * (found % width) if width else found).astype(np.float64)
    samples = np.bincount(labels, minlength=count + 1).astype(np.float64)
    sums = np.bincount(labels, weights=columns, minlength=count + 1)
    grid_rows, grid_cols = -(-rows // step), -(-cols // step)  # sampled rows/columns of the image
    samples[0] = grid_rows * grid_cols - samples[1:].sum()
    sums[0] = grid_rows * (step * grid_cols * (grid_cols - 1) / 2) - sums[1:].sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        centres = sums / samples
    return samples, centres


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions that do not touch the image border (one labelling pass, inside the lungs' box)."""
    return _fill_holes(mask)[0]


def _fill_holes(mask: np.ndarray) -> tuple[np.ndarray, bool]:
    """:func:`fill_holes`, and whether it filled any hole."""
    box = _bounding_box(mask)
    if box is None:
        return np.zeros(mask.shape, bool), False
    window = mask[box]
    background, count = ndimage.label(~window)
    if count == 0:
        return mask, False
    border = np.unique(np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]]))
    outside = np.zeros(count + 1, bool)
    outside[border] = True
    outside[0] = False
    out = np.zeros(mask.shape, bool)
    out[box] = ~outside[background]
    return out, not outside[1:].all()


def split_lungs(mask: np.ndarray, orientation: Sequence[str] | None) -> tuple[np.ndarray, bool, list[str]]:
    """Label the patient's right (1) and left (2) lung.

    Parameters
    ----------
    mask : numpy.ndarray of bool
        ``(rows, cols)`` cleaned lung mask.
    orientation : sequence of str or None
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
    image_left_label, image_right_label, assumed, notes = _sides(orientation)
    labels = np.zeros(mask.shape, np.uint8)
    box = _bounding_box(mask)
    if box is None:
        return labels, assumed, notes
    window, (row0, col0) = mask[box], _origin(box)
    components, count = ndimage.label(window)  # the whole mask's components (see _bounding_box)
    cols = mask.shape[1]
    if count >= 2:
        samples, centres = _sampled_components(components, count, _sampling_step(mask.shape), (row0, col0), mask.shape)
        for index in np.nonzero(samples[1:] == 0)[0] + 1:  # too small to be sampled: place it exactly
            centres[index] = (np.nonzero(components == index)[1] + col0).mean()
        side = np.where(centres < cols / 2, image_left_label, image_right_label).astype(np.uint8)
        side[0] = 0
        labels[box] = side[components]
        if len(np.unique(side[1:])) == 1:
            notes.append("both lung components lie on one side of the film")
    elif count == 1:
        notes.append(_divide(labels, box, window, image_left_label, image_right_label))
    return labels, assumed, notes


def _sides(orientation: Sequence[str] | None) -> tuple[int, int, bool, list[str]]:
    """Labels of the image's left and right half from PatientOrientation, whether it was assumed, and notes."""
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
    return image_left_label, image_right_label, assumed, notes


def _divide(
    labels: np.ndarray, box: tuple[slice, slice], window: np.ndarray, image_left_label: int, image_right_label: int
) -> str:
    """Label one lung component (``window``, the mask inside ``box``) on either side of the midline; the note."""
    col0 = _origin(box)[1]
    divide = _midline(window, col0, labels.shape[1])
    inside = min(max(divide - col0, 0), window.shape[1])  # the divide in the window's columns
    labels[box][:, :inside][window[:, :inside]] = image_left_label
    labels[box][:, inside:][window[:, inside:]] = image_right_label
    return f"lungs touch: divided at column {divide}"


def _midline(window: np.ndarray, col0: int = 0, cols: int | None = None) -> int:
    """Image column in the central third with the fewest lung pixels (the mediastinum).

    ``window`` holds image columns ``col0`` onwards of the mask (all rows with lung pixels); ``cols`` is the
    image's width (default: the window's).
    """
    cols = window.shape[1] if cols is None else cols
    counts = np.zeros(cols, np.int64)
    counts[col0 : col0 + window.shape[1]] = window.sum(axis=0)
    start, stop = cols // 3, max(cols // 3 + 1, 2 * cols // 3)
    return int(start + np.argmin(counts[start:stop]))
