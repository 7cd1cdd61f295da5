"""The inference config as a standard MONAI workflow: MONAI's property check, and the properties are the Segmenter."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.bundle import create_workflow
from monai.bundle.properties import InferProperties

from medlung.io import load_film
from medlung.samples import SAMPLES_DIR


@pytest.fixture(scope="module")
def workflow(shipped_bundle, tmp_path_factory):
    """``create_workflow(workflow_type="inference")`` on the shipped bundle over medlung's sample films."""
    out = tmp_path_factory.mktemp("workflow") / "out"
    return create_workflow(workflow_type="inference", config_file=str(shipped_bundle / "configs" / "inference.json"),
                           meta_file=str(shipped_bundle / "configs" / "metadata.json"), logging_file=False,
                           bundle_root=str(shipped_bundle), dataset_dir=str(SAMPLES_DIR), output_dir=str(out),
                           device="cpu")


def test_check_properties_finds_nothing_missing(workflow):
    assert workflow.check_properties() == []
    # the optional ones are defined too, but key_metric: inference has no ground truth to score
    assert [name for name in InferProperties if getattr(workflow, name) is None] == ["key_metric"]


def test_properties_drive_the_segmenters_chain(workflow, shipped_bundle, segmenter):
    """dataset -> inferer(image, network with the bundle's weights) -> postprocessing = the Segmenter's labels."""
    config = json.loads((shipped_bundle / "configs" / "inference.json").read_text())
    network = workflow.network_def
    network.load_state_dict(torch.load(shipped_bundle / "models" / "model.pt", map_location="cpu", weights_only=True))
    network.eval()
    dataset = workflow.dataset
    assert len(dataset) == 3  # the sample films: a PNG, a MONOCHROME1 CR, a DX with spacing
    for index in range(len(dataset)):
        item = dataset[index]
        image = item["image"]
        assert image.shape[0] == config["network_def"]["in_channels"]
        logits = workflow.inferer(image[None], network)
        assert logits.shape[:2] == (1, config["network_def"]["out_channels"])
        labels = workflow.postprocessing({"image": image, "pred": logits[0]})["pred"]
        film = load_film(dataset.data[index]["image"])
        expected = segmenter(film)
        assert labels.shape == (1, *film.shape)
        assert np.array_equal(labels[0].numpy(), expected.labels), dataset.data[index]["image"]
        assert set(np.unique(expected.labels)) == {0, 1, 2}
        if film.spacing is not None:  # the labels' affine carries the native spacing
            assert np.allclose(np.diag(labels.affine.numpy())[:2], film.spacing)


def test_evaluator_writes_what_the_run_writes(workflow):
    """The evaluator is the run's engine: it writes medlung predict's outputs and report through its handlers."""
    assert workflow.evaluator.val_handlers == workflow.handlers
    report = workflow.evaluator.run()
    assert [row["status"] for row in report.rows] == ["ok"] * 3
    assert workflow.handlers[0].done == 3
