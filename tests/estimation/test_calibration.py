"""The Dice estimate's numpy parts: isotonic map, regressor and interval, file round trip, agreement numbers,
shape model and evidence, on small generated data (no network)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medlung.estimation import calibration as cal
from medlung.estimation.agreement import estimate_agreement
from medlung.estimation.evidence import film_evidence
from medlung.estimation.shape_model import SIDE, ShapeModel, normalised


def test_isotonic_knots_are_the_least_squares_monotone_fit():
    x = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    y = np.array([1.0, 3.0, 2.0, 4.0, 0.0])
    knots_x, knots_y = cal.isotonic_knots(x, y)
    fitted = np.interp(x, knots_x, knots_y)
    assert np.all(np.diff(fitted) >= 0)
    # pool-adjacent-violators: (3, 2) pool to 2.5, then (4, 0) pools with them to 2.25 -> [1, 2.25 x 4]
    np.testing.assert_allclose(fitted, [1.0, 2.25, 2.25, 2.25, 2.25])


def synthetic(n: int, seed: int):
    """Films whose true error follows one evidence value (plus noise) and a second, useless one."""
    rng = np.random.default_rng(seed)
    error = np.exp(rng.uniform(np.log(0.01), np.log(0.5), n))
    rows = [
        {"both.soft_error": e * np.exp(rng.normal(0, 0.15)), "both.noise": rng.uniform(0, 1), "both.band": np.nan}
        for e in error
    ]
    return rows, 1 - error


def test_the_regressor_learns_the_error_and_its_interval_covers_about_80_percent():
    rows, dice = synthetic(400, 0)
    names, log = ["both.soft_error", "both.noise", "both.band"], [True, False, True]
    regressor, out_of_fold = cal.fit_regressor(rows, dice, names, log, np.arange(len(rows)))
    assert len(out_of_fold) == len(rows)
    test_rows, test_dice = synthetic(300, 1)
    estimates = np.array([regressor.predict(r) for r in test_rows])
    numbers = estimate_agreement(estimates[:, 0], test_dice, estimates[:, 1], estimates[:, 2])
    assert numbers["pearson"] > 0.95
    assert 0.7 <= numbers["coverage"] <= 0.9
    assert np.all(estimates[:, 1] <= estimates[:, 0]) and np.all(estimates[:, 0] <= estimates[:, 2])
    # the useless evidence carries little weight; the missing one (NaN everywhere) none that breaks anything
    coef = dict(zip(names, regressor.coef, strict=True))
    assert abs(coef["both.noise"]) < abs(coef["both.soft_error"]) / 5


def test_a_calibration_survives_its_file(tmp_path):
    rows, dice = synthetic(120, 2)
    regressor, _ = cal.fit_regressor(rows, dice, ["both.soft_error"], [True], np.arange(len(rows)))
    shapes = {"both": ShapeModel.fit(np.random.default_rng(0).uniform(0, 1, (30, SIDE * SIDE)))}
    calibration = cal.DiceCalibration(
        "9.9.9", {"field": shapes}, {"field": {"fast": {"both": regressor}}}, {"weights_sha256": "x"}
    )
    path = calibration.save(tmp_path / cal.FILE_NAME)
    again = cal.DiceCalibration.load(path)
    assert again.levels("field") == ["fast"] and again.levels("anatomical") == []
    assert again.regressors["field"]["fast"]["both"].predict(rows[0]) == pytest.approx(regressor.predict(rows[0]))
    image = np.random.default_rng(1).uniform(0, 1, SIDE * SIDE)
    assert again.shapes["field"]["both"].measure(image) == pytest.approx(shapes["both"].measure(image), abs=1e-4)
    text = json.loads(path.read_text())
    text["format"] = 99
    with pytest.raises(ValueError, match="format"):
        cal.DiceCalibration.from_dict(text)


def test_a_calibration_fitted_for_other_weights_is_not_used(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model.pt").write_bytes(b"new weights")
    rows, dice = synthetic(60, 3)
    regressor, _ = cal.fit_regressor(rows, dice, ["both.soft_error"], [True], np.arange(len(rows)))
    fitted = {"weights_sha256": cal.weights_digest(tmp_path / "models" / "model.pt")}
    calibration = cal.DiceCalibration("1.0.0", {}, {"field": {"fast": {"both": regressor}}}, fitted)
    calibration.save(tmp_path / "models" / cal.FILE_NAME)
    found, problem = cal.bundle_calibration(tmp_path)
    assert found is not None and problem is None
    (tmp_path / "models" / "model.pt").write_bytes(b"other weights")
    found, problem = cal.bundle_calibration(tmp_path)
    assert found is None and "fitted for other weights" in problem
    assert cal.bundle_calibration(tmp_path / "nowhere") == (None, None)


def test_agreement_counts_the_flag_record():
    true = [0.85, 0.88, 0.97, 0.96, 0.93]
    estimated = [0.86, 0.93, 0.96, 0.89, 0.93]
    numbers = estimate_agreement(estimated, true, threshold=0.90)
    assert numbers["n"] == 5 and numbers["mae"] == pytest.approx(0.028)
    assert (numbers["below"], numbers["caught"], numbers["catch_rate"]) == (2, 1, 0.5)
    assert (numbers["good"], numbers["false_flags"], numbers["false_flag_rate"]) == (2, 1, 0.5)
    assert estimate_agreement([0.9, None], [0.9, 0.8])["n"] == 1


def lungs(rows: int = 120, cols: int = 120, sharp: float = 4.0):
    """Two elliptic lungs and a margin falling off at ``sharp`` logits per pixel from their edge."""
    r, c = np.mgrid[:rows, :cols]
    right = ((r - 60) / 40) ** 2 + ((c - 35) / 18) ** 2
    left = ((r - 60) / 40) ** 2 + ((c - 85) / 18) ** 2
    distance = np.minimum(np.sqrt(right), np.sqrt(left)) - 1.0
    margin = (-distance * 20 * sharp).astype(np.float32)
    labels = np.where(right < 1, 1, np.where(left < 1, 2, 0)).astype(np.uint8)
    return margin, labels


def test_a_blurred_margin_is_worse_evidence_than_a_sharp_one():
    sharp = film_evidence(*lungs(sharp=4.0))
    blurred = film_evidence(*lungs(sharp=0.3))
    for name in ("both.soft_error", "both.band", "right.soft_error", "left.band"):
        assert blurred[name] > sharp[name]
    assert blurred["both.edge"] < sharp["both.edge"]
    empty = film_evidence(np.full((50, 50), -5, np.float32), np.zeros((50, 50), np.uint8))
    assert empty["both.soft_error"] == 1.0


def test_the_shape_model_tells_a_lung_from_a_blob():
    _, labels = lungs()
    images = []
    for shift in range(-6, 7, 2):  # lungs of slightly different shapes
        images.append(normalised(np.roll(labels == 1, shift, axis=0) | np.roll(labels == 2, -shift, axis=0)))
    model = ShapeModel.fit(np.array(images))
    typical = model.measure(normalised(labels > 0))
    blob = model.measure(normalised(np.pad(np.ones((30, 30), bool), 20)))
    assert blob[1] > 2 * typical[1]
    assert model.measure(None) == (10.0, 1.0)


def test_evidence_of_a_film_of_one_working_pixel_is_still_evidence():
    evidence = film_evidence(np.ones((1, 1), np.float32), np.ones((1, 1), np.uint8))
    assert evidence["both.edge"] == 0.0 and np.isfinite(evidence["both.soft_error"])
