"""Partial labels: per-convention targets, the loss, and starting from a softmax model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medlung.networks import build_network
from medlung.plans import ModelPlan
from medlung.training.losses import PartialLabelLoss
from medlung.transforms.conventions import partial_targets

CONVENTIONS = ("field", "anatomical")


def _masks():
    """A tiny film: an anatomical lung (rows 4-27) with its field inside (rows 8-19), ignore in a corner."""
    anatomical = np.zeros((32, 32), np.uint8)
    anatomical[4:28, 6:26] = 1
    field = np.zeros_like(anatomical)
    field[8:20, 9:23] = 1
    ignore = np.zeros_like(anatomical)
    ignore[:3, :3] = 1
    return field, anatomical, ignore


def test_targets_follow_the_nesting_rule():
    field, anatomical, ignore = _masks()
    target, weight, own = partial_targets(field, "field", CONVENTIONS, ignore)
    np.testing.assert_array_equal(own, [1, 0])
    np.testing.assert_array_equal(target[0], field)  # field channel: the mask itself
    np.testing.assert_array_equal(weight[0], 1 - ignore)  # everywhere but the ignore region
    np.testing.assert_array_equal(weight[1], field)  # anatomical: only "inside the field is lung"
    assert target[1][field > 0].min() == 1
    target, weight, own = partial_targets(anatomical, "anatomical", CONVENTIONS, ignore)
    np.testing.assert_array_equal(own, [0, 1])
    np.testing.assert_array_equal(target[1], anatomical)
    np.testing.assert_array_equal(weight[0], (1 - anatomical) * (1 - ignore))  # field: "no field outside the lung"
    assert target[0].max() == 0
    with pytest.raises(ValueError, match="lungs must be one of"):
        partial_targets(field, "whole", CONVENTIONS)


def _loss(logits, mask, lungs, ignore=None):
    target, weight, own = (torch.from_numpy(a)[None] for a in partial_targets(mask, lungs, CONVENTIONS, ignore))
    return PartialLabelLoss()(logits, target, weight, own)


def test_an_anatomical_mask_does_not_move_the_field_output_inside_the_lung():
    _, anatomical, _ignore = _masks()
    logits = torch.randn(1, 2, 32, 32, generator=torch.Generator().manual_seed(0))
    changed = logits.clone()
    inside = torch.from_numpy(anatomical > 0)
    changed[0, 0][inside] = torch.randn(int(inside.sum()), generator=torch.Generator().manual_seed(1)) * 5
    assert _loss(changed, anatomical, "anatomical") == pytest.approx(_loss(logits, anatomical, "anatomical").item())
    # ... but the field output outside the lung does count, and so does the anatomical output anywhere
    outside = logits.clone()
    outside[0, 0][~inside] += 3
    assert _loss(outside, anatomical, "anatomical") > _loss(logits, anatomical, "anatomical")
    anat = logits.clone()
    anat[0, 1][inside] -= 3
    assert _loss(anat, anatomical, "anatomical") > _loss(logits, anatomical, "anatomical")


def test_ignore_pixels_do_not_count():
    field, _, ignore = _masks()
    logits = torch.zeros(1, 2, 32, 32)
    wild = logits.clone()
    wild[0, :, :3, :3] = 50.0  # confident lung in the ignore region
    assert _loss(wild, field, "field", ignore) == pytest.approx(_loss(logits, field, "field", ignore).item())
    assert _loss(wild, field, "field") > _loss(logits, field, "field")


def test_perfect_logits_give_a_small_loss_and_gradients_flow():
    field, _, _ = _masks()
    perfect = torch.from_numpy(np.where(field > 0, 20.0, -20.0).astype(np.float32))
    logits = torch.stack([perfect, torch.full_like(perfect, 20.0)])[None].requires_grad_(True)
    loss = _loss(logits, field, "field")
    assert loss.item() < 0.01
    _loss(torch.zeros(1, 2, 32, 32, requires_grad=True), field, "field").backward()


def test_warm_start_turns_a_softmax_model_into_per_convention_channels(tmp_path):
    from medlung.training.warm_start import warm_start

    old = build_network("basicunet", (4, 4, 8, 8, 16, 4), out_channels=2).eval()
    checkpoint = tmp_path / "best.pt"
    legacy = {
        "model": old.state_dict(),
        "epoch": 1,
        "network": {"name": "basicunet", "features": [4, 4, 8, 8, 16, 4]},
        "preprocessing": {"working_spacing": 2.0, "roi_size": 64},
    }
    torch.save(legacy, checkpoint)
    plan = ModelPlan(features=(4, 4, 8, 8, 16, 4), head="sigmoid", conventions=CONVENTIONS)
    new = build_network(**plan.network_def()).eval()
    line = warm_start(new, plan, checkpoint)
    assert "final_conv.weight" in line
    image = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before, after = old(image), new(image)
    margin = before[0, 1] - before[0, 0]
    for channel in range(2):  # sigmoid(channel) == softmax lung probability of the old model
        torch.testing.assert_close(after[0, channel], margin, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="--init model is basicunet"):
        warm_start(
            build_network("basicunet", (8, 8, 16, 16, 32, 8), out_channels=2),
            plan.updated(features=(8, 8, 16, 16, 32, 8)),
            checkpoint,
        )


def test_a_pseudo_label_supervises_the_anatomical_channel_outside_the_field_with_its_weight():
    field, anatomical, ignore = _masks()
    target, weight, own = partial_targets(field, "field", CONVENTIONS, ignore, pseudo=anatomical, pseudo_weight=0.3)
    np.testing.assert_array_equal(own, [1, 0])  # never an own channel: no Dice term, no metric
    np.testing.assert_array_equal(target[1], anatomical)  # field inside anatomical here
    inside, outside = field > 0, (field == 0) & (ignore == 0)
    assert weight[1][inside].min() == 1 and np.all(weight[1][outside] == pytest.approx(0.3))
    assert weight[1][ignore > 0].max() == 0
    # an anatomical film's pseudo column is not used (its own mask is already the whole lung)
    plain = partial_targets(anatomical, "anatomical", CONVENTIONS, ignore)
    with_pseudo = partial_targets(anatomical, "anatomical", CONVENTIONS, ignore, pseudo=field)
    for a, b in zip(plain, with_pseudo):
        np.testing.assert_array_equal(a, b)


def test_consistency_term_penalises_a_field_outside_the_anatomical_lung():
    field, _, _ = _masks()
    target, weight, own = (torch.from_numpy(a)[None] for a in partial_targets(field, "field", CONVENTIONS))
    logits = torch.zeros(1, 2, 32, 32)
    logits[0, 0] = 4.0  # field everywhere ...
    logits[0, 1] = -4.0  # ... anatomical nowhere
    plain = PartialLabelLoss()(logits, target, weight, own)
    tied = PartialLabelLoss(consistency_weight=1.0, conventions=CONVENTIONS)(logits, target, weight, own)
    assert tied > plain + 0.5
    logits[0, 1] = 4.0  # anatomical over the field: nothing to add
    assert PartialLabelLoss(consistency_weight=1.0, conventions=CONVENTIONS)(logits, target, weight, own) == (
        pytest.approx(PartialLabelLoss()(logits, target, weight, own).item())
    )
