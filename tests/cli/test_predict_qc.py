"""Quality flags through ``medlung predict``: report columns, SEG series description, log line, ``--qc-fail``."""

from __future__ import annotations

import csv
import json
import shutil

import pydicom
import pytest

from tests.cli.test_predict import medlung


@pytest.fixture(scope="module")
def films(shared_dicom, tmp_path_factory):
    """A real chest film, a dog's lateral thorax and the 16x16 C-spine stub."""
    folder = tmp_path_factory.mktemp("qc_in")
    for name in ("CR-MONO1-10-chest.dcm", "dx_image.dcm", "CR1_6154.dcm"):
        shutil.copy(shared_dicom / name, folder / name)
    return folder


def _rows(out):
    return {row["file"].rsplit("/", 1)[-1]: row for row in csv.DictReader(open(out / "report.csv"))}


@pytest.mark.slow
def test_flagged_films_are_written_and_say_so(films, shipped_bundle, tmp_path):
    result = medlung("predict", films, "-o", tmp_path, "--format", "seg,png", bundle=shipped_bundle)
    assert result.returncode == 0, result.stderr
    rows = _rows(tmp_path)
    columns = list(rows["dx_image.dcm"])
    assert columns[columns.index("right_cm2") : columns.index("qc_reasons") + 1] == [
        "right_cm2",
        "left_cm2",
        "total_cm2",
        "right_px",
        "left_px",
        "total_px",
        "qc",
        "qc_reasons",
    ]
    assert rows["CR-MONO1-10-chest.dcm"]["qc"] == "ok" and rows["CR-MONO1-10-chest.dcm"]["qc_reasons"] == ""
    assert rows["dx_image.dcm"]["qc"] == "flagged" and rows["dx_image.dcm"]["status"] == "ok"
    assert rows["dx_image.dcm"]["qc_reasons"].startswith("lateral: the header describes a lateral view")
    assert rows["CR1_6154.dcm"]["qc"] == "flagged" and "too_small: 16x16 px" in rows["CR1_6154.dcm"]["qc_reasons"]
    report = {r["file"].rsplit("/", 1)[-1]: r for r in json.loads((tmp_path / "report.json").read_text())}
    # the codes, each once (a check may give more than one reason: 3.0.0's dog lungs are implausible twice)
    assert list(dict.fromkeys(r.split(":")[0] for r in report["dx_image.dcm"]["qc_reasons"])) == [
        "lateral",
        "not_human",
        "lungs_implausible",
        "low_dice_estimate",  # a dog's lateral thorax: its "lungs" are no lung masks to trust
    ]
    # the SEG is still written, and its series description names the flags
    assert pydicom.dcmread(tmp_path / "CR-MONO1-10-chest_seg.dcm").SeriesDescription == "Lungs (medlung)"
    flagged = pydicom.dcmread(tmp_path / "dx_image_seg.dcm").SeriesDescription
    assert flagged == "Lungs (medlung) [QC: lateral,not_human,lungs_implausible,...]"  # 64 characters at most
    assert (tmp_path / "dx_image_lungs.png").is_file()
    # one log line per flagged film, and the count in the summary
    assert f"quality flagged: {films / 'dx_image.dcm'}: lateral:" in result.stderr
    assert "Divide by zero" not in result.stderr + result.stdout
    assert "done 3 (2 flagged by the quality check), failed 0" in result.stdout


@pytest.mark.slow
def test_qc_fail_turns_flagged_films_into_errors(films, shipped_bundle, tmp_path):
    result = medlung("predict", films, "-o", tmp_path, "--format", "png", "--qc-fail", bundle=shipped_bundle)
    assert result.returncode == 1, result.stderr
    rows = _rows(tmp_path)
    assert rows["CR-MONO1-10-chest.dcm"]["status"] == "ok"
    assert (tmp_path / "CR-MONO1-10-chest_lungs.png").is_file()
    for name in ("dx_image.dcm", "CR1_6154.dcm"):
        assert rows[name]["status"] == "error" and rows[name]["qc"] == "flagged"
        assert "quality check failed (" in rows[name]["error"] and "--qc-fail" in rows[name]["error"]
    assert not (tmp_path / "dx_image_lungs.png").exists() and not (tmp_path / "CR1_6154_lungs.png").exists()
    assert "error: " in result.stderr and "Traceback" not in result.stderr
