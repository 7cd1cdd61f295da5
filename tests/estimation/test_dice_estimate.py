"""The shipped model's estimated Dice on real films: loaded from the bundle, close to the truth on held-out films,
lower on a degraded film, in predict's report and measured by evaluate (calibration.png, summary numbers)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from medlung.cli import cli
from medlung.writers.report import DICE_COLUMNS

#: Shenzhen test films outside the annotation batches (field convention), every 10th of the fixed test split:
#: held out from the calibration, which saw Shenzhen's validation films only.
FILMS = 6
#: The MAE the fit measured on the Shenzhen test films is about 0.012 (bundle's fitted.evaluation); six films
#: may be unlucky, so the test allows 0.02, the issue's target.
STATED_MAE = 0.02


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], obj={}, env={"MEDLUNG_NO_PROGRESS": "1"})


def held_out_films(shared_data: Path, count: int) -> list[dict]:
    rows = list(csv.DictReader(open(shared_data / "shenzhen" / "splits.csv")))
    field = [r for r in rows if r["split"] == "test" and not _annotation_batch(r["image"])]
    return field[::10][:count]


def _annotation_batch(image: str) -> bool:
    number = int(Path(image).stem.split("_")[1])
    return any(low <= number <= high for low, high in ((1, 50), (276, 300), (326, 350)))


def test_the_calibration_loads_from_the_bundle(segmenter, shipped_bundle):
    metadata = json.loads((shipped_bundle / "configs" / "metadata.json").read_text())
    entry = metadata["dice_estimate"]
    assert (shipped_bundle / entry["file"]).is_file()
    calibration = segmenter.calibration
    # fitted for the weights (bound by their SHA-256); 3.0.1 has 3.0.0's weights and its calibration
    assert calibration is not None and calibration.model_version == entry["model_version"]
    assert calibration.model_version in metadata["changelog"]
    assert {"field", "anatomical"} <= set(calibration.regressors)
    assert "fast" in calibration.levels("field") and set(calibration.shapes["field"]) == {"both", "right", "left"}
    assert entry["weights_sha256"] == calibration.fitted["weights_sha256"]


def test_predict_reports_the_estimate_and_evaluate_measures_it(shared_data, shipped_bundle, tmp_path):
    films = held_out_films(shared_data, FILMS)
    folder = tmp_path / "films"
    folder.mkdir()
    data = tmp_path / "data.csv"
    with open(data, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "mask"])
        writer.writeheader()
        for row in films:
            image = folder / Path(row["image"]).name
            image.symlink_to(shared_data / "shenzhen" / row["image"])
            writer.writerow({"image": image, "mask": shared_data / "shenzhen" / row["mask"]})
    predicted = run("predict", folder, "-o", tmp_path / "pred", "--format", "nifti", "--bundle", shipped_bundle)
    assert predicted.exit_code == 0, predicted.output
    report = list(csv.DictReader(open(tmp_path / "pred" / "report.csv")))
    assert set(DICE_COLUMNS) <= set(report[0])
    for row in report:
        low, value, high = (float(row[f"dice_estimate{s}"]) for s in ("_low", "", "_high"))
        assert 0 <= low <= value <= high <= 1
        assert float(row["right_dice_estimate"]) > 0 and float(row["left_dice_estimate"]) > 0
    evaluated = run("evaluate", tmp_path / "pred", data, "-o", tmp_path / "eval", "--part", "all")
    assert evaluated.exit_code == 0, evaluated.output
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())["dice_estimate"]["both"]
    assert summary["n"] == FILMS and summary["mae"] <= STATED_MAE
    assert {"pearson", "spearman", "coverage", "catch_rate", "false_flag_rate"} <= set(summary)
    metrics = list(csv.DictReader(open(tmp_path / "eval" / "metrics.csv")))
    errors = [abs(float(r["dice_estimate"]) - float(r["dice"])) for r in metrics]
    assert np.mean(errors) == pytest.approx(summary["mae"], abs=1e-3)
    with Image.open(tmp_path / "eval" / "calibration.png") as picture:
        assert picture.format == "PNG" and picture.size[0] > 300


def test_a_degraded_film_gets_a_lower_estimate_and_is_flagged(segmenter, shared_data):
    import medlung
    from medlung.estimation.degrade import degrade

    row = held_out_films(shared_data, 1)[0]
    film = medlung.load_film(shared_data / "shenzhen" / row["image"])
    clean = segmenter(film)
    inverted = segmenter(degrade(film, "inverted")[0])
    assert clean.dice_estimate is not None and inverted.dice_estimate is not None
    assert inverted.dice_estimate.dice < clean.dice_estimate.dice - 0.1
    assert "low_dice_estimate" in [r.code for r in inverted.qc_reasons]
    assert "low_dice_estimate" not in [r.code for r in clean.qc_reasons]
