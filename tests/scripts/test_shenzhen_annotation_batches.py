"""scripts/shenzhen_annotation_batches.py finds the annotation batches and writes their section into the card."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medlung.evaluation import evaluate

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "shenzhen_annotation_batches.py"


def _run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def _evaluation_folder(folder: Path, part: str, films: dict[str, tuple[float, float]]) -> Path:
    """A folder as ``medlung evaluate`` writes it, with (Dice, left-lung Dice) per film."""
    folder.mkdir()
    (folder / "summary.json").write_text(
        json.dumps(
            {
                "part": part,
                "worst_by_dice": [{"film": film} for film, _ in sorted(films.items(), key=lambda item: item[1][0])],
            }
        )
    )
    with open(folder / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["film", "status", "per_lung", "dice", "dice_left"])
        writer.writeheader()
        for film, (dice, left) in films.items():
            writer.writerow({"film": film, "status": "ok", "per_lung": "yes", "dice": dice, "dice_left": left})
        writer.writerow({"film": "CHNCXR_0040_0", "status": "failed", "per_lung": "", "dice": "", "dice_left": ""})
        writer.writerow({"film": "other_film", "status": "ok", "per_lung": "yes", "dice": 0.5, "dice_left": 0.5})
    Image.fromarray(np.full((20, 30, 3), 128, np.uint8)).save(folder / "worst.png")
    return folder


def _masks(folder: Path, films: list[str], left_columns: int) -> None:
    """Per-lung masks: a right lung of 10x10 pixels and a left lung of 10 x ``left_columns``."""
    folder.mkdir(exist_ok=True)
    for film in films:
        for side, width in (("R", 10), ("L", left_columns)):
            mask = np.zeros((16, 16), np.uint8)
            mask[:10, :width] = 255
            Image.fromarray(mask).save(folder / f"{film}_lung_{side}.png")


def test_the_bin_where_low_left_lung_dice_is_common_is_flagged_and_reported(tmp_path):
    batch = {f"CHNCXR_{n:04d}_0": (0.90, 0.80 if n % 2 else 0.97) for n in range(1, 11)}  # 5 of 10 low
    others = {f"CHNCXR_{n:04d}_1": (0.97, 0.96) for n in range(11, 31)}
    others["CHNCXR_0025_1"] = (0.93, 0.85)  # one low film in an otherwise good bin
    training = _evaluation_folder(tmp_path / "training", "training", {**batch, **others})
    test = _evaluation_folder(
        tmp_path / "test",
        "test",
        {
            "CHNCXR_0005_0": (0.80, 0.70),  # also in training: skipped
            "CHNCXR_0031_1": (0.98, 0.97),
        },
    )
    masks = tmp_path / "masks"
    _masks(masks, list(batch), left_columns=9)
    _masks(masks, [*list(others), "CHNCXR_0031_1"], left_columns=8)
    bundle = tmp_path / "bundle"
    (bundle / "docs").mkdir(parents=True)
    card = bundle / "docs" / "README.md"
    card.write_text(
        "# card\n<!-- medlung:evaluation:begin -->\ntables\n<!-- medlung:evaluation:end -->\n\n## How to run\n"
    )

    done = _run(
        "--eval",
        training,
        "--eval",
        test,
        "--masks",
        masks,
        "--bundle",
        bundle,
        "--montage",
        training,
        "--bin-size",
        10,
    )
    assert done.returncode == 0, done.stderr
    text = card.read_text()
    assert text.index("medlung:evaluation:end") < text.index("medlung:annotations:begin") < text.index("## How to run")
    assert (
        "**5 of the 6 films with a left-lung Dice below 0.88** lie in 1 of the 4 bins, which hold 10 of the 31" in text
    )
    assert "| CHNCXR_0001-0010 | 10 / 0 / 0 | 5 | 0.8850 | 0.900 / n/a |" in text
    assert "| all other films | 20 / 0 / 1 | 1 | 0.9552 | n/a / 0.800 |" in text
    assert "| test | outside the batches | 1 | 0.9800 | 0.9800 | 0.9800 |" in text
    assert "| training | inside the batches | 10 | 0.9000 | 0.9000 | 0.9000 |" in text
    assert "(5 of them in those batches): CHNCXR_0001_0 (in a batch)" in text
    assert (bundle / "docs" / "images" / "annotation_batches.png").is_file()
    assert (bundle / "docs" / "images" / "annotation_batches_worst.png").is_file()

    again = _run("--eval", training, "--eval", test, "--bundle", bundle, "--bin-size", 10, "--share", 0.6)
    assert again.returncode == 0, again.stderr
    text = card.read_text()
    assert text.count("medlung:annotations:begin") == 1 and "lie in 0 of the 4 bins" in text and "## How to run" in text


def test_folders_without_shenzhen_films_are_refused_with_a_one_line_error(tmp_path):
    folder = _evaluation_folder(tmp_path / "eval", "test", {})
    done = _run("--eval", folder)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "no Shenzhen film" in done.stderr and str(folder) in done.stderr


@pytest.mark.slow
def test_the_shipped_model_misses_the_left_lung_of_the_real_batch_films(tmp_path, shared_data, shipped_bundle):
    """On real films, the shipped model's left-lung Dice is low in the batch films and high elsewhere."""
    shenzhen = shared_data / "shenzhen"
    batch = ["CHNCXR_0002_0", "CHNCXR_0034_0", "CHNCXR_0297_0", "CHNCXR_0339_1"]
    elsewhere = ["CHNCXR_0102_0", "CHNCXR_0104_0", "CHNCXR_0577_1", "CHNCXR_0578_1"]
    data = tmp_path / "films.csv"
    data.write_text(
        "image,mask\n"
        + "".join(f"{shenzhen}/images/{film}.png,{shenzhen}/masks/{film}_lungs.png\n" for film in batch + elsewhere)
    )
    evaluate(shipped_bundle, data, tmp_path / "eval", part="all")

    done = _run(
        "--eval",
        tmp_path / "eval",
        "--masks",
        shenzhen / "masks",
        "--bin-size",
        50,
        "--min-films",
        1,
        "--share",
        0.5,
        "--figure",
        tmp_path / "figure.png",
    )
    assert done.returncode == 0, done.stderr
    flagged = [line.split(" |")[0] for line in done.stdout.splitlines() if line.startswith("| CHNCXR_")]
    assert flagged == ["| CHNCXR_0001-0050", "| CHNCXR_0251-0300", "| CHNCXR_0301-0350"]
    assert "**4 of the 4 films with a left-lung Dice below 0.88**" in done.stdout
    assert (tmp_path / "figure.png").is_file()
