"""What a new user meets in the first hour: help texts, ``info`` on a folder, a batch without a terminal,
pixel areas of uncalibrated films, the test command showing slow tests."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from medlung.cli import cli

ROOT = Path(__file__).resolve().parents[2]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], obj={})


def test_train_help_shows_data_and_run_as_required():
    text = invoke("train", "--help").output
    usage = text.splitlines()[0]
    assert "[DATA]" not in usage and re.search(r"train DATA -o RUN", usage), usage
    assert "--resume RUN" in text


@pytest.mark.parametrize("command", ["predict", "train", "evaluate", "info"])
def test_every_option_has_help_text(command):
    missing = [
        p.opts[0]
        for p in cli.commands[command].params
        if isinstance(p, click.Option) and not p.hidden and not (p.help or "").strip()
    ]
    assert not missing, f"{command}: no help text for {missing}"
    text = invoke(command, "--help").output
    if command == "predict":
        assert "DICOM-SEG" in text.split("--seg-syntax", 1)[1].split("\n  -", 1)[0]


@pytest.fixture(scope="module")
def folder(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("films")
    shutil.copy(shared_data / "dicom" / "dx_image.dcm", root)
    (root / "sub").mkdir()
    shutil.copy(shared_data / "shenzhen" / "images" / "CHNCXR_0001_0.png", root / "sub")
    (root / "notes.txt").write_text("not a film")
    return root


def test_info_accepts_folders_as_predict_does(folder):
    result = invoke("info", folder, "--json")
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert sorted(Path(r["file"]).name for r in records) == ["CHNCXR_0001_0.png", "dx_image.dcm"]
    empty = folder / "empty"
    empty.mkdir(exist_ok=True)
    none = invoke("info", empty)
    assert none.exit_code == 2 and "no films found" in none.output


@pytest.mark.slow
def test_predict_without_a_terminal_logs_progress_lines_and_px_areas(folder, shipped_bundle, tmp_path):
    env = {**os.environ, "MEDLUNG_BUNDLE": str(shipped_bundle)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "medlung",
            "predict",
            folder,
            "-o",
            tmp_path / "out",
            "--format",
            "png",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    progress = [line for line in result.stderr.splitlines() if re.match(r"\[\d+/2\]", line)]
    assert len(progress) == 2 and progress[-1].startswith("[2/2]"), result.stderr
    rows = {Path(r["file"]).name: r for r in json.loads((tmp_path / "out" / "report.json").read_text())}
    png = rows["CHNCXR_0001_0.png"]
    assert png["total_cm2"] is None and png["calibrated"] is False
    assert png["right_px"] > 10_000 and png["left_px"] > 10_000
    assert png["total_px"] == png["right_px"] + png["left_px"]
    dx = rows["dx_image.dcm"]
    assert dx["total_px"] > 0 and dx["total_cm2"] > 0
    header = (tmp_path / "out" / "report.csv").read_text().splitlines()[0].split(",")
    assert header.index("right_px") == header.index("total_cm2") + 1


def test_the_test_command_shows_the_slowest_tests():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert "--durations=15" in config["tool:pytest"]["addopts"]


# --- #28: the first hour, point by point ---------------------------------------------------------------------
def test_spacing_and_format_errors_name_the_value_the_user_typed():
    result = invoke("predict", "x.png", "-o", "out", "--spacing", "abc")
    assert result.exit_code == 2 and "'abc' is not a number" in result.output and "\\" not in result.output
    result = invoke("predict", "x.png", "-o", "out", "--format", "seg,jpg")
    assert result.exit_code == 2 and "'jpg' is not an output format" in result.output


def test_device_cuda_is_refused_before_any_film_or_progress_line(folder, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: --device cuda is valid here")
    for extra in ([], ["--scheduler", "local:1"]):
        result = subprocess.run(
            [sys.executable, "-m", "medlung", "predict", folder, "-o", tmp_path / "out", "--device", "cuda", *extra],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2 and "no CUDA device" in result.stderr, result.stderr
        assert "segmenting" not in result.stderr and not re.search(r"\[\d+/\d+\]", result.stderr), extra
        assert not (tmp_path / "out").exists()


def test_info_prints_an_error_once(tmp_path):
    bad = tmp_path / "bad.dcm"
    bad.write_text("not a film")
    result = subprocess.run([sys.executable, "-m", "medlung", "info", bad], capture_output=True, text=True)
    assert result.returncode == 1
    assert (result.stdout + result.stderr).count("not a DICOM file") == 1, result.stdout + result.stderr


def test_no_films_found_names_what_counts_as_a_film(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    for command in ("predict", "info"):
        args = [command, tmp_path] + (["-o", tmp_path / "out"] if command == "predict" else [])
        result = invoke(*args)
        assert result.exit_code == 2 and "no films found" in result.output, result.output
        assert ".dcm" in result.output and ".png" in result.output and "without an extension" in result.output


def test_a_film_without_spacing_gets_a_spacing_hint(folder, shipped_bundle, tmp_path):
    env = {**os.environ, "MEDLUNG_BUNDLE": str(shipped_bundle)}
    png = folder / "sub" / "CHNCXR_0001_0.png"
    result = subprocess.run(
        [sys.executable, "-m", "medlung", "predict", png, "-o", tmp_path / "out", "--format", "overlay"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "give no pixel spacing" in result.stderr and "--spacing MM" in result.stderr
    (row,) = json.loads((tmp_path / "out" / "report.json").read_text())
    assert any("--spacing" in note for note in row["notes"])


def test_a_wrong_spacing_is_flagged_and_warned_of_in_python(shipped_bundle, monkeypatch):
    """The README once hinted spacing="0.143" for a 512 px PNG (a 73 mm film): flagged, and Python says so."""
    import medlung
    from medlung.errors import QualityWarning
    from medlung.samples import sample_paths

    monkeypatch.setenv("MEDLUNG_BUNDLE", str(shipped_bundle))
    png = next(p for p in sample_paths() if p.name == "CHNCXR_0001_0.png")
    film = medlung.load_film(png, spacing="0.143")
    with pytest.warns(QualityWarning, match="field_of_view"):
        masks = medlung.Segmenter(device="cpu")(film)
    assert masks.qc == "flagged" and "field_of_view" in {r.code for r in masks.qc_reasons}


def test_to_dataframe_has_every_report_column_and_whole_number_counts(shipped_bundle, monkeypatch):
    import medlung
    from medlung.samples import sample_paths
    from medlung.writers.report import COLUMNS

    monkeypatch.setenv("MEDLUNG_BUNDLE", str(shipped_bundle))
    results = list(medlung.Segmenter(device="cpu").segment_files([sample_paths()[0], "missing.png"]))
    frame = medlung.to_dataframe(results)
    assert list(frame.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert str(frame["rows"].dtype) == "Int64" and str(frame["total_px"].dtype) == "Int64"
    assert frame.loc[0, "rows"] == 512 and frame.loc[0, "calibrated"] and frame.loc[0, "total_cm2"] > 100
    assert frame.loc[0, "lungs"] == "field" and frame.loc[0, "right_solidity"] > 0.5
    assert frame.loc[1, "status"] == "error" and frame["rows"].isna()[1]


def test_the_overlay_caption_names_the_convention(shipped_bundle, monkeypatch):
    import medlung
    from medlung.samples import sample_paths
    from medlung.writers.overlay import area_lines

    monkeypatch.setenv("MEDLUNG_BUNDLE", str(shipped_bundle))
    film = medlung.load_film(sample_paths()[0])
    for lungs, words in (("field", "right lung field"), ("anatomical", "right lung (anatomical)")):
        lines = area_lines(medlung.Segmenter(device="cpu", lungs=lungs)(film))
        assert lines[0].startswith(words), lines
