"""Films and masks show themselves in Jupyter; batch results become a pandas DataFrame in one call."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
from PIL import Image

import medlung
from medlung.errors import MedlungError
from medlung.samples import SAMPLES_DIR


def _picture(png: bytes) -> np.ndarray:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(png)) as image:
        assert max(image.size) <= 512
        return np.asarray(image.convert("RGB"))


def test_film_shows_a_thumbnail_with_its_spacing():
    film = medlung.load_film(SAMPLES_DIR / "CR-MONO1-10-chest.dcm")
    picture = _picture(film._repr_png_())
    assert picture.shape[:2] == (440, 440)  # small films keep their size
    page = film._repr_html_()
    assert "<img src='data:image/png;base64," in page and "440 rows x 440 cols" in page
    assert "unknown (areas in pixels)" in page


@pytest.fixture(scope="module")
def results(segmenter, tmp_path_factory):
    missing = tmp_path_factory.mktemp("x") / "missing.dcm"
    paths = [SAMPLES_DIR / "dx_image.dcm", SAMPLES_DIR / "CHNCXR_0001_0.png", missing]
    return list(segmenter.segment_files(paths))


def test_masks_show_the_overlay_with_areas(results):
    masks = results[0][1]
    picture = _picture(masks._repr_png_())
    orange = (np.abs(picture.astype(int) - (255, 140, 0)).sum(axis=2) < 40).sum()
    blue = (np.abs(picture.astype(int) - (30, 144, 255)).sum(axis=2) < 40).sum()
    assert orange > 50 and blue > 50, "both lungs are drawn"
    page = masks._repr_html_()
    assert f"total {masks.areas_cm2['total']:.1f} cm²" in page and "from " in page
    uncalibrated = results[1][1]._repr_html_()
    assert "unknown (areas in pixels)" in uncalibrated and "total" in uncalibrated


def test_segment_files_results_become_one_dataframe(results):
    frame = medlung.to_dataframe(results)
    assert list(frame["status"]) == ["ok", "ok", "error"]
    assert frame.loc[0, "total_cm2"] > 0 and frame.loc[1, "total_px"] > 10_000
    assert frame.loc[1, "total_px"] == frame.loc[1, "right_px"] + frame.loc[1, "left_px"]
    assert "file not found" in frame.loc[2, "error"]
    rows = medlung.to_dataframe([{"file": "a", "status": "ok", "total_px": 3}])
    assert rows.loc[0, "total_px"] == 3


def test_without_pandas_the_error_says_what_to_install(results, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # what an environment without pandas sees on import
    with pytest.raises(MedlungError, match="pip install pandas"):
        medlung.to_dataframe(results)
