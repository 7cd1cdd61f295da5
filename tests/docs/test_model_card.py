"""The model card's model and inputs/outputs sections are generated from the plan and the metadata, and the shipped
card holds exactly what the generator makes of the shipped bundle's configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from medlung.bundle.model_description import (
    SECTIONS,
    bundle_plan_and_metadata,
    generated_sections,
    head_description,
    model_section,
    refresh_card,
)
from medlung.plans import ModelPlan

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "medlung_cxr_lung"


def test_shipped_card_holds_the_sections_its_configs_generate():
    plan, meta = bundle_plan_and_metadata(BUNDLE)
    card = (BUNDLE / "docs" / "README.md").read_text(encoding="utf-8")
    for name, block in generated_sections(plan, meta).items():
        assert block in card, f"{name} section is stale: run python scripts/refresh_model_card.py {BUNDLE}"
    assert refresh_card(card, plan, meta) == card


def test_shipped_card_names_the_outputs_its_metadata_names():
    plan, meta = bundle_plan_and_metadata(BUNDLE)
    card = (BUNDLE / "docs" / "README.md").read_text(encoding="utf-8")
    pred = meta["network_data_format"]["outputs"]["pred"]
    assert len(pred["channel_def"]) == plan.out_channels
    for index, what in pred["channel_def"].items():
        assert f"{index}: {what}" in card
    assert meta["pred_classes"] in card and pred["postprocessing"] in card
    if plan.head == "sigmoid":  # no background channel: neither section may speak of one
        assert all("background" not in block for block in generated_sections(plan, meta).values())


def test_overlap_percentiles_and_clean_up_are_read_from_the_plan():
    plan, meta = bundle_plan_and_metadata(BUNDLE)
    changed = plan.updated(overlap=0.5, intensity_percentiles=(1.0, 99.0), min_lung_mm2=900.0, roi_size=192)
    text = "\n".join(model_section(changed, meta))
    assert "overlap 0.5," in text and "overlap 0.25" not in text
    assert "1st-99th percentiles" in text and "0.5th" not in text
    assert "under 900 mm²" in text and "192x192 pixels" in text


def test_a_softmax_model_is_described_as_background_and_lung():
    plan = ModelPlan(features=(8, 8, 16, 32, 64, 8), working_spacing=3.0)
    head = head_description(plan)
    assert head.channels == {"0": "background", "1": "lung (field)"}
    text = "\n".join(model_section(plan, {"training": {"parameters": 1234}}))
    assert "lung-minus-background logit" in text and "channel 0 background, channel 1 lung (field)" in text
    assert "1,234 parameters" in text and "3 mm working grid" in text
    two = head_description(ModelPlan(head="sigmoid", conventions=("field", "anatomical")))
    assert two.channels == {"0": "lung, field convention", "1": "lung, anatomical convention"}
    assert "smaller of field and anatomical" in two.margin
    assert "smaller" not in head_description(ModelPlan(head="sigmoid", conventions=("anatomical",))).margin


def test_a_card_from_before_the_markers_gets_its_sections_replaced_and_the_rest_kept():
    plan, meta = bundle_plan_and_metadata(BUNDLE)
    old = (
        "# card\n\nintro\n\n## Model\n\nold model text, overlap 0.25\n\n## Training\n\nkept\n\n"
        "## Metadata\n\noutput `pred` = 2 channels of logits (0 background, 1 lung).\n\n## Licence\n\nkept too\n"
    )
    new = refresh_card(old, plan, meta)
    assert "old model text" not in new and "0 background, 1 lung" not in new
    assert new.startswith("# card\n\nintro\n\n") and "## Training\n\nkept\n\n" in new and new.endswith("kept too\n")
    assert new.index("## Model") < new.index("## Training") < new.index("## Inputs and outputs") < new.index("## Lic")
    assert refresh_card(new, plan, meta) == new
    with pytest.raises(ValueError, match="no model section"):
        refresh_card("# card\n\n## Training\n", plan, meta)
    assert list(SECTIONS) == ["model", "inputs-outputs"]


def test_every_network_has_the_name_the_card_gives_it():
    from medlung.bundle.model_description import NETWORK_NAMES
    from medlung.plans import NETWORKS

    assert set(NETWORK_NAMES) == set(NETWORKS)
