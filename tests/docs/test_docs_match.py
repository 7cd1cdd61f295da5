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


def test_rerun_into_the_same_folder_is_not_documented_as_refused():
    """predict into a folder with a report goes on (exit 0, skips, renames old reports): no page says otherwise."""
    for name in ("README.md", "docs/troubleshooting.md", "docs/cli.md", "docs/quickstart.md"):
        text = " ".join(read(name).split())
        assert "refuses to start" not in text, name
    cli = " ".join(read("docs/cli.md").split())
    assert "`predict` into a folder with an earlier run is not an error" in cli and "report.<n>.csv" in cli


def test_troubleshooting_has_no_stale_matplotlib_entry():
    import configparser

    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    assert "matplotlib" in config["options"]["install_requires"]  # installed with medlung
    assert "No module named\n  'matplotlib'" not in read("docs/troubleshooting.md")
    assert "'matplotlib'" not in read("docs/troubleshooting.md")


def test_readme_says_what_make_test_does_without_the_tools_and_that_it_fetches_ohif():
    text = " ".join(read("README.md").split())
    assert "skip" in text and "Orthanc" in text and "Chromium" in text
    assert "`npm ci`" in text and "downloads OHIF's prebuilt app" in text


def test_quality_codes_of_the_docs_are_the_codes_of_the_code():
    from medlung.quality import REASON_CODES

    concepts = read("docs/concepts.md")
    for code in REASON_CODES:
        assert f"| `{code}` |" in concepts, code


def test_the_sample_with_a_spacing_has_its_provenance():
    samples = read("medlung/samples/README.md")
    assert "`00000001_000.png`" in samples and "There are no restrictions on the use of the NIH chest x-ray" in samples
    assert "Monochrome1-Jpeg.dcm" in samples and "GPL-3.0" in samples  # the candidate not shipped, and why
