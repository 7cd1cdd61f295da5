"""One rule across train, evaluate and predict: a usage error is one line and exit 2, a film error exit 1.

Usage errors are what stops a command before any film is processed (bad
option value, unknown device, a model that is not one, a path that does not
exist or is a file where a folder is needed, data that is not a layout, an
existing output); nothing is written for them. Film errors are films that
fail inside a run that went on (exit 1). See docs/cli.md, "Exit status".
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import write_shenzhen_csv


def medlung(*args, input_text=None):
    return subprocess.run(
        [sys.executable, "-m", "medlung", *map(str, args)],
        capture_output=True,
        text=True,
        input=input_text,
        env={**os.environ, "MEDLUNG_NO_PROGRESS": "1"},
    )


def assert_one_line_usage_error(result, *needles):
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    error_lines = [line for line in lines if "rror" in line]
    assert error_lines, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


@pytest.fixture(scope="module")
def small_csv(shared_data, tmp_path_factory):
    return write_shenzhen_csv(
        shared_data, tmp_path_factory.mktemp("csv") / "small.csv", {"train": 2, "val": 1, "test": 1}
    )


@pytest.fixture(scope="module")
def film(shared_data):
    return shared_data / "dicom" / "dx_image.dcm"


@pytest.mark.slow
def test_unknown_device_is_a_usage_error(film, small_csv, tmp_path):
    result = medlung("predict", film, "-o", tmp_path / "p", "--device", "gpu")
    assert_one_line_usage_error(result, "gpu", "cpu")
    assert not (tmp_path / "p").exists()
    result = medlung("train", small_csv, "-o", tmp_path / "t", "--device", "gpu", "--epochs", "1")
    assert_one_line_usage_error(result, "gpu", "cpu")
    assert not (tmp_path / "t").exists(), "a failed train leaves no run folder"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dicom", "text"])
def test_a_model_that_is_not_one_is_a_usage_error(kind, film, shared_data, tmp_path):
    if kind == "dicom":
        model = film
    else:
        model = tmp_path / "fake.pt"
        model.write_text("this is not a checkpoint\n")
    result = medlung("predict", film, "-o", tmp_path / "p", "--bundle", model)
    assert_one_line_usage_error(result, "not a medlung model")
    assert not (tmp_path / "p" / "report.csv").exists()
    result = medlung("evaluate", model, shared_data / "shenzhen", "-o", tmp_path / "e", "--limit", "1")
    assert_one_line_usage_error(result, "not a medlung model" if kind == "text" else "neither a folder")
    assert not (tmp_path / "e").exists()


def test_train_output_that_is_a_file_is_a_usage_error(small_csv, tmp_path):
    existing = tmp_path / "a_file"
    existing.write_text("x")
    result = medlung("train", small_csv, "-o", existing, "--epochs", "1")
    assert_one_line_usage_error(result, "is a file")


@pytest.mark.slow
def test_train_bad_data_exits_2_like_evaluate_and_leaves_no_run_folder(tmp_path):
    (tmp_path / "nothing_here").mkdir()
    (tmp_path / "nothing_here" / "readme.txt").write_text("not data")
    result = medlung("train", tmp_path / "nothing_here", "-o", tmp_path / "run", "--epochs", "1")
    assert_one_line_usage_error(result, "has no images/ and masks/")
    assert not (tmp_path / "run").exists()
    missing = medlung("train", tmp_path / "missing", "-o", tmp_path / "run2", "--epochs", "1")
    assert_one_line_usage_error(missing, "does not exist")
    assert not (tmp_path / "run2").exists()


def test_predict_missing_input_and_empty_folder_are_both_usage_errors(film, tmp_path):
    (tmp_path / "empty").mkdir()
    empty = medlung("predict", tmp_path / "empty", "-o", tmp_path / "o1")
    assert_one_line_usage_error(empty, "no films found")
    missing = medlung("predict", tmp_path / "missing.dcm", "-o", tmp_path / "o2")
    assert_one_line_usage_error(missing, "missing.dcm", "does not exist")
    mixed = medlung("predict", film, tmp_path / "missing.dcm", "-o", tmp_path / "o3")
    assert_one_line_usage_error(mixed, "missing.dcm")
    assert not (tmp_path / "o3").exists(), "nothing is written for a usage error"
