"""Shared fixtures: the real data in ../shared/data and small generated films."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``../shared/data`` beside the repository, or ``$MEDLUNG_SHARED_DATA``."""
    return Path(os.environ.get("MEDLUNG_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real films; skipped with a reason when absent, failed when CI requires them."""
    path = shared_data_dir()
    if not (path / "dicom").is_dir() or not (path / "shenzhen").is_dir():
        reason = f"real data not found at {path} (set MEDLUNG_SHARED_DATA or clone beside ../shared)"
        if os.environ.get("MEDLUNG_REQUIRE_SHARED") == "1":
            pytest.fail(f"MEDLUNG_REQUIRE_SHARED=1 but {reason}")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def shared_dicom(shared_data) -> Path:
    return shared_data / "dicom"


@pytest.fixture(scope="session")
def shenzhen_film(shared_data) -> Path:
    """A real Shenzhen PA film (8-bit PNG, 512x512, no spacing)."""
    return shared_data / "shenzhen" / "images" / "CHNCXR_0001_0.png"


@pytest.fixture(scope="session")
def shenzhen_pixels(shenzhen_film) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(shenzhen_film))
