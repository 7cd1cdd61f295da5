"""The anatomical pseudo-label of a field film: the lower inner cut-out filled, the field kept inside."""

from __future__ import annotations

import importlib.util

import numpy as np

from tests.conftest import REPO


def _script():
    path = REPO / "scripts" / "anatomical_pseudo_labels.py"
    spec = importlib.util.spec_from_file_location("anatomical_pseudo_labels", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_lower_inner_cut_out_is_filled_and_the_field_stays_inside():
    yy, xx = np.mgrid[:200, :200]
    lung = ((yy - 100) / 80) ** 2 + ((xx - 140) / 40) ** 2 < 1  # a left lung (image right)
    notch = (yy > 120) & (yy < 170) & (xx < 130)  # the stepped cut-out behind the heart, lower inner side
    anatomical = lung & ~notch
    field = anatomical & (xx > 120)
    pseudo = _script().pseudo_label(anatomical, field)
    assert pseudo[field].all() and pseudo[anatomical].all()
    filled = (notch & lung).sum()
    assert pseudo[notch & lung].sum() > 0.8 * filled  # the cut-out is lung again
    assert not pseudo[(yy < 20) | (xx < 95)].any()  # nothing far outside the lung
