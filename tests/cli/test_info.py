"""``medlung info`` as a user runs it: a real process, real files."""

import json
import subprocess
import sys

import pytest


def run_medlung(*args, input_text=None):
    return subprocess.run(
        [sys.executable, "-m", "medlung", *map(str, args)], capture_output=True, text=True, input=input_text
    )


def test_info_on_every_shared_file_prints_facts_and_reports_the_bad_one(shared_dicom):
    files = sorted(shared_dicom.glob("*.dcm"))
    result = run_medlung("info", *files)
    assert result.returncode == 1  # the SEG object is not a film
    assert result.stderr.count("error:") == 1 and "seg_image_cr_binary.dcm" in result.stderr
    assert "Traceback" not in result.stderr
    out = result.stdout
    for path in files:
        assert str(path) in out
    assert "0.2 x 0.2 mm (row x col) from PixelSpacing" in out
    assert "0.1 x 0.1 mm (row x col) from ImagerPixelSpacing" in out
    assert "JPEG 2000 Image Compression" in out and "JPEG-LS" in out and "RLE Lossless" in out
    assert "PixelSpacing is not positive and finite (0.000\\0.000)" in out
    assert "1955 rows x 1841 cols" in out


def test_info_json_is_machine_readable(shared_dicom, shenzhen_film):
    result = run_medlung("info", "--json", shared_dicom / "dx_image.dcm", shenzhen_film, shared_dicom / "nope.dcm")
    assert result.returncode == 1
    records = json.loads(result.stdout)
    assert [r["status"] for r in records] == ["ok", "ok", "error"]
    dx, png, missing = records
    assert dx["rows"] == 169 and dx["cols"] == 211
    assert dx["spacing_mm"] == pytest.approx([1.2, 1.2012]) and dx["spacing_source"] == "PixelSpacing"
    assert dx["photometric"] == "MONOCHROME1" and dx["presentation_lut_shape"] == "INVERSE"
    assert dx["transfer_syntax"].startswith("Explicit VR Little Endian") and dx["bits_stored"] == 8
    assert dx["modality"] == "DX" and dx["laterality"] == "L" and dx["orientation"] == ["L", "F"]
    assert png["spacing_mm"] is None and png["format"] == "PNG"
    assert "file not found" in missing["error"]


def test_info_with_user_spacing_and_bad_spacing(shenzhen_film):
    result = run_medlung("info", "--json", "--spacing", "0.14", shenzhen_film)
    assert result.returncode == 0
    assert json.loads(result.stdout)[0]["spacing_source"] == "user"
    result = run_medlung("info", "--spacing", "-1", shenzhen_film)
    assert result.returncode == 2 and "--spacing" in result.stderr


def test_info_on_shipped_samples():
    from medlung.samples import sample_paths

    paths = sample_paths()
    assert {p.name for p in paths} == {"CR-MONO1-10-chest.dcm", "dx_image.dcm", "CHNCXR_0001_0.png", "00000001_000.png"}
    result = run_medlung("info", *paths)
    assert result.returncode == 0, result.stderr
    assert "440 rows x 440 cols" in result.stdout and "512 rows x 512 cols" in result.stdout
    assert "0.768 x 0.749 mm (row x col) from png-pHYs" in result.stdout


def test_no_arguments_is_a_usage_error():
    assert run_medlung("info").returncode == 2
    assert run_medlung("--version").stdout.startswith("medlung")
