"""``medlung predict --scheduler`` and ``medlung.services.distributed``: a real Dask LocalCluster of worker processes."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests import dicom_factory as factory

distributed = pytest.importorskip("distributed", reason="Dask is an optional extra: pip install 'medlung[dask]'")

pytestmark = pytest.mark.slow

#: Outputs asked for in these tests: cheap ones (the SEG for DICOM films, the PNG mask for all).
FORMATS = ("seg", "png")


@pytest.fixture(scope="module")
def films(shared_data, tmp_path_factory):
    """30 inputs: 14 Shenzhen PNGs, 14 small DICOMs made from other Shenzhen films (with spacing), 2 bad files."""
    folder = tmp_path_factory.mktemp("films")
    images = sorted((shared_data / "shenzhen" / "images").glob("*.png"))[:28]
    for index, image in enumerate(images):
        if index % 2:
            shutil.copy(image, folder / image.name)
        else:
            pixels = np.asarray(Image.open(image)).astype(np.uint16) * 16
            ds = factory.radiograph(
                pixels, factory.CR, bits_stored=12, PixelSpacing=[0.7, 0.7], PatientOrientation=["L", "F"]
            )
            factory.write(ds, folder / f"{image.stem}.dcm")
    (folder / "broken.dcm").write_bytes(b"DICM" * 10)
    (folder / "empty.png").write_bytes(b"")
    return folder


def expected_outputs(folder) -> set[str]:
    names = set()
    for film in folder.iterdir():
        if film.name in ("broken.dcm", "empty.png"):
            continue
        names.add(f"{film.stem}_lungs.png")
        if film.suffix == ".dcm":
            names.add(f"{film.stem}_seg.dcm")
    return names


def visible_outputs(out) -> list[str]:
    """Output files (a killed worker may leave a hidden ``.<name>.part`` temporary; it is never an output)."""
    return sorted(p.name for p in out.iterdir() if not p.name.startswith(".") and not p.name.startswith("report"))


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes, one thread each, as ``--scheduler local:2`` starts them."""
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as local,
        distributed.Client(local) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def cli_run(films, shipped_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("out-cli")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "medlung",
            "predict",
            films,
            "-o",
            out,
            "--scheduler",
            "local:2",
            "--format",
            ",".join(FORMATS),
            "--bundle",
            shipped_bundle,
        ],
        capture_output=True,
        text=True,
    )
    return out, result


def test_cli_local_cluster_segments_every_good_film_once_and_reports_the_bad(films, cli_run):
    out, result = cli_run
    assert result.returncode == 1, result.stderr[-2000:]
    assert "done 28, failed 2" in result.stdout and "Traceback" not in result.stderr
    rows = list(csv.DictReader(open(out / "report.csv")))
    assert sorted(os.path.basename(r["file"]) for r in rows) == sorted(p.name for p in films.iterdir())
    status = {os.path.basename(r["file"]): r["status"] for r in rows}
    assert status.pop("broken.dcm") == "error" and status.pop("empty.png") == "error"
    assert set(status.values()) == {"ok"}
    assert visible_outputs(out) == sorted(expected_outputs(films))
    assert len((out / "report.json").read_text().strip()) > 2


def test_seg_uids_are_those_of_a_plain_run(films, cli_run, shipped_bundle, tmp_path):
    from pydicom import dcmread

    out, _ = cli_run
    film = sorted(films.glob("CHNCXR_*.dcm"))[0]
    plain = subprocess.run(
        [
            sys.executable,
            "-m",
            "medlung",
            "predict",
            film,
            "-o",
            tmp_path,
            "--format",
            "seg",
            "--bundle",
            shipped_bundle,
        ],
        capture_output=True,
        text=True,
    )
    assert plain.returncode == 0, plain.stderr
    ours, theirs = dcmread(out / f"{film.stem}_seg.dcm"), dcmread(tmp_path / f"{film.stem}_seg.dcm")
    assert ours.SOPInstanceUID == theirs.SOPInstanceUID and ours.SeriesInstanceUID == theirs.SeriesInstanceUID
    assert np.array_equal(ours.pixel_array, theirs.pixel_array)


def test_rerun_skips_finished_films(films, cli_run, cluster, shipped_bundle):
    from medlung.pipeline.settings import PredictSettings
    from medlung.services import distributed as md

    out, _ = cli_run
    before = {name: (out / name).stat().st_mtime_ns for name in visible_outputs(out)}
    rows = list(
        md.predict(
            sorted(films.iterdir()),
            out,
            client=cluster,
            settings=PredictSettings(bundle=shipped_bundle, formats=FORMATS),
        )
    )
    assert sorted(r["status"] for r in rows) == ["error"] * 2 + ["skipped"] * 28
    assert {name: (out / name).stat().st_mtime_ns for name in visible_outputs(out)} == before
    assert (out / "report.1.csv").is_file()  # the first run's report is kept


def test_worker_killed_mid_run_loses_no_film_and_writes_nothing_twice(films, cluster, shipped_bundle, tmp_path):
    from medlung.pipeline.settings import PredictSettings
    from medlung.services import distributed as md

    killed = []

    def kill_a_busy_worker(row):
        if killed:
            return
        busy = [address for address, keys in cluster.processing().items() if keys]
        if busy:
            pid = cluster.run(os.getpid, workers=[busy[0]])[busy[0]]
            os.kill(pid, signal.SIGKILL)
            killed.append(busy[0])

    rows = list(
        md.predict(
            sorted(films.iterdir()),
            tmp_path,
            client=cluster,
            settings=PredictSettings(bundle=shipped_bundle, formats=FORMATS),
            progress=kill_a_busy_worker,
        )
    )
    assert killed, "no worker was busy to kill"
    files = [os.path.basename(r["file"]) for r in rows]
    assert sorted(files) == sorted(p.name for p in films.iterdir())  # every film exactly once
    status = {os.path.basename(r["file"]): r["status"] for r in rows}
    # rows come in the order films finish: which of the two bad ones fails first is not fixed
    assert sorted(name for name, s in status.items() if s == "error") == ["broken.dcm", "empty.png"]
    assert visible_outputs(tmp_path) == sorted(expected_outputs(films))
    csv_rows = list(csv.DictReader(open(tmp_path / "report.csv")))
    assert sorted(os.path.basename(r["file"]) for r in csv_rows) == sorted(files)


def test_manifest_of_10000_paths_streams_in_bounded_batches(films, cluster, shipped_bundle, tmp_path):
    import psutil

    from medlung.pipeline.settings import PredictSettings
    from medlung.services import distributed as md

    real = sorted(films.glob("CHNCXR_*"))[:4]
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w") as handle:
        handle.write("path,note\n")
        for index in range(10_000):
            path = real[index // 2500] if index % 2500 == 0 else f"missing/film_{index:05d}.dcm"
            handle.write(f"{path},x\n")
    pulled = [0]

    def counted(paths):
        for path in paths:
            pulled[0] += 1
            yield path

    process = psutil.Process()
    start_rss = process.memory_info().rss
    seen = {"rows": 0, "ahead": 0, "rss": start_rss}

    def watch(row):
        seen["rows"] += 1
        seen["ahead"] = max(seen["ahead"], pulled[0] - seen["rows"])
        if seen["rows"] % 250 == 0:
            seen["rss"] = max(seen["rss"], process.memory_info().rss)

    out = tmp_path / "out"
    rows = md.predict(
        counted(md.read_manifest(manifest)),
        out,
        client=cluster,
        settings=PredictSettings(bundle=shipped_bundle, formats=("png",)),
        max_in_flight=8,
        progress=watch,
    )
    statuses = {}
    for row in rows:
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    assert statuses == {"ok": 4, "error": 9_996}
    # the manifest is read only as far as the films in flight: never built up front
    assert seen["ahead"] <= 8 + 1
    assert sum(1 for _ in open(out / "report.csv")) == 10_001
    growth_mb = (seen["rss"] - start_rss) / 2**20
    print(f"\nRSS growth over 10,000 manifest rows: {growth_mb:.1f} MB")
    assert growth_mb < 64, "the client's memory should not grow with the manifest"


def test_manifest_formats(tmp_path):
    from medlung.services.distributed import read_manifest

    (tmp_path / "list.txt").write_text("# films\na.dcm\n\n/abs/b.png\n")
    assert list(read_manifest(tmp_path / "list.txt")) == [tmp_path / "a.dcm", tmp_path.parent / "/abs/b.png"]
    (tmp_path / "list.csv").write_text("id,Path\n1,c.dcm\n2,d.dcm\n")
    assert list(read_manifest(tmp_path / "list.csv")) == [tmp_path / "c.dcm", tmp_path / "d.dcm"]
