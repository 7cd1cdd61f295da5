"""``medlung pull`` / ``predict --from`` against a real Orthanc: studies in, SEG + SR back in their studies."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pydicom

from tests.pacs.pull_support import ACCESSION_B, MOVE_AE, move_port, pacs, studies  # noqa: F401  (fixtures)
from tests.writers.sr_support import read_with_highdicom


def medlung(*args, bundle):
    return subprocess.run(
        [sys.executable, "-m", "medlung", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "MEDLUNG_BUNDLE": str(bundle)},
        timeout=600,
    )


def _rows(path):
    return {row["study_instance_uid"] or row["accession_number"]: row for row in csv.DictReader(open(path))}


def _results_in(pacs, study: str, films: list[str]) -> None:
    """Each film of ``study`` has its SEG and its SR in the PACS, the SR referencing that SEG and film."""
    stored = pacs.study_instances(study)
    segs = [t for t in stored if t["Modality"] == "SEG" and "someone-else" not in t.get("ContentDescription", "")]
    srs = [t for t in stored if t["Modality"] == "SR"]
    assert len(segs) == len(srs) == len(films)
    for sr in srs:
        instance = pacs.instances_with_uid(sr["SOPInstanceUID"])[0]
        path = pacs.folder / f"{sr['SOPInstanceUID']}.dcm"
        path.write_bytes(pacs.get(f"/instances/{instance}/file"))
        groups = read_with_highdicom(path)
        assert groups["right"]["seg"] in {s["SOPInstanceUID"] for s in segs}
        assert groups["right"]["source"][0] in films


def test_a_study_list_pulled_over_dicomweb_comes_back_as_seg_and_sr(pacs, studies, shipped_bundle, tmp_path):
    listing = tmp_path / "studies.txt"
    listing.write_text(f"# studies to pull\n{studies.uids['A']}\n{studies.uids['C']}\n{studies.uids['D']}\n")
    out = tmp_path / "out"
    args = ["pull", "--from", pacs.dicomweb, "--study-list", listing, "--accession", ACCESSION_B, "-o", out]
    args += ["--stow", pacs.dicomweb, "--format", "seg,sr,png"]
    result = medlung(*args, bundle=shipped_bundle)
    assert result.returncode == 1, result.stderr  # study D's film cannot be read: one row, the others are done
    assert "Traceback" not in result.stderr
    rows = _rows(out / "pull.csv")
    uid = studies.uids
    assert [rows[uid[k]]["status"] for k in "ACDB"] == ["ok", "empty", "error", "ok"]
    assert rows[uid["A"]]["films"] == "2" and rows[uid["A"]]["fetched"] == "2" and rows[uid["A"]]["sent"] == "2"
    assert rows[uid["B"]]["accession_number"] == ACCESSION_B
    assert f"{studies.films['D'][0]}.dcm" in rows[uid["D"]]["error"]  # the film's own error line
    _results_in(pacs, uid["A"], studies.films["A"])
    _results_in(pacs, uid["B"], studies.films["B"])
    assert not [t for t in pacs.study_instances(uid["D"]) if t["Modality"] in ("SEG", "SR")]
    films = {p: p.stat().st_mtime_ns for p in (out / "films").rglob("*.dcm")}
    assert len(films) == 4  # A's two, B's, D's: the SEG of study A and C's capture were not fetched
    state = json.loads((out / "pull-state.json").read_text())["finished"]
    assert set(state) == {uid["A"], uid["B"]}

    again = medlung(*args, bundle=shipped_bundle)
    assert again.returncode == 1
    rows = _rows(out / "pull.csv")
    assert [rows[uid[k]]["status"] for k in "ACDB"] == ["skipped", "empty", "error", "skipped"]
    assert rows[uid["D"]]["fetched"] == "0"  # the unfinished study is tried again, from the film already here
    assert {p: p.stat().st_mtime_ns for p in (out / "films").rglob("*.dcm")} == films  # nothing fetched again
    assert (out / "pull.1.csv").is_file()  # the first run's report is kept
    _results_in(pacs, uid["A"], studies.films["A"])  # and nothing was stored twice


def test_predict_from_a_dimse_pacs_with_c_move_sends_the_results_back(
    pacs, studies, shipped_bundle, tmp_path, move_port
):
    out = tmp_path / "out"
    result = medlung(
        "predict",
        studies.uids["B"],
        "--from",
        pacs.destination,
        "--retrieve",
        "move",
        "--move-ae",
        MOVE_AE,
        "--move-port",
        move_port,
        "-o",
        out,
        "--send",
        pacs.destination,
        "--format",
        "seg,sr",
        bundle=shipped_bundle,
    )
    assert result.returncode == 0, result.stderr
    (film,) = studies.films["B"]
    assert pydicom.dcmread(out / f"{film}_sr.dcm").StudyInstanceUID == studies.uids["B"]
    assert json.load(open(out / "report.json"))[0]["status"] in ("ok", "skipped")
    _results_in(pacs, studies.uids["B"], studies.films["B"])


def test_usage_errors_name_what_is_missing(tmp_path):
    from click.testing import CliRunner

    from medlung.cli import cli

    def run(*args):
        return CliRunner().invoke(cli, [*map(str, args), "-o", str(tmp_path / "out")], obj={})

    result = run("pull", "1.2.3")
    assert result.exit_code == 2 and "needs --from" in result.output
    result = run("predict", "--accession", "A1")
    assert result.exit_code == 2 and "--accession needs --from" in result.output
    result = run("pull", "--from", "PACS@127.0.0.1:104")
    assert result.exit_code == 2 and "name the studies" in result.output
    result = run("pull", "1.2.3", "--from", "PACS@127.0.0.1:104", "--query", "Colour=red")
    assert result.exit_code == 2 and "Colour=red" in result.output
    result = run("pull", "1.2.3", "--from", "PACS@127.0.0.1:104", "--manifest", tmp_path)
    assert result.exit_code == 2
    assert not (tmp_path / "out").exists()
