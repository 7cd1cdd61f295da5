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
