"""What a ``medlung serve`` node refuses, and what it never writes down, on 127.0.0.1 only.

The nodes run in this process (:class:`medlung.services.node.StorageNode` with
the session's loaded model and a log captured in memory, pynetdicom's
warnings and errors included) and forward to the session's real Orthanc;
the peers are real pynetdicom clients. Each refusal has its own test, and
each is logged with the peer's address.
"""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
import socket
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid
from pynetdicom.sop_class import Verification

from medlung.logs import log_event
from medlung.pacs import TlsConfig
from medlung.services.node import (
    PYNETDICOM_RECORDS,
    ServeConfig,
    StorageNode,
    exposure_warning,
    node_logging,
)
from medlung.services.node.receiving import ASSOCIATION_FULL, FILM_TOO_LARGE, OUT_OF_RESOURCES
from medlung.services.node.spool import Spool
from medlung.writers.dicom_seg import write_dicom_seg
from tests import dicom_factory as factory
from tests.pacs.certs import make_pki
from tests.services.node.test_serve import CLIENT_AE, NODE_AE, PER_FILM_S, make_film, send_films, wait_until
from tests.writers.seg_support import load, two_lungs

PATIENT_NAME, PATIENT_ID = "Privacytest^Mary^Ann", "PID-55-0192-X"


class Running:
    """An in-process node and the text of its log."""

    def __init__(self, node: StorageNode, stream: io.StringIO) -> None:
        self.node, self.stream = node, stream

    @property
    def port(self) -> int:
        return self.node.port

    @property
    def workdir(self) -> Path:
        return self.node.config.workdir

    def text(self) -> str:
        return self.stream.getvalue()

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.text().splitlines() if line.startswith("{")]

    def tail(self) -> str:
        return self.text()[-3000:]


@pytest.fixture()
def start_node(orthanc, segmenter, tmp_path):
    """``start_node(**ServeConfig options)``: a node on 127.0.0.1, any free port; stopped after the test."""
    nodes = []
    logs = ExitStack()

    def start(json_logs: bool = True, **options) -> Running:
        stream = io.StringIO()
        config = ServeConfig(
            NODE_AE,
            0,
            orthanc.destination,
            tmp_path / f"work{len(nodes)}",
            bind="127.0.0.1",
            json_logs=json_logs,
            resend_interval=2.0,
            **options,
        )
        # each node its own logger (two may run at once), through the injection point; pynetdicom as in serve()
        logger = logging.getLogger(f"medlung.serve.test{len(nodes)}")
        logs.enter_context(node_logging(json_logs, stream, logger))
        node = StorageNode(config, segmenter=segmenter, log=partial(log_event, logger))
        nodes.append(node)
        node.start()
        return Running(node, stream)

    with logs:
        yield start
        for node in nodes:
            node.stop()


def associate(port: int):
    from pynetdicom import AE

    ae = AE(ae_title=CLIENT_AE)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = 30
    ae.add_requested_context(Verification)
    return ae.associate("127.0.0.1", port, ae_title=NODE_AE)


def small_films(folder: Path, pixels, count: int, shape=(256, 256)) -> list[Path]:
    study = generate_uid()
    return [make_film(folder / f"f{i}.dcm", pixels, shape, i, study) for i in range(count)]


def refused(running: Running, event: str) -> list[dict]:
    return [e for e in running.events() if e["event"] == event]


# --- refusals, one each ------------------------------------------------------------------------------
def test_a_peer_outside_allow_host_is_refused_before_any_dicom(start_node):
    outside = start_node(allow_hosts=("10.0.0.0/8", "192.168.7.7"))
    assoc = associate(outside.port)
    assert not assoc.is_established
    found = wait_until(lambda: refused(outside, "association-refused"), 10, "the refusal in the log", outside)
    assert found[0]["address"].startswith("127.0.0.1:") and "--allow-host" in found[0]["reason"]
    listening = next(e for e in outside.events() if e["event"] == "listening")
    assert listening["allow_hosts"] == "10.0.0.0/8,192.168.7.7/32"

    inside = start_node(allow_hosts=("127.0.0.0/8",))
    assoc = associate(inside.port)
    assert assoc.is_established
    try:
        assert int(assoc.send_c_echo().Status) == 0
    finally:
        assoc.release()
    assert not refused(inside, "association-refused")


def test_films_beyond_the_per_association_limit_are_refused(start_node, shenzhen_pixels, tmp_path):
    running = start_node(max_films_per_association=2)
    films = small_films(tmp_path, np.asarray(shenzhen_pixels), 3)
    assert send_films(films, running.port) == [0, 0, ASSOCIATION_FULL]
    found = refused(running, "store-refused")
    assert len(found) == 1 and found[0]["status"] == "0xA702" and found[0]["address"].startswith("127.0.0.1:")
    third = Spool.key_for(pydicom.dcmread(films[2]).SOPInstanceUID)
    assert not (running.workdir / "incoming" / f"{third}.dcm").exists()
    assert send_films(films[2:], running.port) == [0]  # a new association may store it


def test_a_film_larger_than_the_limit_is_refused(start_node, shenzhen_pixels, tmp_path):
    running = start_node(max_film_mb=0.3)
    big = make_film(tmp_path / "big.dcm", np.asarray(shenzhen_pixels), (512, 512))  # 16-bit: 0.52 MB
    small = make_film(tmp_path / "small.dcm", np.asarray(shenzhen_pixels), (256, 256))  # 0.13 MB
    assert send_films([big, small], running.port) == [FILM_TOO_LARGE, 0]
    (found,) = refused(running, "store-refused")
    assert found["status"] == "0xA701" and "larger than --max-film-mb 0.3" in found["reason"]
    assert found["address"].startswith("127.0.0.1:")
    key = Spool.key_for(pydicom.dcmread(big).SOPInstanceUID)
    assert not list(running.workdir.rglob(f"{key}*"))  # nothing of it was written


def test_too_little_free_disk_refuses_the_film_instead_of_filling_the_disk(start_node, shenzhen_pixels, tmp_path):
    free_mb = shutil.disk_usage(tmp_path).free / 1e6
    running = start_node(min_free_mb=free_mb + 1e6)  # more than this disk will ever have free
    films = small_films(tmp_path, np.asarray(shenzhen_pixels), 2)
    assert send_films(films, running.port) == [OUT_OF_RESOURCES, OUT_OF_RESOURCES]
    found = refused(running, "store-refused")
    assert len(found) == 2 and all("--min-free-mb" in e["reason"] and e["status"] == "0xA700" for e in found)
    assert all(e["address"].startswith("127.0.0.1:") for e in found)
    assert not list((running.workdir / "incoming").iterdir())


def test_start_up_warns_when_anyone_can_reach_the_node(tmp_path):
    pki = make_pki(tmp_path / "pki")

    def config(**options):
        return ServeConfig(NODE_AE, 11112, "PACS@127.0.0.1:104", tmp_path / "w", **options)

    plain = exposure_warning(config(bind="0.0.0.0"))
    assert "neither --allow-host nor TLS" in plain and "AE titles are not authentication" in plain
    assert "does not authenticate" in exposure_warning(config(tls=TlsConfig(pki.node.cert, pki.node.key)))
    assert exposure_warning(config(tls=TlsConfig(pki.node.cert, pki.node.key, pki.ca))) is None
    assert exposure_warning(config(allow_hosts=("10.1.2.0/24",))) is None
    assert exposure_warning(config(bind="127.0.0.1")) is None and exposure_warning(config(bind="::1")) is None
    with pytest.raises(ValueError, match="not an IP address or a CIDR"):
        config(allow_hosts=("10.1.2.0/33",))


# --- logs ---------------------------------------------------------------------------------------------
def logger_state(name: str) -> tuple:
    logger = logging.getLogger(name)
    return logger.level, list(logger.handlers), logger.propagate


@pytest.mark.parametrize("json_logs", [True, False], ids=["json-logs", "text-logs"])
def test_pynetdicom_errors_during_a_run_reach_the_node_log_throttled_and_its_logger_is_left_as_it_was(
    orthanc, segmenter, tmp_path, json_logs
):
    before = {name: logger_state(name) for name in ("pynetdicom", "pynetdicom.dul", "medlung.serve")}
    stream = io.StringIO()
    config = ServeConfig(NODE_AE, 0, orthanc.destination, tmp_path / "work", bind="127.0.0.1", json_logs=json_logs)
    node = StorageNode(config, segmenter=segmenter)  # the default log: the medlung.serve logger
    running = Running(node, stream)
    with node_logging(json_logs, stream):  # what serve() runs a node in
        try:
            node.start()
            with socket.create_connection(("127.0.0.1", node.port), timeout=30) as probe:
                # not DICOM: pynetdicom logs an error per 6 bytes (100 here) and answers each with an A-ABORT
                probe.sendall(b"GET / HTTP/1.1\r\nHost: pacs\r\n\r\n".ljust(600, b"x"))
                answered = b""
                while len(answered) < 100 * 10:  # 10-byte A-ABORT PDUs: pynetdicom has read every chunk
                    piece = probe.recv(4096)
                    if not piece:
                        break
                    answered += piece
        finally:
            node.stop()
    if json_logs:
        events = running.events()
        assert len(events) == len(running.text().splitlines())  # every line is one JSON object
        pynetdicom = [e for e in events if e.get("logger", "").startswith("pynetdicom")]
        assert {
            "level": "error",
            "event": "Unknown PDU type received '0x47'",
            "logger": "pynetdicom.dul",
        }.items() <= pynetdicom[0].items()
        assert PYNETDICOM_RECORDS <= len(pynetdicom) < 20  # a flood of 100 throttled (5 a minute)
        assert all(e["level"] in ("warning", "error", "critical") for e in pynetdicom)  # no info, no debug
        assert [e["event"] for e in events if "logger" not in e][:1] == ["listening"]
    else:
        lines = running.text().splitlines()
        stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
        assert any(re.fullmatch(stamp + r" ERROR   Unknown PDU type received '0x47'", line) for line in lines)
        assert PYNETDICOM_RECORDS <= len([line for line in lines if "Unknown PDU type" in line]) < 20
        assert re.match(r"\S+Z INFO    listening ae_title=MEDLUNG address=127.0.0.1 port=\d+ ", lines[0])
        assert re.search(r"Z INFO    stopped incoming=0 outgoing=0 done=0 failed=0$", lines[-1])
    # after the run: both loggers as they were, and pynetdicom's records no longer reach the node's stream
    assert {name: logger_state(name) for name in before} == before
    written = running.text()
    logging.getLogger("pynetdicom.dul").error("after the node stopped")
    assert running.text() == written


# --- privacy ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("json_logs", [True, False], ids=["json-logs", "text-logs"])
def test_logs_never_carry_patient_names_or_ids(start_node, orthanc, shenzhen_pixels, tmp_path, json_logs):
    running = start_node(json_logs=json_logs, max_film_mb=0.2)
    study = generate_uid()
    identity = {
        "PatientName": PATIENT_NAME,
        "PatientID": PATIENT_ID,
        "OtherPatientNames": "Alias^Mary",
        "IssuerOfPatientID": "HOSPITAL-A",
    }
    good = make_film(tmp_path / "good.dcm", np.asarray(shenzhen_pixels), (256, 256), study=study)
    too_big = make_film(tmp_path / "big.dcm", np.asarray(shenzhen_pixels), (512, 512), study=study)
    broken = factory.radiograph(np.zeros((300, 300), np.uint16), factory.DX_PRESENTATION, StudyInstanceUID=study)
    broken.PixelData = broken.PixelData[:1000]  # fails to segment: goes to failed/ with a reason
    broken.save_as(tmp_path / "broken.dcm", enforce_file_format=True)
    paths = [good, too_big, tmp_path / "broken.dcm"]
    for path in paths:
        ds = pydicom.dcmread(path)
        for keyword, value in identity.items():
            setattr(ds, keyword, value)
        ds.save_as(path)
    assert send_films(paths, running.port) == [0, FILM_TOO_LARGE, 0]
    wait_until(
        lambda: Spool(running.workdir).counts()["done"] == 1 and Spool(running.workdir).counts()["failed"] == 1,
        PER_FILM_S * 3,
        "one film done, one failed",
        running,
    )
    log = running.text()
    assert "received" in log and "segmented" in log and "store-refused" in log and "failed" in log
    reason = next((running.workdir / "failed").glob("*.reason.txt")).read_text()
    for secret in (PATIENT_NAME, PATIENT_ID, "Privacytest", "Mary", "Alias", "HOSPITAL-A"):
        assert secret not in log and secret not in reason
    # the SEG delivered to the PACS carries the identity the standard requires, and no more
    seg = [t for t in orthanc.study_instances(study) if t.get("Modality") == "SEG"]
    assert seg and seg[0]["PatientName"] == PATIENT_NAME and seg[0]["PatientID"] == PATIENT_ID


def test_seg_keeps_only_the_identifiers_the_standard_requires(tmp_path):
    required = {
        "PatientName": "Seg^Jane",
        "PatientID": "PID-1",
        "IssuerOfPatientID": "HOSP",
        "PatientBirthDate": "19600101",
        "PatientSex": "F",
        "AccessionNumber": "ACC-9",
        "StudyID": "S1",
        "ReferringPhysicianName": "Ref^Doc",
        "StudyDate": "20240101",
        "StudyTime": "120000",
    }
    optional = {
        "OtherPatientNames": "Other^Name",
        "PatientComments": "VIP",
        "PatientAge": "064Y",
        "PatientWeight": "70",
        "PatientSize": "1.7",
        "AdditionalPatientHistory": "smoker",
        "Occupation": "Miner",
        "PatientAddress": "1 Secret Road",
        "PatientTelephoneNumbers": "555-0100",
        "PhysiciansOfRecord": "Rec^Doc",
        "NameOfPhysiciansReadingStudy": "Read^Doc",
        "OperatorsName": "Op^Erator",
        "InstitutionName": "General Hospital",
        "StationName": "XR1",
    }
    ds = factory.radiograph(
        np.zeros((64, 64), np.uint16) + 100,
        factory.CR,
        PixelSpacing=[0.5, 0.5],
        PatientOrientation=["L", "F"],
        **required,
        **optional,
    )
    other = pydicom.Dataset()
    other.PatientID, other.TypeOfPatientID = "OTHER-ID", "TEXT"
    ds.OtherPatientIDsSequence = [other]
    film = factory.write(ds, tmp_path / "film.dcm")
    seg = pydicom.dcmread(write_dicom_seg(load(film), two_lungs((64, 64)), tmp_path / "seg.dcm", model_version="t"))
    assert {k: str(seg.data_element(k).value) for k in required} == required
    assert [k for k in [*optional, "OtherPatientIDsSequence"] if k in seg] == []
