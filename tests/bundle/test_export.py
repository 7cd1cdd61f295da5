"""``export_bundle`` / ``medlung export``: run -> bundle round trip, metadata from the run, refusals."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from click.testing import CliRunner

from medlung.bundle import export_bundle
from medlung.bundle.model_card import EVALUATION_BEGIN, EVALUATION_END
from medlung.cli import cli
from medlung.errors import BundleError, BundleExistsError
from medlung.networks.loading import load_model

#: Slow: every test needs the tiny training run.
pytestmark = pytest.mark.slow

FILES = (
    "configs/metadata.json",
    "configs/schema.json",
    "configs/inference.json",
    "configs/evaluate.json",
    "configs/train.json",
    "configs/multi_gpu_train.json",
    "configs/logging.conf",
    "models/model.pt",
    "models/model.ts",
    "docs/README.md",
    "LICENSE",
)


def test_export_writes_a_complete_bundle_that_loads_like_the_run(tiny_run, tiny_bundle):
    for name in FILES:
        assert (tiny_bundle / name).is_file(), name
    assert not [p for p in tiny_bundle.parent.iterdir() if p.name.startswith(".")]  # no staging left behind
    best = torch.load(tiny_run / "best.pt", map_location="cpu", weights_only=False)
    state = torch.load(tiny_bundle / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert state.keys() == best["model"].keys()
    assert all(torch.equal(state[k], best["model"][k]) for k in state)
    # the contract load_model reads
    inference = json.loads((tiny_bundle / "configs" / "inference.json").read_text())
    assert inference["network_def"]["_target_"] == "medlung.networks.build_network"
    assert inference["network_def"]["name"] == "basicunet"
    assert inference["network_def"]["features"] == [8, 8, 16, 32, 64, 8]
    assert inference["working_spacing"] == 4.0 and inference["roi_size"] == 64
    from_bundle, spec = load_model(tiny_bundle)
    from_run, _ = load_model(tiny_run)
    assert spec.version == "tiny_bundle@0.1.0" and spec.working_spacing == 4.0
    image = torch.rand(1, 1, 64, 80, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(from_bundle(image), from_run(image))


def test_metadata_is_filled_from_the_run(tiny_run, tiny_bundle):
    meta = json.loads((tiny_bundle / "configs" / "metadata.json").read_text())
    config = json.loads((tiny_run / "config.json").read_text())
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert meta["version"] == "0.1.0" and "0.1.0" in meta["changelog"]
    assert meta["monai_version"] == config["versions"]["monai"]
    assert meta["pytorch_version"] == config["versions"]["torch"]
    assert meta["numpy_version"] == config["versions"]["numpy"]
    assert meta["required_packages_version"]["medlung"] == config["versions"]["medlung"]
    assert "optional_packages_version" not in meta  # MONAI renames it onto required_packages_version
    assert meta["eval_metrics"]["val_mean_dice"] == pytest.approx(summary["best_val_dice"], abs=1e-4)
    assert meta["eval_metrics"]["test_mean_dice"] == pytest.approx(summary["test"]["dice"], abs=1e-4)
    assert meta["training"]["provisional"] is False
    assert meta["training"]["data_summary"]["training"] == 2
    assert "CC BY-NC-SA 4.0" in meta["data_source"] and "National Library of Medicine" in meta["data_source"]
    assert meta["license"].startswith("CC-BY-NC-SA-4.0")
    assert "Research only" in meta["intended_use"]
    image = meta["network_data_format"]["inputs"]["image"]
    assert image["num_channels"] == 1 and image["value_range"] == [0, 1] and image["pixel_spacing_mm"] == [4.0, 4.0]
    pred = meta["network_data_format"]["outputs"]["pred"]
    assert pred["num_channels"] == 1 and pred["channel_def"] == {"0": "lung, field convention"}  # a field-only run


def test_model_card_and_licence(tiny_run, tiny_bundle):
    card = (tiny_bundle / "docs" / "README.md").read_text()
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert f"{summary['test']['dice']:.4f}" in card and f"{summary['best_val_dice']:.4f}" in card
    assert EVALUATION_BEGIN in card and EVALUATION_END in card and "Not filled yet" in card
    assert (
        "python -m monai.bundle run --bundle_root bundles/medlung_cxr_lung --config_file "
        "bundles/medlung_cxr_lung/configs/inference.json" in card
    )
    assert "--dataset_dir IN --output_dir OUT" in card
    assert "Provisional" not in card
    # the documented retrain command gives medlung train the run's recorded settings
    import shlex

    from medlung.cli.train import train

    command = next(line for line in card.splitlines() if line.startswith("medlung train "))
    params = train.make_context("train", shlex.split(command)[2:]).params
    config = json.loads((tiny_run / "config.json").read_text())
    plan = config["plan"]  # TrainConfig holds the plan
    assert str(params["data"]) == config["data"] and params["features"] == ",".join(map(str, plan["features"]))
    for option in ("working_spacing", "roi_size", "network"):
        assert params[option] == plan[option], option
    for option in ("epochs", "batch_size", "lr", "seed"):
        assert params[option] == config[option], option
    licence = (tiny_bundle / "LICENSE").read_text()
    assert "CC BY-NC-SA 4.0" in licence and "Stirenko" in licence and "National Library of Medicine" in licence


def test_existing_bundle_is_refused_then_replaced_keeping_the_changelog(tiny_run, tmp_path):
    bundle = export_bundle(tiny_run, tmp_path / "b")
    with pytest.raises(BundleExistsError) as caught:
        export_bundle(tiny_run, bundle)
    assert "--overwrite" in str(caught.value) and "\n" not in str(caught.value)
    weights = (bundle / "models" / "model.pt").read_bytes()
    export_bundle(tiny_run, bundle, overwrite=True)
    assert (bundle / "models" / "model.pt").read_bytes() == weights  # same run, same file
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert meta["version"] == "0.1.1" and list(meta["changelog"]) == ["0.1.1", "0.1.0"]
    export_bundle(tiny_run, bundle, overwrite=True, version="0.1.1")  # same version: its entry is replaced
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert list(meta["changelog"]) == ["0.1.1", "0.1.0"]
    with pytest.raises(BundleError, match=r"X\.Y\.Z"):
        export_bundle(tiny_run, bundle, overwrite=True, version="1.0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_run_still_training_gives_a_provisional_bundle(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "summary.json").unlink()
    bundle = export_bundle(run, tmp_path / "b")
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert meta["training"]["provisional"] is True and "test_mean_dice" not in meta["eval_metrics"]
    assert "provisional" in meta["changelog"]["0.1.0"]
    assert "Provisional export" in (bundle / "docs" / "README.md").read_text()


def test_refresh_configs_writes_the_training_settings_the_weights_record(tiny_bundle, tmp_path):
    from medlung.bundle import train_config
    from medlung.bundle.export import refresh_configs

    bundle = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    metadata_path, train_path = bundle / "configs" / "metadata.json", bundle / "configs" / "train.json"
    metadata = json.loads(metadata_path.read_text())
    recorded = {"augmentations": ["affine", "tone"], "sampling": {"shenzhen/field": 1.0}, "consistency_weight": 0.2}
    metadata["training"]["settings"].update(recorded)
    metadata_path.write_text(json.dumps(metadata))
    train = json.loads(train_path.read_text())
    train.update(augmentations=None, sampling={}, consistency_weight=0.0, lr=0.0123)  # lost, and one of its own
    train_path.write_text(json.dumps(train))
    weights = (bundle / "models" / "model.pt").read_bytes()
    refresh_configs(bundle)
    train = json.loads(train_path.read_text())
    assert {k: train[k] for k in recorded} == recorded
    assert train["lr"] == metadata["training"]["settings"]["lr"] != 0.0123  # the record wins over train.json
    assert train["deep_supervision"] is False and "deep_supervision" in train["train_config"]
    values = {k: v for k, v in train["train_config"].items() if not str(v).startswith(("@", "$"))}
    config = train_config(**{**values, **{k: train[k] for k in ("augmentations", "sampling")}})
    assert config.augmentations == ("affine", "tone") and config.sampling == {"shenzhen/field": 1.0}
    assert (bundle / "models" / "model.pt").read_bytes() == weights


def test_not_a_run_is_a_one_line_error(tmp_path):
    with pytest.raises(BundleError, match=r"no best\.pt") as caught:
        export_bundle(tmp_path, tmp_path / "b")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "b").exists()


def test_medlung_export_command(tiny_run, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["export", str(tiny_run), "-o", str(tmp_path / "b"), "--version", "1.2.3"], obj={})
    assert result.exit_code == 0, result.output
    assert "version 1.2.3" in result.output and "test_mean_dice" in result.output
    again = runner.invoke(cli, ["export", str(tiny_run), "-o", str(tmp_path / "b")], obj={})
    assert again.exit_code == 1
    lines = [line for line in again.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "--overwrite" in lines[0]
    replaced = runner.invoke(cli, ["export", str(tiny_run), "-o", str(tmp_path / "b"), "--overwrite"], obj={})
    assert replaced.exit_code == 0 and "version 1.2.4" in replaced.output
