"""scripts/model_card_evaluation.py fills the model card's evaluation section from measured folders."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "model_card_evaluation.py"


def _evaluation_folder(folder: Path, model: dict | None) -> Path:
    folder.mkdir()
    stats = {"mean": 0.961, "median": 0.97, "p5": 0.921, "min": 0.85}
    summary = {
        "films": 2,
        "ok": 2,
        "unit": "px",
        "model": model,
        "metrics": {
            "dice": stats,
            "dice_right": {"mean": 0.965},
            "dice_left": {"mean": 0.955},
            "iou": {"mean": 0.93},
            "hd95": {"mean": 12.5, "median": 6.0},
            "assd": {"mean": 3.1},
        },
        "worst_by_dice": [
            {"film": "CHNCXR_0043_0", "dice": 0.85, "dice_right": 0.86, "dice_left": 0.84, "hd95": 60.0, "unit": "px"}
        ],
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    with open(folder / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["film", "segment_seconds"])
        writer.writeheader()
        writer.writerows([{"film": "a", "segment_seconds": "0.2"}, {"film": "b", "segment_seconds": "0.4"}])
    for name in ("boxplot.png", "worst.png"):
        Image.fromarray(np.full((20, 30, 3), 128, np.uint8)).save(folder / name)
    return folder


def _run_folder(folder: Path) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps(
            {
                "network": "basicunet",
                "features": [16, 16, 32, 64, 128, 16],
                "parameters": 495922,
                "working_spacing": 1.4,
                "roi_size": 256,
                "epochs": 3,
            }
        )
    )
    with open(folder / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["epoch", "val_dice", "seconds"])
        writer.writeheader()
        writer.writerows(
            [
                {"epoch": 1, "val_dice": 0.90, "seconds": 60},
                {"epoch": 2, "val_dice": 0.95, "seconds": 60},
                {"epoch": 3, "val_dice": 0.94, "seconds": 60},
            ]
        )
    return folder


def test_section_between_the_markers_is_replaced_with_the_measured_tables(tmp_path):
    bundle = tmp_path / "bundle"
    (bundle / "docs").mkdir(parents=True)
    card = bundle / "docs" / "README.md"
    card.write_text(
        "# card\n\nbefore\n<!-- medlung:evaluation:begin -->\nold text\n<!-- medlung:evaluation:end -->\nafter\n"
    )
    model = {
        "network": "basicunet",
        "features": [16, 16, 32, 64, 128, 16],
        "parameters": 495922,
        "working_spacing_mm": 1.4,
        "roi_size": 256,
    }
    shipped = _evaluation_folder(tmp_path / "eval_shipped", model)
    predictions = _evaluation_folder(tmp_path / "eval_folder", None)
    run = _run_folder(tmp_path / "run")
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--bundle",
            str(bundle),
            "--eval",
            f"shipped={shipped}",
            "--eval",
            f"masks={predictions}",
            "--run",
            f"shipped run={run}",
            "--note",
            "A note.",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    text = card.read_text()
    assert "old text" not in text and text.startswith("# card\n\nbefore\n") and text.endswith("after\n")
    assert (
        "| shipped | 495,922 | 1.4 mm / 256 px | 2/2 | 0.9610 | 0.9700 | 0.9210 | 0.8500 | 0.9650 | 0.9550 | "
        "0.9300 | 12.5 / 6.0 px | 3.10 px | 0.30 |"
    ) in text
    assert "| masks | n/a | n/a | 2/2 |" in text
    assert (
        "| shipped run | `basicunet` | 16,16,32,64,128,16 | 495,922 | 1.4 mm / 256 px | 3 of 3 | 0.9500 (2) | 3 min |"
        in text
    )
    assert "| CHNCXR_0043_0 | 0.8500 | 0.8600 | 0.8400 | 60.0 px |" in text and "A note." in text
    assert (bundle / "docs" / "images" / "test_worst.png").is_file()
