"""The Segmenter on real films: accuracy, native grid, full resolution, orientation, polarity."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pydicom.uid import JPEG2000Lossless

import medlung
from medlung.inference.postprocess import clean_lung_mask, split_lungs
from tests import dicom_factory as factory
from tests.conftest import dice, read_mask

# Every 20th film of the fixed test split (not chosen by how well the model does on them).
TEST_FILMS = ["CHNCXR_0010_0", "CHNCXR_0148_0", "CHNCXR_0322_0", "CHNCXR_0453_1", "CHNCXR_0613_1"]


def _truth(shared_data, stem, suffix="_lungs"):
    return read_mask(shared_data / "shenzhen" / "masks" / f"{stem}{suffix}.png")


@pytest.mark.parametrize("stem", TEST_FILMS)
def test_lungs_match_the_ground_truth_on_test_films(segmenter, shared_data, stem):
    film = medlung.load_film(shared_data / "shenzhen" / "images" / f"{stem}.png")
    masks = segmenter(film)
    assert masks.labels.shape == (512, 512) and masks.labels.dtype == np.uint8
    assert set(np.unique(masks.labels)) == {0, 1, 2}
    assert dice(masks.lungs, _truth(shared_data, stem)) >= 0.93
    # patient right lung is on the image left of a PA film
    assert dice(masks.labels == 1, _truth(shared_data, stem, "_lung_R")) > 0.9
    assert dice(masks.labels == 2, _truth(shared_data, stem, "_lung_L")) > 0.9
    assert masks.areas_cm2 is None and masks.orientation_assumed and not masks.empty
    assert any("spacing unknown" in note and "--spacing" in note for note in masks.notes)


def test_test_films_are_in_the_test_split(shared_data):
    import csv

    rows = {r["image"]: r["split"] for r in csv.DictReader(open(shared_data / "shenzhen" / "splits.csv"))}
    assert all(rows[f"images/{stem}.png"] == "test" for stem in TEST_FILMS)


@pytest.fixture(scope="module")
def full_resolution(shared_data, tmp_path_factory):
    """A real test film upsampled to 4020x4892 (WxH) at 0.0875 mm, DX MONOCHROME1, JPEG 2000 lossless."""
    stem = TEST_FILMS[0]
    small = np.asarray(Image.open(shared_data / "shenzhen" / "images" / f"{stem}.png"))
    big = np.asarray(Image.fromarray(small).resize((4020, 4892), Image.BICUBIC)).astype(np.uint16) * 16
    ds = factory.radiograph(
        (4095 - big).astype(np.uint16),
        factory.DX_PRESENTATION,
        photometric="MONOCHROME1",
        bits_stored=12,
        PixelSpacing=[0.0875, 0.0875],
        PatientOrientation=["L", "F"],
    )
    path = factory.write(ds, tmp_path_factory.mktemp("full") / "big.dcm", JPEG2000Lossless)
    return path, stem


@pytest.mark.slow  # a 4020x4892 film
def test_full_resolution_film_gives_the_small_films_mask_on_its_native_grid(segmenter, full_resolution, shared_data):
    path, stem = full_resolution
    film = medlung.load_film(path)
    masks = segmenter(film)
    assert masks.labels.shape == (4892, 4020)
    assert masks.spacing == (0.0875, 0.0875) and masks.spacing_source == "PixelSpacing"
    assert not masks.orientation_assumed
    small = segmenter(medlung.load_film(shared_data / "shenzhen" / "images" / f"{stem}.png"))
    back = np.asarray(Image.fromarray(masks.labels).resize((512, 512), Image.NEAREST))
    assert dice(back > 0, small.lungs) >= 0.98
    assert dice(back == 1, small.labels == 1) >= 0.97
    # areas: pixels x 0.0875^2 mm^2, in cm^2
    expected = (masks.labels > 0).sum() * 0.0875 * 0.0875 / 100
    assert masks.areas_cm2["total"] == pytest.approx(expected)
    assert 100 < masks.areas_cm2["total"] < 600


def test_orientation_decides_right_and_left(segmenter, shenzhen_pixels, tmp_path):
    """The same chest stored in the standard display (L\\F) and mirrored (R\\F, pixels flipped left-right)."""
    films = {}
    for name, orientation, pixels in (
        ("pa", ["L", "F"], shenzhen_pixels),
        ("mirror", ["R", "F"], np.fliplr(shenzhen_pixels)),
    ):
        ds = factory.radiograph(
            np.ascontiguousarray(pixels),
            factory.DX_PRESENTATION,
            PixelSpacing=[0.7, 0.7],
            PatientOrientation=orientation,
        )
        films[name] = segmenter(medlung.load_film(factory.write(ds, tmp_path / f"{name}.dcm")))
    pa, mirror = films["pa"].labels, films["mirror"].labels
    np.testing.assert_array_equal(np.fliplr(mirror), pa)  # the network saw the same standard-display film
    assert pa[:, :200][pa[:, :200] > 0].mean() == 1  # image left = patient right when columns run to L
    assert mirror[:, -200:][mirror[:, -200:] > 0].mean() == 1  # image right = patient right when they run to R


def test_monochrome1_and_monochrome2_films_give_the_same_mask(segmenter, shenzhen_pixels, tmp_path):
    stored = shenzhen_pixels.astype(np.uint16) * 4
    a = factory.write(factory.radiograph(stored, bits_stored=10), tmp_path / "m2.dcm")
    b = factory.write(
        factory.radiograph((1023 - stored).astype(np.uint16), photometric="MONOCHROME1", bits_stored=10),
        tmp_path / "m1.dcm",
    )
    np.testing.assert_array_equal(segmenter(medlung.load_film(a)).labels, segmenter(medlung.load_film(b)).labels)


def test_probability_on_request(segmenter, shenzhen_film):
    masks = segmenter(medlung.load_film(shenzhen_film), probability=True)
    assert masks.probability.shape == (512, 512) and masks.probability.dtype == np.float32
    np.testing.assert_array_equal(masks.probability[masks.lungs] > 0.5, True)


def test_clean_up_keeps_two_lungs_and_fills_holes():
    mask = np.zeros((100, 100), bool)
    mask[10:90, 10:40] = True
    mask[10:90, 60:90] = True
    mask[50, 20] = False  # hole
    mask[95:97, 95:97] = True  # speck
    cleaned = clean_lung_mask(mask, pixel_area_mm2=4.0, min_area_mm2=100.0)
    assert cleaned[50, 20] and not cleaned[95, 95]
    labels, assumed, _notes = split_lungs(cleaned, None)
    assert assumed and labels[50, 20] == 1 and labels[50, 70] == 2
    labels, assumed, _ = split_lungs(cleaned, ("R", "F"))
    assert not assumed and labels[50, 20] == 2


def test_clean_up_keeps_a_lung_on_each_side_not_gas_larger_than_the_smaller_lung(shared_data):
    """Bowel gas under the right lung, larger than the left lung (as a network drew it on CHNCXR_0303_0, a
    child's film): the clean-up keeps both lungs of the real truth mask and drops the gas."""
    right = _truth(shared_data, "CHNCXR_0303_0", "_lung_R")
    left = _truth(shared_data, "CHNCXR_0303_0", "_lung_L")
    gas = np.zeros_like(right)
    gas[380:470, 150:300] = True  # below the diaphragm, centre left of the image's middle column
    assert left.sum() < gas.sum() < right.sum() and not (gas & (right | left)).any()
    cleaned = clean_lung_mask(right | left | gas, pixel_area_mm2=0.7, min_area_mm2=1500.0)
    np.testing.assert_array_equal(cleaned, right | left)


def test_touching_lungs_are_divided_at_the_mediastinum():
    mask = np.zeros((100, 100), bool)
    mask[10:90, 10:90] = True
    mask[10:80, 48:52] = False  # a narrow bridge at the bottom joins them
    labels, _, notes = split_lungs(mask, ("L", "F"))
    assert any("lungs touch" in n for n in notes)
    assert (labels[:, :48][mask[:, :48]] == 1).all() and (labels[:, 52:][mask[:, 52:]] == 2).all()


def test_monochrome1_dicom_and_the_same_film_as_png_agree(segmenter, shenzhen_film, shenzhen_pixels, tmp_path):
    stored = (4095 - shenzhen_pixels.astype(np.uint16) * 16).astype(np.uint16)
    ds = factory.radiograph(stored, factory.CR, photometric="MONOCHROME1", bits_stored=12)
    dicom = segmenter(medlung.load_film(factory.write(ds, tmp_path / "mono1.dcm")))
    png = segmenter(medlung.load_film(shenzhen_film))
    assert dice(dicom.lungs, png.lungs) >= 0.98


def test_anisotropic_spacing_keeps_the_grid_and_the_areas(segmenter, shenzhen_pixels, tmp_path):
    # 512 rows at 0.9 mm, 600 columns at 0.7 mm: a non-square film with non-square pixels
    wide = np.asarray(Image.fromarray(shenzhen_pixels).resize((600, 512), Image.BICUBIC))
    ds = factory.radiograph(wide, factory.DX_PRESENTATION, PixelSpacing=[0.9, 0.7])
    masks = segmenter(medlung.load_film(factory.write(ds, tmp_path / "aniso.dcm")))
    assert masks.labels.shape == (512, 600) and masks.spacing == (0.9, 0.7)
    working = segmenter.spec.working_spacing
    assert masks.working_shape == (round(512 * 0.9 / working), round(600 * 0.7 / working))
    assert masks.areas_cm2["right"] == pytest.approx((masks.labels == 1).sum() * 0.9 * 0.7 / 100)


def test_segment_files_goes_on_past_a_bad_file(segmenter, shenzhen_film, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    results = list(segmenter.segment_files([shenzhen_film, bad, shenzhen_film]))
    assert [type(r).__name__ for _, r in results] == ["LungMasks", "UnreadableFileError", "LungMasks"]
    assert results[1][0] == bad
