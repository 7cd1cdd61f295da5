"""``medlung evaluate`` on real Shenzhen test films: prediction folders, the shipped bundle, bad inputs."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from scipy import ndimage

from medlung.cli import cli
from medlung.io.masks import load_label_map
from medlung.writers.masks import write_labels_nifti

# Films of the fixed test split (every 20th one, not chosen by how well a model does on them).
FILMS = ["CHNCXR_0010_0", "CHNCXR_0148_0", "CHNCXR_0322_0"]
OUTPUTS = ("metrics.csv", "summary.json", "boxplot.png", "worst.png", "calibration.png")


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], obj={}, env={"MEDLUNG_NO_PROGRESS": "1"})
    return result


def read_rows(out):
    with open(out / "metrics.csv", newline="") as handle:
        return {row["film"]: row for row in csv.DictReader(handle)}


def lung_labels(shenzhen, stem):
    right = load_label_map(shenzhen / "masks" / f"{stem}_lung_R.png") > 0
    left = load_label_map(shenzhen / "masks" / f"{stem}_lung_L.png") > 0
    labels = np.zeros(right.shape, np.uint8)
    labels[right], labels[left] = 1, 2
    return labels


@pytest.fixture(scope="module")
def shenzhen(shared_data):
    return shared_data / "shenzhen"


@pytest.fixture(scope="module")
def data_csv(shenzhen, tmp_path_factory):
    """Three test films and one training film, absolute paths, with the split column."""
    rows = {r["image"]: r for r in csv.DictReader(open(shenzhen / "splits.csv"))}
    path = tmp_path_factory.mktemp("data") / "films.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "mask", "split"])
        for stem in FILMS:
            assert rows[f"images/{stem}.png"]["split"] == "test"
            writer.writerow([shenzhen / "images" / f"{stem}.png", shenzhen / "masks" / f"{stem}_lungs.png", "test"])
        writer.writerow(
            [shenzhen / "images" / "CHNCXR_0001_0.png", shenzhen / "masks" / "CHNCXR_0001_0_lungs.png", "train"]
        )
    return path


@pytest.fixture
def truth_as_predictions(shenzhen, tmp_path):
    """The ground truth itself, in each prediction format: NIfTI label map, 0/255 PNG, <stem>.png label map."""
    folder = tmp_path / "pred"
    folder.mkdir()
    write_labels_nifti(folder / f"{FILMS[0]}_labels.nii.gz", lung_labels(shenzhen, FILMS[0]), None)
    shutil.copy(shenzhen / "masks" / f"{FILMS[1]}_lungs.png", folder / f"{FILMS[1]}_lungs.png")
    Image.fromarray(lung_labels(shenzhen, FILMS[2])).save(folder / f"{FILMS[2]}.png")
    return folder


def test_truth_against_itself_is_perfect_and_every_output_parses(truth_as_predictions, data_csv, tmp_path):
    out = tmp_path / "eval"
    result = run("evaluate", truth_as_predictions, data_csv, "-o", out)
    assert result.exit_code == 0, result.output + result.stderr
    assert "Dice both lungs" in result.output and "HD95 both lungs (px)" in result.output
    rows = read_rows(out)
    assert sorted(rows) == sorted(FILMS)  # the training film is not in the test part
    for row in rows.values():
        assert row["status"] == "ok" and row["unit"] == "px" and row["spacing_source"] == "unknown"
        assert float(row["dice"]) == 1.0 and float(row["iou"]) == 1.0
        assert float(row["hd95"]) == 0.0 and float(row["assd"]) == 0.0
    # per-lung scores where both sides have right/left, empty with a note where the prediction has none
    assert rows[FILMS[0]]["per_lung"] == "yes" and float(rows[FILMS[0]]["dice_left"]) == 1.0
    assert rows[FILMS[2]]["per_lung"] == "yes" and float(rows[FILMS[2]]["hd95_right"]) == 0.0
    assert rows[FILMS[1]]["per_lung"] == "no" and rows[FILMS[1]]["dice_right"] == ""
    assert "union mask" in rows[FILMS[1]]["note"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["films"] == 3 and summary["ok"] == 3 and summary["failed"] == 0 and summary["unit"] == "px"
    assert summary["metrics"]["dice"]["mean"] == 1.0 and summary["metrics"]["dice"]["p5"] == 1.0
    assert summary["metrics"]["hd95"]["median"] == 0.0 and summary["metrics"]["hd95"]["unit"] == "px"
    assert summary["metrics"]["dice_right"]["n"] == 2 and summary["per_lung_films"] == 2
    assert len(summary["worst_by_dice"]) == 3
    for name in ("boxplot.png", "worst.png"):
        with Image.open(out / name) as picture:
            assert picture.format == "PNG" and min(picture.size) > 100
    assert not list(out.glob(".*.part"))


def test_eroded_mask_scores_lower_and_is_the_worst(truth_as_predictions, shenzhen, data_csv, tmp_path):
    labels = lung_labels(shenzhen, FILMS[0])
    eroded = np.zeros_like(labels)
    for value in (1, 2):
        eroded[ndimage.binary_erosion(labels == value, iterations=3)] = value
    write_labels_nifti(truth_as_predictions / f"{FILMS[0]}_labels.nii.gz", eroded, None, overwrite=True)
    out = tmp_path / "eval"
    result = run("evaluate", truth_as_predictions, data_csv, "-o", out)
    assert result.exit_code == 0, result.stderr
    row = read_rows(out)[FILMS[0]]
    assert 0.9 < float(row["dice"]) < 0.99
    assert float(row["iou"]) < float(row["dice"])
    assert 2.0 <= float(row["hd95"]) <= 3 * math.sqrt(2) + 1e-6  # 3 erosion steps, in pixels
    assert float(row["dice_right"]) < 1.0 and float(row["dice_left"]) < 1.0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["worst_by_dice"][0]["film"] == FILMS[0]
    assert summary["metrics"]["dice"]["min"] == pytest.approx(float(row["dice"]), abs=1e-6)


def test_missing_or_mismatched_prediction_gives_an_error_row_and_exit_1(truth_as_predictions, data_csv, tmp_path):
    (truth_as_predictions / f"{FILMS[1]}_lungs.png").unlink()
    Image.fromarray(np.zeros((256, 256), np.uint8)).save(truth_as_predictions / f"{FILMS[2]}.png")
    out = tmp_path / "eval"
    result = run("evaluate", truth_as_predictions, data_csv, "-o", out)
    assert result.exit_code == 1
    assert f"no prediction for film {FILMS[1]}" in result.stderr
    assert "Traceback" not in result.stderr
    rows = read_rows(out)
    assert rows[FILMS[0]]["status"] == "ok" and float(rows[FILMS[0]]["dice"]) == 1.0
    assert rows[FILMS[1]]["status"] == "error" and rows[FILMS[1]]["dice"] == ""
    assert rows[FILMS[2]]["status"] == "error" and "256x256" in rows[FILMS[2]]["error"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == 2 and {e["film"] for e in summary["errors"]} == set(FILMS[1:])
    assert all((out / name).is_file() for name in OUTPUTS)


@pytest.mark.slow
def test_existing_results_are_kept_unless_overwrite(truth_as_predictions, data_csv, tmp_path):
    out = tmp_path / "eval"
    assert run("evaluate", truth_as_predictions, data_csv, "-o", out, "--limit", "1").exit_code == 0
    before = (out / "metrics.csv").read_bytes()
    again = run("evaluate", truth_as_predictions, data_csv, "-o", out)
    assert again.exit_code == 2 and "--overwrite" in again.stderr
    assert (out / "metrics.csv").read_bytes() == before
    replaced = run("evaluate", truth_as_predictions, data_csv, "-o", out, "--overwrite", "--part", "all")
    rows = read_rows(out)
    assert len(rows) == 4  # --part all adds the training film, which has no prediction in this folder
    assert rows["CHNCXR_0001_0"]["status"] == "error" and replaced.exit_code == 1


def test_usage_errors_exit_2(truth_as_predictions, data_csv, tmp_path):
    assert run("evaluate", tmp_path / "missing", data_csv, "-o", tmp_path / "o").exit_code == 2
    assert run("evaluate", truth_as_predictions, data_csv, "-o", tmp_path / "o", "--part", "bad").exit_code == 2
    not_data = tmp_path / "notes.txt"
    not_data.write_text("x")
    bad = run("evaluate", truth_as_predictions, not_data, "-o", tmp_path / "o")
    assert bad.exit_code == 2 and "not a training data layout" in bad.stderr


def test_distances_are_in_mm_with_an_anisotropic_spacing(tmp_path):
    """A film with pHYs spacing 0.5 mm (rows) x 0.25 mm (cols); the prediction is shifted 4 columns, then 4 rows."""
    from medlung.io.png import save_png

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    rng = np.random.default_rng(0)
    film = rng.integers(0, 255, (96, 128), dtype=np.uint8)
    truth = np.zeros((96, 128), np.uint8)
    truth[20:70, 30:90] = 255
    save_png(data / "images" / "film.png", film, (0.5, 0.25))
    save_png(data / "masks" / "film_lungs.png", truth, (0.5, 0.25))
    for axis, expected in ((1, 4 * 0.25), (0, 4 * 0.5)):
        pred = tmp_path / f"pred{axis}"
        pred.mkdir()
        save_png(pred / "film_lungs.png", np.roll(truth, 4, axis=axis), (0.5, 0.25))
        out = tmp_path / f"eval{axis}"
        result = run("evaluate", pred, data, "-o", out)
        assert result.exit_code == 0, result.stderr
        row = read_rows(out)["film"]
        assert row["unit"] == "mm" and row["spacing_mm"] == "0.5;0.25"  # as in report.csv
        assert float(row["hd95"]) == pytest.approx(expected)
        assert "HD95 both lungs (mm)" in result.output
        summary = json.loads((out / "summary.json").read_text())
        assert summary["unit"] == "mm" and "no split" in " ".join(summary["notes"])


# ----------------------------------------------------------------------------- with the shipped model


@pytest.mark.slow
def test_predict_folder_and_the_bundle_itself_give_the_same_good_scores(shipped_bundle, shenzhen, data_csv, tmp_path):
    predictions = tmp_path / "predictions"
    films = [shenzhen / "images" / f"{stem}.png" for stem in FILMS]
    predicted = run(
        "predict", *films, "-o", predictions, "--bundle", shipped_bundle, "--format", "png,nifti", "--device", "cpu"
    )
    assert predicted.exit_code == 0, predicted.stderr
    from_folder, direct = tmp_path / "from_folder", tmp_path / "direct"
    assert run("evaluate", predictions, data_csv, "-o", from_folder).exit_code == 0
    result = run("evaluate", shipped_bundle, data_csv, "-o", direct, "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    folder_rows, direct_rows = read_rows(from_folder), read_rows(direct)
    for stem in FILMS:
        assert folder_rows[stem]["prediction"].endswith(f"{stem}_labels.nii.gz")
        assert direct_rows[stem]["prediction"].startswith("model ")
        assert float(direct_rows[stem]["segment_seconds"]) > 0
        assert float(direct_rows[stem]["dice"]) >= 0.93, (stem, direct_rows[stem]["dice"])
        assert direct_rows[stem]["per_lung"] == "yes" and float(direct_rows[stem]["dice_right"]) >= 0.9
        for metric in ("dice", "hd95", "dice_left"):
            assert float(folder_rows[stem][metric]) == pytest.approx(float(direct_rows[stem][metric]), abs=1e-6)
    summary = json.loads((direct / "summary.json").read_text())
    assert summary["source"] == "model" and summary["model_version"]
    bundle_config = json.loads((Path(shipped_bundle) / "configs" / "inference.json").read_text())
    assert summary["model"]["network"] == bundle_config["network_def"]["name"]
    assert summary["model"]["working_spacing_mm"] == float(bundle_config["working_spacing"])
    assert summary["model"]["parameters"] > 100_000
    assert json.loads((from_folder / "summary.json").read_text())["model"] is None


def test_ignore_masks_are_left_out_of_every_metric(shared_data, tmp_path):
    """A prediction wrong only inside the ignore mask scores like a perfect one; without the mask it does not."""
    from PIL import Image

    from medlung.evaluation import evaluate

    stem = "CHNCXR_0001_0"
    truth = np.asarray(Image.open(shared_data / "shenzhen" / "masks" / f"{stem}_lungs.png")) > 0
    ignore = np.zeros_like(truth)
    ignore[200:320, 60:200] = True  # a block across the right lung
    wrong = truth.copy()
    wrong[ignore] = ~truth[ignore]
    (tmp_path / "pred").mkdir()
    Image.fromarray(wrong.astype(np.uint8) * 255).save(tmp_path / "pred" / f"{stem}_lungs.png")
    Image.fromarray(ignore.astype(np.uint8) * 255).save(tmp_path / "ignore.png")
    image, mask = (
        shared_data / "shenzhen" / "images" / f"{stem}.png",
        shared_data / "shenzhen" / "masks" / f"{stem}_lungs.png",
    )
    (tmp_path / "with.csv").write_text(f"image,mask,ignore\n{image},{mask},{tmp_path / 'ignore.png'}\n")
    (tmp_path / "without.csv").write_text(f"image,mask\n{image},{mask}\n")
    kept = evaluate(tmp_path / "pred", tmp_path / "with.csv", tmp_path / "out_with", part="all").rows[0]
    plain = evaluate(tmp_path / "pred", tmp_path / "without.csv", tmp_path / "out_without", part="all").rows[0]
    assert kept["dice"] == pytest.approx(1.0) and kept["ignored_px"] == int(ignore.sum())
    assert plain["dice"] < 0.97


def test_lungs_convention_of_data_entries_decides_what_is_scored(shared_data, tmp_path):
    from medlung.evaluation import evaluate

    base = shared_data / "shenzhen"
    rows = [
        f"{base}/images/{s}.png,{base}/masks/{s}_lungs.png,{c}"
        for s, c in (("CHNCXR_0001_0", "anatomical"), ("CHNCXR_0100_0", "field"))
    ]
    (tmp_path / "mixed.csv").write_text("image,mask,lungs\n" + "\n".join(rows) + "\n")
    (tmp_path / "pred").mkdir()
    for s in ("CHNCXR_0001_0", "CHNCXR_0100_0"):
        shutil.copy(base / "masks" / f"{s}_lungs.png", tmp_path / "pred")
    result = evaluate(tmp_path / "pred", tmp_path / "mixed.csv", tmp_path / "out", part="all", lungs="field")
    assert [r["film"] for r in result.rows] == ["CHNCXR_0100_0"]
    assert result.summary["lungs"] == "field" and any("another lung convention" in n for n in result.summary["notes"])
