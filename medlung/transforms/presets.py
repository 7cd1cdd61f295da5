"""Transform chains for training and inference, shared by the CLI and the bundle configs.

Intensity: every film is scaled by its own 0.5th and 99.5th percentiles to
[0, 1] (after the DICOM LUTs), which makes 8-bit PNGs and 10-16 bit DICOM
films look alike to the network.
"""

from __future__ import annotations

from typing import Sequence

from monai.transforms import (
    Compose,
    EnsureTyped,
    RandAdjustContrastd,
    RandAffined,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    RandSpatialCropd,
    ScaleIntensityRangePercentilesd,
    SpatialPadd,
)

from medlung.transforms.loading import LoadFilmd, LoadMaskd
from medlung.transforms.working_grid import ToWorkingGridd

#: Percentiles mapped to 0 and 1.
INTENSITY_PERCENTILES = (0.5, 99.5)


def intensity_transform(keys: str | Sequence[str] = "image") -> ScaleIntensityRangePercentilesd:
    """Robust per-film scaling to [0, 1] (clipped)."""
    low, high = INTENSITY_PERCENTILES
    return ScaleIntensityRangePercentilesd(keys, lower=low, upper=high, b_min=0.0, b_max=1.0, clip=True)


def labelled_transforms(working_spacing: float) -> Compose:
    """Deterministic part for film + mask pairs: load, working grid, intensity. Cacheable."""
    return Compose(
        [
            LoadFilmd("image"),
            LoadMaskd("label", reference_key="image"),
            ToWorkingGridd(["image", "label"], working_spacing, mode=["linear", "nearest"], reference_key="image"),
            intensity_transform("image"),
            EnsureTyped(["image", "label"], track_meta=False),
        ]
    )


def augmentation_transforms(roi_size: Sequence[int]) -> Compose:
    """Random part for training, suited to radiographs.

    Small rotations (±10°), independent zoom per axis (±15 %, so row/column
    aspect changes too), shifts (±8 %), then a random ``roi_size`` crop
    (padded first if needed); contrast (gamma), scale/shift, noise, blur.
    No left-right flip: the patient's right and left would swap.
    """
    roi = tuple(int(r) for r in roi_size)
    return Compose(
        [
            RandAffined(
                ["image", "label"],
                prob=0.8,
                rotate_range=(0.175,),
                scale_range=(0.15, 0.15),
                translate_range=(0.08 * roi[0], 0.08 * roi[1]),
                mode=("bilinear", "nearest"),
                padding_mode="zeros",
            ),
            SpatialPadd(["image", "label"], spatial_size=roi),
            RandSpatialCropd(["image", "label"], roi_size=roi, random_size=False),
            RandAdjustContrastd("image", prob=0.3, gamma=(0.7, 1.5)),
            RandScaleIntensityd("image", factors=0.15, prob=0.3),
            RandShiftIntensityd("image", offsets=0.1, prob=0.3),
            RandGaussianNoised("image", prob=0.2, std=0.03),
            RandGaussianSmoothd("image", prob=0.2, sigma_x=(0.5, 1.2), sigma_y=(0.5, 1.2)),
        ]
    )
