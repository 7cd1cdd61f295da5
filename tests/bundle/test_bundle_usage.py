"""``python -m monai.bundle run`` as a user runs it twice from their own folder: where outputs go, one-line errors."""

from __future__ import annotations

import shutil

import pytest

from tests.bundle.conftest import bundle_cli

#: MONAI's own warning about configs that call Python (docs/bundle.md says why it is safe here); with the itk
#: extra installed, itk's own warnings.formatwarning prints it without the "file:line: UserWarning:" prefix.
MONAI_CONFIG_WARNING = ("parsing config_file", "workflow = create_workflow(")


def _our_lines(stderr: str) -> list[str]:
    return [
        line for line in stderr.splitlines() if line.strip() and not any(part in line for part in MONAI_CONFIG_WARNING)
    ]


@pytest.mark.slow
def test_default_output_is_under_the_working_folder_and_a_second_run_says_one_line(
    shipped_bundle, shared_data, tmp_path
):
    films = tmp_path / "films"
    films.mkdir()
    shutil.copy(shared_data / "dicom" / "dx_image.dcm", films)
    work = tmp_path / "work"
    work.mkdir()
    before = sorted(p.name for p in shipped_bundle.iterdir())
    args = (
        "run",
        "--bundle_root",
        shipped_bundle,
        "--config_file",
        shipped_bundle / "configs" / "inference.json",
        "--dataset_dir",
        films,
        "--device",
        "cpu",
        "--formats",
        "png",
    )
    first = bundle_cli(*args, cwd=work)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (work / "eval" / "report.csv").is_file() and (work / "eval" / "dx_image_lungs.png").is_file()
    assert sorted(p.name for p in shipped_bundle.iterdir()) == before, "nothing is written into the bundle"

    second = bundle_cli(*args, cwd=work)
    assert second.returncode == 1
    assert "Traceback" not in second.stderr
    lines = _our_lines(second.stderr)
    assert len(lines) == 1, second.stderr
    assert lines[0].startswith("error: ") and "already holds report.csv" in lines[0] and "--overwrite" in lines[0]

    # the traceback stays one switch away
    verbose = bundle_cli(*args, cwd=work, env={"MEDLUNG_TRACEBACK": "1"})
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr and "BundleError" in verbose.stderr
