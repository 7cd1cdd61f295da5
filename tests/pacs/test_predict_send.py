"""``medlung predict --send / --stow / --send-source`` against a real Orthanc."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import ImplicitVRLittleEndian

from medlung.io.seg import read_dicom_seg
from tests import dicom_factory as factory
from tests.pacs.orthanc import free_port
from tests.pacs.receivers import storescp


def _predict(*args, bundle):
    return subprocess.run(
        [sys.executable, "-m", "medlung", "predict", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "MEDLUNG_BUNDLE": str(bundle)},
        timeout=600,
    )


def _film(shared_data, tmp_path):
    pixels = np.asarray(Image.open(shared_data / "shenzhen" / "images" / "CHNCXR_0010_0.png"))
    ds = factory.radiograph(pixels, factory.CR, PixelSpacing=[0.7, 0.7], PatientOrientation=["L", "F"])
    return factory.write(ds, tmp_path / "chest.dcm"), ds


@pytest.mark.slow
def test_send_stores_the_seg_and_the_film_in_orthanc(orthanc, shared_data, shipped_bundle, tmp_path):
    film, ds = _film(shared_data, tmp_path)
    result = _predict(
        film,
        shared_data / "dicom" / "CR-MONO1-10-chest.dcm",
        "-o",
        tmp_path / "out",
        "--send",
        orthanc.destination,
        "--send-source",
        bundle=shipped_bundle,
    )
    assert result.returncode == 0, result.stderr
    seg = read_dicom_seg(tmp_path / "out" / "chest_seg.dcm")
    stored = {item["SOPInstanceUID"]: item for item in orthanc.study_instances(ds.StudyInstanceUID)}
    assert ds.SOPInstanceUID in stored  # the film, sent with --send-source
    assert sorted(item["Modality"] for item in stored.values()) == ["CR", "SEG", "SR"]  # the SR goes with its SEG
    assert pydicom.dcmread(tmp_path / "out" / "chest_sr.dcm").SOPInstanceUID in stored
    seg_uid = next(uid for uid, item in stored.items() if item["Modality"] == "SEG")
    instance = orthanc.instances_with_uid(seg_uid)[0]
    (tmp_path / "back.dcm").write_bytes(orthanc.get(f"/instances/{instance}/file"))
    np.testing.assert_array_equal(read_dicom_seg(tmp_path / "back.dcm")[0], seg[0])
    # the film without File Meta (ACR-NEMA style) was sent too
    old_film = pydicom.dcmread(shared_data / "dicom" / "CR-MONO1-10-chest.dcm", force=True)
    assert orthanc.instances_with_uid(str(old_film.SOPInstanceUID))


@pytest.mark.slow
def test_stow_posts_the_seg(orthanc, shared_data, shipped_bundle, tmp_path):
    film, ds = _film(shared_data, tmp_path)
    result = _predict(
        film, "-o", tmp_path / "out", "--stow", orthanc.dicomweb, "--format", "seg,sr", bundle=shipped_bundle
    )
    assert result.returncode == 0, result.stderr
    stored = orthanc.study_instances(ds.StudyInstanceUID)
    assert sorted(item["Modality"] for item in stored) == ["SEG", "SR"]  # the results alone: no --send-source


@pytest.mark.slow
def test_unreachable_pacs_is_an_error_row_but_the_seg_is_kept(shared_data, shipped_bundle, tmp_path):
    film, _ = _film(shared_data, tmp_path)
    port = free_port()  # nobody listens there
    result = _predict(
        film, "-o", tmp_path / "out", "--send", f"NOBODY@127.0.0.1:{port}", "--format", "seg", bundle=shipped_bundle
    )
    assert result.returncode == 1 and "C-STORE" in result.stderr and "Traceback" not in result.stderr
    row = next(csv.DictReader(open(tmp_path / "out" / "report.csv")))
    assert row["status"] == "error" and "the file is kept" in row["error"]
    assert (tmp_path / "out" / "chest_seg.dcm").is_file()


def test_send_to_a_receiver_that_accepts_implicit_vr_only(shared_data, shipped_bundle, tmp_path):
    """The command of issue #27, as a new user typed it: every SEG failed with 'C-STORE could not encode the file'."""
    film, ds = _film(shared_data, tmp_path)
    with storescp(tmp_path / "stored", "+xi") as sink:
        result = _predict(
            film,
            "-o",
            tmp_path / "out",
            "--format",
            "seg",
            "--send",
            sink.destination,
            "--send-source",
            bundle=shipped_bundle,
        )
    assert result.returncode == 0, result.stderr
    ours = tmp_path / "out" / "chest_seg.dcm"
    (seg,) = sink.stored(str(pydicom.dcmread(ours).SOPInstanceUID), tmp_path)
    (source,) = sink.stored(str(ds.SOPInstanceUID), tmp_path)
    for stored in (seg, source):
        assert pydicom.dcmread(stored).file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    np.testing.assert_array_equal(read_dicom_seg(seg)[0], read_dicom_seg(ours)[0])
    np.testing.assert_array_equal(pydicom.dcmread(source).pixel_array, pydicom.dcmread(film).pixel_array)
