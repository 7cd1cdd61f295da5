"""The model plan and the label table."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from medlung import labels
from medlung.plans import ModelPlan, plan_from_bundle_config, plan_from_checkpoint


def test_plan_round_trips_through_json_and_validates():
    plan = ModelPlan(head="sigmoid", conventions=("field", "anatomical"), intensity_percentiles=(1, 99))
    again = ModelPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan and again.out_channels == 2 and again.channel("anatomical") == 1
    assert ModelPlan().out_channels == 2 and ModelPlan(head="sigmoid").out_channels == 1
    for bad, match in (
        (dict(network="vnet"), "network must be"),
        (dict(features=(8, 8)), "6 widths"),
        (dict(conventions=("whole",)), "conventions must be"),
        (dict(conventions=("field", "anatomical")), "softmax head draws one"),
        (dict(intensity_percentiles=(99, 1)), "intensity_percentiles"),
        (dict(working_spacing=0), "working_spacing"),
    ):
        with pytest.raises(ValueError, match=match):
            ModelPlan(**bad)
    with pytest.raises(ValueError, match="not 'anatomical'"):
        ModelPlan(head="sigmoid").channel("anatomical")


def test_legacy_checkpoints_and_bundles_read_as_softmax_field_models():
    state = {
        "network": {"name": "basicunet", "features": [8, 8, 16, 32, 64, 8]},
        "preprocessing": {"working_spacing": 1.4, "roi_size": 256, "intensity_percentiles": [0.5, 99.5]},
    }
    plan = plan_from_checkpoint(state)
    assert (plan.head, plan.conventions, plan.working_spacing, plan.roi_size) == ("softmax", ("field",), 1.4, 256)
    config = {
        "network_def": {"name": "unetpp", "features": [8, 8, 16, 32, 64, 8]},
        "working_spacing": 2.0,
        "roi_size": 224,
        "overlap": 0.5,
    }
    plan = plan_from_bundle_config(config)
    assert (plan.network, plan.head, plan.overlap, plan.min_lung_mm2) == ("unetpp", "softmax", 0.5, 1500.0)
    assert plan_from_checkpoint({"plan": plan.to_dict()}) == plan


def test_plans_import_no_torch():
    code = "import sys, medlung.plans, medlung.labels; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_label_table():
    assert (labels.RIGHT, labels.LEFT) == (1, 2)
    assert labels.BY_VALUE[1].segment_label("field") == "Right lung field"
    assert labels.BY_VALUE[2].segment_label("anatomical") == "Left lung (anatomical)"
    assert "behind the heart" in labels.BY_SIDE["left"].description("anatomical")
    with pytest.raises(ValueError, match="lungs must be one of"):
        labels.BY_VALUE[1].segment_label("whole")
