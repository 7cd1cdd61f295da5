"""The helpers the bundle configs call: command-line values, refusals, evaluation on a datalist."""

from __future__ import annotations

import json

import pytest

from medlung.bundle import as_bool, as_optional, as_spacing, bundle_segmenter, check_inputs, evaluate_datalist, parse_formats
from medlung.errors import BundleError, OutputExistsError


@pytest.mark.parametrize("value, expected", [
    (True, True), (False, False), (None, False), (1, True), (0, False),
    ("true", True), ("True", True), ("yes", True), ("1", True), ("false", False), ("FALSE", False), ("off", False),
])
def test_as_bool_reads_command_line_strings_by_meaning(value, expected):
    assert as_bool(value) is expected


def test_as_bool_refuses_anything_else():
    with pytest.raises(BundleError, match="tta must be true or false"):
        as_bool("maybe", "tta")


def test_as_optional_and_formats():
    assert as_optional("null") is None and as_optional("None") is None and as_optional("0.2") == "0.2"
    assert as_spacing(0.2) == "0.2" and as_spacing((0.2, 0.3)) == "0.2,0.3" and as_spacing("none") is None
    assert parse_formats("seg, PNG,seg") == ("seg", "png")
    assert parse_formats(["nifti"]) == ("nifti",)
    with pytest.raises(BundleError):
        parse_formats("")


def test_check_inputs(tmp_path):
    with pytest.raises(BundleError, match="dataset_dir not found"):
        check_inputs([], tmp_path / "missing", tmp_path / "out")
    with pytest.raises(BundleError, match="no DICOM or PNG films"):
        check_inputs([], tmp_path, tmp_path / "out")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "report.csv").write_text("file\n")
    with pytest.raises(BundleError, match="--overwrite true"):
        check_inputs([tmp_path / "a.png"], tmp_path, tmp_path / "out")
    check_inputs([tmp_path / "a.png"], tmp_path, tmp_path / "out", overwrite="true")


def test_bundle_segmenter_checks_the_folder_and_the_weights(tiny_bundle, tmp_path):
    with pytest.raises(BundleError, match="not a medlung bundle"):
        bundle_segmenter(tmp_path)
    segmenter = bundle_segmenter(str(tiny_bundle), device="cpu", roi_size="96", tta="true", network_name="basicunet",
                                 features=[8, 8, 16, 32, 64, 8], working_spacing=4.0)
    assert segmenter.roi_size == 96 and segmenter.tta is True
    with pytest.raises(BundleError, match="network_def#features"):
        bundle_segmenter(tiny_bundle, device="cpu", features=[16, 16, 32, 64, 128, 16])


def test_evaluate_datalist_writes_per_film_rows_and_refuses_to_overwrite(tiny_bundle, tiny_csv, tmp_path):
    segmenter = bundle_segmenter(tiny_bundle, device="cpu")
    summary = evaluate_datalist(segmenter, tiny_csv, tmp_path, part="validation", limit=1)
    assert summary["films"] == 1 and summary["scored"] == 1 and summary["part"] == "validation"
    rows = json.loads((tmp_path / "evaluation.json").read_text())["films"]
    assert rows[0]["status"] == "ok" and rows[0]["rows"] == 512
    with pytest.raises(OutputExistsError, match="--overwrite"):
        evaluate_datalist(segmenter, tiny_csv, tmp_path, part="validation", limit=1)
    with pytest.raises(BundleError, match="part must be one of"):
        evaluate_datalist(segmenter, tiny_csv, tmp_path / "x", part="train")
