"""Sending SEGs (and films) to a real Orthanc over C-STORE and STOW-RS."""

from __future__ import annotations

import time

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

from medlung.errors import InvalidDestinationError
from medlung.io.seg import read_dicom_seg
from medlung.pacs import Destination, parse_destination, send_cstore, stow_rs
from medlung.writers.dicom_seg import write_dicom_seg
from tests.pacs.orthanc import free_port, start_orthanc, stop_orthanc
from tests.writers.seg_support import load, shenzhen_cr, shenzhen_labels, two_lungs


@pytest.fixture
def film_and_seg(tmp_path, shared_data, shenzhen_pixels):
    """A CR from the real Shenzhen film, its real lungs as a (JPEG 2000) SEG, and the label map."""
    film_path = shenzhen_cr(tmp_path / "CHNCXR_0001_0.dcm", shenzhen_pixels)
    film = load(film_path)
    labels = shenzhen_labels(shared_data)
    # JPEG 2000 on purpose: send_cstore must also handle a compressed SEG (and decompress it for a PACS without it)
    seg = write_dicom_seg(
        film, labels, tmp_path / "CHNCXR_0001_0_seg.dcm", model_version="1.0.0", transfer_syntax="jpeg2000"
    )
    return film_path, film, seg, labels


def _download(orthanc, sop_instance_uid, tmp_path, name):
    ids = orthanc.instances_with_uid(sop_instance_uid)
    assert len(ids) == 1, f"expected one stored instance, found {ids}"
    path = tmp_path / name
    path.write_bytes(orthanc.get(f"/instances/{ids[0]}/file"))
    return ids[0], path


def test_cstore_puts_film_and_seg_in_one_study_pixel_identical(orthanc, film_and_seg, tmp_path):
    film_path, film, seg_path, labels = film_and_seg
    results = send_cstore([film_path, seg_path], orthanc.destination, retries=1, backoff=0.1)
    assert [r.ok for r in results] == [True, True], [r.message for r in results]
    assert all(r.status == 0 and r.attempts == 1 for r in results)

    seg_uid = pydicom.dcmread(seg_path).SOPInstanceUID
    instance, copy = _download(orthanc, seg_uid, tmp_path, "from_orthanc.dcm")
    stored, sent = pydicom.dcmread(copy), pydicom.dcmread(seg_path)
    assert stored.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID == JPEG2000Lossless
    assert stored == sent  # every data element, pixel data bytes included, as written
    back, referenced = read_dicom_seg(copy, film)
    assert np.array_equal(back, labels) and referenced == film.dataset.SOPInstanceUID
    tags = orthanc.get_json(f"/instances/{instance}/simplified-tags")
    assert tags["Modality"] == "SEG" and tags["StudyInstanceUID"] == film.dataset.StudyInstanceUID
    # the film and the SEG are in the same Orthanc study
    study = orthanc.get_json(f"/instances/{instance}/study")
    modalities = {orthanc.get_json(f"/series/{s}")["MainDicomTags"]["Modality"] for s in study["Series"]}
    assert modalities == {"CR", "SEG"}
    assert seg_path.exists()


def test_same_seg_stored_twice_is_kept_once(orthanc, film_and_seg):
    _, _, seg_path, _ = film_and_seg
    first = send_cstore([seg_path], orthanc.destination)
    second = send_cstore([seg_path], orthanc.destination)
    assert first[0].ok and second[0].ok
    assert len(orthanc.instances_with_uid(first[0].sop_instance_uid)) == 1


def test_uncompressed_seg_goes_through_cstore(orthanc, tmp_path, shared_dicom):
    film = load(shared_dicom / "dx_image.dcm")
    labels = two_lungs(film.shape)
    seg_path = write_dicom_seg(film, labels, tmp_path / "dx_seg.dcm", model_version="u", transfer_syntax="uncompressed")
    (result,) = send_cstore([seg_path], orthanc.destination)
    assert result.ok, result.message
    _, copy = _download(orthanc, result.sop_instance_uid, tmp_path, "back.dcm")
    assert np.array_equal(read_dicom_seg(copy, film)[0], labels)


def test_pacs_without_jpeg2000_gets_the_seg_uncompressed(tmp_path_factory, film_and_seg, tmp_path):
    film_path, film, seg_path, labels = film_and_seg
    server = start_orthanc(tmp_path_factory.mktemp("orthanc_no_j2k"), Jpeg2000TransferSyntaxAccepted=False)
    try:
        results = send_cstore([film_path, seg_path], server.destination, retries=0)
        assert [r.ok for r in results] == [True, True], [r.message for r in results]
        _, copy = _download(server, results[1].sop_instance_uid, tmp_path, "plain.dcm")
    finally:
        stop_orthanc(server)
    assert pydicom.dcmread(copy).file_meta.TransferSyntaxUID in (ExplicitVRLittleEndian, "1.2.840.10008.1.2")
    assert pydicom.dcmread(seg_path).file_meta.TransferSyntaxUID == JPEG2000Lossless  # the file is unchanged
    back, _ = read_dicom_seg(copy, film)
    assert np.array_equal(back, labels)


def test_stow_rs_stores_the_seg_pixel_identical(orthanc, film_and_seg, tmp_path):
    film_path, film, _, labels = film_and_seg
    # another model version: new UIDs, so this really is a new instance
    seg_path = write_dicom_seg(film, labels, tmp_path / "stow_seg.dcm", model_version="1.0.0-stow")
    results = stow_rs([film_path, seg_path], orthanc.dicomweb, retries=1, backoff=0.1)
    assert [r.ok for r in results] == [True, True], [r.message for r in results]
    _, copy = _download(orthanc, results[1].sop_instance_uid, tmp_path, "stowed.dcm")
    assert pydicom.dcmread(copy).file_meta.TransferSyntaxUID == pydicom.dcmread(seg_path).file_meta.TransferSyntaxUID
    back, _ = read_dicom_seg(copy, film)
    assert np.array_equal(back, labels)


def test_closed_port_reports_each_file_after_retries(film_and_seg):
    film_path, _, seg_path, _ = film_and_seg
    before = seg_path.read_bytes()
    start = time.monotonic()
    results = send_cstore([film_path, seg_path], f"NOBODY@127.0.0.1:{free_port()}", retries=2, backoff=0.05, timeout=5)
    assert time.monotonic() - start >= 0.05 + 0.1  # it waited between the attempts
    assert [r.ok for r in results] == [False, False]
    for result in results:
        assert result.attempts == 3 and result.status is None
        assert "after 3 attempt(s)" in result.message and "kept" in result.message and "\n" not in result.message
    assert seg_path.read_bytes() == before

    stowed = stow_rs([seg_path], f"http://127.0.0.1:{free_port()}/dicom-web", retries=1, backoff=0.05, timeout=5)
    assert not stowed[0].ok and stowed[0].attempts == 2 and "kept" in stowed[0].message
    assert seg_path.read_bytes() == before


def test_unreadable_file_is_one_failed_result_not_an_exception(orthanc, film_and_seg, tmp_path):
    _, _, seg_path, _ = film_and_seg
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom at all")
    results = send_cstore([junk, tmp_path / "missing.dcm", seg_path], orthanc.destination)
    assert [r.ok for r in results] == [False, False, True]
    assert "nothing was sent" in results[0].message and "not found" in results[1].message


@pytest.mark.parametrize(
    "text, expected",
    [
        ("ORTHANC@127.0.0.1:4242", Destination("ORTHANC", "127.0.0.1", 4242)),
        ("PACS_1@pacs.example.org:104", Destination("PACS_1", "pacs.example.org", 104)),
        ("AE@[::1]:11112", Destination("AE", "::1", 11112)),
    ],
)
def test_destination_parses(text, expected):
    assert parse_destination(text) == expected
    assert str(parse_destination(text)) == text


@pytest.mark.parametrize(
    "text, words",
    [
        ("127.0.0.1:4242", "no AE title"),
        ("ORTHANC@127.0.0.1", "no HOST:PORT"),
        ("ORTHANC@127.0.0.1:99999", "port"),
        ("ORTHANC@host:abc", "port"),
        ("A_VERY_LONG_AE_TITLE_X@h:1", "AE title"),
        ("", "empty"),
    ],
)
def test_bad_destination_says_the_expected_form(text, words):
    with pytest.raises(InvalidDestinationError, match=words) as caught:
        parse_destination(text)
    assert "AE@HOST:PORT" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "answer",
    [b"", b'{"00081199": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": ["1.2.3.4"]}}]}}'],
    ids=["empty-body", "other-instance"],
)
def test_stow_answer_that_does_not_list_the_instance_is_not_stored(film_and_seg, answer):
    """HTTP 200 alone is not proof: a proxy or a broken server may answer 200 without storing (PS3.18 10.5.3)."""
    import http.server
    import threading

    class Answers200(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "application/dicom+json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answers200)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _, _, seg_path, _ = film_and_seg
        result = stow_rs([seg_path], f"http://127.0.0.1:{server.server_port}/dicom-web", retries=0)[0]
    finally:
        server.shutdown()
    assert not result.ok and result.status == 200
    assert "without listing the instance as stored" in result.message and "\n" not in result.message
