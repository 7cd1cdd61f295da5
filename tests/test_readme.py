"""The README's Python example runs as written from any folder (on a shipped sample film)."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_python_example_runs(shipped_bundle, monkeypatch, capsys, tmp_path):
    text = (REPO / "README.md").read_text()
    example = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert len([line for line in example.splitlines() if line.strip()]) <= 6
    monkeypatch.chdir(tmp_path)  # as a reader runs it: from their own folder, not from medlung/samples
    monkeypatch.setenv("MEDLUNG_BUNDLE", str(shipped_bundle))
    exec(compile(example, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "(512, 512)" in out and "unknown" in out
