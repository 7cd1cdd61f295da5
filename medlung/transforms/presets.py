"""Transform chains for training and inference, shared by the CLI and the bundle configs.

Inference: :func:`inference_transforms` builds, from a model's plan, the chain
before the network that both the :class:`~medlung.inference.Segmenter` and the
bundle's ``preprocessing`` property run.

Intensity: every film is scaled by its own 0.5th and 99.5th percentiles to
[0, 1] (after the DICOM LUTs), which makes 8-bit PNGs and 10-16 bit DICOM
films look alike to the network.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    RandZoomd,
    ScaleIntensityRangePercentilesd,
    SpatialPadd,
)

from medlung.plans import AUGMENTATIONS, DEFAULT_INTENSITY_PERCENTILES, ModelPlan
from medlung.transforms.conventions import PartialLabelTargetd
from medlung.transforms.display import ToStandardDisplayd
from medlung.transforms.loading import LoadFilmd, LoadMaskd
from medlung.transforms.sick_film import RandSickFilmd
from medlung.transforms.working_grid import ToWorkingGridd

#: Percentiles mapped to 0 and 1 (the default plan's; a model's own are in its plan).
INTENSITY_PERCENTILES = DEFAULT_INTENSITY_PERCENTILES


def intensity_transform(
    keys: str | Sequence[str] = "image", percentiles: Sequence[float] = INTENSITY_PERCENTILES
) -> ScaleIntensityRangePercentilesd:
    """Robust per-film scaling to [0, 1] (clipped) between two film percentiles."""
    low, high = percentiles
    return ScaleIntensityRangePercentilesd(keys, lower=low, upper=high, b_min=0.0, b_max=1.0, clip=True)


def inference_transforms(
    plan: ModelPlan,
    keys: str | Sequence[str] = "image",
    spacing: str | float | Sequence[float] | None = None,
    display_key: str = "display",
) -> Compose:
    """The chain before the network, from a model's plan: load, standard display, working grid, intensity.

    Parameters
    ----------
    plan : medlung.plans.ModelPlan
        The model's plan: its ``working_spacing`` (mm) and ``intensity_percentiles`` are used.
    keys : str or sequence of str
        Keys holding film paths or :class:`~medlung.film.Film` objects.
    spacing : str, float or sequence of float, optional
        Spacing in mm for every film read from a path, instead of the file's (``--spacing``).
    display_key : str
        Key that may hold a :class:`~medlung.orientation.DisplayTransform` overriding the films'
        PatientOrientation (see :class:`~medlung.transforms.display.ToStandardDisplayd`).

    Returns
    -------
    monai.transforms.Compose
        ``{"image": path or Film}`` -> ``{"image": MetaTensor (1, rows, cols)}`` in the standard display
        (:class:`~medlung.transforms.display.ToStandardDisplayd`), on the working grid
        (:class:`~medlung.transforms.working_grid.ToWorkingGridd`), scaled to [0, 1] between the plan's
        percentiles. The intensity step is the last one, so ``chain(data, end=len(chain.transforms) - 1)``
        gives the film on the working grid before scaling. The meta keeps ``native_shape`` and
        ``native_spacing`` (of the film in the standard display), ``orientation`` (after the display step),
        ``display`` and ``stored_orientation`` for :func:`medlung.inference.native_grid.native_labels`.
    """
    return Compose(
        [
            LoadFilmd(keys, spacing=spacing, working_spacing=plan.working_spacing),
            ToStandardDisplayd(keys, display_key),
            ToWorkingGridd(keys, plan.working_spacing),
            intensity_transform(keys, plan.intensity_percentiles),
        ]
    )


def partial_label_transforms(plan: ModelPlan, pseudo_weight: float = 0.5) -> Compose:
    """Deterministic training part for a per-convention (sigmoid) model: load, partial-label targets, working grid.

    Gives ``image`` ``(1, H, W)``, ``label`` and ``weight`` ``(C, H, W)`` (one channel per convention of
    ``plan``) and ``own`` ``(C,)``; see :mod:`medlung.transforms.conventions` (``pseudo_weight``: weight of
    an entry's pseudo-label pixels). Cacheable.
    """
    keys = ["image", "label", "weight"]
    return Compose(
        [
            LoadFilmd("image"),
            LoadMaskd("label", reference_key="image"),
            PartialLabelTargetd(plan.conventions, pseudo_weight=pseudo_weight),
            ToWorkingGridd(keys, plan.working_spacing, mode=["linear", "nearest", "nearest"], reference_key="image"),
            intensity_transform("image", plan.intensity_percentiles),
            EnsureTyped([*keys, "own"], track_meta=False),
        ]
    )


def sick_film_transforms(plan: ModelPlan, prob: float = 0.5) -> Compose:
    """Random sick/portable-film look (opacities, base haze, lines, leads, text) on cropped training films."""
    return Compose([RandSickFilmd(prob=prob, working_spacing=plan.working_spacing)])


def check_augmentations(names: Sequence[str]) -> tuple[str, ...]:
    """The names, checked against :data:`AUGMENTATIONS`, in their order of application.

    Raises
    ------
    ValueError
        For an unknown name.
    """
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown augmentation(s) {', '.join(unknown)}; choose from {', '.join(AUGMENTATIONS)}.")
    return tuple(n for n in AUGMENTATIONS if n in names)


def named_augmentations(
    names: Sequence[str],
    plan: ModelPlan,
    keys: Sequence[str] = ("image", "label", "weight"),
    sick_film_prob: float = 0.5,
    references: Sequence | None = None,
) -> Compose:
    """Random part for training from named augmentations (:data:`AUGMENTATIONS`), in their fixed order.

    Geometric ones (``affine``, ``field_of_view``) come first and move every key; then the crop of
    ``plan.roi_size`` (padded first if needed); then the film-only ones. ``references`` are the grey-level
    quantile curves of the training films for ``histogram`` (:func:`medlung.transforms.domain.film_quantiles`).
    No left-right flip: the patient's right and left would swap.
    """
    from medlung.transforms.domain import RandCollimationd, RandHistogramMatchd, RandResolutiond, RandToneCurved

    chosen = check_augmentations(names)
    roi = (plan.roi_size, plan.roi_size)
    keys = list(keys)
    modes = ("bilinear",) + ("nearest",) * (len(keys) - 1)
    mm = plan.working_spacing
    steps: list = []
    if "affine" in chosen:
        steps.append(_affine(keys, roi))
    if "field_of_view" in chosen:
        steps.append(RandZoomd(keys, prob=0.25, min_zoom=0.65, max_zoom=1.0, mode=modes, padding_mode="constant"))
    steps += [SpatialPadd(keys, spatial_size=roi), RandSpatialCropd(keys, roi_size=roi, random_size=False)]
    for name, parts in (
        ("sick_lung", ("opacities", "haze")),
        ("devices", ("lines", "leads", "pacemaker")),
        ("markers", ("text", "markers")),
    ):
        if name in chosen:
            steps.append(RandSickFilmd(prob=sick_film_prob, working_spacing=mm, parts=parts))
    if "collimation" in chosen:
        steps.append(RandCollimationd(prob=0.3, working_spacing=mm))
    if "tone" in chosen:
        steps.append(RandToneCurved(prob=0.5))
    if "histogram" in chosen:
        steps.append(RandHistogramMatchd(references or [], prob=0.25))
    if "resolution" in chosen:
        steps.append(RandResolutiond(prob=0.3))
    if "intensity" in chosen:
        steps += _intensity()
    return Compose(steps)


def _affine(keys: list, roi: tuple) -> RandAffined:
    return RandAffined(
        keys,
        prob=0.8,
        rotate_range=(0.175,),
        scale_range=(0.15, 0.15),
        translate_range=(0.08 * roi[0], 0.08 * roi[1]),
        mode=("bilinear",) + ("nearest",) * (len(keys) - 1),
        padding_mode="zeros",
    )


def _intensity() -> list:
    return [
        RandAdjustContrastd("image", prob=0.3, gamma=(0.7, 1.5)),
        RandScaleIntensityd("image", factors=0.15, prob=0.3),
        RandShiftIntensityd("image", offsets=0.1, prob=0.3),
        RandGaussianNoised("image", prob=0.2, std=0.03),
        RandGaussianSmoothd("image", prob=0.2, sigma_x=(0.5, 1.2), sigma_y=(0.5, 1.2)),
    ]


def augmentation_transforms(roi_size: Sequence[int], keys: Sequence[str] = ("image", "label")) -> Compose:
    """Random part for training, suited to radiographs.

    Small rotations (±10°), independent zoom per axis (±15 %, so row/column
    aspect changes too), shifts (±8 %), then a random ``roi_size`` crop
    (padded first if needed); contrast (gamma), scale/shift, noise, blur.
    No left-right flip: the patient's right and left would swap.
    """
    roi = tuple(int(r) for r in roi_size)
    keys = list(keys)
    return Compose(
        [
            _affine(keys, roi),
            SpatialPadd(keys, spatial_size=roi),
            RandSpatialCropd(keys, roi_size=roi, random_size=False),
            *_intensity(),
        ]
    )
