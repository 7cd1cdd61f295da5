"""Weight averaging of two models of the same network (scripts/average_weights.py)."""

from __future__ import annotations

import pytest

from tests.conftest import script_module


def _script():
    return script_module("average_weights")


def test_floating_tensors_are_averaged_and_counters_kept():
    import torch

    first = {"w": torch.full((2, 2), 1.0), "n": torch.tensor(7)}
    second = {"w": torch.full((2, 2), 3.0), "n": torch.tensor(2)}
    out = _script().averaged_state(first, second, 0.25)
    assert torch.allclose(out["w"], torch.full((2, 2), 2.5))  # 0.25 * 1 + 0.75 * 3
    assert int(out["n"]) == 7


def test_different_networks_are_refused():
    import torch

    script = _script()
    with pytest.raises(ValueError, match="shapes"):
        script.averaged_state({"w": torch.zeros(2)}, {"w": torch.zeros(3)}, 0.5)
    with pytest.raises(ValueError, match="different tensors"):
        script.averaged_state({"w": torch.zeros(2)}, {"v": torch.zeros(2)}, 0.5)
