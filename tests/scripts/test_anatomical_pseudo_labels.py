"""The anatomical pseudo-label of a field film: the lower inner cut-out filled, the field kept inside."""

from __future__ import annotations

import numpy as np

from tests.conftest import script_module


def _script():
    return script_module("anatomical_pseudo_labels")


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
