"""``medlung evaluate --only-predicted``: score the films that have a prediction, say how many were skipped;
the closing line names the films it scored the way summary.json does."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.cli.test_evaluate import FILMS, data_csv, read_rows, run, shenzhen, truth_as_predictions  # noqa: F401


@pytest.mark.slow
def test_only_predicted_scores_the_films_with_a_prediction(truth_as_predictions, data_csv, tmp_path):
    (truth_as_predictions / f"{FILMS[1]}_lungs.png").unlink()
    everything = run("evaluate", truth_as_predictions, data_csv, "-o", tmp_path / "all")
    assert everything.exit_code == 1  # without the option a film without prediction is an error row
    result = run("evaluate", truth_as_predictions, data_csv, "-o", tmp_path / "some", "--only-predicted")
    assert result.exit_code == 0, result.output + result.stderr
    assert sorted(read_rows(tmp_path / "some")) == sorted([FILMS[0], FILMS[2]])
    summary = json.loads((tmp_path / "some" / "summary.json").read_text())
    assert summary["films"] == 2 and summary["ok"] == 2 and summary["skipped_without_prediction"] == 1
    assert "scored 2 of 2 films (test part), skipped 1 without a prediction" in result.output
    model = run("evaluate", truth_as_predictions.parent / "missing", data_csv, "-o", tmp_path / "m", "--only-predicted")
    assert model.exit_code == 2
    (tmp_path / "no_predictions").mkdir()
    none = run("evaluate", tmp_path / "no_predictions", data_csv, "-o", tmp_path / "n", "--only-predicted")
    assert none.exit_code == 2 and "3 without a prediction" in none.stderr  # nothing to do: a usage error
    assert not (tmp_path / "n").exists()


def test_data_without_a_split_is_not_called_the_test_part(truth_as_predictions, shenzhen, tmp_path):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    for stem in FILMS:
        shutil.copy(shenzhen / "images" / f"{stem}.png", data / "images")
        shutil.copy(shenzhen / "masks" / f"{stem}_lungs.png", data / "masks")
    result = run("evaluate", truth_as_predictions, data, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output + result.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert any("part 'test' ignored" in note for note in summary["notes"])
    assert "(test part)" not in result.output
    assert "scored 3 of 3 films (every film: DATA has no split)" in result.output
