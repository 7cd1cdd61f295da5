"""``medlung predict`` as a user runs it: real films, a real process, every output checked."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys

import nibabel
import numpy as np
import pydicom
import pytest
from PIL import Image

from medlung.io.png import png_spacing
from medlung.io.seg import read_dicom_seg
from tests import dicom_factory as factory
from tests.conftest import dice
from tests.writers.sr_support import read_with_dcmqi, read_with_highdicom


def medlung(*args, input_text=None, bundle=None):
    env = {**os.environ}
    if bundle is not None:
        env["MEDLUNG_BUNDLE"] = str(bundle)
    return subprocess.run(
        [sys.executable, "-m", "medlung", *map(str, args)], capture_output=True, text=True, input=input_text, env=env
    )


@pytest.fixture(scope="module")
def inputs(shared_data, tmp_path_factory):
    """A folder as a user would have it: a DICOM with spacing, a Shenzhen PNG, a broken file, a sub-folder."""
    folder = tmp_path_factory.mktemp("in")
    pixels = np.asarray(Image.open(shared_data / "shenzhen" / "images" / "CHNCXR_0010_0.png"))
    ds = factory.radiograph(
        pixels.astype(np.uint16) * 16,
        factory.CR,
        bits_stored=12,
        PixelSpacing=[0.7, 0.75],
        PatientOrientation=["L", "F"],
    )
    factory.write(ds, folder / "chest.dcm")
    (folder / "sub").mkdir()
    shutil.copy(shared_data / "shenzhen" / "images" / "CHNCXR_0148_0.png", folder / "sub")
    (folder / "broken.dcm").write_bytes(b"DICM" * 10)
    (folder / "notes.txt").write_text("not a film")
    return folder


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def predicted(inputs, shipped_bundle, tmp_path_factory):
    before = _digest(inputs)
    out = tmp_path_factory.mktemp("out")
    result = medlung("predict", inputs, "-o", out, bundle=shipped_bundle)
    assert _digest(inputs) == before, "inputs must never be modified"
    return out, result


@pytest.mark.slow
def test_batch_goes_on_past_a_bad_file_and_exits_1(predicted):
    out, result = predicted
    assert result.returncode == 1
    assert "broken.dcm" in result.stderr and "Traceback" not in result.stderr
    assert "done 2, failed 1" in result.stdout
    rows = list(csv.DictReader(open(out / "report.csv")))
    assert [os.path.basename(r["file"]) for r in rows] == ["broken.dcm", "chest.dcm", "CHNCXR_0148_0.png"]
    assert [r["status"] for r in rows] == ["error", "ok", "ok"]
    assert rows[0]["error"].startswith(str(rows[0]["file"]))
    assert json.loads((out / "report.json").read_text())[1]["spacing_mm"] == [0.7, 0.75]


def test_dicom_film_outputs_are_on_the_native_grid_with_spacing(predicted, inputs):
    out, _ = predicted
    row = next(r for r in csv.DictReader(open(out / "report.csv")) if r["file"].endswith("chest.dcm"))
    assert row["rows"] == "512" and row["spacing_source"] == "PixelSpacing" and row["calibrated"] == "True"
    lungs = np.asarray(Image.open(out / "chest_lungs.png"))
    assert lungs.shape == (512, 512) and set(np.unique(lungs)) == {0, 255}
    with Image.open(out / "chest_lungs.png") as image:
        assert png_spacing(image.info) == (0.7, 0.75)
    nifti = nibabel.load(out / "chest_labels.nii.gz")
    labels = np.asarray(nifti.dataobj)[:, :, 0]
    np.testing.assert_allclose(np.diag(nifti.affine)[:2], [0.7, 0.75])
    assert set(np.unique(labels)) == {0, 1, 2}
    np.testing.assert_array_equal(labels > 0, lungs > 0)
    seg_labels, _referenced = read_dicom_seg(out / "chest_seg.dcm")
    np.testing.assert_array_equal(seg_labels, labels)
    area = (labels == 1).sum() * 0.7 * 0.75 / 100
    assert float(row["right_cm2"]) == pytest.approx(area, abs=1e-3)
    assert float(row["total_cm2"]) == pytest.approx(float(row["right_cm2"]) + float(row["left_cm2"]), abs=2e-3)
    with Image.open(out / "chest_overlay.png") as overlay:
        assert overlay.mode == "RGB" and overlay.size == (512, 512)


def test_the_sr_holds_the_reports_numbers_and_references_the_seg(predicted, tmp_path):
    out, _ = predicted
    row = next(r for r in json.load(open(out / "report.json")) if r["file"].endswith("chest.dcm"))
    assert str(out / "chest_sr.dcm") in row["outputs"]
    seg = pydicom.dcmread(out / "chest_seg.dcm")
    for groups in (read_with_highdicom(out / "chest_sr.dcm"), read_with_dcmqi(out / "chest_sr.dcm", tmp_path)):
        assert groups["right"]["seg"] == groups["both"]["seg"] == seg.SOPInstanceUID
        for side, area in (("right", "right_cm2"), ("left", "left_cm2"), ("both", "total_cm2")):
            assert groups[side]["measurements"]["Area"] == (row[area], "cm2")
        for side in ("right", "left"):
            assert groups[side]["measurements"]["Height"] == (row[f"{side}_height"], "mm")
            assert groups[side]["measurements"]["Width"] == (row[f"{side}_width"], "mm")
        assert ("qc", row["qc"]) in groups["both"]["evaluations"]
        assert ("lung-convention", row["lungs"]) in groups["left"]["evaluations"]


def test_png_film_has_no_seg_and_is_flagged_uncalibrated(predicted):
    out, _ = predicted
    assert (out / "CHNCXR_0148_0_lungs.png").exists() and not (out / "CHNCXR_0148_0_seg.dcm").exists()
    assert not (out / "CHNCXR_0148_0_sr.dcm").exists()
    with Image.open(out / "CHNCXR_0148_0_lungs.png") as image:
        assert "dpi" not in image.info
    nifti = nibabel.load(out / "CHNCXR_0148_0_labels.nii.gz")
    assert nifti.header.get_xyzt_units()[0] == "unknown"
    row = next(r for r in csv.DictReader(open(out / "report.csv")) if r["file"].endswith(".png"))
    assert row["calibrated"] == "False" and row["total_cm2"] == "" and "spacing unknown" in row["notes"]
    assert "--spacing" in row["notes"]  # how to give it (#28)


@pytest.mark.slow
def test_rerun_skips_finished_films_and_never_overwrites_silently(predicted, inputs, shipped_bundle):
    out, _ = predicted
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    earlier_report = (out / "report.csv").read_text()
    result = medlung("predict", inputs / "chest.dcm", "-o", out, bundle=shipped_bundle)
    assert result.returncode == 0, result.stderr
    assert "done 0, skipped 1" in result.stdout
    row = next(csv.DictReader(open(out / "report.csv")))
    assert row["status"] == "skipped" and "--overwrite" in row["notes"]
    assert (out / "report.1.csv").read_text() == earlier_report  # the earlier report is kept
    for name in ("chest_lungs.png", "chest_seg.dcm", "chest_sr.dcm", "chest_labels.nii.gz", "chest_overlay.png"):
        assert (out / name).stat().st_mtime_ns == before[name]
    # an interrupted earlier run: the missing output alone is written
    (out / "chest_overlay.png").unlink()
    result = medlung("predict", inputs / "chest.dcm", "-o", out, bundle=shipped_bundle)
    assert result.returncode == 0 and (out / "chest_overlay.png").exists()
    assert (out / "chest_lungs.png").stat().st_mtime_ns == before["chest_lungs.png"]
    result = medlung("predict", inputs / "chest.dcm", "-o", out, "--overwrite", bundle=shipped_bundle)
    assert result.returncode == 0, result.stderr
    assert (out / "chest_lungs.png").stat().st_mtime_ns != before["chest_lungs.png"]
    assert not list(out.glob(".*.part"))


@pytest.mark.slow
def test_formats_stdin_and_user_spacing(inputs, shipped_bundle, tmp_path):
    out = tmp_path / "out"
    text = f"{inputs / 'sub' / 'CHNCXR_0148_0.png'}\n"
    result = medlung(
        "predict", "-", "-o", out, "--format", "png", "--spacing", "0.8", input_text=text, bundle=shipped_bundle
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["CHNCXR_0148_0_lungs.png", "report.csv", "report.json"]
    row = next(csv.DictReader(open(out / "report.csv")))
    assert row["spacing_source"] == "user" and float(row["total_cm2"]) > 50
    with Image.open(out / "CHNCXR_0148_0_lungs.png") as image:
        assert png_spacing(image.info) == (0.8, 0.8)


def test_usage_errors_exit_2(inputs, tmp_path):
    assert medlung("predict", inputs, "-o", tmp_path / "o", "--format", "jpeg").returncode == 2
    assert medlung("predict", inputs, "-o", tmp_path / "o", "--spacing", "0").returncode == 2
    assert medlung("predict", "-o", tmp_path / "o").returncode == 2
    result = medlung("predict", tmp_path / "empty_dir_that_is_missing", "-o", tmp_path / "o2")
    assert result.returncode == 2 and "does not exist" in result.stderr


@pytest.mark.slow
def test_parallel_workers_give_the_same_masks(inputs, shipped_bundle, tmp_path):
    films = [inputs / "chest.dcm", inputs / "sub" / "CHNCXR_0148_0.png"]
    one = medlung("predict", *films, "-o", tmp_path / "one", "--format", "png", bundle=shipped_bundle)
    two = medlung("predict", *films, "-o", tmp_path / "two", "--format", "png", "--workers", "2", bundle=shipped_bundle)
    assert one.returncode == two.returncode == 0
    for name in ("chest_lungs.png", "CHNCXR_0148_0_lungs.png"):
        a = np.asarray(Image.open(tmp_path / "one" / name))
        b = np.asarray(Image.open(tmp_path / "two" / name))
        assert dice(a, b) == 1.0


@pytest.mark.slow
def test_outputs_are_byte_identical_across_runs(inputs, shipped_bundle, tmp_path):
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        result = medlung("predict", inputs / "chest.dcm", "-o", out, bundle=shipped_bundle)
        assert result.returncode == 0, result.stderr
        runs.append(out)
    for name in ("chest_lungs.png", "chest_labels.nii.gz", "chest_overlay.png"):
        assert (runs[0] / name).read_bytes() == (runs[1] / name).read_bytes(), name
    # the SEG differs only in its creation date/time (documented): same UIDs, same pixels
    import pydicom

    a, b = (pydicom.dcmread(r / "chest_seg.dcm") for r in runs)
    assert a.SOPInstanceUID == b.SOPInstanceUID and a.PixelData == b.PixelData


def test_jpeg2000_seg_is_not_sent_to_a_pacs(tmp_path, shared_dicom):
    """Orthanc cannot serve a 1-bit JPEG 2000 SEG and crashes with orthanc-gdcm (docs/pacs.md): refused up front."""
    out = tmp_path / "out"
    run = medlung(
        "predict",
        shared_dicom / "dx_image.dcm",
        "-o",
        out,
        "--seg-syntax",
        "jpeg2000",
        "--stow",
        "http://127.0.0.1:9/dicom-web",
    )
    assert run.returncode == 2, run.stderr
    assert "--seg-syntax" in run.stderr and "JPEG 2000" in run.stderr and "Traceback" not in run.stderr
    assert not out.exists()
