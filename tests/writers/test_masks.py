"""Mask and overlay files: the same content as the libraries' own writers, read back by the usual readers."""

import gzip

import numpy as np
import pytest
from PIL import Image

from medlung.writers.masks import write_labels_nifti, write_lungs_png
from medlung.writers.overlay import overlay_picture, write_overlay


@pytest.fixture
def shenzhen_labels(shared_data) -> np.ndarray:
    """A real film's right (1) and left (2) lungs, on an odd-sized grid (edge tiles of every size)."""
    masks = shared_data / "shenzhen" / "masks"
    size = (1037, 1201)  # (cols, rows): neither a multiple of the writer's tiles
    right = np.asarray(Image.open(masks / "CHNCXR_0001_0_lung_R.png").resize(size, Image.NEAREST)) > 0
    left = np.asarray(Image.open(masks / "CHNCXR_0001_0_lung_L.png").resize(size, Image.NEAREST)) > 0
    labels = np.zeros(right.shape, np.uint8)
    labels[right], labels[left] = 1, 2
    return labels


@pytest.mark.parametrize("spacing", [(0.0875, 0.1), None])
def test_nifti_is_byte_for_byte_what_nibabel_writes(tmp_path, shenzhen_labels, spacing):
    import nibabel

    path = write_labels_nifti(tmp_path / "a_labels.nii.gz", shenzhen_labels, spacing)
    image = nibabel.Nifti1Image(shenzhen_labels[:, :, None], np.diag([*(spacing or (1.0, 1.0)), 1.0, 1.0]))
    image.header.set_data_dtype(np.uint8)
    image.header.set_xyzt_units(xyz="mm" if spacing else "unknown")
    if spacing is None:
        image.header["descrip"] = b"medlung: spacing unknown"
    image.header["intent_name"] = b"labels"
    assert gzip.decompress(path.read_bytes()) == image.to_bytes()
    read = nibabel.load(path)
    np.testing.assert_array_equal(np.asarray(read.dataobj)[:, :, 0], shenzhen_labels)
    assert read.header.get_zooms()[:2] == pytest.approx(spacing or (1.0, 1.0))


def test_mask_png_reads_back_with_its_spacing(tmp_path, shenzhen_labels):
    from medlung.io.png import png_spacing

    path = write_lungs_png(tmp_path / "a_lungs.png", shenzhen_labels, (0.0875, 0.1))
    with Image.open(path) as image:
        assert image.mode == "L"
        np.testing.assert_array_equal(np.asarray(image), np.where(shenzhen_labels > 0, 255, 0))
        assert png_spacing(image.info) == pytest.approx((0.0875, 0.1))


def test_overlay_png_holds_the_picture_exactly(tmp_path, shenzhen_labels, shenzhen_pixels):
    film = np.asarray(Image.fromarray(shenzhen_pixels).resize(shenzhen_labels.shape[::-1]), np.float32)
    path = write_overlay(tmp_path / "a_overlay.png", film, shenzhen_labels, ["right lung 1.0 cm2"])
    with Image.open(path) as image:
        assert image.mode == "RGB" and image.size == shenzhen_labels.shape[::-1]
        np.testing.assert_array_equal(
            np.asarray(image), np.asarray(overlay_picture(film, shenzhen_labels, ["right lung 1.0 cm2"]))
        )
    assert (
        path.read_bytes()
        == write_overlay(tmp_path / "b_overlay.png", film, shenzhen_labels, ["right lung 1.0 cm2"]).read_bytes()
    )


def test_overlay_of_a_large_film_is_shrunk_to_the_preview_size(tmp_path, shenzhen_labels):
    big = np.repeat(np.repeat(shenzhen_labels, 2, axis=0), 2, axis=1)  # 2402 x 2074
    path = write_overlay(tmp_path / "a_overlay.png", big.astype(np.float32), big, [])
    with Image.open(path) as image:
        assert max(image.size) == 2048 and image.size == (round(2074 * 2048 / 2402), 2048)
