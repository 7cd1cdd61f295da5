"""Reading DICOM-SEG files (ours and another tool's) into label maps."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from medlung.errors import SegmentationMismatchError, UnreadableFileError, UnsupportedImageError
from medlung.io.seg import read_dicom_seg
from medlung.writers.dicom_seg import write_dicom_seg
from tests.writers.seg_support import load, two_lungs


def test_another_tools_seg_reads_onto_its_source_film(shared_dicom):
    film = load(shared_dicom / "CR1_6154.dcm")
    labels, referenced = read_dicom_seg(shared_dicom / "seg_image_cr_binary.dcm", film)
    assert referenced == film.dataset.SOPInstanceUID
    assert labels.dtype == np.uint8 and labels.shape == film.shape == (16, 16)
    # one segment ("first segment", connective tissue, no laterality): its number, 1
    expected = pydicom.dcmread(shared_dicom / "seg_image_cr_binary.dcm").pixel_array  # pydicom unpacks the bits
    assert set(np.unique(labels)) == {0, 1}
    assert np.array_equal(labels, expected.astype(np.uint8))


def _our_seg(tmp_path, film, **kwargs):
    return write_dicom_seg(film, two_lungs(film.shape), tmp_path / "seg.dcm", model_version="1", **kwargs)


def test_laterality_codes_decide_the_label_not_the_segment_number(tmp_path, shared_dicom):
    film = load(shared_dicom / "dx_image.dcm")
    ds = pydicom.dcmread(_our_seg(tmp_path, film, transfer_syntax="uncompressed"))
    # swap the sides in the descriptions: segment 1 now says LEFT, segment 2 RIGHT
    first, second = ds.SegmentSequence
    mod1 = first.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence
    mod2 = second.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence
    first.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = mod2
    second.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = mod1
    first.SegmentLabel, second.SegmentLabel = "segment A", "segment B"
    ds.save_as(tmp_path / "swapped.dcm")
    labels, _ = read_dicom_seg(tmp_path / "swapped.dcm", film)
    original = two_lungs(film.shape)
    assert np.array_equal(labels == 1, original == 2) and np.array_equal(labels == 2, original == 1)

    # no codes, but labels that say the side
    for item in ds.SegmentSequence:
        del item.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence
    first.SegmentLabel, second.SegmentLabel = "L lung left", "Right-Lung"
    ds.save_as(tmp_path / "words.dcm")
    labels, _ = read_dicom_seg(tmp_path / "words.dcm", film)
    assert np.array_equal(labels == 1, original == 2) and np.array_equal(labels == 2, original == 1)


def test_single_lung_segment_without_side_is_label_one(tmp_path, shared_dicom):
    film = load(shared_dicom / "dx_image.dcm")
    ds = pydicom.dcmread(_our_seg(tmp_path, film, transfer_syntax="uncompressed"))
    keep = ds.SegmentSequence[0]
    keep.SegmentNumber = 7
    keep.SegmentLabel = "Lungs"
    del keep.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence
    ds.SegmentSequence = [keep]
    # keep frame 1 only (bit-packed: the first rows*cols bits)
    n = ds.Rows * ds.Columns
    bits = np.unpackbits(np.frombuffer(ds.PixelData, np.uint8), bitorder="little")[:n]
    ds.PixelData = np.packbits(bits, bitorder="little").tobytes() + (b"\0" if (n // 8 + (n % 8 > 0)) % 2 else b"")
    ds.NumberOfFrames = 1
    ds.PerFrameFunctionalGroupsSequence = ds.PerFrameFunctionalGroupsSequence[:1]
    ds.PerFrameFunctionalGroupsSequence[0].SegmentIdentificationSequence[0].ReferencedSegmentNumber = 7
    ds.save_as(tmp_path / "one.dcm")
    labels, _ = read_dicom_seg(tmp_path / "one.dcm", film)
    assert np.array_equal(labels, (two_lungs(film.shape) == 1).astype(np.uint8))


def test_seg_of_another_film_is_a_mismatch(tmp_path, shared_dicom):
    dx = load(shared_dicom / "dx_image.dcm")
    with pytest.raises(SegmentationMismatchError, match="references image") as caught:
        read_dicom_seg(shared_dicom / "seg_image_cr_binary.dcm", dx)
    assert "\n" not in str(caught.value)
    labels, referenced = read_dicom_seg(shared_dicom / "seg_image_cr_binary.dcm")  # no film: no check
    assert labels.shape == (16, 16) and referenced


def test_files_that_are_not_segmentations_give_one_line_errors(tmp_path, shared_dicom, shenzhen_film):
    with pytest.raises(UnsupportedImageError, match="not a DICOM segmentation") as caught:
        read_dicom_seg(shared_dicom / "CR1_6154.dcm")
    assert "\n" not in str(caught.value) and "CR1_6154.dcm" in str(caught.value)
    with pytest.raises(UnreadableFileError, match="not found"):
        read_dicom_seg(tmp_path / "nothing.dcm")
    with pytest.raises((UnreadableFileError, UnsupportedImageError)) as caught:
        read_dicom_seg(shenzhen_film)
    assert "\n" not in str(caught.value)
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes((shared_dicom / "seg_image_cr_binary.dcm").read_bytes()[:-20])
    with pytest.raises((UnreadableFileError, UnsupportedImageError)) as caught:
        read_dicom_seg(truncated)
    assert "\n" not in str(caught.value)
