"""Answers that look right and are not (#28): blank films, films cut short, films too large for an output,
source UIDs that are not UIDs, and a different film under a used SOP Instance UID."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

import medlung
from medlung.errors import FilmWarning, MedlungError
from medlung.quality import MAX_ONE_VALUE_FRACTION, contrast_reasons
from medlung.writers.dicom_seg import source_problems, write_dicom_seg
from tests import dicom_factory as factory
from tests.writers.seg_support import dciodvfy, require_tool, two_lungs


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_with_rows(path: Path, width: int, height: int, rows_present: int) -> Path:
    """A grey PNG declaring ``width`` x ``height`` whose zlib stream holds only its first ``rows_present`` rows."""
    rows = (np.indices((rows_present, width)).sum(axis=0) % 256).astype(np.uint8)
    raw = b"".join(b"\0" + row.tobytes() for row in rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")
    )
    return path


@pytest.mark.parametrize("value", [0, 255], ids=["black", "white"])
def test_a_blank_film_is_flagged_not_ok(segmenter, tmp_path, value):
    path = tmp_path / f"blank{value}.png"
    Image.fromarray(np.full((1000, 1000), value, np.uint8)).save(path)
    with pytest.warns(FilmWarning, match="no_contrast"):
        masks = segmenter(medlung.load_film(path))
    assert masks.qc == "flagged" and "no_contrast" in {r.code for r in masks.qc_reasons}


def test_a_png_holding_4_of_its_1000_rows_is_refused_or_flagged(segmenter, tmp_path):
    path = png_with_rows(tmp_path / "four_rows.png", 1000, 1000, 4)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            film = medlung.load_film(path)
    except MedlungError as exc:  # a reader that checks the stream's length refuses it (#28 item 1)
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    with pytest.warns(FilmWarning, match="no_contrast"):
        masks = segmenter(film)
    assert "no_contrast" in {r.code for r in masks.qc_reasons}


def test_real_films_have_contrast(shared_data):
    """The limit leaves real films alone: the widest black border of the shared films is 59 % of the film."""
    for name in ("montgomery/images/MCUCXR_0060_0.png", "shenzhen/images/CHNCXR_0001_0.png"):
        film = medlung.load_film(shared_data / name)
        assert contrast_reasons(film.pixels) == [], name
    half = np.zeros((100, 100), np.float32)
    half[:15] = np.arange(100)  # 85 % one value
    assert MAX_ONE_VALUE_FRACTION < 0.85 and contrast_reasons(half)[0].code == "no_contrast"


def test_a_film_too_wide_for_nifti_fails_before_any_output_is_written(shipped_bundle, tmp_path):
    wide = tmp_path / "wide.png"
    Image.fromarray((np.indices((64, 40000)).sum(axis=0) % 256).astype(np.uint8)).save(wide)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "medlung", "predict", wide, "-o", out, "--device", "cpu"],
        capture_output=True,
        text=True,
        env={**os.environ, "MEDLUNG_BUNDLE": str(shipped_bundle)},
    )
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "32767 px a side a nifti output can store" in errors[0] and "--format" in errors[0]
    assert sorted(p.name for p in out.iterdir()) == ["report.csv", "report.json"]  # no PNG, no overlay


def test_invalid_source_uids_and_nul_bytes_never_reach_the_seg(tmp_path):
    dciodvfy_found = require_tool("dciodvfy", "dicom3tools")
    assert dciodvfy_found
    ds = factory.radiograph(factory.chest_pixels(128, 128), PixelSpacing=[1.0, 1.0])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.03.abc"  # a leading zero and letters
    ds.SeriesInstanceUID = "1.2.3.4\0.5"
    ds.PatientName = "Evil\0^Name"
    ds.PatientID = "ID\0\x01" + "x" * 80
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's own warnings about the invalid values written here
        path = factory.write(ds, tmp_path / "film.dcm")
        film = medlung.load_film(path)
    problems = source_problems(film)
    assert len(problems) == 3 and "SOPInstanceUID" in problems[0] and "SeriesInstanceUID" in problems[1]
    with pytest.warns(FilmWarning, match="not a valid DICOM UID"):
        seg_path = write_dicom_seg(film, two_lungs(film.shape), tmp_path / "seg.dcm", model_version="1")
    seg = pydicom.dcmread(seg_path)
    referenced = seg.SourceImageSequence[0].ReferencedSOPInstanceUID
    assert referenced.startswith("2.25.") and pydicom.uid.UID(referenced).is_valid
    assert (
        referenced
        == pydicom.dcmread(write_dicom_seg(film, two_lungs(film.shape), tmp_path / "again.dcm", model_version="1"))
        .SourceImageSequence[0]
        .ReferencedSOPInstanceUID
    )
    assert "\0" not in str(seg.PatientName) and "\0" not in seg.PatientID and len(seg.PatientID) <= 64
    errors, _ = dciodvfy(seg_path)
    assert errors == [], errors


def test_a_different_film_under_a_used_sop_instance_uid_gets_other_seg_uids(tmp_path):
    uid = pydicom.uid.generate_uid()
    uids = []
    for index, seed in enumerate((0, 0, 1)):
        ds = factory.radiograph(factory.chest_pixels(128, 128, seed=seed), PixelSpacing=[1.0, 1.0], SOPInstanceUID=uid)
        ds.StudyInstanceUID = ds.SeriesInstanceUID = "1.2.3"
        path = factory.write(ds, tmp_path / f"film{index}.dcm")
        seg = write_dicom_seg(
            medlung.load_film(path), two_lungs((128, 128)), tmp_path / f"seg{index}.dcm", model_version="1"
        )
        read = pydicom.dcmread(seg)
        uids.append((read.SOPInstanceUID, read.SeriesInstanceUID))
    assert uids[0] == uids[1]  # the same film twice: the same SEG (a PACS keeps one)
    assert uids[2][0] != uids[0][0] and uids[2][1] != uids[0][1]  # another film: it cannot replace the first's SEG


def test_the_report_notes_what_was_repaired(shipped_bundle, tmp_path):
    ds = factory.radiograph(factory.chest_pixels(256, 256), PixelSpacing=[1.4, 1.4])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.03.abc"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = factory.write(ds, tmp_path / "film.dcm")
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "medlung", "predict", path, "-o", out, "--format", "seg", "--device", "cpu"],
        capture_output=True,
        text=True,
        env={**os.environ, "MEDLUNG_BUNDLE": str(shipped_bundle)},
    )
    assert result.returncode == 0, result.stderr
    (row,) = json.loads((out / "report.json").read_text())
    assert any("is not a valid DICOM UID" in note for note in row["notes"])
