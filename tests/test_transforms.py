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


def test_sick_film_augmentation_changes_only_the_film_and_is_seeded():
    import numpy as np
    import torch

    from medlung.transforms.sick_film import RandSickFilmd

    yy, xx = np.mgrid[:96, :96]
    film = (0.3 + 0.2 * np.sin(xx / 7.0)).astype(np.float32)
    lung = ((yy - 48) ** 2 / 30**2 + (xx - 30) ** 2 / 15**2 < 1) | ((yy - 48) ** 2 / 30**2 + (xx - 66) ** 2 / 15**2 < 1)
    target = np.stack([lung, lung]).astype(np.float32)
    data = {"image": torch.from_numpy(film)[None], "label": torch.from_numpy(target), "weight": torch.ones(2, 96, 96)}
    results = []
    for seed in (0, 0, 1):
        transform = RandSickFilmd(prob=1.0, working_spacing=2.0)
        transform.set_random_state(seed=seed)
        out = transform(dict(data))
        torch.testing.assert_close(out["label"], data["label"])  # the lung under an opacity is still lung
        assert out["image"].shape == (1, 96, 96) and 0 <= out["image"].min() and out["image"].max() <= 1
        results.append(out["image"])
    torch.testing.assert_close(results[0], results[1])  # same seed, same film
    assert not torch.equal(results[0], results[2])
    changed = [
        (RandSickFilmd(prob=1.0).set_random_state(seed=s)(dict(data))["image"][0].numpy() - film) for s in range(8)
    ]
    brighter_in_lung = np.mean([c[lung].mean() for c in changed])
    assert brighter_in_lung > 0.01  # opacities and haze make the lungs denser
