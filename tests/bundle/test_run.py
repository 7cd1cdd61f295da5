"""``python -m monai.bundle run`` with each config, as the MONAI model zoo CI runs bundles (tiny overrides)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel
import numpy as np
import pydicom
import pytest
from click.testing import CliRunner

from medlung.cli import cli
from medlung.io import load_film
from tests.bundle.conftest import TINY_OVERRIDES, bundle_cli

#: Slow: every test runs python -m monai.bundle in a subprocess (and some train).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def films(shared_data, tmp_path_factory):
    """Three real films: a Shenzhen PNG, a MONOCHROME1 CR without File Meta, a DX with spacing."""
    folder = tmp_path_factory.mktemp("films")
    shutil.copy(shared_data / "shenzhen" / "images" / "CHNCXR_0001_0.png", folder)
    (folder / "dicom").mkdir()
    for name in ("CR-MONO1-10-chest.dcm", "dx_image.dcm"):
        shutil.copy(shared_data / "dicom" / name, folder / "dicom")
    return folder


def infer(bundle, films, out, *overrides):
    return bundle_cli(
        "run",
        "--bundle_root",
        bundle,
        "--config_file",
        bundle / "configs" / "inference.json",
        "--dataset_dir",
        films,
        "--output_dir",
        out,
        *overrides,
    )


def predict(bundle, films, out, *options):
    result = CliRunner().invoke(cli, ["predict", str(films), "-o", str(out), "--bundle", str(bundle), *options], obj={})
    assert result.exit_code == 0, result.output
    return out


def labels(path):
    return np.asarray(nibabel.load(str(path)).dataobj)


def test_bundle_inference_writes_what_medlung_predict_writes(shipped_bundle, films, tmp_path):
    result = infer(shipped_bundle, films, tmp_path / "bundle", "--device", "cpu")
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    expected = predict(shipped_bundle, films, tmp_path / "cli", "--device", "cpu")
    names = sorted(p.name for p in (tmp_path / "bundle").iterdir())
    assert names == sorted(p.name for p in expected.iterdir())
    assert {"CR-MONO1-10-chest_seg.dcm", "dx_image_seg.dcm", "CHNCXR_0001_0_lungs.png", "report.csv"} <= set(names)
    assert "CHNCXR_0001_0_seg.dcm" not in names  # SEG for DICOM films only
    for stem in ("CHNCXR_0001_0", "CR-MONO1-10-chest", "dx_image"):
        ours = labels(tmp_path / "bundle" / f"{stem}_labels.nii.gz")
        theirs = labels(expected / f"{stem}_labels.nii.gz")
        assert np.array_equal(ours, theirs) and set(np.unique(ours)) == {0, 1, 2}
    # native grid and spacing kept; same deterministic SEG
    dx = tmp_path / "bundle" / "dx_image_labels.nii.gz"
    assert labels(dx).shape[:2] == (169, 211)
    film = load_film(films / "dicom" / "dx_image.dcm")
    assert np.allclose(nibabel.load(str(dx)).header.get_zooms()[:2], film.spacing, atol=1e-5)
    ours, theirs = (pydicom.dcmread(d / "dx_image_seg.dcm") for d in (tmp_path / "bundle", expected))
    assert ours.SOPInstanceUID == theirs.SOPInstanceUID and ours.Rows == 169 and ours.Columns == 211
    report = json.loads((tmp_path / "bundle" / "report.json").read_text())
    assert [r["status"] for r in report] == ["ok"] * 3
    assert "done 3, failed 0" in result.stdout + result.stderr
    # the quality check is reported by both doors alike: the dog's lateral thorax is flagged
    assert {Path(r["file"]).name: r["qc"] for r in report} == {
        "CHNCXR_0001_0.png": "ok",
        "CR-MONO1-10-chest.dcm": "ok",
        "dx_image.dcm": "flagged",
    }
    # the reason codes as far as 64 characters allow (the low Dice estimate of the dog's thorax follows as "...")
    flagged = "Lungs (medlung) [QC: lateral,not_human,lungs_implausible,...]"
    assert ours.SeriesDescription == theirs.SeriesDescription == flagged
    reasons = {Path(r["file"]).name: " ".join(r["qc_reasons"]) for r in report}
    assert "low_dice_estimate" in reasons["dx_image.dcm"]
    assert "dx_image.dcm: quality flagged: lateral:" in result.stdout + result.stderr


def test_command_line_overrides_reach_the_segmenter(shipped_bundle, films, tmp_path):
    film = films / "dicom" / "dx_image.dcm"
    single = tmp_path / "in"
    single.mkdir()
    shutil.copy(film, single)
    result = infer(
        shipped_bundle,
        single,
        tmp_path / "bundle",
        "--device",
        "cpu",
        "--roi_size",
        "192",
        "--tta",
        "true",
        "--formats",
        "seg,nifti",
        "--spacing",
        "0.9",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    expected = predict(
        shipped_bundle,
        single,
        tmp_path / "cli",
        "--device",
        "cpu",
        "--roi-size",
        "192",
        "--tta",
        "--format",
        "seg,nifti",
        "--spacing",
        "0.9",
    )
    assert sorted(p.name for p in (tmp_path / "bundle").iterdir()) == sorted(p.name for p in expected.iterdir())
    assert np.array_equal(
        labels(tmp_path / "bundle" / "dx_image_labels.nii.gz"), labels(expected / "dx_image_labels.nii.gz")
    )
    assert np.allclose(
        nibabel.load(str(tmp_path / "bundle" / "dx_image_labels.nii.gz")).header.get_zooms()[:2], (0.9, 0.9)
    )
    # roi_size and tta enter the SEG's deterministic UIDs: equal UIDs mean equal options
    ours, theirs = (pydicom.dcmread(d / "dx_image_seg.dcm") for d in (tmp_path / "bundle", expected))
    assert ours.SOPInstanceUID == theirs.SOPInstanceUID
    again = infer(shipped_bundle, single, tmp_path / "bundle", "--device", "cpu")
    assert again.returncode != 0 and "already holds report.csv" in again.stderr


def test_lungs_override_gives_the_anatomical_convention_as_predict_does(shipped_bundle, films, tmp_path):
    single = tmp_path / "in"
    single.mkdir()
    shutil.copy(films / "dicom" / "CR-MONO1-10-chest.dcm", single)
    result = infer(
        shipped_bundle,
        single,
        tmp_path / "bundle",
        "--device",
        "cpu",
        "--lungs",
        "anatomical",
        "--formats",
        "seg,nifti",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    expected = predict(
        shipped_bundle, single, tmp_path / "cli", "--device", "cpu", "--lungs", "anatomical", "--format", "seg,nifti"
    )
    name = "CR-MONO1-10-chest"
    assert np.array_equal(
        labels(tmp_path / "bundle" / f"{name}_labels.nii.gz"), labels(expected / f"{name}_labels.nii.gz")
    )
    ours, theirs = (pydicom.dcmread(d / f"{name}_seg.dcm") for d in (tmp_path / "bundle", expected))
    assert ours.SOPInstanceUID == theirs.SOPInstanceUID
    assert [s.SegmentLabel for s in ours.SegmentSequence] == ["Right lung (anatomical)", "Left lung (anatomical)"]
    report = json.loads((tmp_path / "bundle" / "report.json").read_text())
    assert report[0]["lungs"] == "anatomical"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["--working_spacing", "3.0"], "working_spacing is 3.0 in the running config"),  # the weights' is not 3.0
        (["--tta", "maybe"], "tta must be true or false"),
        (["--formats", "seg,jpeg"], "formats must be a comma-separated subset"),
    ],
)
def test_bad_overrides_are_refused_with_one_line(shipped_bundle, films, tmp_path, overrides, message):
    result = infer(shipped_bundle, films, tmp_path / "out", "--device", "cpu", *overrides)
    assert result.returncode != 0 and message in result.stderr
    assert not (tmp_path / "out" / "report.csv").exists()


def test_empty_dataset_dir_is_refused(shipped_bundle, tmp_path):
    (tmp_path / "empty").mkdir()
    result = infer(shipped_bundle, tmp_path / "empty", tmp_path / "out", "--device", "cpu")
    assert result.returncode != 0 and "no DICOM or PNG films found in dataset_dir" in result.stderr


def test_train_config_retrains_and_exports(tiny_bundle, tiny_csv, tmp_path):
    configs = tiny_bundle / "configs"
    result = bundle_cli(
        "run",
        "--bundle_root",
        tiny_bundle,
        "--config_file",
        configs / "train.json",
        "--dataset_dir",
        tiny_csv,
        "--output_dir",
        tmp_path / "run",
        *TINY_OVERRIDES,
        "--export_dir",
        tmp_path / "new_bundle",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    plan = config["plan"]  # the run's ModelPlan, nested since TrainConfig holds it
    assert plan["features"] == [8, 8, 16, 32, 64, 8] and config["epochs"] == 1 and plan["roi_size"] == 64
    assert plan["working_spacing"] == 4.0 and config["data_summary"]["training"] == 2
    assert (tmp_path / "run" / "summary.json").is_file()
    assert (tmp_path / "new_bundle" / "models" / "model.ts").is_file()
    assert "training summary" in result.stdout


def test_multi_gpu_train_config_under_torchrun(tiny_bundle, tiny_csv, tmp_path):
    configs = tiny_bundle / "configs"
    files = f"['{configs / 'train.json'}','{configs / 'multi_gpu_train.json'}']"
    result = bundle_cli(
        "run",
        "--bundle_root",
        tiny_bundle,
        "--config_file",
        files,
        "--dataset_dir",
        tiny_csv,
        "--output_dir",
        tmp_path / "run",
        *TINY_OVERRIDES[:-2],
        "--batch_size",
        "1",
        launcher=["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
        env={"OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["world_size"] == 2 and config["device_used"] == "cpu"
    assert (tmp_path / "run" / "best.pt").is_file() and (tmp_path / "run" / "summary.json").is_file()


def test_multi_gpu_config_without_torchrun_says_how_to_launch(tiny_bundle, tiny_csv, tmp_path):
    configs = tiny_bundle / "configs"
    files = f"['{configs / 'train.json'}','{configs / 'multi_gpu_train.json'}']"
    result = bundle_cli(
        "run",
        "--bundle_root",
        tiny_bundle,
        "--config_file",
        files,
        "--dataset_dir",
        tiny_csv,
        "--output_dir",
        tmp_path / "run",
        *TINY_OVERRIDES,
        env={"WORLD_SIZE": "1"},
    )
    assert result.returncode != 0 and "torchrun --standalone --nproc_per_node" in result.stderr
    assert not (tmp_path / "run").exists()


def test_evaluate_config_reports_dice(tiny_bundle, tiny_csv, tmp_path):
    result = bundle_cli(
        "run",
        "--bundle_root",
        tiny_bundle,
        "--config_file",
        tiny_bundle / "configs" / "evaluate.json",
        "--dataset_dir",
        tiny_csv,
        "--output_dir",
        tmp_path / "eval",
        "--device",
        "cpu",
        "--part",
        "test",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["films"] == 2 and summary["ok"] == 2 and summary["part"] == "test"
    assert 0 <= summary["metrics"]["dice"]["mean"] <= 1 and summary["model_version"] == "tiny_bundle@0.1.0"
    assert len((tmp_path / "eval" / "metrics.csv").read_text().splitlines()) == 3
    assert (tmp_path / "eval" / "boxplot.png").is_file() and (tmp_path / "eval" / "worst.png").is_file()
    assert "mean Dice" in result.stdout + result.stderr
