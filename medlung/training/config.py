"""Training settings, saved to ``RUN/config.json`` and inside every checkpoint.

A :class:`TrainConfig` holds the :class:`~medlung.plans.ModelPlan` of the model
it trains (network, widths, working grid, window, overlap, intensity rule,
conventions) and only what training adds to it: the schedule, the sampling of
sources, the named augmentations and the loss terms. Run folders written before
the plan moved here (flat ``network``, ``features``, ``roi_size``, ...) are read
by :meth:`TrainConfig.from_dict` unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from medlung.plans import ModelPlan

#: Plan fields that older run folders (up to model 2.0.0) stored flat in config.json, and the CLI/bundle keys.
FLAT_PLAN_KEYS = ("network", "features", "working_spacing", "roi_size", "overlap", "intensity_percentiles")


def default_plan() -> ModelPlan:
    """The plan a run trains unless told otherwise: the default network, one sigmoid output per convention."""
    return ModelPlan(head="sigmoid")


@dataclass
class TrainConfig:
    """Everything that decides a training run.

    Attributes
    ----------
    data : str
        DATA argument (folder, CSV or datalist JSON).
    output : str
        RUN folder.
    plan : ModelPlan
        The model trained (network, widths, working spacing, crop/window size, overlap, intensity
        percentiles, sigmoid head). Its ``conventions`` are replaced by those the data's masks follow
        when ``conventions_from_data`` is true.
    conventions_from_data : bool
        Take the output channels from the conventions of the training and validation masks.
    epochs : int
        Epochs to train.
    batch_size : int
        Crops per step.
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
    init : str or None
        Start from this model's weights (bundle, run folder or checkpoint) instead of random ones; a
        background/lung softmax model starts every convention channel as its lung-minus-background logit.
    sick_film_prob : float
        Probability of the sick/portable-film augmentation per crop (0 turns it off); with named
        ``augmentations``, the probability of each of the sick-film ones.
    augmentations : tuple of str or None
        Named augmentations (:data:`medlung.transforms.presets.AUGMENTATIONS`), applied in a fixed order;
        ``None``: the chain of models up to 2.0.0 (affine, intensity, sick film).
    sampling : dict
        Share of every epoch's crops per group ``"source/convention"`` (e.g. ``{"montgomery/field": 0.25}``),
        normalised; a group not named gets no crops. Empty: every training film once per epoch, shuffled.
    samples_per_epoch : int or None
        Crops drawn per epoch with ``sampling`` (default: the number of training films).
    consistency_weight : float
        Weight of the term that keeps the lung field inside the anatomical lung (both outputs, every pixel).
    deep_supervision : bool
        UNet++ only: the loss is the mean of the loss of each of its four nested outputs (Zhou et al. 2018),
        not of the final one alone; the model and its inference are unchanged.
    pseudo_weight : float
        Weight of the pseudo-labelled pixels of a film's ``pseudo`` mask (anatomical pseudo-labels of field
        films; see :mod:`medlung.transforms.conventions`).
    keep_epochs : tuple of int
        Keep a copy of the checkpoint of these epochs (``RUN/epoch001.pt``, ...): weak models for calibration.
    strict : bool
        Stop when any film or mask is unusable.
    limit : int or None
        Use at most this many films per part (quick runs and tests).
    num_workers : int
        DataLoader worker processes.
    """

    data: str = ""
    output: str = ""
    plan: ModelPlan = field(default_factory=default_plan)
    conventions_from_data: bool = True
    epochs: int = 32
    batch_size: int = 8
    lr: float = 3e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    init: str | None = None
    sick_film_prob: float = 0.5
    augmentations: tuple | None = None
    sampling: dict = field(default_factory=dict)
    samples_per_epoch: int | None = None
    consistency_weight: float = 0.0
    deep_supervision: bool = False
    pseudo_weight: float = 0.5
    keep_epochs: tuple = ()
    strict: bool = False
    limit: int | None = None
    num_workers: int = 0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready dictionary; the plan nested under ``plan``."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["plan"] = self.plan.to_dict()
        d["augmentations"] = list(self.augmentations) if self.augmentations is not None else None
        d["sampling"] = dict(self.sampling)
        d["keep_epochs"] = list(self.keep_epochs)
        d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Settings from :meth:`to_dict`, from an older run's flat ``config.json``, or from CLI/bundle values.

        Plan values may come nested (``plan``) or flat (``network``, ``features``, ``working_spacing``,
        ``roi_size``, ``overlap``, ``intensity_percentiles``, ``conventions``); flat ones win over nested ones.
        A flat ``conventions`` of ``None`` (older runs) means: from the data.
        """
        plan_values = dict(d.get("plan") or {})
        plan_values.setdefault("head", "sigmoid")
        plan_values.update({k: d[k] for k in FLAT_PLAN_KEYS if d.get(k) is not None})
        from_data = d.get("conventions_from_data")
        if "conventions" in d:
            if d["conventions"]:
                plan_values["conventions"] = d["conventions"]
            if from_data is None:
                from_data = not d["conventions"]
        names = {f.name for f in fields(cls)} - {"plan", "conventions_from_data"}
        values = {k: v for k, v in d.items() if k in names}
        for key in ("augmentations", "keep_epochs"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        if values.get("sampling") is None:
            values.pop("sampling", None)
        return cls(
            plan=ModelPlan.from_dict(plan_values),
            conventions_from_data=True if from_data is None else bool(from_data),
            **values,
        )

    def plan_with(self, conventions) -> ModelPlan:
        """The plan of the model trained: this config's, with ``conventions`` when they come from the data."""
        if not self.conventions_from_data:
            return self.plan
        return self.plan.updated(head="sigmoid", conventions=tuple(conventions))
