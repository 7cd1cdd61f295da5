"""The receiver matrix: every object medlung sends reaches every receiver, in a syntax it accepted, unchanged.

One test per receiver (see tests/pacs/receivers.py). Each is sent, in one
association, the SEG (as medlung writes it, and JPEG 2000 compressed), the
source film (JPEG 2000, and Implicit VR Little Endian). The copy each
receiver stored must be the one it accepted (the syntax in
:data:`EXPECTED`), decode to the same pixels, hold the same element values
as ours, and pass dciodvfy.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    SegmentationStorage,
)

from medlung.inference.reporting import report_items
from medlung.io.seg import read_dicom_seg
from medlung.pacs import send_cstore
from medlung.pacs.syntaxes import syntax_name
from medlung.writers.dicom_seg import seg_identity, write_dicom_seg
from medlung.writers.dicom_sr import write_dicom_sr
from tests.pacs.receivers import RECEIVERS, assert_same_values, inflated, receiver
from tests.writers.seg_support import dciodvfy, load, shenzhen_cr, shenzhen_labels
from tests.writers.sr_support import masks_of

#: The objects sent to each receiver, in this order, in one association.
OBJECTS = ("seg", "sr", "seg-j2k", "film-j2k", "film-implicit")
EXPLICIT, IMPLICIT, DEFLATED, J2K = (
    str(ExplicitVRLittleEndian),
    str(ImplicitVRLittleEndian),
    str(DeflatedExplicitVRLittleEndian),
    str(JPEG2000Lossless),
)
#: The syntax each receiver stored each object in (what it accepted of what medlung proposed).
EXPECTED = {
    "orthanc": {"seg": EXPLICIT, "sr": EXPLICIT, "seg-j2k": J2K, "film-j2k": J2K, "film-implicit": EXPLICIT},
    "orthanc-implicit": dict.fromkeys(OBJECTS, IMPLICIT),
    "storescp": dict.fromkeys(OBJECTS, EXPLICIT),
    "storescp+xi": dict.fromkeys(OBJECTS, IMPLICIT),
    "storescp+xd": dict.fromkeys(OBJECTS, DEFLATED),
    "pynetdicom": dict.fromkeys(OBJECTS, IMPLICIT),
}
#: Attributes of the film the test adds so that its film passes dciodvfy (the Shenzhen PNG has no equipment).
CLEAN_FILM = {"Manufacturer": "", "InstanceNumber": 1}


@pytest.fixture(scope="module")
def objects(tmp_path_factory, shared_data, shenzhen_pixels) -> dict[str, object]:
    """The files of :data:`OBJECTS` (made once: the same UIDs go to every receiver) and the film read back."""
    folder = tmp_path_factory.mktemp("matrix_objects")
    film_path = shenzhen_cr(folder / "film.dcm", shenzhen_pixels, **CLEAN_FILM)
    film = load(film_path)
    labels = shenzhen_labels(shared_data)
    seg = write_dicom_seg(film, labels, folder / "seg.dcm", model_version="matrix")
    identity, options = seg_identity(film, "matrix", None)
    sr = write_dicom_sr(
        film,
        report_items(masks_of(film, labels)),
        folder / "sr.dcm",
        seg=identity,
        model_version="matrix",
        options=options,
    )
    seg_j2k = write_dicom_seg(
        film, labels, folder / "seg_j2k.dcm", model_version="matrix-j2k", transfer_syntax="jpeg2000"
    )
    dataset = pydicom.dcmread(film_path)
    dataset.compress(JPEG2000Lossless)
    dataset.save_as(folder / "film_j2k.dcm", enforce_file_format=True)
    implicit = shenzhen_cr(folder / "film_implicit.dcm", shenzhen_pixels, SeriesNumber=4, **CLEAN_FILM)
    dataset = pydicom.dcmread(implicit)
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    dataset.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    dataset.save_as(implicit, enforce_file_format=True)
    paths = {"seg": seg, "sr": sr, "seg-j2k": seg_j2k, "film-j2k": folder / "film_j2k.dcm", "film-implicit": implicit}
    assert str(pydicom.dcmread(implicit).file_meta.TransferSyntaxUID) == IMPLICIT
    for path in paths.values():
        assert dciodvfy(path)[0] == [], path  # ours are clean: a receiver's copy must be too
    return {"paths": paths, "film": film, "labels": labels}


@pytest.mark.parametrize("name", RECEIVERS)
def test_receiver_stores_every_object_in_a_syntax_it_accepted(name, objects, request, tmp_path):
    paths = objects["paths"]
    with receiver(name, tmp_path / name, request) as running:
        results = send_cstore([paths[o] for o in OBJECTS], running.destination, retries=0, timeout=30)
        assert [r.ok for r in results] == [True] * len(OBJECTS), [r.message for r in results]
        copies = {}
        for item, result in zip(OBJECTS, results):
            stored = running.stored(result.sop_instance_uid, tmp_path)
            assert len(stored) == 1, f"{name} stored {item} {len(stored)} times"
            copies[item] = stored[0]
        seen = {item: str(pydicom.dcmread(copies[item]).file_meta.TransferSyntaxUID) for item in OBJECTS}
        print(f"\nreceiver matrix: {name}: " + "; ".join(f"{i} -> {syntax_name(s)}" for i, s in seen.items()))
        assert seen == EXPECTED[name]
        for item in OBJECTS:
            ours, theirs = paths[item], copies[item]
            assert_same_values(pydicom.dcmread(ours), pydicom.dcmread(theirs))
            assert_same_pixels(ours, theirs, objects)
            errors, _ = dciodvfy(inflated(theirs, tmp_path) if seen[item] == DEFLATED else theirs)
            assert errors == [], f"{name}'s copy of {item}: {errors}"
    for path in paths.values():  # the files sent are unchanged
        assert pydicom.dcmread(path).file_meta.TransferSyntaxUID in (EXPLICIT, IMPLICIT, J2K)


def assert_same_pixels(ours, theirs, objects) -> None:
    dataset = pydicom.dcmread(ours, stop_before_pixels=True)
    if "PixelData" not in dataset and dataset.SOPClassUID != SegmentationStorage:
        return  # the SR: its content is compared element by element (assert_same_values)
    if dataset.SOPClassUID == SegmentationStorage:
        labels, referenced = read_dicom_seg(theirs, objects["film"])
        assert np.array_equal(labels, objects["labels"]) and referenced == objects["film"].dataset.SOPInstanceUID
    else:
        assert np.array_equal(pydicom.dcmread(theirs).pixel_array, pydicom.dcmread(ours).pixel_array)
