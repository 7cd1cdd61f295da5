"""The one-worker batch pipeline (read ahead, segment, write behind): the same rows, in order, and it never hangs."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medlung.pipeline.batch import FILMS_IN_FLIGHT, predict_files, segment_one
from medlung.pipeline.settings import PredictSettings


@pytest.fixture(scope="module")
def films(shared_data, tmp_path_factory):
    """Real films in input order: two Shenzhen PNGs, a real CR DICOM, a broken DICOM, two more Shenzhen PNGs."""
    folder = tmp_path_factory.mktemp("films")
    images = shared_data / "shenzhen" / "images"
    paths = [Path(shutil.copy(images / name, folder / name)) for name in ("CHNCXR_0001_0.png", "CHNCXR_0010_0.png")]
    paths.append(Path(shutil.copy(shared_data / "dicom" / "CR-MONO1-10-chest.dcm", folder / "chest.dcm")))
    (folder / "broken.dcm").write_bytes(b"DICM" * 10)
    paths.append(folder / "broken.dcm")
    paths += [Path(shutil.copy(images / name, folder / name)) for name in ("CHNCXR_0148_0.png", "CHNCXR_0330_1.png")]
    return paths


def _pipeline_threads():
    return [t for t in threading.enumerate() if t.name.startswith("medlung-")]


def _comparable(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("seconds", "outputs")}


@pytest.mark.slow
def test_a_bad_film_in_the_middle_is_an_error_row_and_the_rest_are_written_in_order(films, segmenter, tmp_path):
    seen = []
    report = predict_files(films, tmp_path / "out", segmenter, PredictSettings(), progress=seen.append)
    assert [row["file"] for row in seen] == [str(p) for p in films]  # progress in input order
    assert [row["file"] for row in report.rows] == [str(p) for p in films]
    assert [row["status"] for row in report.rows] == ["ok", "ok", "ok", "error", "ok", "ok"]
    assert "broken.dcm" in report.rows[3]["error"]
    out = tmp_path / "out"
    for path in films:
        if path.name == "broken.dcm":
            assert not list(out.glob("broken*"))
            continue
        stem = path.stem
        names = ["_lungs.png", "_labels.nii.gz", "_overlay.png"] + (
            ["_seg.dcm", "_sr.dcm"] if path.suffix == ".dcm" else []
        )
        for suffix in names:
            assert (out / f"{stem}{suffix}").is_file(), f"{stem}{suffix}"
        with Image.open(out / f"{stem}_lungs.png") as mask:
            assert np.asarray(mask).max() == 255
            if path.suffix == ".png":
                assert mask.size == Image.open(path).size
    assert not list(out.glob(".*.part"))  # no temporary left behind
    # the same rows as one film at a time (the path Dask workers and serve take)
    alone = tmp_path / "alone"
    alone.mkdir()
    for path, row in zip(films, report.rows):
        single = segment_one(path, alone / path.stem, segmenter, PredictSettings())
        assert _comparable({k: single.get(k) for k in row}) == _comparable(row)
    assert not _pipeline_threads()


@pytest.mark.slow
def test_a_rerun_skips_every_finished_film(films, segmenter, tmp_path):
    predict_files(films[:3], tmp_path, segmenter, PredictSettings())
    report = predict_files(films, tmp_path, segmenter, PredictSettings())
    assert [row["status"] for row in report.rows] == ["skipped"] * 3 + ["error", "ok", "ok"]
    assert (tmp_path / "report.1.csv").is_file()  # the first run's report is kept


@pytest.mark.slow
def test_an_output_that_cannot_be_written_is_an_error_row_and_the_batch_goes_on(films, segmenter, tmp_path):
    (tmp_path / "CHNCXR_0010_0_overlay.png").mkdir()  # a folder where the overlay must go: the write fails
    report = predict_files(films[:3], tmp_path, segmenter, PredictSettings(overwrite=True))
    assert [row["status"] for row in report.rows] == ["ok", "error", "ok"]
    assert "CHNCXR_0010_0" in report.rows[1]["error"]
    assert (tmp_path / "CHNCXR_0010_0_lungs.png").is_file()  # the film's other outputs are still written
    assert (tmp_path / "chest_seg.dcm").is_file()
    assert not _pipeline_threads()


def test_a_report_that_cannot_be_written_stops_the_batch_with_its_error(films, segmenter, tmp_path):
    (tmp_path / "report.csv").mkdir()
    with pytest.raises(OSError):
        predict_files(films, tmp_path, segmenter, PredictSettings(overwrite=True))
    assert not _pipeline_threads()
    assert len(list(tmp_path.glob("*_lungs.png"))) <= FILMS_IN_FLIGHT  # stopped early, not after every film


@pytest.mark.slow
def test_an_error_in_the_progress_callback_surfaces_and_stops_the_batch(films, segmenter, tmp_path):
    def progress(row):
        raise RuntimeError("progress failed")

    with pytest.raises(RuntimeError, match="progress failed"):
        predict_files(films, tmp_path, segmenter, PredictSettings(), progress=progress)
    assert not _pipeline_threads()
    assert len(list(tmp_path.glob("*_lungs.png"))) <= FILMS_IN_FLIGHT


@pytest.mark.slow
def test_ctrl_c_stops_the_batch_like_before_and_leaves_only_whole_files(shared_data, shipped_bundle, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "in"
    folder.mkdir()
    for path in sorted((shared_data / "shenzhen" / "images").glob("*.png"))[:40]:
        shutil.copy(path, folder)
    out = tmp_path / "out"
    run = subprocess.Popen(
        [sys.executable, "-m", "medlung", "predict", str(folder), "-o", str(out), "--device", "cpu"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MEDLUNG_BUNDLE": str(shipped_bundle)},
    )
    while not (out / "report.csv").exists() and run.poll() is None:  # the first film is done
        time.sleep(0.1)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 1 and "Aborted!" in stderr  # click's answer to Ctrl-C, as before the pipeline
    assert not list(out.glob(".*.part"))
    written = {p.name.removesuffix("_lungs.png") for p in out.glob("*_lungs.png")}
    assert 1 <= len(written) < 40
    for stem in written:  # every film written at all is written whole
        for suffix in ("_labels.nii.gz", "_overlay.png"):
            assert (out / f"{stem}{suffix}").is_file()
