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
    (
        "core",
        (
            "version",
            "environment",
            "defaults",
            "errors",
            "logs",
            "plans",
            "labels",
            "spacing",
            "film",
            "uids",
            "atomic",
            "tables",
            "memory",
        ),
    ),
    ("reading and measuring", ("io", "metrics", "orientation")),
    (
        "building blocks",
        ("transforms", "networks", "writers", "quality", "estimation", "pacs"),
    ),
    ("models", ("inference", "training")),
    ("pipeline", ("pipeline", "evaluation")),
    ("services", ("services", "bundle")),
    ("doors", ("cli", "__init__", "__main__", "samples", "notebook")),
)
#: Layers whose units may import each other (the core's small modules; the doors, which only dispatch).
OPEN_LAYERS = ("core", "doors")
#: Imports made at call time by methods that present a core object in another form, for the user who asks:
#: a film or a result shows itself in a notebook, or converts itself to an ITK image. They are not dependencies of
#: the layer (nothing is imported until the method is called), so they are listed here instead of forbidden.
PRESENTATION_IMPORTS = {("film", "notebook"), ("inference.segmenter", "notebook")}


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


def _is_module(name: str) -> bool:
    base = PACKAGE.parent / Path(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports_of(path: Path) -> set[str]:
    """medlung modules imported anywhere in ``path`` (without the ``medlung.`` prefix)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("medlung"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("medlung") and node.level == 0:
            submodules = {f"{node.module}.{a.name}" for a in node.names if _is_module(f"{node.module}.{a.name}")}
            found.update(submodules)
            if len(submodules) < len(node.names):  # a name defined in the module (or package) itself
                found.add(node.module if node.module != "medlung" else "medlung.__init__")
    existing = {"__init__"} if "medlung.__init__" in found else set()
    for name in found:
        if _is_module(name):
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
            if (source, target) in PRESENTATION_IMPORTS:
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


def module_graph() -> dict[str, set[str]]:
    """Module -> the medlung modules it imports (anywhere in it), without presentation imports."""
    modules: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_name(path)
        targets = {t for t in imports_of(path) if (source, t) not in PRESENTATION_IMPORTS and t != source}
        known = {module_name(p) for p in PACKAGE.rglob("*.py")}
        modules[source] = {t for t in targets if t in known}
    return modules


def import_cycles(modules: dict[str, set[str]] | None = None) -> list[list[str]]:
    """Groups of modules that import each other in a circle (Tarjan's strongly connected components).

    A package's ``__init__`` importing its own modules (to re-export them) is
    not a circle by itself; one of those modules importing the package back is.
    """
    modules = module_graph() if modules is None else modules
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # recursion depth is the import depth: a few dozen
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in modules.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(modules):
        if node not in index:
            visit(node)
    return sorted(cycles)


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
    cycles = import_cycles()
    for group in cycles:
        print("CIRCLE:", " <-> ".join(f"medlung.{m}" for m in group), file=sys.stderr)
    return 1 if violations or cycles else 0


if __name__ == "__main__":
    raise SystemExit(main())
