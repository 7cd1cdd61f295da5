"""Raster films: PNG 8/16-bit, grey and colour, pHYs spacing, JPEG, user spacing, bad files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import medlung
from medlung.errors import InvalidSpacingError, SpacingWarning, UnreadableFileError
from medlung.io.png import save_png
from tests.dicom_factory import chest_pixels


@pytest.fixture(scope="module")
def pixels():
    """A generated 8-bit film (rows != cols): these tests need a film, not a real one."""
    return chest_pixels(512, 480)


def test_shenzhen_png_loads_without_inventing_spacing(shenzhen_film, shenzhen_pixels):
    film = medlung.load_film(shenzhen_film)
    assert film.shape == (512, 512)
    assert film.spacing is None and film.spacing_source == "unknown" and not film.calibrated
    assert film.photometric == "MONOCHROME2" and film.value_range == (0.0, 255.0)
    np.testing.assert_array_equal(film.pixels, shenzhen_pixels)


@pytest.mark.parametrize("spacing", [(0.0875, 0.0875), (0.1, 0.2), (0.143, 0.139), (0.08333, 0.5)])
def test_phys_spacing_round_trips_without_swapping_axes(tmp_path, pixels, spacing):
    path = tmp_path / "film.png"
    save_png(path, pixels[:300, :200], spacing)
    film = medlung.load_film(path)
    assert film.shape == (300, 200)
    assert film.spacing == spacing and film.spacing_source == "png-pHYs"


def test_phys_is_written_x_first(tmp_path):
    path = tmp_path / "film.png"
    save_png(path, np.zeros((10, 20), np.uint8), (0.1, 0.2))  # rows 0.1 mm, cols 0.2 mm
    with Image.open(path) as image:
        dpi_x, dpi_y = image.info["dpi"]
    assert round(dpi_x / 0.0254) == 5000 and round(dpi_y / 0.0254) == 10000


def test_sixteen_bit_png(tmp_path, pixels):
    stored = pixels.astype(np.uint16) * 257
    path = tmp_path / "film16.png"
    save_png(path, stored, None)
    film = medlung.load_film(path)
    assert film.value_range == (0.0, 65535.0) and film.facts["bits_stored"] == 16
    np.testing.assert_array_equal(film.pixels, stored)


def test_grey_stored_as_rgb_gives_the_grey_values(tmp_path, pixels):
    path = tmp_path / "rgb.png"
    Image.fromarray(np.stack([pixels] * 3, axis=-1)).save(path)
    np.testing.assert_array_equal(medlung.load_film(path).pixels, pixels)


def test_colour_and_rgba_are_converted_to_luma(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 200
    path = tmp_path / "red.png"
    Image.fromarray(np.dstack([rgb, np.full((4, 4), 255, np.uint8)])).save(path)
    film = medlung.load_film(path)
    np.testing.assert_allclose(film.pixels, 200 * 0.299, rtol=1e-5)


def test_jpeg_film_loads_with_unknown_spacing(tmp_path, pixels):
    path = tmp_path / "film.jpg"
    Image.fromarray(pixels).save(path, quality=95, dpi=(300, 300))
    film = medlung.load_film(path)
    assert film.facts["format"] == "JPEG" and film.spacing is None
    assert np.abs(film.pixels - pixels).mean() < 2.0


def test_software_default_dpi_is_not_a_spacing(tmp_path):
    path = tmp_path / "screen.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path, dpi=(72, 72))
    with pytest.warns(SpacingWarning, match="software default"):
        film = medlung.load_film(path)
    assert film.spacing is None


def test_user_spacing_fills_in_and_overrides_with_a_warning(tmp_path, shenzhen_film):
    film = medlung.load_film(shenzhen_film, spacing=0.5)
    assert film.spacing == (0.5, 0.5) and film.spacing_source == "user"
    path = tmp_path / "film.png"
    save_png(path, np.zeros((4, 4), np.uint8), (0.1, 0.1))
    with pytest.warns(SpacingWarning, match="replaced by the given"):
        film = medlung.load_film(path, spacing="0.2,0.3")
    assert film.spacing == (0.2, 0.3) and film.spacing_source == "user"


@pytest.mark.parametrize("bad", [0, -1, "abc", "0.1,0.2,0.3", float("nan")])
def test_bad_user_spacing_is_refused(shenzhen_film, bad):
    with pytest.raises(InvalidSpacingError):
        medlung.load_film(shenzhen_film, spacing=bad)


def test_truncated_png_is_refused_naming_the_file(tmp_path, shenzhen_film):
    path = tmp_path / "cut.png"
    path.write_bytes(shenzhen_film.read_bytes()[:5000])
    with pytest.raises(UnreadableFileError) as caught:
        medlung.load_film(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
