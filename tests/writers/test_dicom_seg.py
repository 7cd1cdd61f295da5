"""DICOM-SEG writer: validity (dciodvfy, dcmdump), exact read-back, references, UIDs, safety."""

from __future__ import annotations

import copy
import time
import warnings

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

import medlung
from medlung.errors import EmptySegmentWarning, OutputExistsError, SegmentationWriteError
from medlung.io.seg import read_dicom_seg
from medlung.uids import derive_uid, seg_uids
from medlung.writers.dicom_seg import (
    choose_transfer_syntax,
    display_spacing,
    empty_segments,
    film_content,
    write_dicom_seg,
)
from medlung.writers.overlay import COLOURS
from tests import dicom_factory as factory
from tests.writers.seg_support import (
    SOURCE_FILMS,
    dciodvfy,
    dcmdump,
    load,
    shenzhen_cr,
    shenzhen_labels,
    two_lungs,
)


def _write(film, labels, path, **kwargs):
    kwargs.setdefault("model_version", "1.0.0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptySegmentWarning)
        return write_dicom_seg(film, labels, path, **kwargs)


@pytest.fixture
def shenzhen(tmp_path, shared_data, shenzhen_pixels):
    """A CR made from the real Shenzhen film, with its real right/left lung masks."""
    film = load(shenzhen_cr(tmp_path / "CHNCXR_0001_0.dcm", shenzhen_pixels))
    return film, shenzhen_labels(shared_data)


@pytest.mark.parametrize("syntax", ["jpeg2000", "uncompressed"])
@pytest.mark.parametrize("name", sorted(SOURCE_FILMS))
def test_seg_of_each_shared_film_is_valid_and_reads_back_exactly(tmp_path, shared_dicom, name, syntax):
    film = load(shared_dicom / name)
    assert film.shape == SOURCE_FILMS[name]
    header_before = copy.deepcopy(film.dataset)
    labels = two_lungs(film.shape)
    path = _write(film, labels, tmp_path / "seg.dcm", transfer_syntax=syntax)

    errors, _ = dciodvfy(path)
    assert errors == []
    assert "SegmentationStorage" in dcmdump(path)
    back, referenced = read_dicom_seg(path, film)
    assert back.dtype == np.uint8 and np.array_equal(back, labels)
    assert referenced == film.dataset.SOPInstanceUID

    ds = pydicom.dcmread(path)
    small = min(film.shape) < 32  # openjpeg cannot encode such frames: uncompressed fallback
    expected = JPEG2000Lossless if syntax == "jpeg2000" and not small else ExplicitVRLittleEndian
    assert ds.file_meta.TransferSyntaxUID == expected
    assert ds.SegmentationType == "BINARY" and ds.BitsAllocated == 1 and ds.NumberOfFrames == 2
    assert film.dataset == header_before  # the caller's header is untouched
    assert "PixelData" not in film.dataset


def test_seg_of_a_real_film_describes_and_references_it(tmp_path, shenzhen):
    film, labels = shenzhen
    path = _write(film, labels, tmp_path / "CHNCXR_0001_0_seg.dcm", model_version="2.1", options={"threshold": 0.5})
    ds = pydicom.dcmread(path)
    source = film.dataset

    assert ds.Modality == "SEG"
    assert ds.StudyInstanceUID == source.StudyInstanceUID
    assert ds.SeriesInstanceUID != source.SeriesInstanceUID
    assert ds.PatientID == source.PatientID and ds.PatientName == source.PatientName
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert ds.SourceImageSequence[0].ReferencedSOPClassUID == source.SOPClassUID
    series = ds.ReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == source.SeriesInstanceUID
    assert series.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert list(ds.PatientOrientation) == ["L", "F"]
    shared = ds.SharedFunctionalGroupsSequence[0]
    measures = shared.PixelMeasuresSequence[0]
    assert [float(v) for v in measures.PixelSpacing] == [0.7, 0.7] and float(measures.SliceThickness) == 1.0
    assert [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    for frame in ds.PerFrameFunctionalGroupsSequence:
        assert [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient] == [0, 0, 0]
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian  # the default form
    assert (ds.Rows, ds.Columns) == film.shape
    assert ds.SeriesNumber == 1003 and ds.InstanceNumber == 1
    assert ds.ContentLabel == "LUNGS" and "2.1" in ds.ContentDescription and str(ds.ContentCreatorName)

    segments = {int(item.SegmentNumber): item for item in ds.SegmentSequence}
    assert sorted(segments) == [1, 2]
    for number, side_code, side in ((1, "24028007", "Right"), (2, "7771000", "Left")):
        item = segments[number]
        assert item.SegmentLabel == f"{side} lung field" and "lung field" in item.SegmentDescription
        kind = item.SegmentedPropertyTypeCodeSequence[0]
        assert (kind.CodeValue, kind.CodingSchemeDesignator, kind.CodeMeaning) == ("39607008", "SCT", "Lung")
        modifier = kind.SegmentedPropertyTypeModifierCodeSequence[0]
        assert (modifier.CodeValue, modifier.CodingSchemeDesignator) == (side_code, "SCT")
        assert item.AnatomicRegionSequence[0].CodingSchemeDesignator == "SCT"
        assert item.SegmentAlgorithmType == "AUTOMATIC"
        colour = hd.color.CIELabColor.from_dicom_value(item.RecommendedDisplayCIELabValue).to_rgb()
        assert np.abs(np.subtract(colour, COLOURS[number])).max() <= 2  # the overlay's colour of that lung
        algorithm = item.SegmentationAlgorithmIdentificationSequence[0]
        assert algorithm.AlgorithmName == "medlung"
        assert "0.1.0" in algorithm.AlgorithmVersion and "2.1" in algorithm.AlgorithmVersion
        assert algorithm.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
    errors, _ = dciodvfy(path)
    assert errors == []
    back, _ = read_dicom_seg(path, film)
    assert np.array_equal(back, labels)
    # the right lung (label 1) lies on the IMAGE LEFT of this PA film
    assert np.nonzero(back == 1)[1].mean() < np.nonzero(back == 2)[1].mean()


@pytest.mark.parametrize(
    "attributes, expected",
    [
        ({"PixelSpacing": [0.2, 0.25], "ImagerPixelSpacing": [0.3, 0.3]}, (0.2, 0.25)),
        ({"ImagerPixelSpacing": [0.15, 0.15]}, (0.15, 0.15)),
        ({"ImagerPixelSpacing": [0.15, 0.15], "EstimatedRadiographicMagnificationFactor": 1.5}, (0.1, 0.1)),
        ({"PixelSpacing": [0.0, 0.0], "ImagerPixelSpacing": [0.15, 0.15]}, (0.15, 0.15)),
        ({}, (1.0, 1.0)),
    ],
    ids=["pixel-spacing", "imager-only", "imager-magnified", "invalid-pixel-spacing", "no-spacing"],
)
def test_seg_pixel_measures_follow_the_films_display_spacing(tmp_path, shenzhen_pixels, attributes, expected):
    """ImagerPixelSpacing-only films and films without spacing get Pixel Measures too (OHIF needs them)."""
    ds = factory.radiograph(
        shenzhen_pixels.astype(np.uint8), factory.DX_PRESENTATION, PatientOrientation=["L", "F"], **attributes
    )
    film = load(factory.write(ds, tmp_path / "film.dcm"))
    assert display_spacing(film.dataset) == pytest.approx(expected)
    path = _write(film, two_lungs(film.shape), tmp_path / "seg.dcm")
    measures = pydicom.dcmread(path).SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert [float(v) for v in measures.PixelSpacing] == pytest.approx(expected)
    assert dciodvfy(path)[0] == []


def test_seg_syntax_names():
    assert choose_transfer_syntax("uncompressed", (512, 512)) == ExplicitVRLittleEndian
    assert choose_transfer_syntax("jpeg2000", (512, 512)) == JPEG2000Lossless
    assert choose_transfer_syntax("lossless", (512, 512)) == JPEG2000Lossless  # the older name
    assert choose_transfer_syntax("JPEG2000", (16, 16)) == ExplicitVRLittleEndian  # openjpeg needs 32 px
    with pytest.raises(ValueError, match="'uncompressed', 'jpeg2000', 'lossless'"):
        choose_transfer_syntax("rle", (512, 512))


def test_uids_are_deterministic_and_follow_the_model_version(tmp_path, shenzhen):
    film, labels = shenzhen
    first = pydicom.dcmread(_write(film, labels, tmp_path / "a.dcm", options={"a": 1, "b": "x"}))
    again = pydicom.dcmread(_write(film, labels, tmp_path / "b.dcm", options={"b": "x", "a": 1}))
    newer = pydicom.dcmread(_write(film, labels, tmp_path / "c.dcm", model_version="1.0.1", options={"a": 1, "b": "x"}))
    other = pydicom.dcmread(_write(film, labels, tmp_path / "d.dcm", options={"a": 2, "b": "x"}))

    assert (first.SOPInstanceUID, first.SeriesInstanceUID) == (again.SOPInstanceUID, again.SeriesInstanceUID)
    assert first.SOPInstanceUID != newer.SOPInstanceUID and first.SeriesInstanceUID != newer.SeriesInstanceUID
    assert first.SOPInstanceUID != other.SOPInstanceUID
    assert first.SOPInstanceUID != first.SeriesInstanceUID
    assert first.file_meta.MediaStorageSOPInstanceUID == first.SOPInstanceUID
    written = {"a": 1, "b": "x", "seg_syntax": ExplicitVRLittleEndian}  # the form written enters the UIDs too
    content = film_content(film)  # the film's content enters them too
    expected = seg_uids(film.dataset.SOPInstanceUID, "1.0.0", written, content)
    assert (first.SeriesInstanceUID, first.SOPInstanceUID) == expected[:2]
    assert first.DimensionOrganizationSequence[0].DimensionOrganizationUID == expected.dimension_organization_uid
    for uid in expected:
        assert uid.startswith("2.25.") and len(uid) <= 64 and pydicom.uid.UID(uid).is_valid


def test_uid_derivation_rejects_missing_inputs():
    with pytest.raises(ValueError, match="model_version"):
        derive_uid("seg-series", "1.2.3", "")
    with pytest.raises(ValueError, match="kind"):
        derive_uid("film", "1.2.3", "1")
    assert derive_uid("seg-series", "1.2.3", "1") != derive_uid("seg-series", "1.2.4", "1")


def test_empty_lung_is_still_described_and_flagged(tmp_path, shenzhen):
    film, labels = shenzhen
    labels = np.where(labels == 2, 0, labels).astype(np.uint8)  # the left lung was not found
    assert empty_segments(labels) == (2,)
    with pytest.warns(EmptySegmentWarning, match="left lung"):
        path = write_dicom_seg(film, labels, tmp_path / "seg.dcm", model_version="1.0.0")
    ds = pydicom.dcmread(path)
    assert [int(item.SegmentNumber) for item in ds.SegmentSequence] == [1, 2]
    assert ds.NumberOfFrames == 2
    assert dciodvfy(path)[0] == []
    back, _ = read_dicom_seg(path, film)
    assert np.array_equal(back, labels)
    assert empty_segments(np.zeros((4, 4), np.uint8)) == (1, 2)


def test_existing_file_is_not_overwritten_unless_asked(tmp_path, shenzhen):
    film, labels = shenzhen
    path = tmp_path / "seg.dcm"
    path.write_bytes(b"precious")
    with pytest.raises(OutputExistsError) as caught:
        _write(film, labels, path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    assert "overwrite=True" in str(caught.value)
    assert path.read_bytes() == b"precious"
    _write(film, labels, path, overwrite=True)
    assert pydicom.dcmread(path).Modality == "SEG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CHNCXR_0001_0.dcm", "seg.dcm"]  # no temp files left


def test_bad_inputs_are_refused_with_clear_messages(tmp_path, shenzhen, shenzhen_film):
    film, labels = shenzhen
    with pytest.raises(ValueError, match=r"film's shape"):
        _write(film, labels[:, :-1], tmp_path / "a.dcm")
    with pytest.raises(ValueError, match=r"only 0 .*found \[3\]"):
        _write(film, np.full(film.shape, 3, np.uint8), tmp_path / "a.dcm")
    with pytest.raises(ValueError, match="transfer_syntax"):
        _write(film, labels, tmp_path / "a.dcm", transfer_syntax="jpeg")
    with pytest.raises(SegmentationWriteError, match="not read from DICOM"):
        _write(load(shenzhen_film), labels, tmp_path / "a.dcm")
    with pytest.raises(SegmentationWriteError, match="does not exist"):
        _write(film, labels, tmp_path / "missing" / "a.dcm")
    assert not (tmp_path / "a.dcm").exists()


def test_film_without_sop_instance_uid_cannot_be_referenced(tmp_path, shenzhen_pixels):
    ds = factory.radiograph(shenzhen_pixels.astype(np.uint8))
    del ds.SOPInstanceUID
    film = load(factory.write(ds, tmp_path / "film.dcm"))
    with pytest.raises(SegmentationWriteError, match="no SOPInstanceUID"):
        _write(film, two_lungs(film.shape), tmp_path / "seg.dcm")


@pytest.mark.slow
def test_full_resolution_seg_is_exact_and_jpeg2000_is_small(tmp_path, shared_data, shenzhen_pixels):
    """A 4020x4892 film at 0.0875 mm (the real film and masks upsampled): SEG sizes (times printed, not asserted:
    benchmarks/seg_syntax.py measures them)."""
    from PIL import Image

    shape = (4892, 4020)  # rows x cols
    pixels = np.asarray(Image.fromarray(shenzhen_pixels).resize(shape[::-1], Image.BILINEAR)).astype(np.uint16) * 16
    labels = np.asarray(Image.fromarray(shenzhen_labels(shared_data)).resize(shape[::-1], Image.NEAREST))
    ds = factory.radiograph(
        pixels,
        factory.DX_PRESENTATION,
        "MONOCHROME2",
        bits_stored=12,
        PixelSpacing=[0.0875, 0.0875],
        PatientOrientation=["L", "F"],
    )
    film = load(factory.write(ds, tmp_path / "big.dcm"))
    sizes, seconds = {}, {}
    for syntax in ("jpeg2000", "uncompressed"):
        start = time.perf_counter()
        path = _write(film, labels, tmp_path / f"{syntax}.dcm", transfer_syntax=syntax)
        seconds[syntax] = time.perf_counter() - start
        sizes[syntax] = path.stat().st_size
        back, _ = read_dicom_seg(path, film)
        assert np.array_equal(back, labels)
        assert dciodvfy(path)[0] == []
    print(f"4020x4892 SEG: sizes {sizes} bytes, write seconds {seconds}")
    assert sizes["jpeg2000"] < sizes["uncompressed"] / 5  # 2 frames x 4892x4020 bits = 4.9 MB uncompressed


def test_rewriting_gives_the_same_seg_but_for_its_creation_time(tmp_path, shared_dicom):
    import time

    film = medlung.load_film(shared_dicom / "dx_image.dcm")
    labels = np.zeros(film.shape, np.uint8)
    labels[40:120, 20:90] = 1
    labels[40:120, 120:190] = 2
    a = write_dicom_seg(film, labels, tmp_path / "a.dcm", model_version="1")
    time.sleep(0.01)
    b = write_dicom_seg(film, labels, tmp_path / "b.dcm", model_version="1")
    first, second = pydicom.dcmread(a), pydicom.dcmread(b)
    timed = {"InstanceCreationTime", "ContentTime", "InstanceCreationDate", "ContentDate"}
    for element in first:
        if element.keyword in timed or element.keyword == "ContributingEquipmentSequence":
            continue
        assert second[element.tag].value == element.value, element.keyword


def test_the_content_digest_is_the_files_with_or_without_file_meta(tmp_path):
    """A film stored without File Meta (ACR-NEMA style, as a modality may send it) and the same film as a Part 10
    file (as ``medlung serve`` stores it) give one content digest: its SEG has the same UIDs on both paths."""
    from medlung.samples import sample_paths

    (bare,) = [p for p in sample_paths() if p.name == "CR-MONO1-10-chest.dcm"]
    ds = pydicom.dcmread(bare, force=True)
    assert "TransferSyntaxUID" not in ds.file_meta  # no File Meta at all
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    part10 = tmp_path / "part10.dcm"
    ds.save_as(part10, enforce_file_format=True)
    assert film_content(load(bare)) == film_content(load(part10))
    ds.PixelData = bytes(len(ds.PixelData))  # another film under the same SOP Instance UID
    ds.save_as(tmp_path / "other.dcm", enforce_file_format=True)
    assert film_content(load(tmp_path / "other.dcm")) != film_content(load(part10))


def test_a_deflated_films_content_digest_needs_no_decode(tmp_path):
    """A deflated film's digest comes from its compressed data set as stored, not from a decode of its native pixels
    (for the 8000x8000 film of tests/hostile that decode cost ~450 MB of peak RSS); other pixels give another."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    from medlung.io import load_film

    pixels = factory.chest_pixels(256, 256)
    paths = []
    for name, values in (("a", pixels), ("b", pixels[::-1].copy())):
        ds = factory.radiograph(values, PixelSpacing=[1.4, 1.4])
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        ds.save_as(tmp_path / f"{name}.dcm", enforce_file_format=True)
        paths.append(tmp_path / f"{name}.dcm")
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    from medlung.uids import content_digest

    film = load_film(paths[0])
    digest = film_content(film)
    assert digest == film_content(load_film(paths[0])) and len(digest) == 32
    assert digest != content_digest(film.pixels, film.spacing, film.orientation)  # not from the decoded pixels
    assert digest != film_content(load_film(paths[1]))  # the same UIDs, other pixels: another digest
