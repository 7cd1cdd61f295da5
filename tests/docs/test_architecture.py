"""docs/architecture.md shows the layers scripts/import_layers.py enforces, with a paragraph for every unit."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def layers():
    spec = importlib.util.spec_from_file_location("import_layers", REPO / "scripts" / "import_layers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.LAYERS


@pytest.fixture(scope="module")
def page():
    return (REPO / "docs" / "architecture.md").read_text()


def test_the_picture_has_each_layer_with_its_units(layers, page):
    picture = page.split("```text\n", 1)[1].split("```", 1)[0]
    rows: dict[int, list[str]] = {}
    last = None
    for line in picture.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) > 2 and re.match(r"\d ", cells[1]):
            last = int(cells[1][0])
            rows[last] = cells[2].split()
        elif len(cells) > 2 and not cells[1] and cells[2] and last is not None:  # a layer's second row
            rows[last] += cells[2].split()
    assert sorted(rows) == list(range(len(layers)))
    for index, (_, units) in enumerate(layers):
        assert rows[index] == list(units), f"layer {index} of the picture is not LAYERS[{index}]"


def test_every_unit_has_its_paragraph_under_its_layer(layers, page):
    sections = re.split(r"^## (\d) .*$", page, flags=re.M)
    by_layer = {int(sections[i]): sections[i + 1] for i in range(1, len(sections), 2)}
    assert sorted(by_layer) == list(range(len(layers)))
    for index, (_, units) in enumerate(layers):
        for unit in units:
            match = re.search(rf"^### `medlung\.{re.escape(unit)}`\n\n(.+?)(?=\n### |\Z)", by_layer[index], re.M | re.S)
            assert match, f"docs/architecture.md has no paragraph for medlung.{unit} under layer {index}"
            assert len(match.group(1).split()) >= 8, f"medlung.{unit}: say what lives there and what it may import"
    named = set(re.findall(r"^### `medlung\.([\w.]+)`", page, re.M))
    assert named == {unit for _, units in layers for unit in units}  # and no paragraph for a unit that is gone


def test_the_page_is_in_the_site_and_the_design_page_points_to_it():
    assert "architecture.md" in (REPO / "mkdocs.yml").read_text()
    layers_section = (REPO / "docs" / "design.md").read_text().split("## Layers\n", 1)[1].split("\n## ", 1)[0]
    assert "(architecture.md)" in layers_section
