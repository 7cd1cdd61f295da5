"""``medlung serve`` as a real subprocess, between real DICOM peers, on 127.0.0.1 only.

The node is started with ``python -m medlung serve`` on a free port and
sends its SEGs to a real Orthanc; films reach it from Orthanc
(``/modalities/{name}/store``) or from a pynetdicom client in the test. Every
wait is a bounded loop.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import JPEG2000Lossless, RLELossless, generate_uid

from medlung.inference.reporting import report_items
from medlung.services.node.spool import Spool
from medlung.writers.dicom_seg import seg_identity, write_dicom_seg
from medlung.writers.dicom_sr import write_dicom_sr
from tests import dicom_factory as factory
from tests.pacs.orthanc import free_port, restart_orthanc, start_orthanc, stop_orthanc
from tests.writers.seg_support import load, two_lungs
from tests.writers.sr_support import masks_of, read_with_highdicom

REPO = Path(__file__).resolve().parents[3]
NODE_AE = "MEDLUNG"
CLIENT_AE = "MLTEST"
#: Seconds a node may take to load its model and listen, on 2 busy cores.
START_TIMEOUT_S = 180
#: Seconds one small film may take from C-STORE to SEG in Orthanc, at worst, on 2 busy cores.
PER_FILM_S = 20
FULL_SHAPE = (4892, 4020)  # rows x cols: 4020 wide, 4892 high
#: Seconds the test client waits for the node's answer to one C-STORE (it writes and fsyncs the film first:
#: seconds for a 39 MB film on busy cores), less than the 300 s the load test waits for its senders.
ANSWER_TIMEOUT_S = 60
FILM_CLASSES = [factory.CR, factory.DX_PRESENTATION, factory.DX_PROCESSING, factory.SECONDARY_CAPTURE]


# --- the node as a subprocess -----------------------------------------------------------------
class Node:
    """A ``medlung serve`` subprocess and its work folder and JSON log."""

    def __init__(self, workdir: Path, forward: str, *extra: str, port: int | None = None) -> None:
        self.workdir, self.forward, self.extra = workdir, forward, extra
        self.port = port or free_port()
        self.logs: list[Path] = []
        self.process: subprocess.Popen | None = None

    def start(self) -> Node:
        log = self.workdir.parent / f"{self.workdir.name}.log{len(self.logs)}"
        self.logs.append(log)
        command = [
            sys.executable,
            "-m",
            "medlung",
            "serve",
            "--ae-title",
            NODE_AE,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--forward",
            self.forward,
            "--workdir",
            str(self.workdir),
            "--device",
            "cpu",
            "--json-logs",
            "--resend-interval",
            "2",
            *self.extra,
        ]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(log, "wb") as stream:
            self.process = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        wait_until(lambda: self.listening(), START_TIMEOUT_S, "the node to listen", self)
        return self

    def listening(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the node exited with {self.process.returncode}:\n{self.tail()}")
        return any(e["event"] == "listening" for e in self.events(self.logs[-1]))

    def events(self, log: Path | None = None) -> list[dict]:
        """JSON log records of one run (default: every run), in order."""
        records = []
        for path in [log] if log else self.logs:
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    try:
                        records.append(json.loads(line))
                    except ValueError:
                        pass  # a line cut by SIGKILL
        return records

    def tail(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.logs[-1:])

    def counts(self) -> dict:
        return Spool(self.workdir).counts()

    def signal(self, number: int, timeout: float = 120) -> int:
        self.process.send_signal(number)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
            raise AssertionError(
                f"the node did not stop within {timeout} s after signal {number}:\n{self.tail()}"
            ) from None

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


def wait_until(condition, timeout: float, what: str, node: Node | None = None, interval: float = 0.25):
    """Poll ``condition`` until true; fail with the node's log after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}" + (f":\n{node.tail()}" if node else ""))


def push_through_node(orthanc, film: Path, study: str, node: Node, what: str = "the SEG in Orthanc") -> list[dict]:
    """Upload ``film`` to Orthanc, have Orthanc send it to the node (modality ``medlung``), wait for the SEG.

    Returns the SEG instances of ``study`` as Orthanc lists them, once there is at least one.
    """
    instance = orthanc.upload(film)
    answer = orthanc.post_json("/modalities/medlung/store", {"Resources": [instance], "Synchronous": True})
    assert answer.get("FailedInstancesCount", 0) == 0, answer

    def seg_in_study():
        return [t for t in orthanc.study_instances(study) if t.get("Modality") == "SEG"]

    return wait_until(seg_in_study, PER_FILM_S * 3, what, node)


def sends_per_film(events: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in events:
        if event["event"] == "sent":
            counts[event["key"]] = counts.get(event["key"], 0) + 1
    return counts


# --- films and a DICOM client -----------------------------------------------------------------
def make_film(
    path: Path,
    pixels: np.ndarray,
    shape: tuple[int, int],
    index: int = 0,
    study: str | None = None,
    syntax: str | None = None,
) -> Path:
    """The real Shenzhen film resized to ``shape`` (rows, cols), about 36 cm tall, as a CR/DX/SC film."""
    rows, cols = shape
    resized = np.asarray(Image.fromarray(pixels).resize((cols, rows), Image.BILINEAR)).astype(np.uint16) * 16
    sop_class = FILM_CLASSES[index % len(FILM_CLASSES)]
    photometric = "MONOCHROME1" if index % 3 == 2 else "MONOCHROME2"
    stored = 4095 - resized if photometric == "MONOCHROME1" else resized
    spacing = 0.0875 if shape == FULL_SHAPE else round(358.0 / rows, 4)
    ds = factory.radiograph(
        stored.astype(np.uint16),
        sop_class,
        photometric=photometric,
        bits_stored=12,
        PixelSpacing=[spacing, spacing],
        PatientOrientation=["L", "F"],
        StudyInstanceUID=study or generate_uid(),
        SeriesNumber=index + 1,
        InstanceNumber=1,
    )
    return factory.write(ds, path, syntax)


def send_films(paths, port: int, calling_ae: str = CLIENT_AE, resent: set | None = None) -> list[int | None]:
    """C-STORE files to the node in one association; the status of each (None: no answer, twice).

    pynetdicom's requestor can lose an answer: its reactor thread may take the
    C-STORE response off the queue ``send_c_store`` reads (it then logs
    "Received unexpected C-STORE service message", the symptom of
    pydicom/pynetdicom#875), and ``send_c_store`` waits its DIMSE timeout and
    aborts. It happens when the two threads are descheduled at the wrong
    moment (busy cores). A film whose answer was lost is sent once more on a
    new association, as any sender does; the films after it follow there.
    A lost answer costs :data:`ANSWER_TIMEOUT_S` seconds. The SOPInstanceUIDs sent twice so are added to
    ``resent``: the node received them twice, and rightly segments and forwards them twice.
    """
    from pynetdicom import AE

    datasets = [pydicom.dcmread(p) for p in paths]
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.network_timeout = 300
    ae.dimse_timeout = ANSWER_TIMEOUT_S
    for sop_class, syntax in sorted({(str(d.SOPClassUID), str(d.file_meta.TransferSyntaxUID)) for d in datasets}):
        ae.add_requested_context(sop_class, syntax)  # one context each: the node accepts every syntax
    statuses: list[int | None] = []
    lost_once: set[int] = set()
    while len(statuses) < len(datasets):
        assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE)
        assert assoc.is_established, f"association with the node failed (rejected={assoc.is_rejected})"
        try:
            for index in range(len(statuses), len(datasets)):
                answer = assoc.send_c_store(datasets[index])
                if answer and "Status" in answer:
                    statuses.append(int(answer.Status))
                elif index in lost_once or assoc.is_established:  # lost twice, or no answer that was an answer
                    statuses.append(None)
                else:  # the association was aborted with the answer lost: once more on a new one
                    lost_once.add(index)
                    if resent is not None:
                        resent.add(str(datasets[index].SOPInstanceUID))
                    break
        finally:
            if assoc.is_established:
                assoc.release()
    return statuses


@pytest.fixture(scope="module")
def small_pixels(shenzhen_pixels) -> np.ndarray:
    return np.asarray(shenzhen_pixels)


@contextmanager
def node_of(orthanc, folder: Path, modality: str, *extra: str) -> Iterator[Node]:
    """A node forwarding to ``orthanc``, which may send to it as modality ``modality``; killed on exit."""
    running = Node(folder / "work", orthanc.destination, *extra)
    try:
        running.start()
        orthanc.add_modality(modality, NODE_AE, running.port)
        yield running
    finally:
        running.close()


@pytest.fixture(scope="module")
def node(orthanc, tmp_path_factory, shipped_bundle):
    """One node for the module's quick tests: Orthanc and the test client are its only allowed callers.

    Every caller here is 127.0.0.1: the four senders of the load test and Orthanc, which keeps its own
    associations to the node open a while after use (DicomAssociationCloseDelay, 5 s). So this one address
    may hold 8 connections, not the default 4 (the per-host limit itself is tested in test_node_hostile.py).
    """
    folder = tmp_path_factory.mktemp("node")
    allow = ("--allow", f"ORTHANC,{CLIENT_AE}", "--max-associations-per-host", "8")
    with node_of(orthanc, folder, "medlung", *allow) as running:
        yield running


# --- tests ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_film_pushed_by_orthanc_comes_back_as_a_seg_in_its_study(node, orthanc, small_pixels, tmp_path):
    study = generate_uid()
    film = make_film(tmp_path / "film.dcm", small_pixels, (512, 512), study=study, syntax=JPEG2000Lossless)
    film_uid = pydicom.dcmread(film).SOPInstanceUID
    segs = push_through_node(orthanc, film, study, node)
    assert len(segs) == 1
    stored = orthanc.get(f"/instances/{orthanc.instances_with_uid(segs[0]['SOPInstanceUID'])[0]}/file")
    (tmp_path / "back.dcm").write_bytes(stored)
    seg = pydicom.dcmread(tmp_path / "back.dcm")
    assert seg.StudyInstanceUID == study
    assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == film_uid
    key = Spool.key_for(film_uid)
    wait_until(lambda: any(e["event"] == "sent" and e["key"] == key for e in node.events()), 10, "'sent'", node)
    records = [e for e in node.events() if e.get("key") == key]
    assert [e["event"] for e in records][:3] == ["received", "segmented", "sent"]
    received = records[0]
    assert received["calling_ae"] == "ORTHANC" and received["bytes"] > 0
    assert records[1]["seconds"] > 0 and records[1]["rows"] == 512
    assert records[2]["status"] == "0x0000" and records[2]["total_seconds"] >= records[1]["seconds"]
    wait_until(lambda: (node.workdir / "done" / f"{key}.dcm").exists(), 10, "the film in done/", node)
    assert pydicom.dcmread(node.workdir / "done" / f"{key}_seg.dcm") == seg  # the same data set (not File Meta)
    # the measurement report went with it, referencing that SEG
    assert records[2]["results"] == 2
    sr = pydicom.dcmread(node.workdir / "done" / f"{key}_sr.dcm")
    assert [t["Modality"] for t in orthanc.study_instances(study) if t["SOPInstanceUID"] == sr.SOPInstanceUID] == ["SR"]
    assert read_with_highdicom(node.workdir / "done" / f"{key}_sr.dcm")["right"]["seg"] == seg.SOPInstanceUID


def test_echo_allowed_ae_and_other_sop_classes_and_disallowed_ae(node):
    from pynetdicom import AE

    ae = AE(ae_title=CLIENT_AE)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context("1.2.840.10008.1.1")  # Verification
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2")  # CT Image Storage: not a film
    ae.add_requested_context(factory.DX_PROCESSING)
    assoc = ae.associate("127.0.0.1", node.port, ae_title=NODE_AE)
    assert assoc.is_established
    try:
        assert int(assoc.send_c_echo().Status) == 0
        accepted = {str(c.abstract_syntax) for c in assoc.accepted_contexts}
        rejected = {str(c.abstract_syntax) for c in assoc.rejected_contexts}
    finally:
        assoc.release()
    assert accepted == {"1.2.840.10008.1.1", factory.DX_PROCESSING}
    assert rejected == {"1.2.840.10008.5.1.4.1.1.2"}

    intruder = AE(ae_title="INTRUDER")
    intruder.acse_timeout = intruder.network_timeout = 30
    intruder.add_requested_context("1.2.840.10008.1.1")
    assoc = intruder.associate("127.0.0.1", node.port, ae_title=NODE_AE)
    assert assoc.is_rejected and not assoc.is_established
    wait_until(
        lambda: any(e["event"] == "association-rejected" and e["calling_ae"] == "INTRUDER" for e in node.events()),
        10,
        "the rejection in the log",
        node,
    )


def test_corrupt_and_non_image_instances_go_to_failed_and_the_node_keeps_serving(node, orthanc, small_pixels, tmp_path):
    no_pixels = factory.radiograph(np.zeros((64, 64), np.uint16), factory.CR)
    del no_pixels.PixelData
    no_pixels.save_as(tmp_path / "no_pixels.dcm", enforce_file_format=True)
    truncated = factory.radiograph(np.zeros((300, 300), np.uint16), factory.DX_PRESENTATION)
    truncated.PixelData = truncated.PixelData[:1000]
    truncated.save_as(tmp_path / "truncated.dcm", enforce_file_format=True)
    study = generate_uid()
    good = make_film(tmp_path / "good.dcm", small_pixels, (256, 256), 1, study=study)
    paths = [tmp_path / "no_pixels.dcm", tmp_path / "truncated.dcm", good]
    # an image without pixel data is refused at the door (0xA900, #28); a short but whole Pixel Data element is
    # DICOM the node can parse: queued, then judged
    assert send_films(paths, node.port) == [0xA900, 0, 0]

    keys = [Spool.key_for(pydicom.dcmread(p).SOPInstanceUID) for p in paths]
    assert not list(node.workdir.rglob(f"{keys[0]}*"))
    refusal = next(e for e in node.events() if e["event"] == "store-refused" and e["sop_instance_uid"] == keys[0])
    assert "no pixel data" in refusal["reason"] and refusal["status"] == "0xA900"
    wait_until(
        lambda: (node.workdir / "failed" / f"{keys[1]}.reason.txt").exists(), PER_FILM_S * 2, "the reason file", node
    )
    reason = (node.workdir / "failed" / f"{keys[1]}.reason.txt").read_text()
    assert reason.count("\n") == 1 and "pixel" in reason.lower()
    assert (node.workdir / "failed" / f"{keys[1]}.dcm").exists()
    wait_until(
        lambda: [t for t in orthanc.study_instances(study) if t.get("Modality") == "SEG"],
        PER_FILM_S * 3,
        "the good film's SEG",
        node,
    )
    failed = [e for e in node.events() if e["event"] == "failed"]
    assert {e["key"] for e in failed} >= {keys[1]} and all(e["stage"] == "segment" for e in failed)


def test_status_prints_the_queue_counts(node):
    status = subprocess.run(
        [sys.executable, "-m", "medlung", "serve", "--status", str(node.workdir), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert status.returncode == 0, status.stderr
    counts = json.loads(status.stdout)
    assert counts["running"] == node.process.pid
    assert set(counts) == {"incoming", "outgoing", "done", "failed", "running"}
    assert counts["failed"] >= 0 and counts["done"] == len(list((node.workdir / "done").glob("*_seg.dcm")))
    text = subprocess.run(
        [sys.executable, "-m", "medlung", "serve", "--status", str(node.workdir)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert text.returncode == 0 and "incoming" in text.stdout and "running (pid" in text.stdout
    wrong = subprocess.run(
        [sys.executable, "-m", "medlung", "serve", "--status", str(node.workdir / "done")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert wrong.returncode == 1 and wrong.stderr.count("\n") == 1 and "Traceback" not in wrong.stderr


def test_pynetdicom_errors_reach_the_node_json_log(node):
    """pynetdicom is not silenced: what it says about a peer that is not DICOM is in the node's JSON log."""
    with socket.create_connection(("127.0.0.1", node.port), timeout=30) as probe:
        probe.sendall(b"GET / HTTP/1.1\r\nHost: pacs\r\n\r\n")  # a web probe on the DICOM port
        found = wait_until(
            lambda: [e for e in node.events() if e.get("logger") == "pynetdicom.dul"],
            30,
            "pynetdicom's error in the node's log",
            node,
        )
    assert found[0]["level"] == "error" and found[0]["event"] == "Unknown PDU type received '0x47'"
    assert "time" in found[0] and not [e for e in node.events() if e.get("logger") and e["level"] in ("debug", "info")]


@pytest.mark.slow
def test_load_50_films_over_4_associations_all_segs_arrive_once(node, orthanc, small_pixels, tmp_path):
    study = generate_uid()
    shapes = [(256, 256), (320, 288), (384, 352), (288, 320), (512, 512), (256, 224)]
    paths = []
    for index in range(48):
        syntax = JPEG2000Lossless if index % 8 == 3 else RLELossless if index % 8 == 5 else None
        paths.append(
            make_film(tmp_path / f"f{index:02d}.dcm", small_pixels, shapes[index % len(shapes)], index, study, syntax)
        )
    for index in (48, 49):
        paths.append(make_film(tmp_path / f"f{index:02d}.dcm", small_pixels, FULL_SHAPE, index, study))
    order = [paths[48], *paths[:24], paths[49], *paths[24:48]]  # the big ones early, among the small
    shares = [order[i::4] for i in range(4)]
    keys = {Spool.key_for(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths}
    before = sends_per_film(node.events())
    already, already_sent = len(before), sum(before.values())

    statuses: list = []
    problems: list = []
    resent: set = set()  # films whose answer pynetdicom's client lost (pydicom/pynetdicom#875): sent twice

    def send_share(share):
        try:
            statuses.extend(send_films(share, node.port, resent=resent))
        except Exception as exc:  # reported below, with the node's log
            problems.append(f"{type(exc).__name__}: {exc}")

    started = time.perf_counter()
    threads = [threading.Thread(target=send_share, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not problems and statuses == [0] * 50, f"{problems} {statuses}\n{node.tail()}"
    received_s = time.perf_counter() - started

    def seg_count():
        segs = [t for t in orthanc.study_instances(study) if t.get("Modality") == "SEG"]
        return len(segs) if len(segs) == 50 else 0

    wait_until(seg_count, 50 * PER_FILM_S, "50 SEGs in Orthanc", node, interval=2)
    seconds = time.perf_counter() - started
    twice = {Spool.key_for(uid) for uid in resent}
    expected = already_sent + 50 + len(twice)  # a film received twice is forwarded twice (the same SEG UIDs)
    wait_until(lambda: sum(sends_per_film(node.events()).values()) >= expected, 120, "every SEG sent", node)
    sent = sends_per_film(node.events())
    assert {k: sent[k] for k in keys} == {k: 1 + (k in twice) for k in keys}  # each SEG once per film received
    assert len(sent) == already + 50
    segs = [t for t in orthanc.study_instances(study) if t.get("Modality") == "SEG"]
    assert len({t["SOPInstanceUID"] for t in segs}) == 50
    segmented = {e["key"]: e for e in node.events() if e["event"] == "segmented" and e["key"] in keys}
    big = [e for e in segmented.values() if e["rows"] == FULL_SHAPE[0]]
    assert len(big) == 2 and all(e["cols"] == FULL_SHAPE[1] for e in big)
    rate = 50 / seconds * 60
    big_seconds = ", ".join(f"{e['seconds']:.1f}" for e in big)
    print(
        f"\nload: 50 films (2 at 4020x4892) over 4 associations: received in {received_s:.1f} s, "
        f"all SEGs in Orthanc after {seconds:.1f} s = {rate:.1f} films/minute; "
        f"segment seconds: median {np.median([e['seconds'] for e in segmented.values()]):.2f}, "
        f"4020x4892 {big_seconds}"
    )


@pytest.mark.slow
def test_crash_points_found_on_disk_are_resumed_without_double_work(orthanc, tmp_path, small_pixels, shipped_bundle):
    """Each state a crash can leave (see medlung/pacs/queue.py) is resumed the right way at start."""
    work = tmp_path / "work"
    spool = Spool(work)
    study = generate_uid()
    films, fake_segs, fake_srs = {}, {}, {}
    for name in "ABCDE":
        path = make_film(tmp_path / f"{name}.dcm", small_pixels, (256, 256), 0, study)
        films[name] = Spool.key_for(pydicom.dcmread(path).SOPInstanceUID)
        film = load(path)
        fake = write_dicom_seg(film, two_lungs(film.shape), tmp_path / f"{name}_seg.dcm", model_version="fake")
        fake_segs[name] = str(pydicom.dcmread(fake).SOPInstanceUID)
        fake_sr = write_dicom_sr(
            film,
            report_items(masks_of(film, two_lungs(film.shape))),
            tmp_path / f"{name}_sr.dcm",
            seg=seg_identity(film, "fake", {})[0],
            model_version="fake",
        )
        fake_srs[name] = str(pydicom.dcmread(fake_sr).SOPInstanceUID)
        (tmp_path / f"{name}.film").write_bytes(path.read_bytes())
    put = lambda name, target: target.write_bytes((tmp_path / name).read_bytes())  # noqa: E731
    # A: received, not processed.
    put("A.film", spool.film("incoming", films["A"]))
    # B: SEG and SR written, film not yet moved out of incoming.
    put("B.film", spool.film("incoming", films["B"]))
    put("B_seg.dcm", spool.seg("outgoing", films["B"]))
    put("B_sr.dcm", spool.folder("outgoing") / f"{films['B']}_sr.dcm")
    # C: SEG and SR written and film moved, not sent.
    put("C.film", spool.film("outgoing", films["C"]))
    put("C_seg.dcm", spool.seg("outgoing", films["C"]))
    put("C_sr.dcm", spool.folder("outgoing") / f"{films['C']}_sr.dcm")
    # D: sent (marker written), not yet moved to done.
    put("D.film", spool.film("outgoing", films["D"]))
    put("D_seg.dcm", spool.seg("outgoing", films["D"]))
    spool.sent_marker(films["D"]).write_bytes(b"stored\n")
    # E: sent, SEG already in done, film still in outgoing.
    put("E.film", spool.film("outgoing", films["E"]))
    put("E_seg.dcm", spool.seg("done", films["E"]))
    spool.sent_marker(films["E"]).write_bytes(b"stored\n")
    # a half-written received instance
    (work / "incoming" / ".half.dcm.x.part").write_bytes(b"DICM")

    node = Node(work, orthanc.destination)
    try:
        node.start()
        # a SEG reaches done/ a moment (two fsyncs) before its "sent" line: wait for both
        wait_until(
            lambda: node.counts()["done"] == 5 and len(sends_per_film(node.events())) >= 3,
            PER_FILM_S * 3,
            "5 films in done/ and 3 'sent' lines",
            node,
        )
        assert node.counts() == {"incoming": 0, "outgoing": 0, "done": 5, "failed": 0}
        assert not list(work.rglob("*.part")) and not list(work.rglob("*.sent"))
        events = node.events()
        segmented = {e["key"]: e for e in events if e["event"] == "segmented"}
        assert set(segmented) == {films["A"]} and segmented[films["A"]]["resumed"] is False  # B not again
        resumed = [e for e in events if e["event"] == "resumed"]
        assert len(resumed) == 1 and (resumed[0]["to_segment"], resumed[0]["to_send"]) == (1, 2)
        assert set(sends_per_film(events)) == {films["A"], films["B"], films["C"]}
        # the SEGs that were only waiting went out as they were; the ones already sent did not go again
        assert len(orthanc.instances_with_uid(fake_segs["B"])) == 1
        assert len(orthanc.instances_with_uid(fake_segs["C"])) == 1
        assert len(orthanc.instances_with_uid(fake_srs["B"])) == len(orthanc.instances_with_uid(fake_srs["C"])) == 1
        assert orthanc.instances_with_uid(fake_segs["D"]) == [] and orthanc.instances_with_uid(fake_segs["E"]) == []
        assert node.signal(signal.SIGTERM) == 0
    finally:
        node.close()


@pytest.mark.slow
def test_sigkill_mid_queue_then_restart_delivers_every_seg_once_and_sigterm_exits_0(
    orthanc, tmp_path, small_pixels, shipped_bundle
):
    study = generate_uid()
    paths = [make_film(tmp_path / f"k{i:02d}.dcm", small_pixels, (256, 256), i, study) for i in range(12)]
    keys = {Spool.key_for(pydicom.dcmread(p).SOPInstanceUID) for p in paths}
    node = Node(tmp_path / "work", orthanc.destination)
    try:
        node.start()
        assert send_films(paths, node.port) == [0] * 12
        wait_until(lambda: node.counts()["done"] >= 2, PER_FILM_S * 4, "2 films done", node)
        node.process.kill()  # SIGKILL, mid-queue
        node.process.wait(timeout=30)
        before = node.counts()
        assert before["incoming"] + before["outgoing"] > 0 and before["failed"] == 0
        assert sum(before.values()) == 12 or before["done"] + before["incoming"] + before["outgoing"] >= 12

        node.start()  # resumes; stopped again by SIGTERM while it works
        done_then = node.counts()["done"]
        wait_until(lambda: node.counts()["done"] >= done_then + 1, PER_FILM_S * 4, "one more film done", node)
        assert node.signal(signal.SIGTERM) == 0
        after_term = node.counts()
        assert after_term["incoming"] + after_term["outgoing"] + after_term["done"] == 12
        assert not list(node.workdir.rglob("*.part"))
        assert node.events(node.logs[-1])[-1]["event"] == "stopped"

        node.start()
        wait_until(lambda: node.counts()["done"] == 12, PER_FILM_S * 12, "12 films done", node)
        assert node.signal(signal.SIGTERM) == 0
        sent = sends_per_film(node.events())
        assert set(sent) == keys
        duplicates = {k: n for k, n in sent.items() if n > 1}
        # only a kill between the PACS's answer and the .sent marker can resend (harmless: same UIDs)
        assert len(duplicates) <= 1, duplicates
        segs = [t for t in orthanc.study_instances(study) if t.get("Modality") == "SEG"]
        assert len(segs) == 12 and len({t["SOPInstanceUID"] for t in segs}) == 12
        print(f"\nSIGKILL at {before}; after SIGTERM {after_term}; sends per film {sorted(sent.values())}")
    finally:
        node.close()


@pytest.mark.slow
def test_orthanc_down_keeps_segs_in_outgoing_and_delivers_them_when_it_is_back(
    tmp_path_factory, tmp_path, small_pixels, shipped_bundle
):
    pacs = start_orthanc(tmp_path_factory.mktemp("orthanc_down"))
    node = Node(tmp_path / "work", pacs.destination)
    try:
        node.start()
        stop_orthanc(pacs)
        study = generate_uid()
        paths = [make_film(tmp_path / f"d{i}.dcm", small_pixels, (256, 256), i, study) for i in range(3)]
        assert send_films(paths, node.port) == [0, 0, 0]
        wait_until(lambda: node.counts()["outgoing"] == 3, PER_FILM_S * 4, "3 SEGs in outgoing", node)
        wait_until(
            lambda: sum(e["event"] == "delivery-delayed" for e in node.events()) >= 2, 30, "two delivery attempts", node
        )
        assert node.counts() == {"incoming": 0, "outgoing": 3, "done": 0, "failed": 0}

        pacs = restart_orthanc(pacs)
        wait_until(
            lambda: node.counts()["done"] == 3 and len(sends_per_film(node.events())) >= 3,
            60,
            "the 3 SEGs delivered and logged",
            node,
        )
        segs = [t for t in pacs.study_instances(study) if t.get("Modality") == "SEG"]
        assert len(segs) == 3
        assert sends_per_film(node.events()) == {Spool.key_for(pydicom.dcmread(p).SOPInstanceUID): 1 for p in paths}
        assert node.signal(signal.SIGTERM) == 0
    finally:
        node.close()
        stop_orthanc(pacs)


@pytest.mark.slow
def test_full_queue_answers_out_of_resources_and_the_film_can_be_sent_again(
    orthanc, tmp_path, small_pixels, shipped_bundle
):
    study = generate_uid()
    paths = [make_film(tmp_path / f"q{i}.dcm", small_pixels, (256, 256), i, study) for i in range(6)]
    node = Node(tmp_path / "work", orthanc.destination, "--max-queue", "2")
    try:
        node.start()
        statuses = send_films(paths, node.port)
        assert set(statuses) <= {0x0000, 0xA700} and 0xA700 in statuses and statuses[:2] == [0, 0]
        assert any(e["event"] == "queue-full" for e in node.events())
        refused = [p for p, s in zip(paths, statuses) if s == 0xA700]
        for _attempt in range(60):  # the sender's retry loop, bounded
            if not refused:
                break
            time.sleep(1)
            statuses = send_films(refused, node.port)
            refused = [p for p, s in zip(refused, statuses) if s == 0xA700]
        assert not refused
        wait_until(lambda: node.counts()["done"] == 6, PER_FILM_S * 6, "6 films done", node)
        segs = [t for t in orthanc.study_instances(study) if t.get("Modality") == "SEG"]
        assert len(segs) == 6
        assert node.signal(signal.SIGINT) == 0
    finally:
        node.close()
