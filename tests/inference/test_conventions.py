"""The two lung conventions through every door, with the shipped model on real sick films."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from medlung.cli import cli
from medlung.io import load_film
from medlung.io.masks import load_label_map
from tests.conftest import dice

#: covid_v7 test films (one per view: PA, AP, AP Supine, and a film with an ignore mask), read from splits.csv.
VIEWS = ("PA", "AP", "AP Supine")


@pytest.fixture(scope="module")
def covid_test(shared_data):
    with open(shared_data / "covid_v7" / "splits.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == "test"]
    chosen = [next(r for r in rows if r["view"] == view) for view in VIEWS]
    chosen += [next(r for r in rows if r["ignore"] and r not in chosen)] if any(r["ignore"] for r in rows) else []
    base = shared_data / "covid_v7"
    return [
        {
            **r,
            "image": base / r["image"],
            "mask": base / r["mask"],
            "ignore": base / r["ignore"] if r["ignore"] else None,
        }
        for r in chosen
    ]


@pytest.fixture(scope="module")
def both(shipped_bundle):
    from medlung.inference import Segmenter

    return {lungs: Segmenter(shipped_bundle, device="cpu", lungs=lungs) for lungs in ("field", "anatomical")}


@pytest.mark.slow
def test_shipped_model_draws_whole_sick_lungs_and_field_inside_them(covid_test, both):
    for row in covid_test:
        film = load_film(row["image"])
        anatomical, field = both["anatomical"](film), both["field"](film)
        truth = load_label_map(row["mask"], film.shape) > 0
        keep = ~(load_label_map(row["ignore"], film.shape) > 0) if row["ignore"] else np.ones(film.shape, bool)
        score = dice(anatomical.lungs & keep, truth & keep)
        assert score >= 0.85, f"{row['image'].name} ({row['view']}): anatomical Dice {score:.3f}"
        outside = field.lungs & ~anatomical.lungs
        assert outside.sum() <= 0.002 * field.lungs.sum(), f"{row['image'].name}: field outside anatomical"
        assert anatomical.convention == "anatomical" and field.convention == "field"
        assert anatomical.areas_px["total"] >= field.areas_px["total"]


@pytest.mark.slow
def test_lungs_reaches_predict_report_and_seg(shared_data, shipped_bundle, tmp_path):
    import pydicom

    films = tmp_path / "in"
    films.mkdir()
    shutil.copy(shared_data / "dicom" / "CR-MONO1-10-chest.dcm", films)
    outputs = {}
    for lungs in ("field", "anatomical"):
        out = tmp_path / lungs
        result = CliRunner().invoke(
            cli,
            [
                "predict",
                str(films),
                "-o",
                str(out),
                "--bundle",
                str(shipped_bundle),
                "--lungs",
                lungs,
                "--device",
                "cpu",
            ],
            obj={},
        )
        assert result.exit_code == 0, result.output
        (row,) = json.loads((out / "report.json").read_text())
        assert row["lungs"] == lungs
        seg = pydicom.dcmread(out / "CR-MONO1-10-chest_seg.dcm")
        labels = [s.SegmentLabel for s in seg.SegmentSequence]
        assert labels == (
            ["Right lung field", "Left lung field"]
            if lungs == "field"
            else ["Right lung (anatomical)", "Left lung (anatomical)"]
        )
        outputs[lungs] = seg.SOPInstanceUID
    assert outputs["field"] != outputs["anatomical"]  # a different output never reuses a UID


def test_asking_a_field_only_model_for_anatomical_lungs_is_one_clear_error(tmp_path, shenzhen_film):
    """A softmax (field-only) model, as bundles up to 1.1.0 shipped, refuses the anatomical convention."""
    import torch

    from medlung.inference import Segmenter
    from medlung.networks import build_network

    net = build_network("basicunet", (4, 4, 8, 8, 16, 4), out_channels=2)
    checkpoint = tmp_path / "best.pt"
    torch.save(
        {
            "model": net.state_dict(),
            "epoch": 1,
            "network": {"name": "basicunet", "features": [4, 4, 8, 8, 16, 4]},
            "preprocessing": {"working_spacing": 2.0, "roi_size": 64},
        },
        checkpoint,
    )
    assert Segmenter(checkpoint, device="cpu").lungs == "field"
    with pytest.raises(ValueError, match="field lung convention only"):
        Segmenter(checkpoint, device="cpu", lungs="anatomical")
    result = CliRunner().invoke(
        cli,
        [
            "predict",
            str(shenzhen_film),
            "-o",
            str(tmp_path / "out"),
            "--bundle",
            str(checkpoint),
            "--lungs",
            "anatomical",
        ],
        obj={},
    )
    assert result.exit_code != 0 and "field lung convention only" in result.output
