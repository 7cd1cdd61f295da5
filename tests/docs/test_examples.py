"""The examples in docs/examples run, in short versions, on the real shared data.

Like every test that reads ``../shared/data``, these skip with a reason when
it is absent and fail under ``MEDLUNG_REQUIRE_SHARED=1`` (``.ci/run``).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "docs" / "examples"


def run_example(name: str, *arguments: str, timeout: float = 600) -> subprocess.CompletedProcess:
    command = [sys.executable, str(EXAMPLES / name), *map(str, arguments)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{name} exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("name", ["area_report.py", "train_dicom_seg.py", "run_bundle.py"])
def test_example_has_docstring_and_page(name):
    source = (EXAMPLES / name).read_text()
    assert source.lstrip().startswith('"""'), f"{name} needs a module docstring"
    page = (EXAMPLES / name.replace(".py", ".md")).read_text()
    assert f'--8<-- "docs/examples/{name}"' in page, f"the page of {name} should embed the script"


@pytest.mark.slow
def test_area_report(shared_data, shipped_bundle, tmp_path):
    dicom, shenzhen = shared_data / "dicom", shared_data / "shenzhen" / "images"
    inputs = [
        dicom / "dx_image.dcm",
        dicom / "CR-MONO1-10-chest.dcm",
        dicom / "seg_image_cr_binary.dcm",
        shenzhen / "CHNCXR_0001_0.png",
        shenzhen / "CHNCXR_0002_0.png",
    ]
    out = tmp_path / "areas"
    run_example("area_report.py", *inputs, "-o", out, "--device", "cpu", "--bundle", shipped_bundle)
    rows = {Path(r["file"]).name: r for r in read_csv(out / "areas.csv")}
    assert len(rows) == 5
    # calibrated film: areas in cm² that add up; uncalibrated: pixel counts only
    dx = rows["dx_image.dcm"]
    assert dx["status"] == "ok" and dx["calibrated"] == "True" and dx["spacing_source"] == "PixelSpacing"
    assert float(dx["total_cm2"]) == pytest.approx(float(dx["right_cm2"]) + float(dx["left_cm2"]), abs=0.02)
    assert dx["qc"] == "flagged" and dx["qc_reasons"].startswith("lateral;not_human")  # a dog's lateral thorax
    for name in ("CR-MONO1-10-chest.dcm", "CHNCXR_0001_0.png", "CHNCXR_0002_0.png"):
        row = rows[name]
        assert row["status"] == "ok" and row["calibrated"] == "False", row
        assert row["total_cm2"] == "" and int(row["right_px"]) > 0 and int(row["left_px"]) > 0
        assert row["qc"] == "ok" and row["qc_reasons"] == ""
    # one bad file is an error row, not the end of the loop
    assert rows["seg_image_cr_binary.dcm"]["status"] == "error"
    assert "not a radiograph" in rows["seg_image_cr_binary.dcm"]["error"]
    pytest.importorskip("matplotlib")
    assert (out / "areas.png").stat().st_size > 0


@pytest.mark.slow
def test_train_on_dicom_folder(shared_data, tmp_path):
    import medlung
    from medlung.io.seg import read_dicom_seg

    shenzhen = shared_data / "shenzhen"
    out = tmp_path / "dicom_train"
    result = run_example("train_dicom_seg.py", shenzhen, "-o", out, "--films", 4, "--epochs", 1)
    assert "4 films, 4 SEGs matched" in result.stdout + result.stderr
    films = sorted((out / "dicom").rglob("CHNCXR_*_0.dcm"))
    assert len(films) == 4 and len(list((out / "dicom").rglob("*_seg.dcm"))) == 4
    # the SEG reads back against its film as the right/left masks it was made from
    film = medlung.load_film(films[0])
    labels, _ = read_dicom_seg(films[0].with_name(films[0].stem + "_seg.dcm"), source=film)
    from PIL import Image

    right = np.asarray(Image.open(shenzhen / "masks" / f"{films[0].stem}_lung_R.png")) > 0
    assert np.array_equal(labels == 1, right)
    run = out / "run"
    for name in ("config.json", "split.json", "metrics.csv", "best.pt", "summary.json"):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary  # a finished run


@pytest.mark.slow
def test_run_bundle(shared_data, shipped_bundle, tmp_path):
    films = tmp_path / "films"
    films.mkdir()
    for source in (shared_data / "dicom" / "dx_image.dcm", shared_data / "shenzhen" / "images" / "CHNCXR_0001_0.png"):
        (films / source.name).write_bytes(source.read_bytes())
    out = tmp_path / "out"
    result = run_example("run_bundle.py", films, "-o", out, "--bundle", shipped_bundle, "--formats", "seg,png")
    rows = {Path(r["file"]).name: r for r in read_csv(out / "report.csv")}
    assert {r["status"] for r in rows.values()} == {"ok"}, rows
    assert (out / "dx_image_seg.dcm").is_file() and (out / "CHNCXR_0001_0_lungs.png").is_file()
    assert not (out / "dx_image_overlay.png").exists()  # --formats override reached the config
    assert "dx_image.dcm: ok" in result.stdout
