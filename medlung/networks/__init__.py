"""Network factory: ``"basicunet"`` (MONAI BasicUNet) and ``"unetpp"`` (MONAI BasicUNetPlusPlus)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from monai.networks.nets import BasicUNet, BasicUNetPlusPlus

from medlung.plans import DEFAULT_FEATURES, NETWORKS


class UNetPlusPlus(torch.nn.Module):
    """MONAI ``BasicUNetPlusPlus`` returning the final output tensor instead of a list."""

    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.net = BasicUNetPlusPlus(deep_supervision=False, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0]


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
