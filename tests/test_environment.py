"""Every MEDLUNG_* variable is read through medlung.environment, registered there, and shown on the docs page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from medlung import environment

REPO = Path(__file__).resolve().parents[1]
NAME = re.compile(r"\bMEDLUNG_[A-Z0-9_]+\b")
#: Reads of the process environment; writes (os.environ.setdefault for child processes) are not reads.
READ = re.compile(r"(os\.environ\.get|os\.getenv|os\.environ\[)\(?\s*[\"']MEDLUNG_")


def _sources(*folders: str):
    for folder in folders:
        yield from (REPO / folder).rglob("*.py")


def test_no_module_reads_a_medlung_variable_by_itself():
    readers = [
        f"{path.relative_to(REPO)}:{number}"
        for path in _sources("medlung")
        if path.name != "environment.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if READ.search(line)
    ]
    assert readers == [], "read these through medlung.environment: " + ", ".join(readers)


def test_every_name_in_the_code_and_tests_is_registered():
    registered = {v.name for v in environment.VARIABLES}
    named = {name for path in _sources("medlung", "tests") for name in NAME.findall(path.read_text())}
    named -= {"MEDLUNG_UID_NAMESPACE", "MEDLUNG_TYPO"}  # a constant of medlung.uids; the misspelling tested below
    assert named - registered == set()


def test_the_docs_page_lists_every_variable_and_no_other():
    import importlib.util

    spec = importlib.util.spec_from_file_location("hooks", REPO / "docs" / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    page = hooks.on_page_markdown((REPO / "docs" / "environment.md").read_text(), None, None, None)
    assert "medlung:environment" not in page
    for variable in environment.VARIABLES:
        assert f"| `{variable.name}` | {variable.meaning}" in page
    assert set(NAME.findall(page)) == {v.name for v in environment.VARIABLES}


def test_flags_and_values_are_read_when_asked(monkeypatch):
    monkeypatch.setenv("MEDLUNG_NO_PROGRESS", "0")
    assert not environment.no_progress()
    monkeypatch.setenv("MEDLUNG_NO_PROGRESS", "yes")
    assert environment.no_progress()
    monkeypatch.setenv("MEDLUNG_DECODE_THREADS", "three")
    assert environment.decode_threads() is None
    monkeypatch.setenv("MEDLUNG_DECODE_THREADS", "3")
    assert environment.decode_threads() == 3
    monkeypatch.setenv("MEDLUNG_BUNDLE", "")
    assert environment.bundle_override() is None
    with pytest.raises(KeyError, match="MEDLUNG_TYPO"):
        environment.get("MEDLUNG_TYPO")
