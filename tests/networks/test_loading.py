"""Loading a model never runs code from the file: checkpoints are read with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import pytest
import torch

from medlung.networks.loading import ModelError, load_model


class _RunsCodeWhenUnpickled:
    """Unpickling this calls ``Path.touch(marker)``: what a hostile checkpoint could do with any callable."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        from pathlib import Path

        return Path.touch, (Path(self.marker),)


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "code-ran"
    checkpoint = tmp_path / "run" / "best.pt"
    checkpoint.parent.mkdir()
    torch.save({"model": {}, "epoch": 1, "payload": _RunsCodeWhenUnpickled(marker)}, checkpoint)
    with pytest.raises(ModelError, match="not a medlung model") as refused:
        load_model(checkpoint)
    assert "\n" not in str(refused.value)
    assert not marker.exists(), "unpickling ran code from the checkpoint"
