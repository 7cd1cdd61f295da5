"""The partial-label loss of a per-convention (sigmoid) model.

Each output channel is one lung convention. A pixel contributes to a
channel's binary cross-entropy only where its weight is positive (see
:mod:`medlung.transforms.conventions`), and a soft Dice term is added for the
channel(s) the film fully supervises (``own``), over its non-ignored pixels.
A film with only an anatomical mask therefore leaves the field channel free
inside the anatomical lung: nothing there moves the field output's loss.

An optional consistency term ties the two outputs together on every pixel
of every film, labelled or not: the lung field lies inside the anatomical
lung, so ``mean(relu(p_field - p_anatomical))`` is penalised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class PartialLabelLoss(torch.nn.Module):
    """Weighted BCE on every supervised pixel + soft Dice on fully supervised channels.

    Parameters
    ----------
    dice_weight : float
        Weight of the Dice term against the BCE term.
    smooth : float
        Added to the Dice numerator and denominator, pixels.
    consistency_weight : float
        Weight of the field-inside-anatomical term (0: none).
    conventions : sequence of str
        The output channels; the consistency term needs ``field`` and ``anatomical`` among them.
    """

    def __init__(
        self,
        dice_weight: float = 1.0,
        smooth: float = 1.0,
        consistency_weight: float = 0.0,
        conventions=("field", "anatomical"),
    ) -> None:
        super().__init__()
        self.dice_weight = dice_weight
        self.smooth = smooth
        both = "field" in conventions and "anatomical" in conventions
        self.consistency_weight = consistency_weight if both else 0.0
        self.pair = (list(conventions).index("field"), list(conventions).index("anatomical")) if both else (0, 0)

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, own: torch.Tensor
    ) -> torch.Tensor:
        """Loss of a batch.

        Parameters
        ----------
        logits, target, weight : torch.Tensor
            ``(N, C, H, W)``; target in {0, 1}, weight >= 0.
        own : torch.Tensor
            ``(N, C)``, 1 where the film fully supervises the channel.

        Returns
        -------
        torch.Tensor
            Scalar.
        """
        logits = logits.float()
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        bce = (bce * weight).sum() / weight.sum().clamp_min(1.0)
        probability = torch.sigmoid(logits) * weight
        truth = target * weight
        intersection = (probability * truth).sum(dim=(2, 3))
        denominator = probability.sum(dim=(2, 3)) + truth.sum(dim=(2, 3))
        dice_loss = 1 - (2 * intersection + self.smooth) / (denominator + self.smooth)
        dice = (dice_loss * own).sum() / own.sum().clamp_min(1.0)
        loss = bce + self.dice_weight * dice
        if self.consistency_weight > 0:
            p = torch.sigmoid(logits)
            field, anatomical = p[:, self.pair[0]], p[:, self.pair[1]]
            loss = loss + self.consistency_weight * torch.relu(field - anatomical).mean()
        return loss
