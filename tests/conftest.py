"""Shared fixtures: the real data in ../shared/data and small generated films."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medlung import environment

REPO = Path(__file__).resolve().parents[1]


def script_module(name: str):
    """``scripts/NAME.py`` imported as a module (the scripts are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shared_data_dir() -> Path:
    """``../shared/data`` beside the repository, or ``$MEDLUNG_SHARED_DATA``."""
    return Path(environment.get("MEDLUNG_SHARED_DATA") or REPO.parent / "shared" / "data")


def skip_or_fail(reason: str) -> None:
    """Skip with ``reason``, or fail when ``MEDLUNG_REQUIRE_SHARED=1`` (CI) says the thing must be there."""
    if environment.get("MEDLUNG_REQUIRE_SHARED") == "1":
        pytest.fail(f"MEDLUNG_REQUIRE_SHARED=1 but {reason}")
    pytest.skip(reason)


def write_shenzhen_csv(shared: Path, path: Path, counts: dict) -> Path:
    """A CSV (image,mask,split; absolute paths) with the first ``counts[part]`` films of each part of splits.csv."""
    import csv

    rows = list(csv.DictReader(open(shared / "shenzhen" / "splits.csv")))
    base = shared / "shenzhen"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "mask", "split"])
        writer.writeheader()
        for part, count in counts.items():
            for r in [r for r in rows if r["split"] == part][:count]:
                writer.writerow({"image": base / r["image"], "mask": base / r["mask"], "split": part})
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real films; skipped with a reason when absent, failed when CI requires them."""
    path = shared_data_dir()
    if not (path / "dicom").is_dir() or not (path / "shenzhen").is_dir():
        skip_or_fail(f"real data not found at {path} (set MEDLUNG_SHARED_DATA or clone beside ../shared)")
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


@pytest.fixture(scope="session")
def shipped_bundle() -> Path:
    """The model shipped in the repository (bundles/medlung_cxr_lung, or $MEDLUNG_BUNDLE)."""
    path = Path(environment.get("MEDLUNG_BUNDLE") or REPO / "bundles" / "medlung_cxr_lung")
    if not (path / "models" / "model.pt").is_file():
        skip_or_fail(f"no shipped model at {path}")
    return path


@pytest.fixture(scope="session")
def segmenter(shipped_bundle):
    """The shipped model, loaded once, on the CPU."""
    from medlung.inference import Segmenter

    return Segmenter(shipped_bundle, device="cpu")


def read_mask(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path)) > 0


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two masks: medlung.metrics.dice (MONAI's), the one Dice of the project."""
    from medlung.metrics import dice as metrics_dice

    return metrics_dice(a, b)
