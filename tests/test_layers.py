"""medlung's layers import downward only (scripts/import_layers.py; docs/design.md, "Layers")."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "import_layers.py"


def test_layers_import_downward_only():
    spec = importlib.util.spec_from_file_location("import_layers", SCRIPT)
    layers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(layers)
    edges, violations = layers.graph()
    assert not violations, "\n".join(violations)
    assert ("pacs.serve", "pipeline") in edges and (
        "pipeline",
        "pacs",
    ) in edges  # serve above the pipeline, sending below
    assert not any(a == "inference" and b in ("pipeline", "pacs.serve", "bundle", "cli") for a, b in edges)
