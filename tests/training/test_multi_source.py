"""Multi-source training: the datalist of the three shared sets, a short run over all of them, old run folders."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from medlung.plans import ModelPlan
from medlung.training.config import TrainConfig
from tests.conftest import REPO
from tests.training.test_train import medlung

SAMPLING = "shenzhen/field=0.35,shenzhen/anatomical=0.15,montgomery/field=0.2,covid_v7/anatomical=0.3"
TINY_ARGS = ["--features", "8,8,16,32,64,8", "--roi-size", "96", "--spacing", "4", "--batch-size", "4"]
GROUPS = ("covid_v7_anatomical", "montgomery_field", "shenzhen_anatomical", "shenzhen_field")


def _script():
    spec = importlib.util.spec_from_file_location(
        "multi_source_datalist", REPO / "scripts" / "multi_source_datalist.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_datalist_counts_per_source_and_convention(shared_data, tmp_path):
    script = _script()
    counts = script.write_datalist(shared_data, tmp_path / "all.csv")
    assert counts == {
        ("shenzhen", "field", "train"): 335,
        ("shenzhen", "field", "val"): 76,
        ("shenzhen", "field", "test"): 72,
        ("shenzhen", "anatomical", "train"): 61,
        ("shenzhen", "anatomical", "val"): 9,
        ("shenzhen", "anatomical", "test"): 13,
        ("montgomery", "field", "train"): 48,
        ("montgomery", "field", "val"): 11,
        ("montgomery", "field", "test"): 10,
        ("covid_v7", "anatomical", "train"): 130,
        ("covid_v7", "anatomical", "val"): 31,
        ("covid_v7", "anatomical", "test"): 31,
    }
    from medlung.io.datasets import find_datalist

    datalist = find_datalist(tmp_path / "all.csv")
    entries = datalist.parts["training"]
    assert len(entries) == 574 and {e["source"] for e in entries} == {"shenzhen", "montgomery", "covid_v7"}
    covid = [e for e in datalist.all_entries() if e["source"] == "covid_v7"]
    assert all(e["lungs"] == "anatomical" for e in covid) and sum(bool(e["ignore"]) for e in covid) > 0
    # a held-out hospital: its train and val films validate only, its test films are left out
    held = script.write_datalist(shared_data, tmp_path / "held.csv", held_out_source="montgomery")
    assert held[("montgomery", "field", "val")] == 59
    assert not any(k[0] == "montgomery" and k[2] != "val" for k in held) and not any(k[2] == "test" for k in held)
    assert held[("shenzhen", "field", "train")] == 335


def _few_of_each(source_csv: Path, path: Path, counts: dict) -> Path:
    """The first ``counts[split]`` films of each source/convention group of a multi-source CSV."""
    rows = list(csv.DictReader(open(source_csv, newline="")))
    taken: dict = {}
    kept = []
    for row in rows:
        key = (row["source"], row["lungs"], row["split"])
        if taken.get(key, 0) < counts[row["split"]]:
            taken[key] = taken.get(key, 0) + 1
            kept.append(row)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    return path


@pytest.fixture(scope="module")
def few_csv(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("multi")
    _script().write_datalist(shared_data, folder / "all.csv")
    return _few_of_each(folder / "all.csv", folder / "few.csv", {"train": 2, "val": 1, "test": 1})


@pytest.mark.slow  # a training run
def test_one_epoch_multi_source_run_reports_every_source(few_csv, tmp_path):
    run = tmp_path / "run"
    result = medlung(
        "train", few_csv, "-o", run, "--epochs", "1", "--augmentations", "all", "--sampling", SAMPLING,
        "--samples-per-epoch", "12", "--consistency-weight", "0.1", "--keep-epochs", "1", *TINY_ARGS,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "training films per group: covid_v7/anatomical 2, montgomery/field 2" in result.stdout
    assert "sampling: covid_v7/anatomical 30%, montgomery/field 20%" in result.stdout
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert len(rows) == 1
    for group in GROUPS:
        assert 0 <= float(rows[0][f"val_dice_{group}"]) <= 1, group
    assert float(rows[0]["val_dice"]) == pytest.approx(
        sum(float(rows[0][f"val_dice_{g}"]) for g in GROUPS) / 4, abs=1e-5
    )
    config = json.loads((run / "config.json").read_text())
    assert config["plan"]["conventions"] == ["field", "anatomical"] and config["plan"]["roi_size"] == 96
    assert config["sampling"]["montgomery/field"] == 0.2 and "histogram" in config["augmentations"]
    assert (run / "epoch001.pt").is_file() and (run / "curves_groups.png").is_file()
    state = torch.load(run / "epoch001.pt", weights_only=True)
    assert state["epoch"] == 1 and TrainConfig.from_dict(state["config"]).augmentations == tuple(
        config["augmentations"]
    )


#: config.json of a run written before TrainConfig held the plan (model 2.0.0's layout).
def _old_layout(config: dict) -> dict:
    plan = config["plan"]
    old = {k: v for k, v in config.items() if k not in ("plan", "conventions_from_data")}
    for key in ("augmentations", "sampling", "samples_per_epoch", "consistency_weight", "keep_epochs"):
        old.pop(key, None)
    old.update(
        network=plan["network"],
        features=plan["features"],
        roi_size=plan["roi_size"],
        working_spacing=plan["working_spacing"],
        overlap=plan["overlap"],
        intensity_percentiles=plan["intensity_percentiles"],
        conventions=None,
    )
    return old


def test_train_config_reads_the_old_flat_layout_and_round_trips():
    old = {
        "data": "d.csv",
        "output": "run",
        "network": "basicunet",
        "features": [8, 8, 16, 32, 64, 8],
        "roi_size": 96,
        "working_spacing": 4.0,
        "overlap": 0.5,
        "intensity_percentiles": [1.0, 99.0],
        "conventions": None,
        "epochs": 3,
        "sick_film_prob": 0.4,
        "device_used": "cpu",
    }
    config = TrainConfig.from_dict(old)
    assert config.plan == ModelPlan(
        features=(8, 8, 16, 32, 64, 8),
        roi_size=96,
        working_spacing=4.0,
        overlap=0.5,
        intensity_percentiles=(1.0, 99.0),
        head="sigmoid",
    )
    assert config.conventions_from_data and config.augmentations is None and config.epochs == 3
    assert TrainConfig.from_dict(config.to_dict()) == config
    fixed = TrainConfig.from_dict({**old, "conventions": ["anatomical"]})
    assert not fixed.conventions_from_data and fixed.plan_with(("field",)).conventions == ("anatomical",)


@pytest.mark.slow  # two short training runs and an export
def test_an_old_run_folder_resumes_and_exports(few_csv, tmp_path):
    from medlung.training.loop import Trainer

    run = tmp_path / "old"
    config = TrainConfig.from_dict(
        dict(data=str(few_csv), output=str(run), epochs=2, features=(8, 8, 16, 32, 64, 8), roi_size=96,
             working_spacing=4.0, batch_size=4, precision="fp32")
    )  # fmt: skip
    Trainer(config, log=lambda *_: None).fit(stop_after=1)
    # rewrite the run as medlung up to model 2.0.0 wrote it: flat plan fields in config.json and checkpoints
    record = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**_old_layout(record), "plan": record["plan"]}))
    for name in ("best.pt", "last.pt"):
        state = torch.load(run / name, weights_only=True)
        state["config"] = _old_layout(state["config"])
        torch.save(state, run / name)
    result = medlung("train", "--resume", run)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [int(r["epoch"]) for r in csv.DictReader(open(run / "metrics.csv"))] == [1, 2]
    bundle = tmp_path / "bundle"
    result = medlung("export", run, "-o", bundle, "--version", "0.0.1")
    assert result.returncode == 0, result.stderr[-2000:]
    from medlung.networks.loading import load_model

    _, spec = load_model(bundle, "cpu")
    assert spec.plan.conventions == ("field", "anatomical") and spec.plan.roi_size == 96
