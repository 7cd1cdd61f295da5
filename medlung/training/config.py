"""Training settings, saved to ``RUN/config.json`` and inside every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from medlung.plans import (
    DEFAULT_FEATURES,
    DEFAULT_INTENSITY_PERCENTILES,
    DEFAULT_OVERLAP,
    DEFAULT_ROI_SIZE,
    DEFAULT_WORKING_SPACING,
    ModelPlan,
)


@dataclass
class TrainConfig:
    """Everything that decides a training run.

    Attributes
    ----------
    data : str
        DATA argument (folder, CSV or datalist JSON).
    output : str
        RUN folder.
    network : str
        ``"basicunet"`` or ``"unetpp"``.
    features : tuple of int
        Network widths (6 values).
    epochs : int
        Epochs to train.
    batch_size : int
        Crops per step.
    roi_size : int
        Training crop and sliding-window size on the working grid, pixels.
    working_spacing : float
        Working pixel size, mm.
    lr : float
        Peak learning rate (AdamW, one-cycle schedule).
    weight_decay : float
        AdamW weight decay.
    val_fraction : float
        Validation (and test) fraction when DATA has no split.
    seed : int
        Seed for the split, initialisation, augmentation and batch order.
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    precision : str
        ``"bf16"``, ``"fp32"`` or ``"auto"`` (bf16 where the hardware has it).
    overlap : float
        Sliding-window overlap for validation.
    intensity_percentiles : tuple of float
        Film percentiles mapped to 0 and 1.
    conventions : tuple of str or None
        Output channels, one lung convention each; ``None``: the conventions the data's masks follow.
    init : str or None
        Start from this model's weights (bundle, run folder or checkpoint) instead of random ones; a
        background/lung softmax model starts every convention channel as its lung-minus-background logit.
    sick_film_prob : float
        Probability of the sick/portable-film augmentation per crop (0 turns it off).
    strict : bool
        Stop when any film or mask is unusable.
    limit : int or None
        Use at most this many films per part (quick runs and tests).
    num_workers : int
        DataLoader worker processes.
    """

    data: str = ""
    output: str = ""
    network: str = "basicunet"
    features: tuple = DEFAULT_FEATURES
    epochs: int = 32
    batch_size: int = 8
    roi_size: int = DEFAULT_ROI_SIZE
    working_spacing: float = DEFAULT_WORKING_SPACING
    lr: float = 3e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    overlap: float = DEFAULT_OVERLAP
    intensity_percentiles: tuple = DEFAULT_INTENSITY_PERCENTILES
    conventions: tuple | None = None
    init: str | None = None
    sick_film_prob: float = 0.5
    strict: bool = False
    limit: int | None = None
    num_workers: int = 0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["features"] = list(self.features)
        d["intensity_percentiles"] = list(self.intensity_percentiles)
        d["conventions"] = list(self.conventions) if self.conventions else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in names}
        for key in ("features", "intensity_percentiles", "conventions"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)

    def plan(self, conventions) -> ModelPlan:
        """The :class:`~medlung.plans.ModelPlan` of a model trained with these settings (sigmoid head)."""
        return ModelPlan(
            network=self.network,
            features=tuple(self.features),
            working_spacing=self.working_spacing,
            roi_size=self.roi_size,
            intensity_percentiles=tuple(self.intensity_percentiles),
            head="sigmoid",
            conventions=tuple(conventions),
            overlap=self.overlap,
        )
