"""The anatomical lungs' shape prior (#29 item 4): each lung closed on the working grid, the field never changed."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from medlung.inference.native_grid import convention_margin
from medlung.inference.postprocess import close_lungs
from medlung.io import load_film
from medlung.networks.running import lung_margin_of
from medlung.plans import ModelPlan

SPACING_MM = 2.0


def _margin(mask: np.ndarray) -> np.ndarray:
    """A margin that is +3 on ``mask`` and -3 elsewhere (logits as the network gives them, far from 0)."""
    return np.where(mask, 3.0, -3.0).astype(np.float32)


def _two_lungs_with_a_bay() -> np.ndarray:
    """Two 60 x 160 mm lungs 24 mm apart on a 2 mm grid; the image-right one has a 12 mm wide, 40 mm deep bay."""
    mask = np.zeros((120, 100), bool)
    mask[20:100, 10:40] = True
    mask[20:100, 52:82] = True
    mask[70:90, 52:72] = False  # the bay opens towards the mediastinum, like the ragged cut behind the heart
    mask[80:86, 72:82] = True  # ...with a spur, so that the bay is narrow (6 working pixels)
    mask[70:80, 52:58] = True
    return mask


def bay_area_mm2(lung: np.ndarray, radius_mm: float = 30.0, spacing_mm: float = SPACING_MM) -> float:
    """Area that closing ``lung`` (bool, one lung) with a disk of ``radius_mm`` adds, mm²: its bays and notches."""
    closed = close_lungs(_margin(lung), radius_mm, spacing_mm)
    return float(((closed > 0) & ~lung).sum()) * spacing_mm * spacing_mm


def test_closing_fills_a_bay_and_keeps_every_other_pixel():
    mask = _two_lungs_with_a_bay()
    margin = _margin(mask)
    closed = close_lungs(margin, 30.0, SPACING_MM)
    added = (closed > 0) & ~mask
    assert added[72:78, 60:70].all()  # the narrow bay is lung now
    assert not (mask & ~(closed > 0)).any()  # a closing never removes a lung pixel
    assert not added[:, 40:52].any()  # the two lungs are closed one by one: the mediastinum stays open
    far = ~(np.abs(closed - margin) > 0)
    assert far[:, :45].all() and far[:10].all()  # away from the bay every margin is the network's own
    assert closed.dtype == np.float32 and closed.shape == margin.shape


def test_a_lung_without_bays_is_left_as_it_is():
    mask = np.zeros((80, 80), bool)
    rows, cols = np.ogrid[:80, :80]
    mask[(rows - 40) ** 2 / 30**2 + (cols - 40) ** 2 / 20**2 <= 1] = True  # convex
    margin = _margin(mask)
    assert np.array_equal(close_lungs(margin, 30.0, SPACING_MM), margin)


def _lung_with_a_slot(scale: int = 1) -> np.ndarray:
    """A 60 x 160 mm lung on a 2 mm grid (``scale`` 2: 1 mm) with a 12 mm wide, 20 mm deep slot in its inner side."""
    mask = np.zeros((100, 50), bool)
    mask[10:90, 10:40] = True
    mask[50:56, 10:20] = False
    return np.repeat(np.repeat(mask, scale, axis=0), scale, axis=1)


def test_the_radius_is_in_mm_on_the_working_grid():
    """The 12 mm slot (240 mm²) is filled by a 10 mm disk, not by a 4 mm one, on a 2 mm and on a 1 mm grid."""
    for scale, spacing in ((1, 2.0), (2, 1.0)):
        lung = _lung_with_a_slot(scale)
        assert bay_area_mm2(lung, 10.0, spacing) >= 0.6 * 240, spacing  # all but the mouth, which the disk rounds
        assert bay_area_mm2(lung, 4.0, spacing) <= 0.1 * 240, spacing  # only the slot's inner corners get rounded


def test_convention_margin_closes_the_anatomical_lungs_only():
    mask = _two_lungs_with_a_bay()
    logits = torch.from_numpy(np.stack([_margin(mask), _margin(mask)]))  # field and anatomical channels
    plan = ModelPlan(head="sigmoid", conventions=("field", "anatomical"), anatomical_closing_mm=30.0)
    field = convention_margin(logits, plan, "field")
    anatomical = convention_margin(logits, plan, "anatomical")
    assert torch.equal(field, lung_margin_of(logits, plan, "field"))
    assert (anatomical > 0).sum() > (field > 0).sum()
    without = plan.updated(anatomical_closing_mm=0.0)
    assert torch.equal(convention_margin(logits, without, "anatomical"), lung_margin_of(logits, without, "anatomical"))


def test_the_plan_refuses_a_negative_radius():
    with pytest.raises(ValueError, match="anatomical_closing_mm"):
        ModelPlan(anatomical_closing_mm=-1.0)


@pytest.fixture(scope="module")
def anatomical_pair(shipped_bundle):
    """The shipped model drawing whole lungs with its plan's shape prior, and the same model without it."""
    from medlung.inference import Segmenter

    with_prior = Segmenter(shipped_bundle, device="cpu", lungs="anatomical", dice_estimate="off")
    assert with_prior.spec.plan.anatomical_closing_mm == 30.0  # the shipped plan's radius (chosen on val films)
    without = Segmenter(shipped_bundle, device="cpu", lungs="anatomical", dice_estimate="off")
    without.spec = dataclasses.replace(without.spec, plan=without.spec.plan.updated(anatomical_closing_mm=0.0))
    field = Segmenter(shipped_bundle, device="cpu", lungs="field", dice_estimate="off")
    return with_prior, without, field


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dicom/RG1_J2KI.dcm", "montgomery/images/MCUCXR_0046_0.png"])
def test_whole_lungs_of_healthy_pa_films_have_no_ragged_bay_behind_the_heart(shared_data, anatomical_pair, name):
    """The issue's films: without the prior the left lung's lower inner edge has a bay of 500-2000 mm²."""
    with_prior, without, field = anatomical_pair
    film = load_film(shared_data / name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        closed, plain, fields = with_prior(film, keep_working=True), without(film, keep_working=True), field(film)
    left_bay = {k: bay_area_mm2(m.working.labels == 2) for k, m in (("closed", closed), ("plain", plain))}
    assert left_bay["plain"] >= 400, left_bay  # the defect the issue shows (it fails here if the model changes)
    for side in (1, 2):
        assert bay_area_mm2(closed.working.labels == side) <= 50, (name, side)
    assert not (plain.lungs & ~closed.lungs).any()  # the prior only adds
    assert not (fields.lungs & ~closed.lungs).any()  # the lung field stays inside the whole lungs
    assert closed.areas_px["total"] <= 1.05 * plain.areas_px["total"]  # it fills bays; it does not blow lungs up
