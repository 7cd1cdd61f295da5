"""The exported model card and metadata describe the run that was exported: its options, its data, its time."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from medlung.bundle import model_card
from medlung.bundle.export import RunRecord, build_metadata

SETTINGS = dict(
    network="basicunet",
    features=[8, 8, 16, 32, 64, 8],
    working_spacing=3.0,
    roi_size=128,
    epochs=2,
    batch_size=4,
    lr=0.01,
    weight_decay=1e-4,
    seed=3,
    val_fraction=0.2,
    limit=8,
    strict=True,
    overlap=0.25,
)


def record(tmp_path: Path, data: str, images: list[str], seconds: float = 21.0) -> RunRecord:
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "split.json").write_text(
        json.dumps({"training": [{"image": i, "label": i} for i in images], "validation": [], "test": []})
    )
    config = {
        "data_summary": {"source": f"CSV {data}", "training": len(images), "validation": 1, "test": 1},
        "versions": {"monai": "1.6", "torch": "2.13", "numpy": "2.0"},
    }
    return RunRecord(
        run_dir=run,
        state={},
        settings={**SETTINGS, "data": data},
        config=config,
        summary={"seconds": seconds, "images_per_s": 3.0, "test": {"dice": 0.9, "iou": 0.8}},
        epoch=2,
        best={"epoch": 2, "val_dice": 0.91},
        history=[],
    )


def test_retrain_command_keeps_every_option_and_a_reproducible_data_path(tmp_path, monkeypatch):
    command = model_card.retrain_command({**SETTINGS, "data": "runs/small.csv", "init": str(tmp_path / "old")})
    words = shlex.split(command)
    assert words[words.index("--limit") + 1] == "8"
    assert words[words.index("--val-fraction") + 1] == "0.2" and "--strict" in words
    assert words[2] == "runs/small.csv"  # under the folder export runs from: shown relative to it
    assert Path(words[words.index("--init") + 1]).is_absolute()  # elsewhere: absolute
    monkeypatch.chdir(tmp_path)
    assert Path(shlex.split(model_card.retrain_command({**SETTINGS, "data": "/elsewhere/x.csv"}))[2]).is_absolute()


def test_short_training_time_is_in_seconds(tmp_path):
    short = record(tmp_path, "/data/x.csv", ["/data/a.png"])
    card = model_card.readme(short, build_metadata(short, "0.0.1"), 0.0)
    line = next(line for line in card.splitlines() if line.startswith("| training time"))
    assert "21 s" in line and "0 min" not in line
    run = record(tmp_path, "/data/x.csv", ["/data/a.png"], seconds=5400)
    long = model_card.readme(run, build_metadata(run, "0.0.1"), 0.0)
    assert "90 min" in next(line for line in long.splitlines() if line.startswith("| training time"))


def test_metadata_of_a_run_on_other_data_claims_no_shenzhen_provenance(tmp_path):
    other = record(tmp_path, "/data/covid.csv", ["/data/covid_v7/images/a.png", "/data/covid_v7/images/b.png"])
    meta = build_metadata(other, "0.0.1")
    for key in ("description", "copyright", "data_source", "license", "intended_use"):
        assert "Shenzhen" not in meta[key] and "Stirenko" not in meta[key], (key, meta[key])
    assert "/data/covid.csv" in meta["data_source"]
    card = model_card.readme(other, meta, 0.0)
    assert "Shenzhen Hospital X-ray Set" not in card
    assert "Shenzhen" not in model_card.licence_text(meta)

    shenzhen = record(tmp_path, "/data/shenzhen/splits.csv", ["/data/shenzhen/images/CHNCXR_0001_0.png"])
    meta = build_metadata(shenzhen, "0.0.1")
    assert "Shenzhen Hospital X-ray Set" in meta["data_source"] and "CC-BY-NC-SA-4.0" in meta["license"]


def test_a_multi_source_run_names_every_source_and_its_settings(tmp_path):
    images = [
        "/d/shenzhen/images/CHNCXR_0001_0.png",
        "/d/montgomery/images/MCUCXR_0003_0.png",
        "/d/covid_v7/images/a.png",
    ]
    run = record(tmp_path, "/d/multi_source.csv", images)
    run.settings.update(
        head="sigmoid",
        augmentations=["affine", "tone"],
        sampling={"shenzhen/field": 0.5, "montgomery/field": 0.5},
        samples_per_epoch=100,
        consistency_weight=0.1,
    )
    meta = build_metadata(run, "0.0.1")
    assert meta["training"]["sources"] == ["covid_v7", "montgomery", "shenzhen"]
    assert "Montgomery County X-ray Set" in meta["data_source"] and "Montgomery" in meta["intended_use"]
    assert meta["training"]["settings"]["sampling"] == {"shenzhen/field": 0.5, "montgomery/field": 0.5}
    assert "Montgomery County X-ray Set" in model_card.licence_text(meta)
    card = model_card.readme(run, meta, 0.0)
    assert "Montgomery County" in card and "consistency term x0.1" in card and "`tone`" in card
    assert "shenzhen/field 50%" in card
    words = shlex.split(next(line for line in card.splitlines() if line.startswith("medlung train ")))
    assert words[words.index("--augmentations") + 1] == "affine,tone"
    assert words[words.index("--sampling") + 1] == "shenzhen/field=0.5,montgomery/field=0.5"
    assert words[words.index("--consistency-weight") + 1] == "0.1"
    # a source column wins over the file name
    (run.run_dir / "split.json").write_text(
        json.dumps({"training": [{"image": "/x/film.png", "label": "/x/m.png", "source": "montgomery"}]})
    )
    assert model_card.training_sources(run) == {"montgomery"}


def test_exported_card_and_metadata_describe_the_model_through_the_one_generator(tmp_path):
    from medlung.bundle.model_description import generated_sections, head_description

    run = record(tmp_path, "/data/x.csv", ["/data/a.png"])
    run.settings.update(head="sigmoid", conventions=["field", "anatomical"], overlap=0.4)
    meta = build_metadata(run, "0.0.1")
    card = model_card.readme(run, meta, 0.0)
    for block in generated_sections(run.plan, meta).values():
        assert block in card
    head = head_description(run.plan)
    pred = meta["network_data_format"]["outputs"]["pred"]
    assert pred["channel_def"] == head.channels and meta["pred_classes"] == head.pred_classes
    assert pred["postprocessing"].startswith(head.margin) and "overlap 0.4," in card
