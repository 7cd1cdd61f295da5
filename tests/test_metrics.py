"""Dice, IoU, HD95 and ASSD on tiny synthetic masks with known answers, in px and in mm."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medlung.errors import InvalidSpacingError, MaskMismatchError
from medlung.metrics import assd, compare_masks, dice, hd95, iou, summarize, surface_distances


def square(top: int, left: int, size: int = 20, shape=(64, 64)) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    mask[top : top + size, left : left + size] = 1
    return mask


def test_identical_masks_are_perfect():
    mask = square(10, 12)
    assert compare_masks(mask, mask) == {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "assd": 0.0, "unit": "px"}
    assert compare_masks(mask, mask * 255, spacing=(0.7, 0.3))["unit"] == "mm"


@pytest.mark.parametrize("shift", [1, 3, 5])
def test_known_overlap_of_shifted_squares(shift):
    truth, pred = square(10, 10), square(10, 10 + shift)
    overlap = 20 * (20 - shift)
    assert dice(pred, truth) == pytest.approx(2 * overlap / 800)
    assert iou(pred, truth) == pytest.approx(overlap / (800 - overlap))


@pytest.mark.parametrize("shift", [2, 5])
def test_hd95_of_shifted_squares_follows_the_spacing_of_the_shifted_axis(shift):
    truth = square(10, 10)
    right, down = square(10, 10 + shift), square(10 + shift, 10)
    assert hd95(right, truth) == pytest.approx(shift)
    assert hd95(down, truth) == pytest.approx(shift)
    row_mm, col_mm = 2.0, 0.5  # anisotropic: rows 4x as far apart as columns
    assert hd95(right, truth, spacing=(row_mm, col_mm)) == pytest.approx(shift * col_mm)
    assert hd95(down, truth, spacing=(row_mm, col_mm)) == pytest.approx(shift * row_mm)
    # the spacing of the other axis changes nothing for a pure column shift
    assert hd95(right, truth, spacing=(9.0, col_mm)) == pytest.approx(shift * col_mm)


def test_values_equal_monai_public_functions_with_anisotropic_spacing():
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    rng = np.random.default_rng(0)
    truth = square(8, 9, size=30)
    pred = truth.copy()
    pred[rng.integers(0, 64, 40), rng.integers(0, 64, 40)] = 1  # specks
    pred[8:14, 9:20] = 0  # a bite
    spacing = (0.8, 0.35)
    t = lambda m: torch.from_numpy(m.astype(np.float32))[None, None]  # noqa: E731
    expected_hd = compute_hausdorff_distance(
        t(pred), t(truth), include_background=True, percentile=95, spacing=spacing
    ).item()
    expected_asd = compute_average_surface_distance(
        t(pred), t(truth), include_background=True, symmetric=True, spacing=spacing
    ).item()
    result = compare_masks(pred, truth, spacing)
    assert result["hd95"] == pytest.approx(expected_hd, rel=1e-5)
    assert result["assd"] == pytest.approx(expected_asd, rel=1e-5)
    assert hd95(pred, truth, spacing) == result["hd95"] and assd(pred, truth, spacing) == result["assd"]


def test_assd_is_symmetric_and_in_the_spacing_unit():
    a, b = square(10, 10), square(12, 15)
    assert assd(a, b) == pytest.approx(assd(b, a))
    assert assd(a, b, spacing=(0.5, 0.5)) == pytest.approx(0.5 * assd(a, b))


def test_empty_mask_rules():
    empty, mask = np.zeros((16, 16), np.uint8), square(2, 2, size=6, shape=(16, 16))
    assert compare_masks(empty, empty) == {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "assd": 0.0, "unit": "px"}
    for pred, truth in ((empty, mask), (mask, empty)):
        result = compare_masks(pred, truth, spacing=(0.2, 0.2))
        assert result["dice"] == 0.0 and result["iou"] == 0.0
        assert math.isinf(result["hd95"]) and math.isinf(result["assd"])
    forward, backward = surface_distances(empty, empty)
    assert forward.size == 0 and backward.size == 0


def test_summaries_ignore_inf_and_nan_but_count_them():
    stats = summarize([0.9, 0.95, 1.0, math.inf, math.nan, None])
    assert stats["n"] == 3 and stats["n_inf"] == 1 and stats["n_nan"] == 2
    assert stats["mean"] == pytest.approx(0.95) and stats["median"] == pytest.approx(0.95)
    assert stats["p5"] == pytest.approx(0.905) and stats["min"] == 0.9
    assert summarize([math.inf])["mean"] is None


def test_bad_inputs_raise_one_line_errors():
    with pytest.raises(MaskMismatchError, match="rows x cols"):
        dice(np.zeros((4, 5)), np.zeros((5, 4)))
    with pytest.raises(MaskMismatchError, match="2-D"):
        dice(np.zeros((2, 4, 5)), np.zeros((2, 4, 5)))
    with pytest.raises(InvalidSpacingError):
        hd95(square(1, 1), square(2, 2), spacing=(0.0, 1.0))
    with pytest.raises(InvalidSpacingError):
        hd95(square(1, 1), square(2, 2), spacing=(1.0,))
