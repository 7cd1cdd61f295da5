"""The named training augmentations: each changes the film as named; geometric ones move the masks with it,
the others leave masks, targets and weights untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medlung.plans import AUGMENTATIONS, GEOMETRIC_AUGMENTATIONS, ModelPlan
from medlung.transforms.domain import (
    RandCollimationd,
    RandHistogramMatchd,
    RandResolutiond,
    RandToneCurved,
    film_quantiles,
)
from medlung.transforms.presets import check_augmentations, named_augmentations

SIZE = 128
PLAN = ModelPlan(roi_size=SIZE, head="sigmoid", conventions=("field", "anatomical"))


def _chest():
    """A generated chest on the working grid: two dark lungs (0.3) in a bright body (0.7), a 12 px border."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    lung = ((yy - 64) ** 2 / 34**2 + (xx - 40) ** 2 / 16**2 < 1) | ((yy - 64) ** 2 / 34**2 + (xx - 88) ** 2 / 16**2 < 1)
    film = np.where(lung, 0.3, 0.7).astype(np.float32) + 0.05 * np.sin(xx / 3.0).astype(np.float32)
    target = np.stack([lung, lung]).astype(np.float32)
    return {
        "image": torch.from_numpy(film)[None],
        "label": torch.from_numpy(target),
        "weight": torch.ones(2, SIZE, SIZE),
    }, lung


def _apply(name: str, data: dict, seed: int = 0, references=None) -> dict:
    chain = named_augmentations([name], PLAN, sick_film_prob=1.0, references=references)
    for transform in chain.transforms:
        if hasattr(transform, "prob"):
            transform.prob = 1.0  # always on: the test is about what it does
    chain.set_random_state(seed=seed)
    return chain({k: v.clone() for k, v in data.items()})


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / max(1, int(a.sum() + b.sum()))


@pytest.mark.parametrize("name", list(AUGMENTATIONS))
def test_each_augmentation_changes_the_film_and_keeps_the_mask_aligned(name):
    data, lung = _chest()
    references = [film_quantiles(torch.linspace(0, 1, SIZE * SIZE) ** 2)]
    changed = {}
    for seed in range(4):  # a random change may be small for one seed, not for all
        out = _apply(name, data, seed, references)
        film, label, weight = out["image"][0].numpy(), out["label"].numpy(), out["weight"].numpy()
        assert film.shape == (SIZE, SIZE) and label.shape == (2, SIZE, SIZE)
        changed[seed] = float(np.abs(film - data["image"][0].numpy()).max())
        if name in GEOMETRIC_AUGMENTATIONS:
            # the dark lungs of the film are where the moved mask says (padding is 0, below the lung grey)
            drawn = (film > 0.15) & (film < 0.5)
            assert _dice(drawn, label[0] > 0.5) > 0.9, (name, seed)
            np.testing.assert_array_equal(label[0], label[1])
        else:
            np.testing.assert_array_equal(label, data["label"].numpy())  # tone ones never move the mask
            np.testing.assert_array_equal(weight, data["weight"].numpy())
            assert 0.0 <= film.min() and film.max() <= 1.0 + 0.5 * (name == "intensity")
    assert max(changed.values()) > 0.05, name
    if name in GEOMETRIC_AUGMENTATIONS:
        assert any(not np.array_equal(_apply(name, data, s)["label"][0].numpy() > 0.5, lung) for s in range(4))


def test_the_chain_is_seeded_and_in_a_fixed_order():
    data, _ = _chest()
    chain = named_augmentations(list(AUGMENTATIONS), PLAN, references=[np.linspace(0, 1, 65)])
    first = chain.set_random_state(seed=3)({k: v.clone() for k, v in data.items()})["image"]
    again = chain.set_random_state(seed=3)({k: v.clone() for k, v in data.items()})["image"]
    torch.testing.assert_close(first, again)
    assert check_augmentations(["tone", "affine"]) == ("affine", "tone")  # order of application, not of asking
    with pytest.raises(ValueError, match="unknown augmentation"):
        check_augmentations(["flip"])


def test_tone_curve_is_monotone_and_histogram_matching_moves_towards_the_reference():
    data, _ = _chest()
    film = data["image"][0].numpy()
    out = RandToneCurved(prob=1.0).set_random_state(seed=1)(dict(data))["image"][0].numpy()
    order = np.argsort(film, axis=None)
    assert np.all(np.diff(out.reshape(-1)[order]) >= -1e-6)  # darker stays darker
    reference = np.linspace(0, 1, 65).astype(np.float32) ** 3  # a dark film
    matched = RandHistogramMatchd([reference], prob=1.0, strength=(1.0, 1.0))(dict(data))["image"][0].numpy()
    assert np.abs(film_quantiles(matched) - reference).mean() < 0.2 * np.abs(film_quantiles(film) - reference).mean()


def test_resolution_blurs_or_sharpens_and_collimation_stays_off_the_lungs():
    data, lung = _chest()
    film = data["image"][0].numpy()
    detail = [np.abs(np.diff(film, axis=1)).mean()]
    for seed in range(6):
        out = RandResolutiond(prob=1.0).set_random_state(seed=seed)(dict(data))["image"][0].numpy()
        detail.append(np.abs(np.diff(out, axis=1)).mean())
    assert min(detail[1:]) < detail[0] < max(detail[1:]) or min(detail[1:]) < 0.9 * detail[0]
    touched = np.zeros_like(lung)
    for seed in range(8):
        out = RandCollimationd(prob=1.0).set_random_state(seed=seed)(dict(data))["image"][0].numpy()
        touched |= np.abs(out - film) > 1e-6
    assert touched.any() and not touched[lung].any()  # borders only, never over a lung
    assert touched[:, :4].any() or touched[:, -4:].any() or touched[:4].any() or touched[-4:].any()
