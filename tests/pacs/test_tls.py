"""DICOM TLS between a real Orthanc, ``medlung serve`` and ``medlung predict --send``, on 127.0.0.1 only.

Orthanc is configured for DICOM TLS (``DicomTlsEnabled``, its certificate and
key, the test CA as ``DicomTlsTrustedCertificates``, and
``DicomTlsRemoteCertificateRequired``): its DICOM port speaks nothing but
mutual TLS. The certificates are made by the test (tests/pacs/certs.py).
Each way an untrusted peer can be turned away has its own test.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid
from pynetdicom.sop_class import Verification

from medlung.io.seg import read_dicom_seg
from medlung.pacs import TlsConfig, send_cstore
from medlung.services.node.spool import Spool
from tests.pacs.certs import make_pki
from tests.pacs.orthanc import start_orthanc, stop_orthanc
from tests.services.node.test_serve import CLIENT_AE, NODE_AE, REPO, Node, make_film, push_through_node, wait_until

#: Patient identity written into the test films: it must never reach a log.
PATIENT_NAME, PATIENT_ID = "Tlsprivacy^Jane^Q", "PID-7731-TLS"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_orthanc(tmp_path_factory, pki):
    """An Orthanc whose DICOM port speaks mutual TLS only, trusting the test CA."""
    server = start_orthanc(
        tmp_path_factory.mktemp("orthanc_tls"),
        DicomTlsEnabled=True,
        DicomTlsCertificate=str(pki.pacs.cert),
        DicomTlsPrivateKey=str(pki.pacs.key),
        DicomTlsTrustedCertificates=str(pki.ca),
        DicomTlsRemoteCertificateRequired=True,
    )
    try:
        yield server
    finally:
        stop_orthanc(server)


@pytest.fixture(scope="module")
def tls_node(tls_orthanc, pki, tmp_path_factory, shipped_bundle):
    """``medlung serve`` with mutual TLS in and out, accepting only 127.0.0.1."""
    folder = tmp_path_factory.mktemp("tls_node")
    node = Node(
        folder / "work",
        tls_orthanc.destination,
        "--tls-cert",
        str(pki.node.cert),
        "--tls-key",
        str(pki.node.key),
        "--tls-ca",
        str(pki.ca),
        "--allow-host",
        "127.0.0.1/32",
    )
    try:
        node.start()
        tls_orthanc.add_modality("medlung", NODE_AE, node.port, UseDicomTls=True)
        yield node
    finally:
        node.close()


def associate(port: int, tls: TlsConfig | None, ae_title: str = NODE_AE):
    """A pynetdicom association to 127.0.0.1:port proposing Verification, over TLS when ``tls`` is given."""
    from pynetdicom import AE

    ae = AE(ae_title=CLIENT_AE)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = 30
    ae.add_requested_context(Verification)
    tls_args = (tls.client_context(), "127.0.0.1") if tls is not None else None
    return ae.associate("127.0.0.1", port, ae_title=ae_title, tls_args=tls_args)


def refusals(node: Node, since: int) -> list[dict]:
    return [e for e in node.events()[since:] if e["event"] == "association-refused"]


# --- the good path ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_film_in_over_tls_and_seg_out_over_tls(tls_node, tls_orthanc, shenzhen_pixels, tmp_path):
    listening = next(e for e in tls_node.events() if e["event"] == "listening")
    assert listening["tls"] == "mutual" and listening["forward_tls"] is True
    assert listening["allow_hosts"] == "127.0.0.1/32"
    assert not any(e["event"] == "exposed" for e in tls_node.events())  # loopback + allow-list + TLS: no warning
    study = generate_uid()
    film = make_film(tmp_path / "film.dcm", np.asarray(shenzhen_pixels), (384, 384), study=study)
    ds = pydicom.dcmread(film)
    ds.PatientName, ds.PatientID = PATIENT_NAME, PATIENT_ID
    ds.save_as(film)
    # Orthanc -> node over TLS (Orthanc's modality has UseDicomTls); the node -> Orthanc's TLS-only port
    segs = push_through_node(tls_orthanc, film, study, tls_node, "the SEG in Orthanc over TLS")
    assert len(segs) == 1 and segs[0]["PatientID"] == PATIENT_ID  # the SEG carries the source's identity
    key = Spool.key_for(ds.SOPInstanceUID)
    wait_until(lambda: any(e["event"] == "sent" and e["key"] == key for e in tls_node.events()), 10, "'sent'", tls_node)
    received = next(e for e in tls_node.events() if e["event"] == "received" and e["key"] == key)
    assert received["calling_ae"] == "ORTHANC"
    log = tls_node.logs[-1].read_text()
    for secret in (PATIENT_NAME, PATIENT_ID, "Tlsprivacy", "Jane"):
        assert secret not in log


@pytest.mark.slow
def test_predict_send_over_tls_stores_the_seg(tls_orthanc, pki, shenzhen_pixels, shipped_bundle, tmp_path):
    film = make_film(tmp_path / "chest.dcm", np.asarray(shenzhen_pixels), (256, 256))
    study = pydicom.dcmread(film).StudyInstanceUID
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "medlung",
            "predict",
            str(film),
            "-o",
            str(tmp_path / "out"),
            "--format",
            "seg",
            "--send",
            tls_orthanc.destination,
            "--tls-cert",
            str(pki.client.cert),
            "--tls-key",
            str(pki.client.key),
            "--tls-ca",
            str(pki.ca),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env={**os.environ, "MEDLUNG_BUNDLE": str(shipped_bundle), "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr
    stored = [t for t in tls_orthanc.study_instances(study) if t.get("Modality") == "SEG"]
    seg = read_dicom_seg(tmp_path / "out" / "chest_seg.dcm")
    instance = tls_orthanc.instances_with_uid(stored[0]["SOPInstanceUID"])[0]
    (tmp_path / "back.dcm").write_bytes(tls_orthanc.get(f"/instances/{instance}/file"))
    np.testing.assert_array_equal(read_dicom_seg(tmp_path / "back.dcm")[0], seg[0])


# --- untrusted peers, one way each ------------------------------------------------------------------
def test_node_refuses_a_client_without_a_certificate(tls_node, pki):
    since = len(tls_node.events())
    assoc = associate(tls_node.port, TlsConfig(ca=pki.ca))  # trusts the node, shows no certificate
    assert not assoc.is_established
    found = wait_until(lambda: refusals(tls_node, since), 30, "the refusal in the log", tls_node)
    assert found[0]["address"].startswith("127.0.0.1:")
    assert "certificate" in found[0]["reason"] and found[0]["level"] == "warning"


def test_node_refuses_a_client_certificate_from_another_authority(tls_node, pki):
    since = len(tls_node.events())
    assoc = associate(tls_node.port, TlsConfig(pki.rogue.cert, pki.rogue.key, pki.ca))
    assert not assoc.is_established
    found = wait_until(lambda: refusals(tls_node, since), 30, "the refusal in the log", tls_node)
    assert found[0]["address"].startswith("127.0.0.1:") and "certificate" in found[0]["reason"]


def test_node_refuses_a_plain_text_association(tls_node, pki):
    since = len(tls_node.events())
    assoc = associate(tls_node.port, None)
    assert not assoc.is_established
    found = wait_until(lambda: refusals(tls_node, since), 30, "the refusal in the log", tls_node)
    assert found[0]["address"].startswith("127.0.0.1:") and "plain-text" in found[0]["reason"]
    # a client with a certificate the node trusts still gets in, from pynetdicom as from Orthanc
    assoc = associate(tls_node.port, TlsConfig(pki.client.cert, pki.client.key, pki.ca))
    assert assoc.is_established
    try:
        assert int(assoc.send_c_echo().Status) == 0
    finally:
        assoc.release()


def test_orthanc_tls_port_refuses_plain_text_and_untrusted_senders(tls_orthanc, pki, tmp_path):
    film = make_film(tmp_path / "film.dcm", np.zeros((128, 128), np.uint8) + 40, (128, 128))
    plain = send_cstore([film], tls_orthanc.destination, retries=0, timeout=10)[0]
    assert not plain.ok and "DICOM TLS" in plain.message
    no_cert = send_cstore([film], tls_orthanc.destination, retries=0, timeout=10, tls=TlsConfig(ca=pki.ca))[0]
    assert not no_cert.ok and "refused our TLS certificate" in no_cert.message
    untrusted = send_cstore(
        [film],
        tls_orthanc.destination,
        retries=0,
        timeout=10,
        tls=TlsConfig(pki.client.cert, pki.client.key, pki.rogue_ca),
    )[0]
    assert not untrusted.ok and "not trusted" in untrusted.message  # we check the PACS's certificate too
    good = send_cstore(
        [film], tls_orthanc.destination, retries=0, timeout=10, tls=TlsConfig(pki.client.cert, pki.client.key, pki.ca)
    )[0]
    assert good.ok, good.message
    for result in (plain, no_cert, untrusted, good):
        assert "\n" not in result.message


def test_tls_options_are_checked_before_the_model_loads(pki, tmp_path):
    def serve(*args):
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "medlung",
                "serve",
                "--forward",
                "PACS@127.0.0.1:104",
                "--workdir",
                str(tmp_path / "w"),
                "--bind",
                "127.0.0.1",
                *map(str, args),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=REPO,
        )

    mismatched = serve("--tls-cert", pki.node.cert, "--tls-key", pki.client.key, "--tls-ca", pki.ca)
    assert mismatched.returncode == 2 and "cannot be loaded" in mismatched.stderr
    no_cert = serve("--tls-ca", pki.ca)
    assert no_cert.returncode == 2 and "--tls-cert" in no_cert.stderr
    assert "Traceback" not in mismatched.stderr + no_cert.stderr
    assert not (tmp_path / "w").exists()  # nothing started
