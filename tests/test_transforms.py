"""The MONAI bridge: LoadFilm / LoadFilmd put the spacing in the MetaTensor affine."""

import numpy as np
import pytest
import torch
from monai.transforms import Compose, Spacingd

import medlung
from medlung.io.png import save_png
from medlung.transforms import LoadFilm, LoadFilmd
from tests.dicom_factory import chest_pixels


@pytest.fixture(scope="module")
def generated_pixels():
    return chest_pixels(512, 480)


@pytest.fixture
def generated_film(tmp_path, generated_pixels):
    """A generated 512x480 PNG without spacing."""
    path = tmp_path / "generated.png"
    save_png(path, generated_pixels, None)
    return path


def test_loadfilmd_gives_channel_first_metatensor_with_spacing_affine(tmp_path, generated_pixels):
    path = tmp_path / "film.png"
    save_png(path, generated_pixels[:300, :200], (0.1, 0.2))
    data = LoadFilmd("image", keep_film=True)({"image": path, "other": 1})
    image = data["image"]
    assert image.shape == (1, 300, 200) and image.dtype == torch.float32
    assert torch.allclose(image.affine, torch.diag(torch.tensor([0.1, 0.2, 1.0], dtype=torch.float64)))
    assert image.meta["spacing_known"] and image.meta["spacing_source"] == "png-pHYs"
    assert data["image_film"].spacing == (0.1, 0.2) and data["other"] == 1
    np.testing.assert_array_equal(image[0].numpy(), generated_pixels[:300, :200])


def test_monai_spacing_transform_uses_the_film_spacing(tmp_path):
    path = tmp_path / "film.png"
    save_png(path, np.zeros((300, 200), np.uint8), (0.1, 0.2))
    out = Compose([LoadFilmd("image"), Spacingd("image", pixdim=(0.4, 0.4))])({"image": path})["image"]
    # rows: 300 x 0.1 mm = 30 mm -> 75 px at 0.4 mm; cols: 200 x 0.2 mm = 40 mm -> 100 px
    # (MONAI's Spacing may keep one more row for the half pixel at the edge)
    assert out.shape[0] == 1 and out.shape[1] in (75, 76) and out.shape[2] == 100


def test_unknown_spacing_is_flagged_not_invented(generated_film):
    image = LoadFilm()(generated_film)
    assert image.meta["spacing_known"] is False and image.meta["spacing_source"] == "unknown"
    image = LoadFilm(spacing=0.3)(medlung.load_film(generated_film, spacing=0.3))
    assert image.meta["spacing_mm"] == (0.3, 0.3)


def test_film_objects_pass_through(generated_film):
    film = medlung.load_film(generated_film)
    image = LoadFilmd("image")({"image": film})["image"]
    assert image.shape == (1, 512, 480)
    with pytest.raises(KeyError):
        LoadFilmd("missing")({"image": film})
