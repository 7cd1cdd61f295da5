"""One PredictSettings: built once from the command line (or Python), the same on every path a film can take.

The paths: ``medlung predict`` in one process, with ``--workers``, on a Dask
cluster (``--scheduler``), and ``medlung serve``. Before the settings object,
``--scheduler`` dropped ``--qc-fail`` and ``--orientation-fix`` (the options were
built twice and the Dask copy lacked them): the end-to-end test below fails on
that code.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from medlung import defaults
from medlung.cli.predict import predict
from medlung.cli.segmenting import build_settings
from medlung.cli.serve import serve
from medlung.pipeline.settings import MODEL_FIELDS, PredictSettings, SettingError

#: Model options that differ from every default, as a user types them.
MODEL_ARGS = ["--lungs", "anatomical", "--tta", "--orientation-fix", "--overlap", "0.4", "--roi-size", "192"]
MODEL_ARGS += ["--qc-fail", "--max-pixels", "50000000", "--decode", "full", "--device", "cpu"]
MODEL_ARGS += ["--dice-estimate", "perturbed"]


def _params(command, args: list[str]) -> dict:
    """The parameters click parses for ``command`` from ``args`` (nothing runs)."""
    with command.make_context(command.name, args, resilient_parsing=False) as context:
        return dict(context.params)


def test_settings_are_frozen_checked_and_travel_whole():
    settings = PredictSettings(bundle="some/model", lungs="anatomical", formats="seg,png", overlap=0.5, workers=2)
    assert settings.bundle == str(Path("some/model").absolute()) and settings.formats == ("seg", "png")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.lungs = "field"  # type: ignore[misc]
    assert settings.replace(workers=1).workers == 1 and settings.workers == 2
    assert pickle.loads(pickle.dumps(settings)) == settings  # what a Dask worker receives
    assert json.loads(json.dumps(settings.to_dict()))["formats"] == ["seg", "png"]
    assert settings.segmenter_arguments()["model"] == settings.bundle
    assert set(settings.segmenter_arguments()) == {"model", *MODEL_FIELDS} - {"bundle"}
    for bad, setting in (
        ({"lungs": "both"}, "lungs"),
        ({"formats": "seg,jpg"}, "formats"),
        ({"overlap": 1.5}, "overlap"),
        ({"workers": 0}, "workers"),
        ({"decode": "half"}, "decode"),
        ({"seg_syntax": "jpeg2000", "send": "PACS@host:104"}, "seg_syntax"),
    ):
        with pytest.raises(SettingError) as caught:
            PredictSettings(**bad)
        assert caught.value.setting == setting and setting.split("_")[0] in str(caught.value)


def test_every_setting_has_a_predict_option_and_the_defaults_are_one_set():
    params = _params(predict, ["film.png", "-o", "out"])
    settings = build_settings(params)
    assert settings == PredictSettings()  # the command line's defaults are the settings' defaults
    assert settings.formats == defaults.DEFAULT_FORMATS and settings.max_pixels == defaults.DEFAULT_MAX_PIXELS
    reachable = set(build_settings(params).to_dict()) - {"extra_options", "sw_batch_size", "precision", "min_lung_mm2"}
    changed = build_settings(
        _params(
            predict,
            [
                "film.png",
                "-o",
                "out",
                *MODEL_ARGS,
                "--format",
                "seg,mha",
                "--spacing",
                "0.5",
                "--workers",
                "3",
                "--overwrite",
                "--seg-syntax",
                "jpeg2000",
                "--include-identifiers",
                "--max-memory",
                "2G",
                "--bundle",
                str(Path(__file__)),
            ],
        )
    )
    same = {name for name in reachable if getattr(changed, name) == getattr(PredictSettings(), name)}
    assert same == {"send", "send_tls", "stow", "send_source"}  # these are covered by the PACS tests


def test_predict_and_serve_build_the_same_model_settings():
    from medlung.services.node import NODE_FORMATS

    predicted = build_settings(_params(predict, ["film.png", "-o", "out", *MODEL_ARGS]))
    served = build_settings(_params(serve, ["--forward", "PACS@127.0.0.1:104", *MODEL_ARGS]), formats=NODE_FORMATS)
    assert predicted.model_key() == served.model_key()
    assert (served.lungs, served.tta, served.fix_orientation, served.overlap, served.roi_size) == (
        "anatomical",
        True,
        True,
        0.4,
        192,
    )
    assert served.dice_estimate == "perturbed"
    assert served.qc_fail and served.max_pixels == 50_000_000 and served.formats == NODE_FORMATS
    assert served.decode == predicted.decode == "full"


def test_a_bad_value_is_a_usage_error_naming_its_option(tmp_path):
    from click.testing import CliRunner

    from medlung.cli import cli

    film = tmp_path / "film.png"
    film.write_bytes(b"")
    result = CliRunner().invoke(cli, ["predict", str(film), "-o", str(tmp_path / "o"), "--device", "tpu"])
    assert result.exit_code == 2 and "--device" in result.output and "tpu" in result.output


# ----------------------------------------------------------------------------------------------- every path


@pytest.fixture(scope="module")
def inputs(shared_data, tmp_path_factory):
    """A chest DICOM without PatientOrientation, a mirrored chest PNG, and a dog's lateral film (flagged)."""
    folder = tmp_path_factory.mktemp("settings-films")
    shutil.copy(shared_data / "dicom" / "CR-MONO1-10-chest.dcm", folder / "chest.dcm")
    pixels = np.asarray(Image.open(shared_data / "shenzhen" / "images" / "CHNCXR_0001_0.png").convert("L"))
    Image.fromarray(np.ascontiguousarray(np.fliplr(pixels))).save(folder / "mirrored.png")
    shutil.copy(shared_data / "dicom" / "dx_image.dcm", folder / "dog.dcm")
    return folder


#: Options of the end-to-end runs: every one changes what is written or reported.
RUN_ARGS = ["--lungs", "anatomical", "--tta", "--orientation-fix", "--overlap", "0.4", "--qc-fail", "--device", "cpu"]
RUN_ARGS += ["--dice-estimate", "perturbed"]


def _run(inputs: Path, out: Path, bundle: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "medlung", "predict", str(inputs), "-o", str(out), "--bundle", str(bundle)]
    return subprocess.run(
        [*command, "--format", "seg,png", *RUN_ARGS, *extra], capture_output=True, text=True, timeout=900
    )


def _rows(out: Path) -> dict[str, dict]:
    keep = ("status", "lungs", "qc", "orientation", "orientation_check", "right_px", "left_px", "dice_estimate")
    rows = csv.DictReader(open(out / "report.csv", newline=""))
    return {Path(r["file"]).name: {k: r[k] for k in (*keep, "error")} for r in rows}


def _outputs(out: Path) -> dict[str, object]:
    found: dict[str, object] = {}
    for path in sorted(out.iterdir()):
        if path.name.endswith("_seg.dcm"):
            ds = pydicom.dcmread(path)
            found[path.name] = (ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.pixel_array.tobytes())
        elif path.name.endswith("_lungs.png"):
            found[path.name] = np.asarray(Image.open(path)).tobytes()
    return found


@pytest.mark.slow
def test_every_option_reaches_every_path(inputs, shipped_bundle, tmp_path):
    pytest.importorskip("distributed", reason="Dask is an optional extra: pip install 'medlung[dask]'")
    runs = {
        "local": _run(inputs, tmp_path / "local", shipped_bundle),
        "workers": _run(inputs, tmp_path / "workers", shipped_bundle, "--workers", "2"),
        "scheduler": _run(inputs, tmp_path / "scheduler", shipped_bundle, "--scheduler", "local:1"),
    }
    for name, run in runs.items():
        assert run.returncode == 1, f"{name}: {run.stderr[-2000:]}"  # the dog's film fails (--qc-fail)
    local = _rows(tmp_path / "local")
    assert local["dog.dcm"]["status"] == "error" and "quality check failed" in local["dog.dcm"]["error"]
    assert local["mirrored.png"]["orientation_check"] == "mirrored? fixed"  # --orientation-fix
    assert {row["lungs"] for name, row in local.items() if name != "dog.dcm"} == {"anatomical"}
    assert all(float(row["dice_estimate"]) > 0 for name, row in local.items() if name != "dog.dcm")
    outputs = _outputs(tmp_path / "local")
    assert sorted(outputs) == ["chest_lungs.png", "chest_seg.dcm", "mirrored_lungs.png"]
    for name in ("workers", "scheduler"):
        assert _rows(tmp_path / name) == local, name
        assert _outputs(tmp_path / name) == outputs, name  # the SEG UIDs follow every option (medlung.uids)


@pytest.mark.slow
def test_serve_segments_with_the_settings_its_options_build(inputs, shipped_bundle, tmp_path):
    """The node's SEG of a film is the one ``medlung predict`` writes with the same options (same UIDs, pixels)."""
    from pynetdicom import AE

    from medlung.io.dicom import FILM_SOP_CLASSES
    from medlung.services.node import NODE_FORMATS, ServeConfig, StorageNode

    args = ["--forward", "PACS@127.0.0.1:9", "--bundle", str(shipped_bundle), *RUN_ARGS]
    settings = build_settings(_params(serve, args), formats=NODE_FORMATS)
    node = StorageNode(ServeConfig("MEDLUNG", 0, "PACS@127.0.0.1:9", tmp_path / "work", settings, bind="127.0.0.1"))
    node.start()  # loads the model from the settings
    try:
        film = pydicom.dcmread(inputs / "chest.dcm", force=True)  # no File Meta: implicit VR little endian
        film.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
        assert film.SOPClassUID in FILM_SOP_CLASSES
        ae = AE(ae_title="SENDER")
        ae.add_requested_context(film.SOPClassUID, pydicom.uid.ImplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", node.port, ae_title="MEDLUNG")
        assert assoc.is_established
        assert assoc.send_c_store(film).Status == 0x0000
        assoc.release()
        outgoing = tmp_path / "work" / "outgoing"
        deadline = time.monotonic() + 300
        while not list(outgoing.glob("*_seg.dcm")) and time.monotonic() < deadline:
            time.sleep(0.5)
        (seg_path,) = list(outgoing.glob("*_seg.dcm"))  # the forward destination is down: the SEG waits here
        served = pydicom.dcmread(seg_path)
    finally:
        node.stop()
    local = _run(inputs / "chest.dcm", tmp_path / "local", shipped_bundle, "--format", "seg")
    assert local.returncode == 0, local.stderr[-2000:]
    predicted = pydicom.dcmread(tmp_path / "local" / "chest_seg.dcm")
    assert served.SOPInstanceUID == predicted.SOPInstanceUID
    assert np.array_equal(served.pixel_array, predicted.pixel_array)
