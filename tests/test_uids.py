"""UIDs that cannot collide: every option that changes the output changes the UIDs; the same options keep them."""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pydicom
import pytest
import torch

from medlung.pipeline.batch import predict_files
from medlung.pipeline.settings import PredictSettings
from medlung.uids import output_options, seg_uids

SOURCE_UID = "1.2.826.0.1.3680043.8.498.1"


def _uids(segmenter, **run) -> tuple[str, str]:
    return tuple(seg_uids(SOURCE_UID, segmenter.model_version, output_options(segmenter, **run))[:2])


def _changed(segmenter, **attributes):
    other = copy.copy(segmenter)
    for name, value in attributes.items():
        setattr(other, name, value)
    return other


def _changed_model(segmenter, version=None, **plan_values):
    spec = segmenter.spec
    plan = spec.plan.updated(**plan_values) if plan_values else spec.plan
    return _changed(segmenter, spec=dataclasses.replace(spec, plan=plan, version=version or spec.version))


def test_every_option_that_changes_the_output_changes_the_uids(segmenter):
    base = _uids(segmenter, spacing=None, seg_syntax="uncompressed")
    # the lung convention (Segmenter.lungs, "field" by default where the Segmenter has it)
    other_lungs = "field" if getattr(segmenter, "lungs", "field") == "anatomical" else "anatomical"
    variants = {
        "model version": _uids(
            _changed_model(segmenter, version=segmenter.spec.version + "+1"), seg_syntax="uncompressed"
        ),
        "precision": _uids(
            _changed(segmenter, dtype=torch.float16 if segmenter.dtype is None else None), seg_syntax="uncompressed"
        ),
        "min lung size": _uids(_changed(segmenter, min_lung_mm2=segmenter.min_lung_mm2 + 1), seg_syntax="uncompressed"),
        "overlap": _uids(_changed(segmenter, overlap=0.5), seg_syntax="uncompressed"),
        "sw_batch_size": _uids(
            _changed(segmenter, sw_batch_size=segmenter.sw_batch_size + 1), seg_syntax="uncompressed"
        ),
        "roi": _uids(_changed(segmenter, roi_size=segmenter.roi_size + 32), seg_syntax="uncompressed"),
        "tta": _uids(_changed(segmenter, tta=not segmenter.tta), seg_syntax="uncompressed"),
        "lungs": _uids(_changed(segmenter, lungs=other_lungs), seg_syntax="uncompressed"),
        "dice estimate": _uids(_changed(segmenter, dice_estimate="perturbed"), seg_syntax="uncompressed"),
        "working spacing": _uids(
            _changed_model(segmenter, working_spacing=segmenter.spec.working_spacing * 2), seg_syntax="uncompressed"
        ),
        "intensity percentiles": _uids(
            _changed_model(segmenter, intensity_percentiles=(1.0, 99.0)), seg_syntax="uncompressed"
        ),
        "spacing override": _uids(segmenter, spacing="0.2", seg_syntax="uncompressed"),
        "seg syntax": _uids(segmenter, seg_syntax="jpeg2000"),
    }
    for option, uids in variants.items():
        assert uids[0] != base[0] and uids[1] != base[1], f"{option} does not change the UIDs"
    everything = [base, *variants.values()]
    assert len({uid for pair in everything for uid in pair}) == 2 * len(everything)  # no two share one

    # the same options give the same UIDs, whoever passes them and in which order
    assert _uids(copy.copy(segmenter), seg_syntax="uncompressed") == base
    assert _uids(segmenter, seg_syntax="lossless") == _uids(segmenter, seg_syntax="jpeg2000")  # two names, one form


def test_output_options_are_json_and_name_what_they_read(segmenter):
    options = output_options(segmenter, spacing="0.2,0.3", seg_syntax="jpeg2000", threshold=0.5)
    assert json.loads(json.dumps(options)) == options
    assert options["seg_syntax"] == "1.2.840.10008.1.2.4.90" and options["spacing"] == "0.2,0.3"
    for key in (
        "roi_size",
        "overlap",
        "sw_batch_size",
        "tta",
        "precision",
        "min_lung_mm2",
        "working_spacing",
        "intensity_percentiles",
        "network",
        "features",
        "threshold",
    ):
        assert key in options, key


@pytest.mark.slow
def test_segmenter_honours_sw_batch_size(segmenter, shenzhen_pixels):
    """The sliding window runs as many windows per forward pass as asked (it was fixed at 4)."""
    image = torch.as_tensor(np.asarray(shenzhen_pixels, np.float32))[None]
    image = torch.nn.functional.interpolate(image[None], size=(700, 700), mode="bilinear")[0]  # >= 9 windows
    batches = {}
    for size in (1, 3):
        seen: list[int] = []
        other = _changed(segmenter, sw_batch_size=size)
        hook = other.model.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape[0]))  # noqa: B023 (used in this pass)
        try:
            margins = other.lung_margin(image)
        finally:
            hook.remove()
        batches[size] = (max(seen), margins)
    assert batches[1][0] == 1 and batches[3][0] == 3
    assert torch.allclose(batches[1][1], batches[3][1], atol=1e-2)  # same windows, same blend
    with pytest.raises(ValueError, match="sw_batch_size"):
        type(segmenter)(segmenter.spec.source, device="cpu", sw_batch_size=0)


@pytest.mark.slow
def test_predict_gives_new_seg_uids_when_an_option_changes(tmp_path, shared_dicom, segmenter):
    """The UIDs of ``medlung predict`` (and of the bundle and serve, which call the same code) follow the options."""
    film = shared_dicom / "CR-MONO1-10-chest.dcm"

    def seg_uid(name, segmenter, **options):
        predict_files([film], tmp_path / name, segmenter, PredictSettings(formats=("seg",), **options))
        return pydicom.dcmread(tmp_path / name / "CR-MONO1-10-chest_seg.dcm").SOPInstanceUID

    first = seg_uid("a", segmenter)
    assert seg_uid("b", segmenter) == first
    assert seg_uid("c", _changed(segmenter, min_lung_mm2=segmenter.min_lung_mm2 / 2)) != first
    assert seg_uid("d", segmenter, seg_syntax="jpeg2000") != first
