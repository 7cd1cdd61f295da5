"""Per-lung shape measures (scikit-image / scipy): known shapes with anisotropic spacing, and the report columns."""

from __future__ import annotations

import numpy as np
import pytest

from medlung.inference.measures import MEASURES, lung_measures, report_fields
from medlung.writers.report import COLUMNS


def two_lungs() -> np.ndarray:
    labels = np.zeros((60, 80), np.uint8)
    labels[10:40, 5:25] = 1  # 30 rows x 20 cols, on the image left: patient right on a PA film
    labels[12:30, 45:75] = 2  # 18 rows x 30 cols
    labels[20:24, 60:64] = 0  # a hole in the left lung
    return labels


def test_rectangles_with_anisotropic_spacing():
    measures = lung_measures(two_lungs(), (0.17, 0.14))
    right, left = measures["right"], measures["left"]
    assert measures["unit"] == "mm"
    assert right["height"] == pytest.approx(30 * 0.17) and right["width"] == pytest.approx(20 * 0.14)
    assert right["convex_area"] == pytest.approx(30 * 0.17 * 20 * 0.14) and right["solidity"] == pytest.approx(1.0)
    # marching squares runs through the boundary pixels' centres and cuts each corner diagonally
    corner = np.hypot(0.5 * 0.17, 0.5 * 0.14)
    assert right["perimeter"] == pytest.approx(2 * (29 * 0.17 + 19 * 0.14) + 4 * corner)
    assert left["solidity"] == pytest.approx((18 * 30 - 16) / (18 * 30))  # the hole lowers the solidity
    assert left["convex_area"] == pytest.approx(18 * 0.17 * 30 * 0.14)


def test_pixels_without_spacing_and_absent_lung():
    labels = two_lungs()
    labels[labels == 2] = 0
    measures = lung_measures(labels)
    assert measures["unit"] == "px" and measures["left"] is None
    assert measures["right"]["height"] == 30 and measures["right"]["width"] == 20
    assert measures["right"]["convex_area"] == 600
    fields = report_fields(measures)
    assert fields["left_height"] is None and fields["right_width"] == 20 and fields["shape_unit"] == "px"
    assert set(fields) <= set(COLUMNS) and len(fields) == 1 + 2 * len(MEASURES)


def test_lung_masks_measure_themselves(segmenter):
    from medlung.io import load_film
    from medlung.samples import SAMPLES_DIR

    masks = segmenter(load_film(SAMPLES_DIR / "dx_image.dcm"))
    measures = masks.measures
    assert measures is masks.measures  # computed once
    for side in ("right", "left"):
        lung = measures[side]
        assert 100 < lung["height"] < 350 and 50 < lung["width"] < 250  # mm: an adult's lung
        assert 0.6 < lung["solidity"] <= 1 and lung["convex_area"] > masks.areas_cm2[side] * 100
