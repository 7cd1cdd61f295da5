"""The docs say what the code does: the checks a new user made by hand on the quickstart, README and formats."""

from __future__ import annotations

import re
from pathlib import Path

from medlung.writers.overlay import MAX_SIDE
from medlung.writers.report import COLUMNS

REPO = Path(__file__).resolve().parents[2]


def read(name: str) -> str:
    return (REPO / name).read_text()


def test_quickstart_names_the_command_make_demo_runs():
    recipe = read("Makefile").split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    command = re.search(r"medlung (\w+)", recipe).group(1)
    quickstart = read("docs/quickstart.md")
    assert f"`make demo` ends with `medlung {command}`" in quickstart
    assert f"runs `medlung {command}` on the sample films" in quickstart


def test_rerun_is_documented_as_skipping_with_status_skipped():
    quickstart = read("docs/quickstart.md")
    assert "is refused (`out/first already holds" not in quickstart and "status `skipped`" in quickstart
    formats = read("docs/formats.md")
    for status in ("`ok`", "`error`", "`skipped`"):
        assert status in formats.split("`status` is one of", 1)[1][:900]
    for column in ("right_px", "left_px", "total_px"):
        assert column in COLUMNS and f"`{column}`" in formats


def test_both_make_targets_install_the_extras_and_the_docs_say_so():
    makefile = read("Makefile")
    assert (
        '-e ".[test,docs,dev]"' in makefile
        and re.search(r"^demo: venv", makefile, re.M)
        and re.search(r"^test: venv", makefile, re.M)
    )
    for name in ("README.md", "docs/quickstart.md"):
        text = read(name)
        assert "plus test/docs extras" not in text and "plus the test and docs extras" not in text, name
        assert "`test`, `docs` and `dev` extras" in " ".join(text.split()), name


def test_overlays_are_called_previews_where_outputs_are_called_native():
    for name in ("README.md", "docs/formats.md", "docs/concepts.md"):
        text = read(name)
        assert "preview" in text and str(MAX_SIDE) in text, name


def test_samples_readme_and_exit_status_rule():
    assert "once it exists" not in read("medlung/samples/README.md")
    cli = read("docs/cli.md")
    assert "## Exit status" in cli and "usage error" in cli.lower()
