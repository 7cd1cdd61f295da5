"""A wheel carries the shipped bundle, and an installed medlung finds it without the source tree."""

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_install_finds_the_shipped_bundle(shipped_bundle, tmp_path):
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v", "-w", wheels, REPO],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    # -v shows setuptools' own output: the 40-line "Package 'medlung.sample_masks' is absent" warning is gone (#28)
    assert "absent from the `packages` configuration" not in built.stdout + built.stderr
    wheel = next(wheels.glob("medlung-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith("share/medlung/bundles/medlung_cxr_lung/models/model.pt") for n in names)
    assert any(n.endswith("medlung/samples/CHNCXR_0001_0.png") for n in names)
    assert any(n.endswith("medlung/samples/00000001_000.png") for n in names)  # the chest film with a spacing
    assert any(n.endswith("medlung/sample_masks/CHNCXR_0001_0_lungs.png") for n in names)  # the notebook's mask
    assert "medlung/py.typed" in names  # type checkers use the package's own annotations (PEP 561)
    prefix = tmp_path / "prefix"
    # --ignore-installed: never uninstall the medlung of the running environment (pip would, even with --prefix)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--ignore-installed", "-q", "--prefix", prefix, wheel],
        check=True,
        capture_output=True,
    )
    site = Path(sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)}))
    # -S: no site-packages hooks, so the editable install of the checkout cannot shadow the installed wheel
    path = f"{site}:{sysconfig.get_path('purelib')}"
    code = (
        "import medlung, medlung.inference.segmenter as s; print(medlung.__file__); print(s.find_default_model());"
        "from medlung.samples import sample_paths; m = medlung.Segmenter(device='cpu')(medlung.load_film("
        "sample_paths()[0])); print(m.labels.shape)"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": path, "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    module, bundle, shape = result.stdout.strip().splitlines()[-3:]
    assert module.startswith(str(site))
    assert bundle == str((prefix / "share" / "medlung" / "bundles" / "medlung_cxr_lung").resolve())
    assert shape == "(512, 512)"
