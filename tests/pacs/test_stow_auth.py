"""Authenticated DICOMweb: ``--stow`` against a real Orthanc with ``AuthenticationEnabled`` and registered users.

Credentials come from the environment (or a file it names), never from the
command line; a refused one gives one line, and nothing is stored.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from medlung.errors import CredentialsError, InvalidDestinationError
from medlung.pacs import DicomwebCredentials, credentials_from_environment, stow_rs
from medlung.writers.dicom_seg import write_dicom_seg
from tests.pacs.orthanc import start_orthanc, stop_orthanc
from tests.services.node.test_serve import REPO, make_film
from tests.writers.seg_support import load, two_lungs

USER, PASSWORD = "medlung", "c0rrect-h0rse-Battery"
#: Variables that must not leak from the developer's shell into these tests.
CREDENTIAL_VARIABLES = (
    "MEDLUNG_STOW_TOKEN",
    "MEDLUNG_STOW_TOKEN_FILE",
    "MEDLUNG_STOW_USER",
    "MEDLUNG_STOW_PASSWORD",
    "MEDLUNG_STOW_PASSWORD_FILE",
)


@pytest.fixture(scope="module")
def auth_orthanc(tmp_path_factory):
    """Orthanc whose REST API and DICOMweb need HTTP basic authentication."""
    server = start_orthanc(
        tmp_path_factory.mktemp("orthanc_auth"), AuthenticationEnabled=True, RegisteredUsers={USER: PASSWORD}
    )
    try:
        yield server
    finally:
        stop_orthanc(server)


@pytest.fixture()
def clean_env(monkeypatch):
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def film_and_seg(folder, pixels) -> tuple:
    """A film of a new study and a SEG of it (without the model): the two files a --send-source sends."""
    film = make_film(folder / "film.dcm", pixels, (256, 256), study=generate_uid())
    seg = write_dicom_seg(load(film), two_lungs((256, 256)), folder / "film_seg.dcm", model_version="test")
    return film, seg, pydicom.dcmread(film).StudyInstanceUID


def test_the_server_refuses_anonymous_stow(auth_orthanc, clean_env, shenzhen_pixels, tmp_path):
    film, seg, study = film_and_seg(tmp_path, np.asarray(shenzhen_pixels))
    results = stow_rs([seg, film], auth_orthanc.dicomweb, retries=0)
    assert [r.status for r in results] == [401, 401] and not any(r.ok for r in results)
    assert "none were given" in results[0].message and "MEDLUNG_STOW_USER" in results[0].message
    assert results[1].attempts == 0  # not tried after the refusal
    assert auth_orthanc.study_instances(study) == []


def test_wrong_password_is_refused_in_one_line_and_nothing_is_stored(
    auth_orthanc, clean_env, shenzhen_pixels, tmp_path
):
    film, seg, study = film_and_seg(tmp_path, np.asarray(shenzhen_pixels))
    clean_env.setenv("MEDLUNG_STOW_USER", USER)
    clean_env.setenv("MEDLUNG_STOW_PASSWORD", "wrong-password")
    results = stow_rs([seg, film], auth_orthanc.dicomweb, retries=2, backoff=0)
    assert [r.status for r in results] == [401, 401]
    assert results[0].attempts == 1  # a refused credential is not retried (no account lock-out)
    message = results[0].message
    assert message.count("\n") == 0 and f"user '{USER}'" in message and "refused" in message
    assert "wrong-password" not in message
    assert auth_orthanc.study_instances(study) == []  # nothing, not even part of it


def test_wrong_bearer_token_is_refused(auth_orthanc, clean_env, shenzhen_pixels, tmp_path):
    _film, seg, study = film_and_seg(tmp_path, np.asarray(shenzhen_pixels))
    token_file = tmp_path / "token"
    token_file.write_text("not-a-valid-token\n")
    clean_env.setenv("MEDLUNG_STOW_TOKEN_FILE", str(token_file))
    (result,) = stow_rs([seg], auth_orthanc.dicomweb, retries=0)
    assert result.status == 401 and "bearer token (MEDLUNG_STOW_TOKEN_FILE)" in result.message
    assert "not-a-valid-token" not in result.message
    assert auth_orthanc.study_instances(study) == []


@pytest.mark.slow
def test_predict_stow_with_right_credentials_stores_seg_and_film(
    auth_orthanc, clean_env, shenzhen_pixels, shipped_bundle, tmp_path
):
    film = make_film(tmp_path / "chest.dcm", np.asarray(shenzhen_pixels), (256, 256), study=generate_uid())
    study = pydicom.dcmread(film).StudyInstanceUID
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARIABLES}
    env.update(
        MEDLUNG_BUNDLE=str(shipped_bundle),
        PYTHONPATH=str(REPO),
        MEDLUNG_STOW_USER=USER,
        MEDLUNG_STOW_PASSWORD_FILE=str(password_file),
    )
    command = [
        sys.executable,
        "-m",
        "medlung",
        "predict",
        str(film),
        "-o",
        str(tmp_path / "out"),
        "--format",
        "seg",
        "--stow",
        auth_orthanc.dicomweb,
        "--send-source",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr
    stored = sorted(item["Modality"] for item in auth_orthanc.study_instances(study))
    assert stored == ["CR", "SEG"]

    # the same film with a wrong password: one error line, exit 1, the SEG kept on disk, nothing new stored
    password_file.write_text("wrong\n")
    again = subprocess.run(
        [*command[:-1], "--overwrite"], capture_output=True, text=True, timeout=600, cwd=REPO, env=env
    )
    assert again.returncode == 1 and "Traceback" not in again.stderr
    errors = [line for line in again.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "HTTP 401" in errors[0] and f"user '{USER}'" in errors[0]
    row = next(csv.DictReader(open(tmp_path / "out" / "report.csv")))
    assert row["status"] == "error" and "HTTP 401" in row["error"] and "wrong" not in row["error"]
    assert (tmp_path / "out" / "chest_seg.dcm").is_file()
    assert sorted(item["Modality"] for item in auth_orthanc.study_instances(study)) == ["CR", "SEG"]
    assert PASSWORD not in again.stderr + result.stderr


def test_credentials_never_come_from_the_command_line(clean_env, tmp_path):
    with pytest.raises(InvalidDestinationError, match="carries credentials"):
        stow_rs([tmp_path / "x.dcm"], f"http://{USER}:{PASSWORD}@127.0.0.1:8042/dicom-web")
    usage = subprocess.run(
        [
            sys.executable,
            "-m",
            "medlung",
            "predict",
            str(tmp_path),
            "-o",
            str(tmp_path / "out"),
            "--stow",
            "http://127.0.0.1:1/dicom-web",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env={**os.environ, "MEDLUNG_STOW_TOKEN": "t", "MEDLUNG_STOW_USER": USER, "PYTHONPATH": str(REPO)},
    )
    assert usage.returncode == 2 and "both a bearer token" in usage.stderr and "Traceback" not in usage.stderr
    in_url = subprocess.run(
        [
            sys.executable,
            "-m",
            "medlung",
            "predict",
            str(tmp_path),
            "-o",
            str(tmp_path / "out"),
            "--stow",
            f"http://{USER}:{PASSWORD}@127.0.0.1:1/dicom-web",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert in_url.returncode == 2 and "carries credentials" in in_url.stderr and PASSWORD not in in_url.stderr


def test_credentials_from_the_environment():
    assert credentials_from_environment({}) is None
    token = credentials_from_environment({"MEDLUNG_STOW_TOKEN": "abc"})
    assert token.headers() == {"Authorization": "Bearer abc"} and "abc" not in repr(token)
    basic = credentials_from_environment({"MEDLUNG_STOW_USER": "aladdin", "MEDLUNG_STOW_PASSWORD": "open sesame"})
    assert basic.headers() == {"Authorization": "Basic YWxhZGRpbjpvcGVuIHNlc2FtZQ=="}  # RFC 7617's example
    with pytest.raises(CredentialsError, match="needs both"):
        credentials_from_environment({"MEDLUNG_STOW_PASSWORD": "x"})
    with pytest.raises(CredentialsError, match="given twice"):
        credentials_from_environment({"MEDLUNG_STOW_TOKEN": "x", "MEDLUNG_STOW_TOKEN_FILE": "/x"})
    with pytest.raises(CredentialsError, match="cannot be read"):
        credentials_from_environment({"MEDLUNG_STOW_TOKEN_FILE": "/nonexistent/token"})
    with pytest.raises(CredentialsError, match="empty"):
        DicomwebCredentials("bearer", "", source="test")
