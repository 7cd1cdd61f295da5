"""The shipped bundle is model 3.0.1 (3.0.0's weights with the anatomical shape prior): it loads, names its three
training sources, and its Dice estimate is its weights' own."""

from __future__ import annotations

import json

from medlung.estimation.calibration import weights_digest
from medlung.networks.loading import load_model


def test_the_shipped_bundle_loads_as_3_0_1_and_names_its_sources(shipped_bundle):
    _, spec = load_model(shipped_bundle, "cpu")
    meta = json.loads((shipped_bundle / "configs" / "metadata.json").read_text())
    assert meta["version"] == "3.0.1" and spec.version.endswith("@3.0.1")
    assert "3.0.1" in meta["changelog"] and "3.0.0" in meta["changelog"]
    assert spec.plan.anatomical_closing_mm == 30.0
    assert meta["training"]["sources"] == ["covid_v7", "montgomery", "shenzhen"]
    assert spec.plan.conventions == ("field", "anatomical")
    for source in ("Shenzhen Hospital X-ray Set", "Montgomery County X-ray Set", "COVID-19 image data collection"):
        assert source in meta["data_source"], source
    licence = (shipped_bundle / "LICENSE").read_text()
    assert "Montgomery County" in licence and "CC BY 4.0" in licence and "CC BY-NC-SA 4.0" in licence
    card = (shipped_bundle / "docs" / "README.md").read_text()
    assert (
        "(version 3.0.1)" in card
        and "| Montgomery | field | 3.0.1 |" in card
        and "| Montgomery | field | 2.0.0 |" in card
    )


def test_the_shipped_dice_estimate_was_fitted_for_the_shipped_weights(shipped_bundle):
    meta = json.loads((shipped_bundle / "configs" / "metadata.json").read_text())
    entry = meta["dice_estimate"]
    fitted = json.loads((shipped_bundle / entry["file"]).read_text())
    digest = weights_digest(shipped_bundle / "models" / "model.pt")
    assert entry["weights_sha256"] == fitted["fitted"]["weights_sha256"] == digest
    # fitted on 3.0.0's outputs: 3.0.1 has the same weights (the shape prior changes the anatomical masks only)
    assert entry["model_version"] == fitted["model_version"] == "3.0.0" and "3.0.0" in meta["changelog"]


def test_the_shipped_train_config_repeats_the_training_its_weights_record(shipped_bundle):
    from medlung.bundle.export import TRAINING_KEYS

    configs = shipped_bundle / "configs"
    recorded = json.loads((configs / "metadata.json").read_text())["training"]["settings"]
    train = json.loads((configs / "train.json").read_text())
    for key in set(recorded) & set(TRAINING_KEYS):
        assert train[key] == recorded[key], key
    assert train["consistency_weight"] > 0 and "montgomery/field" in train["sampling"]
    assert "histogram" in train["augmentations"]  # 3.0.0's ten named augmentations, not 2.0.0's chain
