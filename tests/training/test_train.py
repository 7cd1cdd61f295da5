"""Short real training runs on Shenzhen films: outputs, loss, resume, DDP, bad data."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from medlung.networks import build_network
from medlung.plans import plan_from_checkpoint
from medlung.training.config import TrainConfig
from medlung.training.loop import Trainer
from tests.conftest import write_shenzhen_csv

TINY = dict(features=(8, 8, 16, 32, 64, 8), roi_size=128, working_spacing=3.0, batch_size=4, precision="fp32")
TINY_ARGS = [
    "--features",
    "8,8,16,32,64,8",
    "--roi-size",
    "128",
    "--spacing",
    "3.0",
    "--batch-size",
    "4",
    "--precision",
    "fp32",
]


def medlung(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "medlung", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "MEDLUNG_NO_PROGRESS": "1", **(env or {})},
    )


@pytest.fixture(scope="module")
def small_csv(shared_data, tmp_path_factory):
    """A CSV with 8 training, 3 validation and 2 test Shenzhen films (real films, real masks)."""
    return write_shenzhen_csv(
        shared_data, tmp_path_factory.mktemp("csv") / "small.csv", {"train": 8, "val": 3, "test": 2}
    )


@pytest.fixture(scope="module")
def finished_run(small_csv, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "run"
    result = medlung("train", small_csv, "-o", run, "--epochs", "3", "--lr", "0.01", *TINY_ARGS)
    assert result.returncode == 0, result.stderr
    return run, result


@pytest.mark.slow  # a training run
def test_training_run_writes_every_output_and_loss_falls(finished_run):
    run, result = finished_run
    assert "8 training, 3 validation films" in result.stdout
    config = json.loads((run / "config.json").read_text())
    assert config["plan"]["network"] == "basicunet" and config["epochs"] == 3 and config["versions"]["torch"]
    assert config["data_summary"]["training"] == 8 and config["data_summary"]["test"] == 2
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert set(rows[0]) >= {"train_loss", "val_loss", "val_dice", "val_iou", "lr", "seconds", "images_per_s"}
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < losses[0]
    for name in ("best.pt", "last.pt"):
        state = torch.load(run / name, weights_only=False)
        assert {"model", "optimizer", "scheduler", "epoch", "plan"} <= set(state)
        plan = plan_from_checkpoint(state)
        assert plan.head == "sigmoid" and plan.conventions == ("field",)  # the CSV names no convention: field
        build_network(**plan.network_def()).load_state_dict(state["model"])
    best = torch.load(run / "best.pt", weights_only=False)
    assert best["best"]["val_dice"] == pytest.approx(max(float(r["val_dice"]) for r in rows), abs=1e-5)
    summary = json.loads((run / "summary.json").read_text())
    assert 0 <= summary["test"]["dice"] <= 1
    for figure in ("curves.png", "samples.png"):
        with Image.open(run / figure) as image:
            assert image.size[0] > 300 and image.size[1] > 300
    split = json.loads((run / "split.json").read_text())
    assert len(split["training"]) == 8 and len(split["validation"]) == 3


@pytest.mark.slow  # a training run
def test_existing_run_is_refused(finished_run, small_csv):
    run, _ = finished_run
    result = medlung("train", small_csv, "-o", run, "--epochs", "1", *TINY_ARGS)
    assert result.returncode == 2 and "run folder exists" in result.stderr and "--resume" in result.stderr


@pytest.mark.slow  # a training run
def test_resume_gives_the_uninterrupted_result(small_csv, tmp_path):
    config = dict(data=str(small_csv), epochs=2, limit=4, **TINY)
    Trainer(TrainConfig.from_dict({**config, "output": str(tmp_path / "whole")}), log=lambda *_: None).fit()
    Trainer(TrainConfig.from_dict({**config, "output": str(tmp_path / "cut")}), log=lambda *_: None).fit(stop_after=1)
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=False)["epoch"] == 1
    result = medlung("train", "--resume", tmp_path / "cut")
    assert result.returncode == 0, result.stderr
    whole = torch.load(tmp_path / "whole" / "last.pt", weights_only=False)
    resumed = torch.load(tmp_path / "cut" / "last.pt", weights_only=False)
    assert resumed["epoch"] == 2
    for key, value in whole["model"].items():
        torch.testing.assert_close(resumed["model"][key], value, rtol=1e-4, atol=1e-5)
    rows = list(csv.DictReader(open(tmp_path / "cut" / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]


@pytest.mark.slow  # a training run
def test_two_process_ddp_with_gloo(small_csv, tmp_path):
    run = tmp_path / "ddp"
    result = medlung("train", small_csv, "-o", run, "--epochs", "2", "--limit", "4", "--nproc", "2", *TINY_ARGS)
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((run / "config.json").read_text())
    assert config["world_size"] == 2
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert len(rows) == 2 and all(0 <= float(r["val_dice"]) <= 1 for r in rows)
    state = torch.load(run / "best.pt", weights_only=False)
    assert not any(k.startswith("module.") for k in state["model"])  # saved unwrapped, loadable alone


@pytest.mark.slow  # two training runs
@pytest.mark.parametrize("deep", [[], ["--deep-supervision"]], ids=["final output", "deep supervision"])
def test_two_process_ddp_trains_unetpp(small_csv, tmp_path, deep):
    # without deep supervision three of its heads get no gradient, which DistributedDataParallel must be told
    run = tmp_path / "ddp"
    args = ["--epochs", "2", "--limit", "4", "--nproc", "2", "--network", "unetpp", *deep, *TINY_ARGS]
    result = medlung("train", small_csv, "-o", run, *args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(list(csv.DictReader(open(run / "metrics.csv")))) == 2


@pytest.fixture
def bad_folder(shared_data, tmp_path):
    """images/ + masks/ with good pairs plus a size mismatch, an empty mask, a broken film and a missing mask."""
    images, masks = tmp_path / "data" / "images", tmp_path / "data" / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    source = shared_data / "shenzhen"
    for i in range(1, 6):
        stem = f"CHNCXR_{i:04d}_0"
        shutil.copy(source / "images" / f"{stem}.png", images)
        shutil.copy(source / "masks" / f"{stem}_lungs.png", masks / f"{stem}_mask.png")
    Image.open(masks / "CHNCXR_0002_0_mask.png").resize((256, 256)).save(masks / "CHNCXR_0002_0_mask.png")
    Image.fromarray(np.zeros((512, 512), np.uint8)).save(masks / "CHNCXR_0003_0_mask.png")
    (images / "CHNCXR_0004_0.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    shutil.copy(source / "images" / "CHNCXR_0006_0.png", images)  # no mask
    return tmp_path / "data"


@pytest.mark.slow
def test_bad_data_is_reported_before_training_and_strict_stops(bad_folder, tmp_path):
    result = medlung("train", bad_folder, "-o", tmp_path / "strict", "--strict", "--epochs", "1", *TINY_ARGS)
    assert result.returncode == 1
    out = result.stdout
    assert "4 film(s) left out" in out
    assert "mask is 256x256 (rows x cols) but its film" in out and "CHNCXR_0002_0.png is 512x512" in out
    assert "CHNCXR_0003_0_mask.png: mask is empty" in out
    assert "CHNCXR_0004_0.png: image could not be decoded" in out
    assert "CHNCXR_0006_0.png: no mask" in out
    assert "--strict" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "strict" / "best.pt").exists()


def test_unetpp_returns_a_tensor():
    net = build_network("unetpp", (8, 8, 16, 32, 64, 8))
    out = net(torch.zeros(1, 1, 64, 64))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 2, 64, 64)
    with pytest.raises(ValueError, match="network must be one of"):
        build_network("resnet")


def test_unetpp_deep_outputs_end_with_its_output_and_script_to_it():
    from medlung.networks import DeepSupervision

    torch.manual_seed(0)
    net = build_network("unetpp", (8, 8, 16, 32, 64, 8)).eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        outputs = DeepSupervision(net)(x)
        assert len(outputs) == 4 and all(o.shape == (1, 2, 64, 64) for o in outputs)
        torch.testing.assert_close(outputs[-1], net(x))
        assert not torch.allclose(outputs[0], outputs[-1])  # four heads, four outputs
        torch.testing.assert_close(torch.jit.script(net)(x), net(x))  # export scripts the final output only
    with pytest.raises(ValueError, match="needs the unetpp network"):
        DeepSupervision(build_network("basicunet", (8, 8, 16, 32, 64, 8)))


@pytest.mark.slow  # two training runs
def test_deep_supervision_trains_the_nested_heads_and_only_them_besides(small_csv, tmp_path):
    from monai.utils import set_determinism

    config = dict(data=str(small_csv), epochs=1, limit=4, network="unetpp", seed=0, **TINY)
    trained = {}
    for deep in (False, True):
        run = tmp_path / f"deep_{deep}"
        Trainer(
            TrainConfig.from_dict({**config, "output": str(run), "deep_supervision": deep}), log=lambda *_: None
        ).fit()
        trained[deep] = torch.load(run / "last.pt", weights_only=False)["model"]
        assert json.loads((run / "config.json").read_text())["deep_supervision"] is deep
    set_determinism(0)  # as the runs start: the same seed, then the network
    initial = build_network("unetpp", TINY["features"], out_channels=1).state_dict()
    set_determinism(None)
    for head in ("net.final_conv_0_1.weight", "net.final_conv_0_2.weight", "net.final_conv_0_3.weight"):
        # without deep supervision these 1x1 heads get no gradient, so AdamW leaves them exactly as they were
        torch.testing.assert_close(trained[False][head], initial[head], rtol=0, atol=0)
        assert not torch.equal(trained[True][head], initial[head]), head
    for deep in (False, True):  # the final head and the rest of the network train either way
        assert not torch.equal(trained[deep]["net.final_conv_0_4.weight"], initial["net.final_conv_0_4.weight"])


def test_deep_supervision_of_a_basicunet_is_a_usage_error(small_csv, tmp_path):
    result = medlung("train", small_csv, "-o", tmp_path / "run", "--deep-supervision", "--epochs", "1", *TINY_ARGS)
    assert result.returncode == 2 and "deep supervision needs --network unetpp" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def test_cli_defaults_are_train_config_and_the_card_repeats_the_shipped_run(shipped_bundle):
    import subprocess as sp

    from medlung.cli.train import train

    params = train.make_context("train", ["DATA", "-o", "RUN"]).params
    config = TrainConfig()
    plan = config.plan
    assert params["features"] == ",".join(str(f) for f in plan.features) and params["network"] == plan.network
    for option in ("working_spacing", "roi_size"):
        assert params[option] == getattr(plan, option), option
    for option in ("epochs", "batch_size", "lr", "seed", "sick_film_prob", "consistency_weight"):
        assert params[option] == getattr(config, option), option
    # the CLI reads its defaults without torch
    code = "import sys, medlung.cli.train; print('torch' in sys.modules)"
    assert sp.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    # the shipped model's own settings are in its train config, and its card's retrain command repeats them
    recorded = json.loads((shipped_bundle / "configs" / "train.json").read_text())
    card = (shipped_bundle / "docs" / "README.md").read_text()
    command = next(line for line in card.splitlines() if line.startswith("medlung train "))
    assert f"--epochs {recorded['epochs']}" in command and f"--lr {recorded['lr']:g}" in command
    assert "--init " in command and f"--spacing {recorded['working_spacing']:g}" in command
