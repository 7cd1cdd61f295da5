"""The README's Python example runs as written (on a shipped sample film)."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_python_example_runs(shipped_bundle, monkeypatch, capsys):
    text = (REPO / "README.md").read_text()
    example = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert len([line for line in example.splitlines() if line.strip()]) <= 6
    from medlung.samples import SAMPLES_DIR

    monkeypatch.chdir(SAMPLES_DIR)
    monkeypatch.setenv("MEDLUNG_BUNDLE", str(shipped_bundle))
    exec(compile(example, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "(440, 440)" in out and "unknown" in out
