"""The helpers the bundle configs call: command-line values, refusals, evaluation on a datalist."""

from __future__ import annotations

import pytest

from medlung.bundle import (
    ProgressLogger,
    as_bool,
    as_optional,
    as_spacing,
    bundle_segmenter,
    bundle_settings,
    check_inputs,
    finish_predict,
    log_evaluation,
    parse_formats,
)
from medlung.errors import BundleError


@pytest.mark.parametrize(
    "value, expected",
    [
        (True, True),
        (False, False),
        (None, False),
        (1, True),
        (0, False),
        ("true", True),
        ("True", True),
        ("yes", True),
        ("1", True),
        ("false", False),
        ("FALSE", False),
        ("off", False),
    ],
)
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


@pytest.mark.slow
def test_bundle_segmenter_checks_the_folder_and_the_weights(tiny_bundle, tmp_path):
    with pytest.raises(BundleError, match="not a medlung bundle"):
        bundle_settings(tmp_path)
    # values from the monai.bundle command line arrive as text
    settings = bundle_settings(str(tiny_bundle), device="cpu", roi_size="96", tta="true", orientation_fix="yes")
    assert settings.roi_size == 96 and settings.tta and settings.fix_orientation
    with pytest.raises(BundleError, match="lungs"):
        bundle_settings(tiny_bundle, lungs="both")
    segmenter = bundle_segmenter(
        settings, network_name="basicunet", features=[8, 8, 16, 32, 64, 8], working_spacing=4.0
    )
    assert segmenter.roi_size == 96 and segmenter.tta is True and segmenter.fix_orientation is True
    with pytest.raises(BundleError, match="network_def#features"):
        bundle_segmenter(settings, features=[16, 16, 32, 64, 128, 16])


@pytest.mark.slow
def test_bundle_evaluation_is_medlung_evaluate_with_the_bundle_segmenter(tiny_bundle, tiny_csv, tmp_path, caplog):
    from medlung.errors import MedlungError
    from medlung.evaluation import evaluate

    segmenter = bundle_segmenter(bundle_settings(tiny_bundle, device="cpu"))
    result = evaluate(tiny_bundle, tiny_csv, tmp_path, part="validation", limit=1, segmenter=segmenter)
    with caplog.at_level("INFO", logger="medlung.bundle"):
        summary = log_evaluation(result)
    assert summary["films"] == 1 and summary["ok"] == 1 and summary["part"] == "validation"
    assert "mean Dice" in caplog.text
    with pytest.raises(MedlungError, match="overwrite"):
        evaluate(tiny_bundle, tiny_csv, tmp_path, part="validation", limit=1, segmenter=segmenter)


def test_progress_logger_and_finish_warn_of_flagged_films(tmp_path, caplog):
    from medlung.writers.report import Report

    report = Report(tmp_path)
    rows = [
        {"file": "chest.dcm", "status": "ok", "total_cm2": 400.0, "qc": "ok", "qc_reasons": []},
        {
            "file": "hip.dcm",
            "status": "ok",
            "total_cm2": 620.0,
            "qc": "flagged",
            "qc_reasons": ["not_chest: BodyPartExamined is HIP, not CHEST"],
        },
    ]
    progress = ProgressLogger(len(rows))
    with caplog.at_level("INFO", logger="medlung.bundle"):
        for row in rows:
            report.add(row)
            progress(row)
        finish_predict(report, tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "[2/2] hip.dcm: quality flagged: not_chest: BodyPartExamined is HIP, not CHEST",
        "1 of 2 film(s) flagged by the quality check: see the qc_reasons column of the report",
    ]
    assert progress.flagged == 1 and progress.failed == 0
