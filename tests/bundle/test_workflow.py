"""The inference config as a standard MONAI workflow: MONAI's property check, and the properties are the Segmenter
(also for films stored in another orientation and for a plan with its own intensity percentiles)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from monai.bundle import create_workflow
from monai.bundle.properties import InferProperties
from monai.data import MetaTensor

from medlung.io import load_film
from medlung.orientation import DisplayTransform
from medlung.samples import SAMPLES_DIR
from tests import dicom_factory as factory


def _create(bundle, out, **overrides):
    """``create_workflow(workflow_type="inference")`` on ``bundle`` over medlung's sample films, writing to ``out``."""
    return create_workflow(
        workflow_type="inference",
        config_file=str(bundle / "configs" / "inference.json"),
        meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=False,
        bundle_root=str(bundle),
        dataset_dir=str(SAMPLES_DIR),
        output_dir=str(out),
        device="cpu",
        **overrides,
    )


@pytest.fixture(scope="module")
def workflow(shipped_bundle, tmp_path_factory):
    """``create_workflow(workflow_type="inference")`` on the shipped bundle over medlung's sample films."""
    return _create(shipped_bundle, tmp_path_factory.mktemp("workflow") / "out")


def test_check_properties_finds_nothing_missing(workflow):
    assert workflow.check_properties() == []
    # the optional ones are defined too, but key_metric: inference has no ground truth to score
    assert [name for name in InferProperties if getattr(workflow, name) is None] == ["key_metric"]


@pytest.fixture(scope="module")
def network(workflow, shipped_bundle):
    """The workflow's ``network_def`` with the bundle's weights."""
    network = workflow.network_def
    network.load_state_dict(torch.load(shipped_bundle / "models" / "model.pt", map_location="cpu", weights_only=True))
    return network.eval()


def _chain(workflow, network, data: dict) -> MetaTensor:
    """preprocessing -> inferer(image, network) -> postprocessing: the label map ``(1, rows, cols)``."""
    image = workflow.preprocessing(data)["image"]
    logits = workflow.inferer(image[None], network)
    return workflow.postprocessing({"image": image, "pred": logits[0]})["pred"]


@pytest.mark.slow
def test_properties_drive_the_segmenters_chain(workflow, network, shipped_bundle, segmenter):
    """dataset -> inferer(image, network with the bundle's weights) -> postprocessing = the Segmenter's labels."""
    config = json.loads((shipped_bundle / "configs" / "inference.json").read_text())
    dataset = workflow.dataset
    assert len(dataset) == 4  # the sample films: two PNGs (one with spacing), a MONOCHROME1 CR, a DX with spacing
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


@pytest.fixture(scope="module")
def turned_films(shenzhen_pixels, tmp_path_factory) -> dict:
    """One real chest (cropped to 512x440, 0.6 x 0.75 mm) stored in the standard display and three other ways."""
    folder = tmp_path_factory.mktemp("turned")
    display_pixels = np.ascontiguousarray(shenzhen_pixels[:, 36:476])
    films = {}
    for orientation in (("L", "F"), ("R", "F"), ("H", "L"), ("F", "R")):
        turn = DisplayTransform.from_orientation(orientation)
        ds = factory.radiograph(
            np.ascontiguousarray(turn.to_stored(display_pixels)),
            factory.DX_PRESENTATION,
            PixelSpacing=list(turn.display_spacing((0.6, 0.75))),
            PatientOrientation=list(orientation),
        )
        films[orientation] = factory.write(ds, folder / f"{''.join(orientation)}.dcm")
    return films


@pytest.mark.slow
def test_properties_turn_films_stored_otherwise_as_the_segmenter_does(workflow, network, segmenter, turned_films):
    """A film whose PatientOrientation is not the standard display: segmented in the standard display, labels
    back on its stored grid, by the properties exactly as by the Segmenter (the display step is in both chains)."""
    standard = _chain(workflow, network, {"image": turned_films[("L", "F")]})[0].numpy()
    assert set(np.unique(standard)) == {0, 1, 2}
    for orientation, path in turned_films.items():
        film = load_film(path)
        labels = _chain(workflow, network, {"image": path})
        assert labels.shape == (1, *film.shape), orientation
        assert np.array_equal(labels[0].numpy(), segmenter(film).labels), orientation
        # the same chest, so the same lungs, on the stored grid: patient right stays patient right
        assert np.array_equal(labels[0].numpy(), DisplayTransform.from_orientation(orientation).to_stored(standard))
        assert np.allclose(np.diag(labels.affine.numpy())[:2], film.spacing)  # the stored film's spacing
        assert tuple(labels.meta["orientation"]) == orientation


def test_properties_scale_with_the_plans_intensity_percentiles(shipped_bundle, segmenter, shenzhen_film, tmp_path):
    """A model whose plan has its own intensity percentiles: preprocessing scales with them, like the Segmenter.

    The bundle is written by medlung.bundle.configs (what export writes), with percentiles 5 and 95.
    """
    from monai.transforms import ScaleIntensityRangePercentiles

    from medlung.bundle.configs import inference_config
    from medlung.inference import Segmenter
    from medlung.plans import DEFAULT_INTENSITY_PERCENTILES, plan_from_bundle_config

    bundle = tmp_path / "bundle"
    shutil.copytree(shipped_bundle / "configs", bundle / "configs")
    (bundle / "models").mkdir()
    (bundle / "models" / "model.pt").symlink_to(shipped_bundle / "models" / "model.pt")
    shipped = json.loads((shipped_bundle / "configs" / "inference.json").read_text())
    plan = plan_from_bundle_config(shipped).updated(intensity_percentiles=(5.0, 95.0))
    assert plan.intensity_percentiles != DEFAULT_INTENSITY_PERCENTILES
    (bundle / "configs" / "inference.json").write_text(json.dumps(inference_config(plan.to_dict()), indent=4))
    workflow = _create(bundle, tmp_path / "out")
    own = Segmenter(bundle, device="cpu")
    assert own.spec.intensity_percentiles == (5.0, 95.0)

    image = workflow.preprocessing({"image": shenzhen_film})["image"]
    unscaled = own.working_image(load_film(shenzhen_film)).as_tensor()
    expected = ScaleIntensityRangePercentiles(5, 95, 0, 1, clip=True)(unscaled)
    assert torch.equal(image.as_tensor(), torch.as_tensor(expected))
    default = segmenter.preprocessing({"image": shenzhen_film})["image"]
    assert not torch.equal(image.as_tensor(), default.as_tensor())  # the percentiles matter on this film

    network = workflow.network_def
    network.load_state_dict(torch.load(bundle / "models" / "model.pt", map_location="cpu", weights_only=True))
    labels = _chain(workflow, network.eval(), {"image": shenzhen_film})
    assert np.array_equal(labels[0].numpy(), own(load_film(shenzhen_film)).labels)


@pytest.mark.slow
def test_evaluator_writes_what_the_run_writes(workflow):
    """The evaluator is the run's engine: it writes medlung predict's outputs and report through its handlers."""
    assert workflow.evaluator.val_handlers == workflow.handlers
    report = workflow.evaluator.run()
    assert [row["status"] for row in report.rows] == ["ok"] * 4
    assert workflow.handlers[0].done == 4


@pytest.mark.slow
def test_postprocessing_draws_whole_lungs_with_the_plans_shape_prior(shipped_bundle, network, shared_data, tmp_path):
    """``--lungs anatomical``: the properties close each lung as the Segmenter does (a film whose left lung the
    network leaves with a bay behind the heart, so that the shape prior changes the labels)."""
    import dataclasses

    from medlung.inference import Segmenter

    film_path = shared_data / "montgomery" / "images" / "MCUCXR_0046_0.png"
    workflow = _create(shipped_bundle, tmp_path / "out", lungs="anatomical")
    labels = _chain(workflow, network, {"image": film_path})[0].numpy()
    film = load_film(film_path)
    anatomical = Segmenter(shipped_bundle, device="cpu", lungs="anatomical", dice_estimate="off")
    assert np.array_equal(labels, anatomical(film).labels)
    plain = Segmenter(shipped_bundle, device="cpu", lungs="anatomical", dice_estimate="off")
    plain.spec = dataclasses.replace(plain.spec, plan=plain.spec.plan.updated(anatomical_closing_mm=0.0))
    assert ((labels > 0) & ~(plain(film).labels > 0)).sum() > 1000  # the prior filled the bay (about 3,000 pixels)
