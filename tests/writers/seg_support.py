"""Films, label maps and DICOM tools shared by the DICOM-SEG, SEG-reading and PACS tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

import medlung
from tests import dicom_factory as factory

#: Shared files used as SEG sources: name -> (rows, cols).
SOURCE_FILMS = {
    "CR1_6154.dcm": (16, 16),  # tiny CR, ImagerPixelSpacing only
    "dx_image.dcm": (169, 211),  # DX, PixelSpacing 1.2 mm
    "CR-MONO1-10-chest.dcm": (440, 440),  # ACR-NEMA style: no File Meta, no Patient ID, no Study Date
}


def tools_required() -> bool:
    """CI (or MEDLUNG_REQUIRE_SHARED=1) turns a missing tool into a failure."""
    return os.environ.get("MEDLUNG_REQUIRE_SHARED") == "1" or bool(os.environ.get("CI"))


def require_tool(name: str, package: str) -> str:
    """The path of an external program; skip (or fail under CI) when it is not installed."""
    found = shutil.which(name)
    if found is None:
        reason = f"{name} not found (apt-get install {package})"
        if tools_required():
            pytest.fail(f"CI requires it but {reason}")
        pytest.skip(reason)
    return found


def load(path: Path) -> medlung.Film:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return medlung.load_film(path)


def two_lungs(shape: tuple[int, int]) -> np.ndarray:
    """Two elliptic lung blobs on a PA film: 1 (patient right) on the IMAGE LEFT, 2 on the image right."""
    rows, cols = shape
    r, c = np.mgrid[0:rows, 0:cols]
    labels = np.zeros(shape, dtype=np.uint8)
    for value, centre_col in ((1, 0.3 * cols), (2, 0.7 * cols)):
        inside = ((r - 0.5 * rows) / (0.35 * rows)) ** 2 + ((c - centre_col) / (0.15 * cols)) ** 2 <= 1.0
        labels[inside] = value
    return labels


def shenzhen_labels(shared_data: Path, name: str = "CHNCXR_0001_0") -> np.ndarray:
    """The real per-lung masks of a Shenzhen film as a 0/1/2 label map."""
    from PIL import Image

    masks = shared_data / "shenzhen" / "masks"
    right = np.asarray(Image.open(masks / f"{name}_lung_R.png")) > 127
    left = np.asarray(Image.open(masks / f"{name}_lung_L.png")) > 127
    labels = np.zeros(right.shape, dtype=np.uint8)
    labels[right] = 1
    labels[left] = 2
    return labels


def shenzhen_cr(path: Path, pixels: np.ndarray, **attributes) -> Path:
    """The real Shenzhen PNG wrapped in a CR with PixelSpacing 0.7 mm and PatientOrientation L\\F."""
    values = dict(
        PixelSpacing=[0.7, 0.7],
        PatientOrientation=["L", "F"],
        SeriesNumber=3,
        StudyDate="20240102",
        StudyTime="101500",
        StudyID="42",
        AccessionNumber="A42",
        PatientBirthDate="",
        PatientSex="O",
        ReferringPhysicianName="",
        ViewPosition="PA",
        BodyPartExamined="CHEST",
    )
    values.update(attributes)
    ds = factory.radiograph(np.ascontiguousarray(pixels, dtype=np.uint8), factory.CR, "MONOCHROME2", **values)
    return factory.write(ds, path)


def dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """Run dciodvfy on a file; its (error lines, warning lines)."""
    exe = require_tool("dciodvfy", "dicom3tools")
    run = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120)
    lines = [line.strip() for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error") or " Error " in line or "- Error" in line]
    warnings_ = [line for line in lines if line.startswith("Warning") or "- Warning" in line]
    return errors, warnings_


def dcmdump(path: Path) -> str:
    """dcmdump's text for a file (fails the test when dcmdump cannot read it)."""
    exe = require_tool("dcmdump", "dcmtk")
    run = subprocess.run([exe, "-E", str(path)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"dcmdump failed on {path}: {run.stderr.strip()}"
    assert "E: " not in run.stderr, run.stderr
    return run.stdout
