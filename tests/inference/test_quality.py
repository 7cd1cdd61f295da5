"""Quality flags on the real shared films: non-chest and lateral films are flagged, chest films are not."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import medlung
from medlung import quality
from medlung.errors import QualityWarning
from medlung.quality import QcReason, film_reasons, header_reasons, series_description

#: Every shared DICOM that is not a frontal human chest film, with the reason codes its result must carry.
NOT_FRONTAL_CHEST = {
    "RG2_JPLL.dcm": {"not_chest"},  # a hip, BodyPartExamined HIP
    "CR-ModalitySequenceLUT.dcm": {"not_chest"},  # dental, "MODALITYLUT - TEETH", no BodyPartExamined
    "vlut_04.dcm": {"not_chest"},  # an OT test image
    "dx_image.dcm": {"lateral", "not_human"},  # a dog's lateral thorax, BodyPartExamined THORAX
    "CR1_6154.dcm": {"not_chest", "lateral", "too_small"},  # 16x16 C-spine, ViewPosition LL
}
CHEST = ["CR-MONO1-10-chest.dcm", "CR-MONO1-10-chest_RLE.dcm", "RG1_J2KI.dcm", "RG1_JLSN.dcm"]


def _load(path, spacing=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return medlung.load_film(path, spacing=spacing)


@pytest.fixture(scope="module")
def segmented(segmenter, shared_dicom):
    """``segmented(name)``: the film and its masks, each shared film segmented once for this module."""
    cache = {}

    def get(name):
        if name not in cache:
            film = _load(shared_dicom / name)
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # nothing leaks (MONAI's "Divide by zero" on the 16x16 film did)
                warnings.simplefilter("ignore", QualityWarning)  # but the one warning of a flagged film (#28)
                cache[name] = film, segmenter(film)
        return cache[name]

    return get


@pytest.mark.parametrize("name", sorted(NOT_FRONTAL_CHEST))
def test_non_chest_and_lateral_films_are_flagged_with_their_reasons(segmented, name):
    masks = segmented(name)[1]
    codes = {r.code for r in masks.qc_reasons}
    assert masks.qc == "flagged"
    assert NOT_FRONTAL_CHEST[name] <= codes, masks.qc_reasons
    assert all(isinstance(r, QcReason) and r.code in quality.REASON_CODES and r.message for r in masks.qc_reasons)


@pytest.mark.parametrize("name", ["RG2_JPLL.dcm", "CR-ModalitySequenceLUT.dcm", "dx_image.dcm"])
def test_the_image_alone_flags_non_chest_films(segmented, name):
    """Without their header (as a PNG would come), the lungs found on the hip, the teeth and the dog are implausible."""
    film, masks = segmented(name)
    check = quality.check_quality(type(film)(film.pixels, None, "unknown"), masks.labels)
    assert check.qc == "flagged" and "lungs_implausible" in check.codes, check.measures


@pytest.mark.parametrize("name", CHEST[::2])  # the RLE copy and the JPEG-LS copy give the same pixels
def test_chest_films_are_ok(segmented, name):
    masks = segmented(name)[1]
    assert masks.qc == "ok" and masks.qc_reasons == [], masks.qc_reasons
    assert 0.2 < masks.qc_measures["fraction"] < 0.5


def test_a_shenzhen_film_is_ok(segmenter, shenzhen_film):
    masks = segmenter(_load(shenzhen_film))
    assert masks.qc == "ok" and not masks.qc_reasons
    assert masks.qc_measures["mean_probability"] > 0.9


def test_the_documented_wrong_spacing_is_flagged(segmenter, shared_dicom):
    """``--spacing 0.143`` makes CR-MONO1-10-chest.dcm 63 mm wide: a field of view no chest has."""
    masks = segmenter(_load(shared_dicom / "CR-MONO1-10-chest.dcm", spacing="0.143"))
    codes = {r.code: r.message for r in masks.qc_reasons}
    assert masks.qc == "flagged" and "field_of_view" in codes
    assert "63x63 mm" in codes["field_of_view"]


def test_header_facts(shared_dicom):
    reasons = header_reasons(_load(shared_dicom / "CR1_6154.dcm").dataset)
    assert [str(r) for r in reasons] == [
        "not_chest: BodyPartExamined is CSPINE, not CHEST",
        "lateral: ViewPosition is LL (lateral)",
    ]
    assert header_reasons(None) == []
    for name in CHEST:
        assert header_reasons(_load(shared_dicom / name).dataset) == []


def test_film_size_and_field_of_view():
    assert [r.code for r in film_reasons((16, 16), (0.1, 0.1))] == ["too_small"]
    assert film_reasons((440, 440), None) == []  # uncalibrated: not judged
    assert film_reasons((2140, 1760), (0.2, 0.2)) == []  # 352x428 mm
    assert [r.code for r in film_reasons((440, 440), (0.143, 0.143))] == ["field_of_view"]
    assert [r.code for r in film_reasons((440, 440), (2.0, 2.0))] == ["field_of_view"]  # 880 mm


def test_missing_lungs_are_flagged():
    labels = np.zeros((256, 256), np.uint8)
    labels[60:200, 40:110] = 1
    pixels = np.random.default_rng(0).random(
        (256, 256), dtype=np.float32
    )  # a film with contrast (a blank is no_contrast)
    check = quality.check_quality(medlung.Film(pixels, None, "unknown"), labels)
    assert [str(r) for r in check.reasons] == ["lungs_missing: the left lung not found"]


def test_series_description_names_the_flags_within_64_characters():
    assert series_description("Lungs (medlung)", []) == "Lungs (medlung)"
    reasons = [QcReason("not_chest", "x"), QcReason("lateral", "y"), QcReason("not_chest", "z")]
    assert series_description("Lungs (medlung)", reasons) == "Lungs (medlung) [QC: not_chest,lateral]"
    many = [QcReason(code, "") for code in quality.REASON_CODES]
    text = series_description("Lungs (medlung)", many)
    assert len(text) <= 64 and text.startswith("Lungs (medlung) [QC: not_chest,") and text.endswith("...]")


def test_a_flagged_film_warns_in_python_and_an_ok_one_does_not(segmenter, shared_dicom):
    for name, flagged in (("dx_image.dcm", True), (CHEST[0], False)):
        film = _load(shared_dicom / name)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            masks = segmenter(film)
        quality_warnings = [w for w in caught if issubclass(w.category, QualityWarning)]
        assert (masks.qc == "flagged") == flagged == bool(quality_warnings), name
        if flagged:
            assert str(film.path) in str(quality_warnings[0].message)
