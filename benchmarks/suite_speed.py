"""Is the test suite slower than it was? The tests two trees share, run side by side.

A suite that grows gets slower as a whole; what should not get slower is
each test that was already there. This script takes an older checkout (a
``git worktree`` of an earlier commit) and this one, collects the test ids
of both, and runs the ids they share in both trees at the same time (one
pytest process per tree, so the machine's load falls on both alike), then
prints the seconds of each and their ratio.

Run::

    git worktree add --detach /tmp/before 9f9091e
    .venv/bin/python benchmarks/suite_speed.py /tmp/before [-k EXPRESSION]

Both runs use this checkout's Python environment, each with its own tree
first on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _environment(tree: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(tree)}


def collect(tree: Path, expression: str | None) -> list[str]:
    """The test ids pytest collects in ``tree`` (node ids relative to it)."""
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    if expression:
        command += ["-k", expression]
    listing = subprocess.run(command, cwd=tree, env=_environment(tree), capture_output=True, text=True, check=False)
    return [line for line in listing.stdout.splitlines() if "::" in line]


def _runner(ids_file: Path) -> str:
    """Python source that runs the ids listed in ``ids_file`` (ids may hold spaces: no command-line splitting)."""
    return (
        "import sys, pytest\n"
        f"ids = [line.rstrip('\\n') for line in open({str(ids_file)!r}) if line.strip()]\n"
        "sys.exit(pytest.main(sys.argv[1:] + ids))\n"
    )


def seconds_of(report: Path) -> float:
    """Sum of the test times in a JUnit XML report, seconds."""
    return sum(float(case.get("time", 0)) for case in ElementTree.parse(report).iter("testcase"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="checkout of the earlier commit")
    parser.add_argument("-k", dest="expression", help="only the shared tests pytest -k selects")
    args = parser.parse_args()
    before, after = args.before.resolve(), REPO
    shared = sorted(set(collect(before, args.expression)) & set(collect(after, args.expression)))
    if not shared:
        print("no test ids in common", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="suite_speed_"))
    ids_file = work / "ids.txt"
    ids_file.write_text("\n".join(shared) + "\n")
    runs = {}
    for name, tree in (("before", before), ("after", after)):
        log = open(work / f"{name}.log", "w")
        runs[name] = (
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _runner(ids_file),
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    f"--junitxml={work / name}.xml",
                ],
                cwd=tree,
                env=_environment(tree),
                stdout=log,
                stderr=subprocess.STDOUT,
            ),
            log,
        )
    for process, log in runs.values():
        process.wait()
        log.close()
    print(f"{len(shared)} tests in both trees, run side by side (logs in {work})")
    totals = {}
    for name, (process, _) in runs.items():
        totals[name] = seconds_of(work / f"{name}.xml")
        print(f"  {name:6s} {totals[name]:8.1f} s of test time, pytest exit {process.returncode}")
    print(f"  after / before: {totals['after'] / totals['before']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
