"""Check that medlung's layers import downward only, and print the import graph between packages.

Each module belongs to a layer (see ``docs/design.md``, "Layers"); a module may
import modules of lower layers and of its own package, never of a higher
layer or of another package in the same layer (except in the core and the
doors, whose small modules may use each other). Imports inside functions count
too (they are how heavy dependencies are deferred, not a way around layers).

Usage::

    python scripts/import_layers.py            # the graph, then any violation; exit 1 if there is one
    python scripts/import_layers.py --dot      # the graph in Graphviz dot
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "medlung"

#: Layers from the bottom up; each entry is a package or module under medlung.
LAYERS = (
    ("core", ("errors", "logs", "plans", "labels", "spacing", "film", "uids", "writers.atomic")),
    ("reading and measuring", ("io", "metrics", "orientation")),
    (
        "building blocks",
        ("transforms", "networks", "writers", "quality", "pacs", "pacs.send", "pacs.queue", "pacs.tls"),
    ),
    ("models", ("inference", "training")),
    ("pipeline", ("pipeline", "evaluation")),
    ("services", ("pacs.serve", "distributed", "bundle")),
    ("doors", ("cli", "__init__", "__main__", "samples", "notebook")),
)
#: Layers whose units may import each other (the core's small modules; the doors, which only dispatch).
OPEN_LAYERS = ("core", "doors")
#: Imports made at call time by methods that present a core object in another form, for the user who asks:
#: a film or a result shows itself in a notebook, or converts itself to an ITK image. They are not dependencies of
#: the layer (nothing is imported until the method is called), so they are listed here instead of forbidden.
PRESENTATION_IMPORTS = {("film", "notebook"), ("film", "io.itk_formats"), ("inference.segmenter", "notebook")}


def unit_of(module: str) -> str:
    """The layer unit (package or module, as named in :data:`LAYERS`) of ``medlung.<module>``."""
    names = {name for _, units in LAYERS for name in units}
    parts = module.split(".")
    for length in range(len(parts), 0, -1):
        candidate = ".".join(parts[:length])
        if candidate in names:
            return candidate
    return parts[0]


def layer_of(unit: str) -> int:
    for index, (_, units) in enumerate(LAYERS):
        if unit in units:
            return index
    raise KeyError(f"medlung.{unit} is in no layer: add it to LAYERS in {__file__}")


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """medlung modules imported anywhere in ``path`` (without the ``medlung.`` prefix)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("medlung"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("medlung") and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    existing = set()
    for name in found:
        base = PACKAGE.parent / Path(*name.split("."))
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            existing.add(name.removeprefix("medlung").lstrip("."))
    return {name for name in existing if name}  # the package root (``from medlung import __version__``) is left out


def graph() -> tuple[dict[tuple[str, str], int], list[str]]:
    """Edges between units (with the number of imports) and the violations found."""
    edges: dict[tuple[str, str], int] = {}
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_name(path)
        source_unit = unit_of(source)
        for target in sorted(imports_of(path)):
            target_unit = unit_of(target)
            if source_unit.split(".")[0] == target_unit.split(".")[0]:
                continue  # within one package (pacs.send uses pacs.tls)
            edges[(source_unit, target_unit)] = edges.get((source_unit, target_unit), 0) + 1
            if target_unit in ("__init__",) or (source, target) in PRESENTATION_IMPORTS:
                continue
            up = layer_of(target_unit) > layer_of(source_unit)
            sideways = (
                layer_of(target_unit) == layer_of(source_unit) and LAYERS[layer_of(source_unit)][0] not in OPEN_LAYERS
            )
            if up or sideways:
                violations.append(
                    f"medlung.{source} imports medlung.{target} "
                    f"({'upward' if up else 'sideways'}: {LAYERS[layer_of(source_unit)][0]} -> "
                    f"{LAYERS[layer_of(target_unit)][0]})"
                )
    return edges, violations


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dot", action="store_true", help="print the graph in Graphviz dot")
    args = parser.parse_args(argv)
    edges, violations = graph()
    if args.dot:
        print("digraph medlung {\n  rankdir=BT;")
        for (a, b), n in sorted(edges.items()):
            print(f'  "{a}" -> "{b}" [label={n}];')
        print("}")
    else:
        for index, (name, units) in reversed(list(enumerate(LAYERS))):
            print(f"{index} {name}: {', '.join(units)}")
        print()
        for (a, b), n in sorted(edges.items(), key=lambda e: (-layer_of(e[0][0]), e[0])):
            print(f"{a} -> {b} ({n})")
    for line in violations:
        print("VIOLATION:", line, file=sys.stderr)
    return 1 if violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
