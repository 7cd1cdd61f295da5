"""Fixtures for the bundle tests: a tiny real training run and the tiny bundle exported from it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_shenzhen_csv

#: Tiny model settings, as the MONAI model zoo CI runs bundles: a few films, one epoch, small widths.
TINY_FEATURES = (8, 8, 16, 32, 64, 8)
TINY_OVERRIDES = [
    "--limit",
    "2",
    "--epochs",
    "1",
    "--roi_size",
    "64",
    "--batch_size",
    "2",
    "--precision",
    "fp32",
    "--device",
    "cpu",
]


def bundle_cli(*args, env=None, launcher=None, cwd=None) -> subprocess.CompletedProcess:
    """``python -m monai.bundle ARGS`` (or under ``launcher``, e.g. torchrun) in a subprocess."""
    command = [sys.executable, *(launcher or []), "-m", "monai.bundle", *map(str, args)]
    return subprocess.run(
        command, capture_output=True, text=True, cwd=cwd, env={**os.environ, "MEDLUNG_NO_PROGRESS": "1", **(env or {})}
    )


@pytest.fixture(scope="session")
def tiny_csv(shared_data, tmp_path_factory) -> Path:
    """2 training, 2 validation and 2 test Shenzhen films (real films and masks) with absolute paths."""
    return write_shenzhen_csv(
        shared_data, tmp_path_factory.mktemp("data") / "tiny.csv", {"train": 2, "val": 2, "test": 2}
    )


@pytest.fixture(scope="session")
def tiny_run(tiny_csv, tmp_path_factory) -> Path:
    """A finished one-epoch run of a tiny BasicUNet (best.pt, config.json, summary.json)."""
    from medlung.training.config import TrainConfig
    from medlung.training.loop import Trainer

    os.environ.setdefault("MEDLUNG_NO_PROGRESS", "1")
    run = tmp_path_factory.mktemp("runs") / "tiny"
    config = TrainConfig.from_dict(
        dict(
            data=str(tiny_csv),
            output=str(run),
            features=TINY_FEATURES,
            epochs=1,
            batch_size=2,
            roi_size=64,
            working_spacing=4.0,
            precision="fp32",
            device="cpu",
        )
    )
    Trainer(config, log=lambda line: None).fit()
    return run


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run, tmp_path_factory) -> Path:
    """The tiny run exported by :func:`medlung.bundle.export_bundle`."""
    from medlung.bundle import export_bundle

    return export_bundle(tiny_run, tmp_path_factory.mktemp("bundles") / "tiny_bundle")
