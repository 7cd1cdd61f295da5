"""Where and how a network runs: device, mixed precision, sliding-window logits.

Shared by training, validation and inference so that all three see a film
the same way.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import cast

import torch
from monai.inferers import Inferer, sliding_window_inference

from medlung.errors import UsageError


class DeviceError(UsageError):
    """The device asked for is not available."""


def resolve_device(name: str) -> torch.device:
    """The torch device for ``name``: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    ``"auto"`` is CUDA when available, else CPU.

    Raises
    ------
    DeviceError
        For any other name (``"gpu"``), or CUDA (or a CUDA index) that this machine does not have.
    """
    name = str(name).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise DeviceError(f"unknown device {name!r}", hint="Use --device cpu, cuda, cuda:N or auto.")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("CUDA was asked for but no CUDA device is available", hint="Use --device cpu.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)",
                hint="Use --device cuda (the first one) or a smaller index.",
            )
    return device


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bf16 where the hardware supports it (``"auto"``), or None for fp32."""
    if name == "fp32":
        return None
    if name == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    capability = torch.backends.cpu.get_cpu_capability()
    return torch.bfloat16 if capability == "AVX512" or "AMX" in capability else None


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed-precision context for ``device``, or a no-op for fp32."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def predict_logits(
    model, image: torch.Tensor, roi_size: int, overlap: float, device, dtype, sw_batch_size: int = 4
) -> torch.Tensor:
    """Sliding-window logits for a batch of films on the working grid (gaussian blending).

    Parameters
    ----------
    model : torch.nn.Module
        The network, on ``device``, in eval mode.
    image : torch.Tensor
        ``(N, 1, rows, cols)`` films on the working grid, intensity-scaled.
    roi_size : int
        Window size, working-grid pixels.
    overlap : float
        Window overlap, 0-1.
    device : torch.device
    dtype : torch.dtype or None
        Autocast dtype (None: fp32).
    sw_batch_size : int, optional
        Windows per forward pass (memory against speed).

    Returns
    -------
    torch.Tensor
        ``(N, 2, rows, cols)`` float32 logits (background, lung).
    """
    with torch.no_grad(), autocast(device, dtype):
        logits = sliding_window_inference(
            image.to(device),
            roi_size=(roi_size, roi_size),
            sw_batch_size=int(sw_batch_size),
            predictor=model,
            overlap=overlap,
            mode="gaussian",
        )
    return cast(torch.Tensor, logits).float()  # a tensor: the predictor returns one (not a tuple or dict)


class LungInferer(Inferer):
    """The sliding-window inferer of medlung's Segmenter, as a MONAI ``Inferer`` (``inferer(inputs, network)``).

    The bundle's ``inferer`` property: gaussian-blended sliding windows on the
    working grid (:func:`predict_logits`), optionally averaged with the
    left-right mirrored film (the model predicts "lung", not a side, so
    mirroring is label-safe).

    Parameters
    ----------
    roi_size : int
        Window size, working-grid pixels.
    overlap : float
        Window overlap, 0-1.
    tta : bool
        Also infer the mirrored film and average the logits.
    precision : str
        ``"auto"`` (bf16 where the CPU/GPU has it), ``"bf16"`` or ``"fp32"``.
    """

    def __init__(self, roi_size: int, overlap: float = 0.25, tta: bool = False, precision: str = "auto") -> None:
        if not 0 <= float(overlap) < 1:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}.")
        self.roi_size = int(roi_size)
        self.overlap = float(overlap)
        self.tta = bool(tta)
        self.precision = str(precision)

    # MONAI's Inferer takes any callable network; this one needs a Module (its parameters say the device)
    def __call__(self, inputs: torch.Tensor, network: torch.nn.Module) -> torch.Tensor:  # type: ignore[override]
        """Logits ``(N, C, rows, cols)`` float32 for films ``(N, 1, rows, cols)`` on the working grid, intensity-scaled.

        The network runs where its parameters are; ``inputs`` are moved there.
        """
        device = next(network.parameters()).device
        dtype = resolve_precision(self.precision, device)
        batch = inputs.as_tensor() if hasattr(inputs, "as_tensor") else inputs  # plain tensor: no meta to carry
        batch = batch.to(torch.float32)
        logits = predict_logits(network, batch, self.roi_size, self.overlap, device, dtype)
        if self.tta:
            mirrored = predict_logits(network, batch.flip(-1), self.roi_size, self.overlap, device, dtype)
            logits = (logits + mirrored.flip(-1)) / 2
        return logits


def lung_margin_of(logits: torch.Tensor, plan, lungs: str = "field") -> torch.Tensor:
    """The lung margin (a logit, > 0 = lung) of convention ``lungs`` from one film's logits ``(channels, rows, cols)``.

    A softmax model (:class:`~medlung.plans.ModelPlan` head ``"softmax"``) gives
    lung minus background; a per-convention model gives the convention's own
    channel, and for ``field`` the smaller of the field and anatomical logits,
    so that the lung field never reaches outside the whole lung.
    """
    if plan.head == "softmax":
        return logits[1] - logits[0]
    margin = logits[plan.channel(lungs)]
    if lungs == "field" and "anatomical" in plan.conventions:
        margin = torch.minimum(margin, logits[plan.channel("anatomical")])
    return margin
