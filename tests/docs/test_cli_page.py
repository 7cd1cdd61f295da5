"""The command-line docs are click's own help: the reference page is rendered from the commands, and every option
the other pages give a command is one that command has."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from medlung.cli import cli

REPO = Path(__file__).resolve().parents[2]
#: ``medlung <command> ...`` up to the end of a code span, a comment or the line (a trailing backslash continues it).
_COMMAND = re.compile(r"medlung (" + "|".join(sorted(cli.commands)) + r")\b((?:[^`#\n]|\\\n)*)")


def _options(command: click.Command) -> set[str]:
    options = [param for param in command.params if isinstance(param, click.Option)]
    return {opt for param in options for opt in (*param.opts, *param.secondary_opts)} | {"--help", "-h"}


def _rendered_page() -> str:
    markdown = pytest.importorskip("markdown", reason="the docs extra renders the CLI page")
    pytest.importorskip("mkdocs_click", reason="the docs extra renders the CLI page")
    return markdown.markdown((REPO / "docs" / "cli.md").read_text(), extensions=["mkdocs-click", "attr_list"])


def test_the_reference_page_is_rendered_from_the_click_group():
    page = (REPO / "docs" / "cli.md").read_text()
    directive = re.search(r"::: mkdocs-click\n((?:    :\w+: .*\n)+)", page)
    assert directive, "docs/cli.md must render the commands with the mkdocs-click directive, not by hand"
    settings = dict(re.findall(r":(\w+): (.*)", directive.group(1)))
    assert (settings["module"], settings["command"], settings["prog_name"]) == ("medlung.cli", "cli", "medlung")
    assert settings.get("list_subcommands") == "true" and int(settings["depth"]) >= 1
    # no hand-written copy of the options that could drift from the code
    assert not re.search(r"^\s*(-\w, )?--\w[\w-]* ", page.split("::: mkdocs-click", 1)[0], re.M)


def test_every_command_and_option_is_on_the_rendered_page():
    html = _rendered_page()
    sections = re.split(r"<h3[^>]*>", html)
    by_name = {re.match(r"([\w-]+)</h3>", s).group(1): s for s in sections[1:] if re.match(r"[\w-]+</h3>", s)}
    assert set(by_name) == {name for name, c in cli.commands.items() if not c.hidden}
    for name, command in cli.commands.items():
        assert command.get_short_help_str(limit=300).split(":")[0] in by_name[name], name
        for option in _options(command):
            assert option in by_name[name], f"medlung {name} {option} is missing from the rendered page"


def test_options_written_after_a_command_in_the_docs_are_options_of_that_command():
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("**/*.md"))]
    checked = 0
    for page in pages:
        for match in _COMMAND.finditer(page.read_text()):
            name, rest = match.groups()
            known = _options(cli.commands[name])
            for option in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", rest):
                checked += 1
                assert option in known, f"{page.relative_to(REPO)}: medlung {name} has no option {option}"
    assert checked > 20  # the pages do show commands with their options
