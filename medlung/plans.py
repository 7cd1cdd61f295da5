"""The model plan: everything a trained model needs around its weights, in one torch-free place.

In the spirit of nnU-Net's plans, a :class:`ModelPlan` names the network
(architecture and widths), the working grid (spacing in mm and sliding-window
size), the intensity rule, the output head (which lung convention each output
channel follows) and the post-processing settings. Training writes it into
every checkpoint, export writes it into the bundle's ``configs/inference.json``,
and the :class:`~medlung.inference.segmenter.Segmenter`, evaluation and the CLI
read it back from there; nothing else repeats these numbers.

Output heads
------------
``"softmax"``
    Two channels, background and lung, softmax over them (models up to 1.1.0).
    The lung follows one convention, ``conventions[0]``.
``"sigmoid"``
    One independent sigmoid channel per lung convention, in the order of
    ``conventions`` (e.g. ``("field", "anatomical")``), trained with partial
    labels: each film supervises only the convention its mask follows.

This module imports neither torch nor MONAI, so the command line can read
defaults from it without loading them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

# The two lung conventions and the default one are user-facing defaults (medlung.defaults); re-exported here, where
# the plan checks its head against them.
from medlung.defaults import CONVENTIONS, DEFAULT_CONVENTION

HEADS = ("softmax", "sigmoid")
NETWORKS = ("basicunet", "unetpp")

#: Channel widths (6 values, MONAI convention) of the default network: 1.1M parameters for BasicUNet, small
#: enough to train on 2 CPU cores in about an hour.
DEFAULT_FEATURES = (24, 24, 48, 96, 192, 24)
#: Working pixel size, mm: a 43 cm film becomes about 215 working pixels.
DEFAULT_WORKING_SPACING = 2.0
#: Training crop and sliding-window size on the working grid, pixels (448 mm at 2 mm: a whole chest).
DEFAULT_ROI_SIZE = 224
#: Film percentiles mapped to 0 and 1 before the network (robust to burnt-in text and collimation).
DEFAULT_INTENSITY_PERCENTILES = (0.5, 99.5)
#: Sliding-window overlap, fraction of the window.
DEFAULT_OVERLAP = 0.25
#: Lung components smaller than this are dropped by the clean-up, mm² (a 3.9 cm square).
DEFAULT_MIN_LUNG_MM2 = 1500.0
#: A film whose estimated Dice (medlung.estimation) is below this is flagged ``low_dice_estimate``: a mask worse
#: than 0.90 is one a researcher would redraw (the model's films are 0.95-0.98 on unseen hospitals).
DEFAULT_MIN_DICE_ESTIMATE = 0.90
#: Radius of the shape prior's closing of each anatomical lung, mm (:func:`medlung.inference.postprocess.close_lungs`);
#: 0 draws the anatomical lungs as the network gives them (every model before 3.0.1).
DEFAULT_ANATOMICAL_CLOSING_MM = 0.0

#: The named training augmentations, in the order they are applied (:func:`medlung.transforms.presets.named_augmentations`):
#: geometric ones move film and masks together, the others change the film only.
AUGMENTATIONS = {
    "affine": "rotation ±10°, zoom ±15 % per axis, shift ±8 % (film and masks)",
    "field_of_view": "the chest smaller in the film, 65-100 % (more neck and abdomen, as on AP films; film and masks)",
    "sick_lung": "consolidation-like opacities and a base haze inside the lungs (medlung.transforms.sick_film)",
    "devices": "lines and tubes, ECG leads, a pacemaker and its lead (medlung.transforms.sick_film)",
    "markers": "burnt-in text and R/L markers (medlung.transforms.sick_film)",
    "collimation": "bright collimator shadows or black borders along the edges, outside the lungs",
    "tone": "exposure and tone curves: gamma, S-shaped contrast, exposure shift with clipping",
    "histogram": "grey levels matched to another training film's histogram (most often another source's)",
    "resolution": "stored coarser (down to 1/3) and blurred, or edge-enhanced (unsharp masking)",
    "intensity": "gamma, intensity scale and shift, Gaussian noise, blur (the augmentation of 2.0.0)",
}
#: Those that move the masks with the film.
GEOMETRIC_AUGMENTATIONS = ("affine", "field_of_view")


@dataclass(frozen=True)
class ModelPlan:
    """What a trained network needs around it to segment a film.

    Attributes
    ----------
    network : str
        ``"basicunet"`` or ``"unetpp"``.
    features : tuple of int
        Six channel widths.
    working_spacing : float
        Working pixel size, mm.
    roi_size : int
        Sliding-window (and training crop) size on the working grid, pixels.
    intensity_percentiles : tuple of float
        Film percentiles mapped to 0 and 1 (clipped).
    head : str
        ``"softmax"`` (background + lung) or ``"sigmoid"`` (one channel per convention).
    conventions : tuple of str
        Lung conventions the output follows; for a sigmoid head, one per channel in channel order.
    overlap : float
        Default sliding-window overlap, 0-1.
    min_lung_mm2 : float
        Default minimum lung component, mm².
    min_dice_estimate : float
        Estimated Dice (0-1) under which a film is flagged ``low_dice_estimate``.
    anatomical_closing_mm : float
        Shape prior of the anatomical convention: each whole lung is closed with a disk of this radius, mm, so
        that notches narrower than the disk (the network's ragged edge behind the heart) are filled; 0 = none.
        The field convention is never changed.
    """

    network: str = "basicunet"
    features: tuple = DEFAULT_FEATURES
    working_spacing: float = DEFAULT_WORKING_SPACING
    roi_size: int = DEFAULT_ROI_SIZE
    intensity_percentiles: tuple = DEFAULT_INTENSITY_PERCENTILES
    head: str = "softmax"
    conventions: tuple = (DEFAULT_CONVENTION,)
    overlap: float = DEFAULT_OVERLAP
    min_lung_mm2: float = DEFAULT_MIN_LUNG_MM2
    min_dice_estimate: float = DEFAULT_MIN_DICE_ESTIMATE
    anatomical_closing_mm: float = DEFAULT_ANATOMICAL_CLOSING_MM

    def __post_init__(self) -> None:
        if self.network not in NETWORKS:
            raise ValueError(f"network must be one of {', '.join(NETWORKS)}; got {self.network!r}.")
        if len(self.features) != 6:
            raise ValueError(f"features must have 6 widths, got {len(self.features)}: {tuple(self.features)}.")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}; got {self.head!r}.")
        unknown = [c for c in self.conventions if c not in CONVENTIONS]
        if not self.conventions or unknown or len(set(self.conventions)) != len(self.conventions):
            raise ValueError(
                f"conventions must be distinct names from {', '.join(CONVENTIONS)}; got {tuple(self.conventions)}."
            )
        if self.head == "softmax" and len(self.conventions) != 1:
            raise ValueError("a softmax head draws one convention; give one, or use head='sigmoid'.")
        if not self.working_spacing > 0:
            raise ValueError(f"working_spacing must be a positive number of mm, got {self.working_spacing}.")
        low, high = self.intensity_percentiles
        if not 0 <= low < high <= 100:
            raise ValueError(
                f"intensity_percentiles must be two percentiles low < high in [0, 100], "
                f"got {tuple(self.intensity_percentiles)}."
            )
        if not 0 <= self.min_dice_estimate <= 1:
            raise ValueError(f"min_dice_estimate must be a Dice in [0, 1], got {self.min_dice_estimate}.")
        if not 0 <= self.anatomical_closing_mm < 1000:
            raise ValueError(
                f"anatomical_closing_mm must be a radius in mm, 0 (none) or more, got {self.anatomical_closing_mm}."
            )
        object.__setattr__(self, "features", tuple(int(f) for f in self.features))
        object.__setattr__(self, "intensity_percentiles", tuple(float(p) for p in self.intensity_percentiles))
        object.__setattr__(self, "conventions", tuple(self.conventions))

    @property
    def out_channels(self) -> int:
        """Output channels of the network."""
        return 2 if self.head == "softmax" else len(self.conventions)

    def channel(self, lungs: str) -> int:
        """The output channel that draws convention ``lungs`` (sigmoid head).

        Raises
        ------
        ValueError
            When the model was not trained for that convention.
        """
        if lungs not in self.conventions:
            raise ValueError(
                f"this model draws the {' and '.join(self.conventions)} lung convention(s), "
                f"not {lungs!r}; choose one of {', '.join(self.conventions)} or another model."
            )
        return self.conventions.index(lungs)

    def network_def(self) -> dict:
        """Keyword arguments of :func:`medlung.networks.build_network` (a bundle's ``network_def``)."""
        return {
            "name": self.network,
            "features": list(self.features),
            "in_channels": 1,
            "out_channels": self.out_channels,
        }

    def to_dict(self) -> dict:
        """JSON-ready dictionary (lists for tuples)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> ModelPlan:
        """Plan from :meth:`to_dict` output; unknown keys are ignored, missing ones take the defaults."""
        names = {f.name for f in fields(cls)}
        known: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items() if k in names}
        return cls(**known)

    def updated(self, **changes) -> ModelPlan:
        """A copy with some values changed (validated again)."""
        return replace(self, **changes)


def plan_from_checkpoint(state: dict) -> ModelPlan:
    """The plan stored in a training checkpoint (``best.pt``/``last.pt``).

    Checkpoints written before plans existed hold the same facts under
    ``network`` and ``preprocessing``; they are read as a softmax field model.
    """
    if "plan" in state:
        return ModelPlan.from_dict(state["plan"])
    network, preprocessing = state["network"], state["preprocessing"]
    return ModelPlan(
        network=network["name"],
        features=tuple(network["features"]),
        working_spacing=float(preprocessing["working_spacing"]),
        roi_size=int(preprocessing["roi_size"]),
        intensity_percentiles=tuple(preprocessing.get("intensity_percentiles", DEFAULT_INTENSITY_PERCENTILES)),
    )


def plan_from_bundle_config(config: dict) -> ModelPlan:
    """The plan recorded in a bundle's ``configs/inference.json``.

    Bundles written before plans existed have no ``head``/``conventions``/
    ``intensity_percentiles`` keys and are read as a softmax field model;
    keys added later (``min_dice_estimate``, ``anatomical_closing_mm``) take their defaults.
    """
    net = config["network_def"]
    return ModelPlan(
        network=net["name"],
        features=tuple(net["features"]),
        working_spacing=float(config["working_spacing"]),
        roi_size=int(config["roi_size"]),
        intensity_percentiles=tuple(config.get("intensity_percentiles", DEFAULT_INTENSITY_PERCENTILES)),
        head=config.get("head", "softmax"),
        conventions=tuple(config.get("conventions", (DEFAULT_CONVENTION,))),
        overlap=float(config.get("overlap", DEFAULT_OVERLAP)),
        min_lung_mm2=float(config.get("min_lung_mm2", DEFAULT_MIN_LUNG_MM2)),
        min_dice_estimate=float(config.get("min_dice_estimate", DEFAULT_MIN_DICE_ESTIMATE)),
        anatomical_closing_mm=float(config.get("anatomical_closing_mm", DEFAULT_ANATOMICAL_CLOSING_MM)),
    )
