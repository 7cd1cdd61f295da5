"""Films as they are stored: turned to the standard display by PatientOrientation, or checked when it is absent."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

import medlung
from medlung.inference import Segmenter
from medlung.pipeline.batch import predict_files
from medlung.pipeline.settings import PredictSettings
from tests import dicom_factory as factory
from tests.conftest import dice

# The first three of test_segmenter.TEST_FILMS (every 20th film of the test split). The detector's rates over all
# test films are measured by benchmarks/orientation.py; these pin its behaviour on real films.
FILMS = ["CHNCXR_0010_0", "CHNCXR_0148_0", "CHNCXR_0322_0"]


def _pixels(shared_data, stem):
    return np.asarray(Image.open(shared_data / "shenzhen" / "images" / f"{stem}.png"))


def _dicom(pixels, orientation, spacing, path):
    ds = factory.radiograph(
        np.ascontiguousarray(pixels),
        factory.DX_PRESENTATION,
        PixelSpacing=list(spacing),
        PatientOrientation=list(orientation),
    )
    return medlung.load_film(factory.write(ds, path))


def _lung_dice(labels, reference):
    return min(dice(labels == 1, reference == 1), dice(labels == 2, reference == 2))


@pytest.fixture(scope="module")
def standard(segmenter, shared_data, tmp_path_factory):
    """The first film in the standard display (L\\F) at 0.8 mm rows x 0.7 mm columns, and its masks."""
    pixels = _pixels(shared_data, FILMS[0])
    return pixels, segmenter(_dicom(pixels, ("L", "F"), (0.8, 0.7), tmp_path_factory.mktemp("std") / "std.dcm"))


@pytest.mark.parametrize(
    "orientation, turn",
    [
        (("R", "F"), np.fliplr),
        (("F", "R"), lambda a: np.rot90(a, 1)),
        (("H", "R"), lambda a: np.rot90(a, 2).T),
    ],
)
def test_a_film_stored_turned_gives_the_standard_films_labels_turned(segmenter, standard, tmp_path, orientation, turn):
    pixels, reference = standard
    quarter = orientation[0] in "HF"
    spacing = (0.7, 0.8) if quarter else (0.8, 0.7)  # the stored rows are the standard film's columns
    masks = segmenter(_dicom(turn(pixels), orientation, spacing, tmp_path / "turned.dcm"))
    expected = turn(reference.labels)
    assert masks.labels.shape == expected.shape and masks.spacing == spacing
    assert _lung_dice(masks.labels, expected) >= 0.99  # right lung on the patient's right, on the stored grid
    assert masks.areas_cm2["right"] == pytest.approx(reference.areas_cm2["right"], rel=0.01)
    assert masks.orientation == orientation and not masks.orientation_assumed
    assert masks.orientation_check == "ok"  # turned by its tag, it looks like a chest in the standard display


def test_a_mirrored_film_puts_the_right_lung_on_the_image_right(segmenter, standard, tmp_path):
    pixels, _ = standard
    masks = segmenter(_dicom(np.fliplr(pixels), ("R", "F"), (0.8, 0.7), tmp_path / "mirrored.dcm"))
    cols = masks.labels.shape[1]
    right_lung_columns = np.nonzero(masks.labels == 1)[1]
    assert right_lung_columns.mean() > cols / 2 and np.nonzero(masks.labels == 2)[1].mean() < cols / 2


@pytest.mark.parametrize("stem", FILMS)
def test_the_check_flags_a_mirrored_and_an_upside_down_film_and_not_the_original(segmenter, shared_data, stem):
    pixels = _pixels(shared_data, stem).astype(np.float32)
    looks = {
        name: segmenter(medlung.Film(np.ascontiguousarray(turn(pixels)), None, "unknown")).orientation_check
        for name, turn in (("original", lambda a: a), ("mirrored", np.fliplr), ("upside down", np.flipud))
    }
    assert looks["original"] == "ok"
    assert looks["mirrored"] == "mirrored?"
    assert looks["upside down"] in ("upside down?", "rotated 180?")  # flagged; left-right is harder upside down


@pytest.mark.slow
def test_orientation_fix_segments_a_mirrored_png_as_detected_and_reports_it(
    segmenter, shipped_bundle, standard, tmp_path
):
    pixels, _ = standard
    Image.fromarray(pixels).save(tmp_path / "standard.png")
    Image.fromarray(np.ascontiguousarray(np.fliplr(pixels))).save(tmp_path / "mirrored.png")
    fixer = Segmenter(shipped_bundle, device="cpu", fix_orientation=True)
    report = predict_files([tmp_path / "mirrored.png"], tmp_path / "out", fixer, PredictSettings(formats=("png",)))
    row = report.rows[0]
    assert row["status"] == "ok" and row["orientation_check"] == "mirrored? fixed"
    assert row["orientation"] == "R\\F (detected)"
    assert any("orientation detected" in note for note in row["notes"])
    assert next(iter(csv.DictReader(open(tmp_path / "out" / "report.csv"))))["orientation_check"] == "mirrored? fixed"
    fixed = fixer(medlung.load_film(tmp_path / "mirrored.png"))
    plain = segmenter(medlung.load_film(tmp_path / "standard.png"))
    assert _lung_dice(np.fliplr(fixed.labels), plain.labels) >= 0.99  # right lung on the patient's right (image right)


def test_without_the_fix_a_mirrored_png_is_only_reported(segmenter, standard, tmp_path):
    pixels, _ = standard
    path = tmp_path / "mirrored.png"
    Image.fromarray(np.ascontiguousarray(np.fliplr(pixels))).save(path)
    row = predict_files([path], tmp_path / "out", segmenter, PredictSettings(formats=("png",))).rows[0]
    assert row["orientation_check"] == "mirrored?" and row["orientation"] == "L\\F (assumed)"
    assert any("--orientation-fix" in note for note in row["notes"])


def test_a_lateral_tag_is_neither_turned_nor_judged(segmenter, standard, tmp_path):
    pixels, reference = standard
    masks = segmenter(_dicom(pixels, ("A", "F"), (0.8, 0.7), tmp_path / "lateral.dcm"))
    assert masks.orientation_check == "unknown" and masks.orientation_assumed
    np.testing.assert_array_equal(masks.labels, reference.labels)  # standard PA assumed for right/left
