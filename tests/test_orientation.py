"""Orientation: the eight ways a frontal film can be stored, to the standard display and back, exactly."""

from __future__ import annotations

import numpy as np
import pytest

import medlung
from medlung.orientation import (
    ALL_ORIENTATIONS,
    ALL_TRANSFORMS,
    CHECK_VERDICTS,
    IDENTITY,
    STANDARD_DISPLAY,
    DisplayTransform,
    check_orientation,
    display_transform,
    is_frontal,
)

# A film in the standard display, stored the eight ways: each PatientOrientation with the numpy operation
# that turns the standard film into the stored one (written out independently of the module).
STORED = {
    ("L", "F"): lambda d: d,
    ("R", "F"): np.fliplr,
    ("L", "H"): np.flipud,
    ("R", "H"): lambda d: np.rot90(d, 2),
    ("F", "R"): lambda d: np.rot90(d, 1),  # turned a quarter counter-clockwise: the head points to the image left
    ("H", "L"): lambda d: np.rot90(d, -1),  # turned clockwise: the head points to the image right
    ("F", "L"): lambda d: d.T,
    ("H", "R"): lambda d: np.rot90(d, 2).T,
}


def _asymmetric(rows=5, cols=7):
    """No two of its eight orientations are equal (distinct values, rows != cols)."""
    return np.random.default_rng(0).permutation(rows * cols).reshape(rows, cols)


def test_the_eight_orientations_are_the_eight_transforms():
    assert set(ALL_ORIENTATIONS) == set(STORED) and len(set(ALL_TRANSFORMS)) == 8
    assert ALL_ORIENTATIONS[0] == STANDARD_DISPLAY and ALL_TRANSFORMS[0] == IDENTITY


@pytest.mark.parametrize("orientation", list(STORED))
def test_every_orientation_goes_to_the_standard_display_and_back_exactly(orientation):
    standard = _asymmetric()
    stored = STORED[orientation](standard)
    transform = DisplayTransform.from_orientation(orientation)
    np.testing.assert_array_equal(transform.to_display(stored), standard)
    np.testing.assert_array_equal(transform.to_stored(standard), stored)
    np.testing.assert_array_equal(transform.to_stored(transform.to_display(stored)), stored)
    assert transform.stored_orientation == orientation
    assert transform.display_shape(stored.shape) == standard.shape
    assert transform.then(transform.inverse()).identity


@pytest.mark.parametrize("orientation", list(STORED))
def test_spacing_swaps_on_quarter_turns_only(orientation):
    transform = DisplayTransform.from_orientation(orientation)
    quarter = orientation[0] in "HF"
    assert transform.quarter_turn == quarter
    # stored rows 0.1 mm apart, columns 0.2 mm: a quarter turn makes the stored columns the display rows
    assert transform.display_spacing((0.1, 0.2)) == ((0.2, 0.1) if quarter else (0.1, 0.2))
    assert transform.display_spacing(None) is None


def test_film_in_the_standard_display_keeps_its_facts_and_swaps_its_spacing():
    stored = _asymmetric(4, 6).astype(np.float32)
    film = medlung.Film(stored, (0.1, 0.2), "PixelSpacing", orientation=("F", "R"), facts={"modality": "DX"})
    shown = display_transform(film.orientation).film(film)
    np.testing.assert_array_equal(shown.pixels, np.rot90(stored, -1))
    assert shown.spacing == (0.2, 0.1) and shown.orientation == STANDARD_DISPLAY
    assert shown.spacing_source == "PixelSpacing" and shown.facts == {"modality": "DX"}
    standard = medlung.Film(stored, None, "unknown", orientation=("L", "F"))
    assert display_transform(standard.orientation).film(standard) is standard


def test_multi_letter_values_use_their_principal_direction():
    assert DisplayTransform.from_orientation(("RH", "FL")).stored_orientation == ("R", "F")
    assert DisplayTransform.from_orientation("F\\L") == DisplayTransform(transpose=True)


@pytest.mark.parametrize(
    "orientation, words",
    [
        (("A", "F"), "not a frontal film"),
        (("L", "P"), "not a frontal film"),
        (("L", "R"), "one axis"),
        (("H", "F"), "one axis"),
        (("L",), "two values"),
        (("X", "F"), "letters"),
    ],
)
def test_non_frontal_or_malformed_orientations_are_refused_in_words(orientation, words):
    with pytest.raises(ValueError, match=words):
        DisplayTransform.from_orientation(orientation)
    assert not is_frontal(orientation)
    assert display_transform(orientation) == IDENTITY  # lenient: left as stored, the split says it assumed


def test_absent_orientation_is_the_standard_display():
    assert display_transform(None) == IDENTITY and not is_frontal(None)


def _drawn_chest(rows=200, cols=220):
    """A drawn chest in the standard display: two lungs (dark), the heart low and to the image right, the abdomen
    below (dense = bright), and the lung masks a network would draw (the left lung's medial edge pushed out)."""
    r, c = np.mgrid[:rows, :cols]
    right_lung = ((r - 95) / 65) ** 2 + ((c - 65) / 38) ** 2 < 1  # patient right = image left
    left_lung = (((r - 95) / 65) ** 2 + ((c - 150) / 38) ** 2 < 1) & ~((r > 100) & (c < 140))  # heart cuts it
    image = np.full((rows, cols), 0.6, np.float32)
    image[r > 165] = 1.0  # abdomen
    image[:20] = 0.3  # neck and shoulders: less dense than the abdomen
    image[right_lung | left_lung] = 0.1
    image[(r > 100) & (r < 165) & (c > 105) & (c < 140)] = 0.9  # heart, left of the midline (image right)
    return right_lung | left_lung, image


@pytest.mark.parametrize(
    "turn, verdict",
    [
        (lambda a: a, "ok"),
        (np.fliplr, "mirrored?"),
        (np.flipud, "upside down?"),
        (lambda a: np.rot90(a, 2), "rotated 180?"),
        (lambda a: np.rot90(a, 1), "rotated 90?"),
        (lambda a: a.T, "rotated 90?"),
    ],
)
def test_the_check_reads_the_drawn_chest_turned_each_way(turn, verdict):
    lungs, image = _drawn_chest()
    check = check_orientation(turn(lungs), turn(image))
    assert check.verdict == verdict and check.flagged == (verdict != "ok")
    if verdict != "rotated 90?":  # a quarter turn's guess is refined by segmenting the turned film again
        np.testing.assert_array_equal(check.correction.to_display(turn(lungs)), lungs)


def test_the_check_says_unknown_without_lungs_and_never_fails_on_odd_masks():
    assert check_orientation(np.zeros((50, 60), bool), np.zeros((50, 60))).verdict == "unknown"
    rng = np.random.default_rng(1)
    for shape in ((1, 1), (3, 200), (64, 64)):
        check = check_orientation(rng.random(shape) > 0.5, rng.random(shape))
        assert check.verdict in CHECK_VERDICTS
    assert check_orientation(np.ones((40, 40), bool), np.full((40, 40), 7.0)).verdict in CHECK_VERDICTS
