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
    # the first sample is a human chest with a true (derived) spacing: plausible cm², not pixels (#28)
    assert "(512, 512) (0.768, 0.749) png-pHYs" in out
    areas = {k: float(v) for k, v in re.findall(r"'(right|left)': ([0-9.]+)", out)}
    assert 120 < areas["right"] < 300 and 80 < areas["left"] < 250, out
