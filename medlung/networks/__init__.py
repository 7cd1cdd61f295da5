"""Network factory: ``"basicunet"`` (MONAI BasicUNet) and ``"unetpp"`` (MONAI BasicUNetPlusPlus)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from monai.networks.nets import BasicUNet, BasicUNetPlusPlus

from medlung.plans import DEFAULT_FEATURES, NETWORKS


class UNetPlusPlus(torch.nn.Module):
    """MONAI ``BasicUNetPlusPlus`` returning its final output (node X0,4) as one tensor.

    The nested decoder also gives three earlier full-resolution outputs (X0,1 to X0,3), each with its own 1x1
    convolution. MONAI computes them in every pass; :meth:`deep_outputs` returns all four for deep supervision
    (:class:`DeepSupervision`). Inference and export use the final one only, so a model trained with or without
    deep supervision has the same weights' layout and the same output.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.net = BasicUNetPlusPlus(deep_supervision=True, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[-1]

    def deep_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four nested outputs X0,1 ... X0,4, shallowest first, each ``(N, C, H, W)`` logits."""
        return list(self.net(x))


class DeepSupervision(torch.nn.Module):
    """Training view of a UNet++: its forward returns every nested output, deepest (the model's output) last.

    Wrap the model in it for the training steps only (and in DistributedDataParallel around it, so that the
    gradients are still synchronised); validation and export use the model itself.

    Parameters
    ----------
    model : UNetPlusPlus
        The network trained.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        if not isinstance(model, UNetPlusPlus):
            raise ValueError(f"deep supervision needs the unetpp network, not {type(model).__name__}.")
        self.model = model

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model.deep_outputs(x)


def build_network(
    name: str = "basicunet",
    features: Sequence[int] = DEFAULT_FEATURES,
    in_channels: int = 1,
    out_channels: int = 2,
    dropout: float = 0.0,
) -> torch.nn.Module:
    """Build a 2-D segmentation network.

    Parameters
    ----------
    name : {"basicunet", "unetpp"}
        Architecture.
    features : sequence of 6 int
        Channel widths of the encoder levels and the last decoder level.
    in_channels, out_channels : int
        Input channels (1: grey film) and classes (2: background, lung).
    dropout : float
        Dropout probability.

    Returns
    -------
    torch.nn.Module
        Maps ``(N, in_channels, H, W)`` to logits ``(N, out_channels, H, W)``.
    """
    features = tuple(int(f) for f in features)
    if len(features) != 6:
        raise ValueError(f"features must have 6 widths, got {len(features)}: {features}.")
    builders: dict[str, Callable[..., torch.nn.Module]] = {"basicunet": BasicUNet, "unetpp": UNetPlusPlus}
    if name not in builders:
        raise ValueError(f"network must be one of {', '.join(NETWORKS)}; got {name!r}.")
    return builders[name](
        spatial_dims=2, in_channels=in_channels, out_channels=out_channels, features=features, dropout=dropout
    )


def count_parameters(net: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
