"""DICOM SR (TID 1500) of the lung measurements: valid, read back by highdicom and dcmqi to the same numbers."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.sr.coding import Code

from medlung.errors import OutputExistsError, SegmentationWriteError
from medlung.inference.reporting import QC_FLAG_CODES, report_items
from medlung.quality import REASON_CODES, QcReason
from medlung.writers.dicom_seg import seg_identity, write_dicom_seg
from medlung.writers.dicom_sr import LOCAL_SCHEME, UNITS, SrMeasurement, write_dicom_sr
from tests.writers.seg_support import dciodvfy, load, shenzhen_cr, shenzhen_labels
from tests.writers.sr_support import masks_of, read_with_dcmqi, read_with_highdicom

OPTIONS = {"lungs": "field", "tta": False}


@pytest.fixture(scope="module")
def calibrated(shared_data, tmp_path_factory):
    """A real Shenzhen film as a CR at 0.7 mm with its real lung masks, and its SEG."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("sr")
    pixels = np.asarray(Image.open(shared_data / "shenzhen" / "images" / "CHNCXR_0001_0.png"))
    film = load(shenzhen_cr(folder / "film.dcm", pixels))
    labels = shenzhen_labels(shared_data)
    seg = write_dicom_seg(film, labels, folder / "film_seg.dcm", model_version="2.0.0", options=OPTIONS)
    return film, labels, seg, folder


def _write(film, masks, path, **kwargs):
    seg, options = seg_identity(film, "2.0.0", OPTIONS)
    return write_dicom_sr(
        film,
        kwargs.pop("items", None) or report_items(masks),
        path,
        seg=seg,
        model_version="2.0.0",
        options=options,
        **kwargs,
    )


#: dciodvfy warnings an SR may get: medlung's private coding scheme (dciodvfy knows none), and what the film itself
#: lacks or carries (an ACR-NEMA film has no Patient ID, Study Date ..., and an old one-component Patient's Name).
EXPECTED_WARNINGS = (f"<{LOCAL_SCHEME}>", "needed to build DICOMDIR", "Patient's Name")


def _private_scheme_warnings_only(path) -> None:
    errors, warnings_ = dciodvfy(path)
    assert errors == []
    assert [w for w in warnings_ if not any(known in w for known in EXPECTED_WARNINGS)] == []


def test_the_report_is_valid_and_both_readers_give_the_same_numbers(calibrated, tmp_path):
    film, labels, seg_path, _ = calibrated
    masks = masks_of(film, labels, qc_reasons=[QcReason("lungs_implausible", "x"), QcReason("lateral", "y")])
    path = _write(film, masks, tmp_path / "film_sr.dcm")
    _private_scheme_warnings_only(path)

    seg = pydicom.dcmread(seg_path)
    ours = read_with_highdicom(path)
    theirs = read_with_dcmqi(path, tmp_path)
    assert list(ours) == list(theirs) == ["right", "left", "both"]
    for group in ours:
        assert ours[group]["measurements"] == theirs[group]["measurements"]
        assert ours[group]["evaluations"] == theirs[group]["evaluations"]
        assert ours[group]["segment"] == theirs[group]["segment"]
        assert ours[group]["seg"] == theirs[group]["seg"] == seg.SOPInstanceUID  # the SEG written beside it
        assert ours[group]["source"] == [film.dataset.SOPInstanceUID] == theirs[group]["source"]
        assert ours[group]["tracking_uid"] == theirs[group]["tracking_uid"]
    assert [ours[g]["segment"] for g in ours] == [[1], [2], None]  # both lungs: the SEG as a whole
    assert [ours[g]["laterality"] for g in ours] == ["Right", "Left", "Right and left"]
    # the numbers are the masks' areas (cm² at 0.7 mm) and bounding boxes (mm)
    right = ours["right"]["measurements"]
    assert right["Area"] == (round((labels == 1).sum() * 0.49 / 100, 3), "cm2")
    rows = np.flatnonzero((labels == 1).any(axis=1))
    assert right["Height"] == (round((rows[-1] - rows[0] + 1) * 0.7, 4), "mm")
    both = ours["both"]["measurements"]
    assert both["Area"] == (round((labels > 0).sum() * 0.49 / 100, 3), "cm2")
    cols = np.flatnonzero((labels > 0).any(axis=0))
    assert both["Width"] == (round((cols[-1] - cols[0] + 1) * 0.7, 4), "mm")
    assert ("lung-convention", "field") in ours["left"]["evaluations"]
    assert ours["both"]["evaluations"] == [
        ("lung-convention", "field"),
        ("qc", "flagged"),
        ("qc-flag", "lungs_implausible"),
        ("qc-flag", "lateral"),
    ]

    ds = pydicom.dcmread(path)
    assert ds.StudyInstanceUID == film.dataset.StudyInstanceUID and ds.Modality == "SR"
    assert ds.SeriesInstanceUID not in (film.dataset.SeriesInstanceUID, seg.SeriesInstanceUID)
    assert ds.SeriesNumber == 2003 and ds.CompletionFlag == "COMPLETE"  # the film's series 3 + 2000
    assert ds.PatientID == film.dataset.PatientID


def test_without_spacing_areas_and_lengths_are_in_pixels(shared_dicom, tmp_path):
    film = load(shared_dicom / "CR-MONO1-10-chest.dcm")  # no spacing at all
    assert film.spacing is None
    labels = np.zeros(film.shape, np.uint8)
    labels[100:300, 60:200], labels[100:320, 240:380] = 1, 2
    path = _write(film, masks_of(film, labels), tmp_path / "sr.dcm")
    _private_scheme_warnings_only(path)
    ours, theirs = read_with_highdicom(path), read_with_dcmqi(path, tmp_path)
    assert ours["right"]["measurements"] == theirs["right"]["measurements"]
    assert ours["right"]["measurements"] == {
        "Area": (200 * 140, "{pixels}"),
        "Height": (200, "{pixels}"),
        "Width": (140, "{pixels}"),
    }
    assert ours["both"]["measurements"]["Width"] == (320, "{pixels}")
    assert ours["both"]["evaluations"] == [("lung-convention", "field"), ("qc", "ok")]


def test_a_lung_not_found_has_no_measurements_and_a_new_measurement_is_one_more_item(calibrated, tmp_path):
    from medlung.estimation.calibration import DiceEstimate

    film, labels, _, _ = calibrated
    masks = masks_of(film, np.where(labels == 2, 0, labels).astype(np.uint8), convention="anatomical")
    masks.dice_estimate = DiceEstimate(0.97123, 0.95, 0.98, lungs={"right": (0.975, 0.96, 0.985), "left": (0, 0, 0)})
    other = Code("1234567", "99TEST", "Another number")
    items = [*report_items(masks), SrMeasurement(other, 0.5, Code("1", "UCUM", "no units"), "both")]
    path = _write(film, masks, tmp_path / "sr.dcm", items=items)
    ours = read_with_highdicom(path)
    assert ours["left"]["measurements"] == {} and ours["left"]["evaluations"] == [("lung-convention", "anatomical")]
    estimated = "Estimated Dice coefficient"
    assert ours["both"]["measurements"][estimated] == (0.9712, "1")
    assert ours["both"]["measurements"][f"{estimated}, 80 % interval low"] == (0.95, "1")
    assert ours["right"]["measurements"][f"{estimated}, 80 % interval high"] == (0.985, "1")
    assert ours["both"]["measurements"]["Another number"] == (0.5, "1")
    theirs = read_with_dcmqi(path, tmp_path)
    assert theirs["both"]["measurements"] == ours["both"]["measurements"]
    assert theirs["right"]["measurements"] == ours["right"]["measurements"]


def test_uids_are_deterministic_and_an_existing_report_is_kept(calibrated, tmp_path):
    film, labels, _, _ = calibrated
    masks = masks_of(film, labels)
    first = pydicom.dcmread(_write(film, masks, tmp_path / "a.dcm"))
    again = pydicom.dcmread(_write(film, masks, tmp_path / "b.dcm"))
    assert (first.SOPInstanceUID, first.SeriesInstanceUID) == (again.SOPInstanceUID, again.SeriesInstanceUID)
    seg, options = seg_identity(film, "2.0.0", {**OPTIONS, "tta": True})  # another SEG: another report
    other = pydicom.dcmread(
        write_dicom_sr(film, report_items(masks), tmp_path / "c.dcm", seg=seg, model_version="2.0.0", options=options)
    )
    assert other.SOPInstanceUID != first.SOPInstanceUID and other.SeriesInstanceUID != first.SeriesInstanceUID
    before = (tmp_path / "a.dcm").read_bytes()
    with pytest.raises(OutputExistsError, match="already exists"):
        _write(film, masks, tmp_path / "a.dcm")
    assert (tmp_path / "a.dcm").read_bytes() == before and not list(tmp_path.glob(".*.part"))
    _write(film, masks, tmp_path / "a.dcm", overwrite=True)


def test_a_film_without_dicom_gets_no_report(shenzhen_film, tmp_path, calibrated):
    from medlung.io import load_film

    film, labels, _, _ = calibrated
    png = load_film(shenzhen_film)
    seg, options = seg_identity(film, "2.0.0", OPTIONS)
    with pytest.raises(SegmentationWriteError, match="a DICOM SR needs a DICOM source film"):
        write_dicom_sr(png, report_items(masks_of(film, labels)), tmp_path / "sr.dcm", seg=seg, model_version="2.0.0")
    with pytest.raises(ValueError, match="group must be one of"):
        write_dicom_sr(
            film,
            [SrMeasurement(Code("1", "99X", "x"), 1.0, UNITS["mm"], "middle")],
            tmp_path / "sr.dcm",
            seg=seg,
            model_version="2.0.0",
            options=options,
        )


def test_every_quality_reason_has_a_code():
    assert set(QC_FLAG_CODES) == set(REASON_CODES)
    assert all(code.scheme_designator == LOCAL_SCHEME and len(code.meaning) <= 64 for code in QC_FLAG_CODES.values())
