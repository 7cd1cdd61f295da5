"""Hostile films and peers against a real ``medlung serve`` over real C-STORE (#28).

One node runs as a subprocess with ``--max-memory 1500M --max-film-mb 64``,
forwarding to a real Orthanc. Each hostile case is sent as it is on disk
(:func:`tests.services.node.hostile_films.send_raw`); each must get its
one-line refusal (a status, a log line or a reason file) in under 30 s,
with the node's peak RSS under 1.5 GB, and the node must still serve a good
film afterwards. The measured seconds and peaks are printed (``-s``).
"""

from __future__ import annotations

import json
import socket
import stat
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import generate_uid

from medlung.services.node.spool import Spool
from tests.services.node import hostile_films as hostile
from tests.services.node.test_serve import CLIENT_AE, NODE_AE, PER_FILM_S, Node, make_film, send_films, wait_until

#: What every hostile case must stay under (docs/design.md, "Numbers").
MAX_RSS_BYTES, MAX_SECONDS = int(1.5 * 2**30), 30.0


def peak_rss(pid: int) -> int:
    """A live process's peak resident memory (VmHWM), bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.fixture(scope="module")
def node(orthanc, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile-node")
    running = Node(folder / "work", orthanc.destination, "--max-memory", "1500M", "--max-film-mb", "64")
    try:
        running.start()
        orthanc.add_modality("medlung-hostile", NODE_AE, running.port)
        yield running
    finally:
        running.close()


@pytest.fixture(scope="module")
def pixels(shenzhen_pixels) -> np.ndarray:
    return np.asarray(Image.fromarray(shenzhen_pixels).resize((256, 256))).astype(np.uint16) * 16


def still_serving(node: Node, pixels, folder: Path) -> None:
    """A good film sent after the case comes out as a SEG in outgoing/done (the node is unharmed)."""
    assert node.process.poll() is None, node.tail()
    good = make_film(folder / f"good-{time.monotonic_ns()}.dcm", pixels, (256, 256))
    assert send_films([good], node.port) == [0]
    key = Spool.key_for(pydicom.dcmread(good).SOPInstanceUID)
    wait_until(
        lambda: (node.workdir / "done" / f"{key}_seg.dcm").exists(),
        PER_FILM_S * 3,
        "the good film's SEG delivered",
        node,
    )


def refusal(node: Node, uid: str) -> dict:
    return wait_until(
        lambda: next(
            (e for e in node.events() if e["event"] == "store-refused" and e["sop_instance_uid"] == uid), None
        ),
        10,
        "the refusal in the log",
        node,
    )


def failure(node: Node, key: str) -> dict:
    return wait_until(
        lambda: next((e for e in node.events() if e["event"] == "failed" and e["key"] == key), None),
        MAX_SECONDS,
        "the failed film",
        node,
    )


def report(case: str, seconds: float, node: Node, extra: str = "") -> None:
    rss = peak_rss(node.process.pid)
    print(f"\nhostile node case {case}: {seconds:.2f} s, node peak RSS {rss / 2**20:.0f} MB {extra}")
    assert seconds < MAX_SECONDS and rss < MAX_RSS_BYTES, (case, seconds, rss)


@pytest.mark.parametrize(
    ("case", "expected"),
    [("cut_at_7_bytes", 0xC000), ("cut_in_pixel_data", 0xC000), ("uid_not_the_requests", 0xA900)],
)
def test_a_data_set_the_node_cannot_trust_is_refused_at_the_door(node, pixels, tmp_path, case, expected):
    whole = hostile._file_bytes(hostile.film(pixels))
    data = {
        "cut_at_7_bytes": lambda: hostile.cut(whole, 7),
        "cut_in_pixel_data": lambda: hostile.cut(whole, len(whole) - hostile._meta_length(whole) - 1000),
        "uid_not_the_requests": lambda: hostile.other_uid(pixels),
    }[case]()
    path = hostile.write(tmp_path, f"{case}.dcm", data)
    requested = str(pydicom.filereader.read_file_meta_info(path).MediaStorageSOPInstanceUID)
    started = time.perf_counter()
    assert hostile.send_raw([path], node.port, CLIENT_AE, NODE_AE) == [expected]
    event = refusal(node, requested)
    report(case, time.perf_counter() - started, node, f"({event['reason']})")
    assert event["status"] == f"0x{expected:04X}" and "\n" not in event["reason"]
    assert not list(node.workdir.rglob(f"{Spool.key_for(requested)}*"))  # nothing of it was kept
    still_serving(node, pixels, tmp_path)


def test_a_deflated_bomb_is_refused_while_it_inflates(node, pixels, tmp_path):
    path = hostile.write(tmp_path, "deflated_bomb.dcm", hostile.deflated_bomb(pixels))
    uid = str(pydicom.filereader.read_file_meta_info(path).MediaStorageSOPInstanceUID)
    started = time.perf_counter()
    assert hostile.send_raw([path], node.port, CLIENT_AE, NODE_AE) == [0xA701]
    event = refusal(node, uid)
    report("deflated_1GB_in_1MB", time.perf_counter() - started, node, f"({path.stat().st_size} bytes on disk)")
    assert "inflates to more than 64 MB" in event["reason"]
    still_serving(node, pixels, tmp_path)


@pytest.mark.parametrize("case", ["jpeg_sof_60000x60000", "j2k_siz_32000x32000"])
def test_a_codestream_larger_than_its_header_fails_in_the_reader_child_not_the_node(node, pixels, tmp_path, case):
    data = hostile.jpeg_sof_bomb() if case.startswith("jpeg") else hostile.j2k_siz_bomb()
    path = hostile.write(tmp_path, f"{case}.dcm", data)
    uid = str(pydicom.filereader.read_file_meta_info(path).MediaStorageSOPInstanceUID)
    started = time.perf_counter()
    assert hostile.send_raw([path], node.port, CLIENT_AE, NODE_AE) == [0]  # DICOM the node can queue
    event = failure(node, Spool.key_for(uid))
    seconds = time.perf_counter() - started
    report(case, seconds, node, f"(reader child peak {event.get('reader_peak_mb')} MB; {len(data)} bytes)")
    reason = (node.workdir / "failed" / f"{Spool.key_for(uid)}.reason.txt").read_text()
    assert reason.count("\n") == 1 and str(path.name) not in reason  # the node's own copy is named
    still_serving(node, pixels, tmp_path)


def test_a_film_far_past_the_limit_aborts_its_association_as_it_arrives(node, pixels, tmp_path):
    big = np.full((12000, 6000), 1000, np.uint16)  # 144 MB: more than 2 x --max-film-mb 64 + 1 MB
    ds = hostile.factory.radiograph(big, hostile.factory.CR, PixelSpacing=[0.1, 0.1])
    path = tmp_path / "huge.dcm"
    ds.save_as(path, enforce_file_format=True)
    del ds, big
    started = time.perf_counter()
    statuses = hostile.send_raw([path], node.port, CLIENT_AE, NODE_AE)
    seconds = time.perf_counter() - started
    assert statuses == [None]  # no answer: the association was aborted while the film arrived
    event = wait_until(
        lambda: next((e for e in node.events() if e["event"] == "association-aborted"), None), 10, "the abort", node
    )
    report("144MB_film_over_64MB_limit", seconds, node, f"({event['reason']})")
    path.unlink()
    still_serving(node, pixels, tmp_path)


def test_silent_sockets_from_one_host_do_not_lock_out_another(node, pixels, tmp_path):
    silent = []
    try:
        for _ in range(12):  # 127.0.0.2 is another host for the node: a different peer address
            sock = socket.socket()
            sock.bind(("127.0.0.2", 0))
            sock.connect(("127.0.0.1", node.port))
            silent.append(sock)
        started = time.perf_counter()
        still_serving(node, pixels, tmp_path)  # from 127.0.0.1, while 127.0.0.2 holds 12 silent connections
        report("12_silent_sockets", time.perf_counter() - started, node)
        refused = [
            e for e in node.events() if e["event"] == "association-refused" and e["address"].startswith("127.0.0.2:")
        ]
        per_host = next(e for e in node.events() if e["event"] == "listening")["max_associations_per_host"]
        assert len(refused) >= 12 - per_host and "--max-associations-per-host" in refused[0]["reason"]
    finally:
        for sock in silent:
            sock.close()


def test_the_work_folder_and_its_files_are_the_nodes_users_only(node, pixels, tmp_path):
    still_serving(node, pixels, tmp_path)
    root = node.workdir
    for folder in [root, *(root / state for state in ("incoming", "outgoing", "done", "failed"))]:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    files = [p for p in root.rglob("*") if p.is_file() and p.name != "serve.lock"]
    assert files and all(stat.S_IMODE(p.stat().st_mode) & 0o077 == 0 for p in files), [
        (p.name, oct(p.stat().st_mode)) for p in files if p.stat().st_mode & 0o077
    ]
    listening = next(e for e in node.events() if e["event"] == "listening")
    assert listening["max_memory_mb"] == 1500 and listening["associations"] >= 1


def test_a_film_that_took_the_node_down_twice_goes_to_failed_on_restart(orthanc, pixels, tmp_path):
    """The attempts are on disk: a film whose two attempts outlived a crash is not tried a third time."""
    work = tmp_path / "work"
    spool = Spool(work)
    ds = hostile.film(pixels, StudyInstanceUID=generate_uid())
    key = Spool.key_for(ds.SOPInstanceUID)
    ds.save_as(spool.film("incoming", key), enforce_file_format=True)
    assert spool.mark_attempt(key) == 1 and spool.mark_attempt(key) == 2  # two crashes while segmenting it
    restarted = Node(work, orthanc.destination).start()
    try:
        reason = spool.reason(key).read_text()
        assert "stopped" in reason and "2 time(s)" in reason and reason.count("\n") == 1
        assert not spool.film("incoming", key).exists() and not spool.attempt_marker(key).exists()
        still_serving(restarted, pixels, tmp_path)
    finally:
        restarted.close()


def test_the_attempt_counter_and_the_retention_of_done(tmp_path):
    spool = Spool(tmp_path / "work")
    for index in range(5):
        key = f"1.2.3.{index}"
        for path in (spool.seg("done", key), spool.film("done", key)):
            path.write_bytes(b"x")
            stamp = 1_000_000 + index * 86400
            import os

            os.utime(path, (stamp, stamp))
    now = 1_000_000 + 4 * 86400 + 10
    assert spool.prune_done(max_age_s=2.5 * 86400, now=now) == ["1.2.3.0", "1.2.3.1"]
    assert spool.prune_done(max_count=2, now=now) == ["1.2.3.2"]
    assert sorted(p.name for p in (tmp_path / "work" / "done").iterdir()) == [
        "1.2.3.3.dcm",
        "1.2.3.3_seg.dcm",
        "1.2.3.4.dcm",
        "1.2.3.4_seg.dcm",
    ]
    assert spool.prune_done() == []  # no retention asked: everything kept
    json.dumps(spool.counts())


def test_with_mutual_tls_silent_sockets_do_not_block_valid_clients(orthanc, tmp_path):
    """16 TCP connections that never start a TLS handshake (from 127.0.0.2), then a valid client (127.0.0.1)."""
    from medlung.pacs.tls import TlsConfig
    from tests.pacs.certs import make_pki
    from tests.pacs.test_tls import associate

    pki = make_pki(tmp_path / "pki")
    tls = ["--tls-cert", str(pki.node.cert), "--tls-key", str(pki.node.key), "--tls-ca", str(pki.ca)]
    node = Node(tmp_path / "work", orthanc.destination, *tls, "--forward-plain").start()
    silent = []
    try:
        for _ in range(16):
            sock = socket.socket()
            sock.bind(("127.0.0.2", 0))
            sock.connect(("127.0.0.1", node.port))
            silent.append(sock)
        started = time.perf_counter()
        assoc = associate(node.port, TlsConfig(cert=pki.client.cert, key=pki.client.key, ca=pki.ca))
        assert assoc.is_established, node.tail()
        try:
            assert int(assoc.send_c_echo().Status) == 0
        finally:
            assoc.release()
        report("16_silent_sockets_mutual_tls", time.perf_counter() - started, node)
        refused = [e for e in node.events() if e["event"] == "association-refused"]
        assert refused and all(e["address"].startswith("127.0.0.2:") for e in refused)
        assert all("TLS handshakes at once" not in e["reason"] for e in refused)
    finally:
        for sock in silent:
            sock.close()
        node.close()


def _corpus():
    """The readers' hostile corpus (tests/hostile/corpus.py, #28 item 1), when this checkout has it."""
    try:
        from tests.hostile import corpus
    except ImportError:
        return None
    return corpus


@pytest.mark.parametrize("case", getattr(_corpus(), "DICOM_CASES", ()) or ["(no tests/hostile/corpus.py yet)"])
def test_the_readers_hostile_corpus_over_c_store(node, pixels, tmp_path, case):
    """Every DICOM case of the readers' corpus, sent as it is: refused at the door, or queued and then failed
    (or, for the legitimate film at the limit, segmented) -- the node unharmed and under its limits either way."""
    corpus = _corpus()
    if corpus is None:
        pytest.skip("tests/hostile/corpus.py (the readers' corpus) is not in this checkout")
    path = corpus.CASES[case](tmp_path)
    uid = str(pydicom.filereader.read_file_meta_info(path).MediaStorageSOPInstanceUID)
    key = Spool.key_for(uid)
    started = time.perf_counter()
    (status,) = hostile.send_raw([path], node.port, CLIENT_AE, NODE_AE)
    if status == 0:
        limit = 300 if corpus.EXPECTED.get(case) == "ok" else MAX_SECONDS
        wait_until(lambda: spool_done_or_failed(node, key), limit, f"{case}: its SEG or its reason file", node)
        if (node.workdir / "failed" / f"{key}.reason.txt").exists():
            assert (node.workdir / "failed" / f"{key}.reason.txt").read_text().count("\n") == 1
    else:
        assert status is None or status >= 0xA700, hex(status)  # a refusal status, or an aborted association
    seconds = time.perf_counter() - started
    rss = peak_rss(node.process.pid)
    print(f"\nhostile node case corpus:{case}: status {status}, {seconds:.2f} s, node peak RSS {rss / 2**20:.0f} MB")
    assert rss < MAX_RSS_BYTES
    still_serving(node, pixels, tmp_path)


def spool_done_or_failed(node: Node, key: str) -> bool:
    return (node.workdir / "done" / f"{key}_seg.dcm").exists() or (
        node.workdir / "failed" / f"{key}.reason.txt"
    ).exists()
