"""medlung's layers import downward only, and no modules import each other in a circle.

See scripts/import_layers.py and docs/architecture.md.
"""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "import_layers.py"


@pytest.fixture(scope="module")
def layers():
    spec = importlib.util.spec_from_file_location("import_layers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_layers_import_downward_only(layers):
    edges, violations = layers.graph()
    assert not violations, "\n".join(violations)
    # the node and the Dask driver above the pipeline, sending below it
    assert ("services", "pipeline") in edges and ("pipeline", "pacs") in edges
    assert not any(a == "inference" and b in ("pipeline", "services", "bundle", "cli") for a, b in edges)
    # the atomic writer is in the core: every layer may use it, and writers/ no longer holds it
    assert layers.layer_of(layers.unit_of("atomic")) == 0
    assert ("writers", "atomic") in edges and ("services", "atomic") in edges


def test_no_import_circles(layers):
    assert layers.import_cycles() == []


def test_import_circles_are_found(layers):
    # the two circles this check was written for: film <-> io.itk_formats, evaluation figures <-> scoring
    graph = {
        "film": {"io.itk_formats"},
        "io.itk_formats": {"film", "spacing"},
        "evaluation.scoring": {"evaluation.figures"},
        "evaluation.figures": {"evaluation.scoring", "metrics"},
        "metrics": set(),
        "spacing": set(),
    }
    assert layers.import_cycles(graph) == [["evaluation.figures", "evaluation.scoring"], ["film", "io.itk_formats"]]


def test_code_inside_the_package_does_not_import_its_door(layers):
    # ``from medlung import __version__`` inside the package ran medlung/__init__.py from below: medlung.version now
    assert not any(b == "__init__" for _, b in layers.graph()[0])
