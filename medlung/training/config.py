"""Training settings, saved to ``RUN/config.json`` and inside every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from medlung.networks import DEFAULT_FEATURES


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
    roi_size: int = 224
    working_spacing: float = 2.0
    lr: float = 3e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    overlap: float = 0.25
    strict: bool = False
    limit: int | None = None
    num_workers: int = 0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["features"] = list(self.features)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in names}
        if "features" in values:
            values["features"] = tuple(values["features"])
        return cls(**values)
